"""The admin edge's commands: every parser (`add_commands`, given the runtime's sub-command
parsers) and the one function the runtime calls for any of them (`run`).

Each command module has `add_commands(sub)` and `COMMANDS`, {(command, action): cmd}; a `cmd`
is `async def cmd(context: EdgeCommandContext, args) -> int` (the exit code). None of them
needs the token secret, so the runtime does not load (or make) it for them.
"""

from __future__ import annotations

from typing import Any

from dispatcher.service.edges import EdgeCommandContext

from . import accounts, answers, categories, configuration, phones, report, tasks, tokens

MODULES = (configuration, tasks, tokens, phones, report, answers, categories, accounts)
COMMANDS = {key: cmd for module in MODULES for key, cmd in module.COMMANDS.items()}


def add_commands(sub: Any) -> None:
    before = set(sub.choices)
    configuration.add_commands(sub)  # agents, queues (and calendars, below tokens)
    tasks.add_commands(sub)
    tokens.add_commands(sub)
    configuration.add_calendar_commands(sub)
    phones.add_commands(sub)
    report.add_commands(sub)
    answers.add_commands(sub)  # answers, kb
    categories.add_commands(sub)
    accounts.add_commands(sub)  # console sign-in
    for name in set(sub.choices) - before:
        sub.choices[name].set_defaults(edge_command=run, needs_token_secret=False)


def run(args: Any, settings: Any, context: EdgeCommandContext) -> Any:
    """The command `args` names, on the context (an awaitable of its exit code)."""
    return COMMANDS[(args.command, getattr(args, "action", None))](context, args)
