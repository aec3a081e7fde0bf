"""The operator's edge: the `switchboard` commands that read and change the contact centre
(agents, queues, calendars, tasks, phones, answers, categories, accounts, token revocation),
loaded by the runtime like the other edges (entry point `switchboard.edges: admin`).

It uses only `dispatcher.service`, `dispatcher.domain`, `dispatcher.aio` and the dispatcher's
top-level helpers; never the storage or the runtime (pyproject's import-linter contracts).
"""
