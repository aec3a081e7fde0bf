"""Which role may use which use case, for the callers that hold a token but are not the
console's sessions (the REST API): one table, read by the edge to gate its routes and to
document them (`x-roles` in docs/api/openapi.json).

Sits in the service layer beside `tokens.py` (who the caller is) and the use cases (what the
caller may touch there: `Tasks` keeps an agent to their own work, `History.view_for` to their
customers, `BackOffice` to supervisors). This table is the coarse rule for the services that
take no caller (configuration, reports, webhooks, the library): supervisors everything;
integrations (a CRM, a chat front end, a PBX) tasks and webhooks; agents their own tasks,
those tasks' customers and the answer library. An integration reads no customer
(`history.check_reader`)."""

from __future__ import annotations

from dispatcher.domain.errors import Forbidden

from .tokens import AGENT, INTEGRATION, SUPERVISOR

RULES: dict[str, tuple[str, ...]] = {
    "tasks.read": (AGENT, SUPERVISOR, INTEGRATION),
    "tasks.change": (SUPERVISOR, INTEGRATION),
    "customers.search": (SUPERVISOR,),
    "customers.read": (AGENT, SUPERVISOR),
    "customers.change": (SUPERVISOR,),
    "answers.read": (AGENT, SUPERVISOR),
    "reports.read": (SUPERVISOR,),
    "configuration.read": (SUPERVISOR,),
    "configuration.change": (SUPERVISOR,),
    "webhooks": (SUPERVISOR, INTEGRATION),
}


def roles_for(use_case: str) -> tuple[str, ...]:
    """The roles that may use `use_case` (KeyError for a use case nobody declared)."""
    return RULES[use_case]


def check(role: str, sub: str, use_case: str) -> None:
    """Forbidden unless a token of `role` may use `use_case`."""
    if role not in roles_for(use_case):
        raise Forbidden(sub, f"{use_case} (a token of role {role})")
