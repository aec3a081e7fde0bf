"""Use cases of the dispatcher: intake, assignment (offers, timers, escalation), agent sessions
and queries. Depends only on the domain and on the ports in `ports.py`."""
