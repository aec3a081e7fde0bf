"""The admin edge as the runtime loads it (entry point `switchboard.edges: admin`).

`commands` adds the operator's commands to `switchboard` (commands.py), available whether the
edge is enabled or not. `build` mounts the operator's pages on the runtime's HTTP site:
`/healthz` (health.py, no token) and `/report` (report_page.py, supervisors' tokens checked
by the runtime's verifier of people's tokens: the console's keys).
"""

from __future__ import annotations

from typing import Any

from dispatcher.service.edges import EdgeContext, EdgeSpec

from .commands import add_commands
from .config import AdminSettings
from .health import Health
from .report_page import ReportPage


class Admin:
    """The pages are mounted when built (before the HTTP port listens); nothing to start."""

    def __init__(self, context: EdgeContext, settings: AdminSettings) -> None:
        self.context = context
        self.settings = settings
        root = context.site_root
        root.putChild(b"healthz", Health(context.health, context.reactor))
        if context.reports is not None and context.people_tokens is not None:
            root.putChild(b"report", ReportPage(context.reports, context.people_tokens))

    def start(self) -> Any:
        return None

    def stop(self) -> Any:
        return None


def build(context: EdgeContext, settings: AdminSettings) -> Admin:
    return Admin(context, settings)


EDGE = EdgeSpec(name="admin", settings=AdminSettings, build=build, commands=add_commands)
