"""The console's customer messages for supervisors (docs/console-protocol.md, "Customers"): find
customers by name, e-mail address or phone number, and correct a customer's name and
identities. A customer's card and timeline are `history`; merging two is `merge` (server.py).

Sits beside `server.py`, which hands it every message of `messages.CUSTOMER_TYPES` after hello.
What it promises: only the `supervisor` role is served (anyone else: `forbidden`, checked here
and again by dispatcher.service.backoffice, before anything is read); each request is one call
of the back office, answered after its Deferred fired (a change: after its commit, audited as
`customer.changed` with the supervisor's id). Customer data is sent as text for the page to
show with textContent.
"""

from __future__ import annotations

from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain.errors import Forbidden
from dispatcher.service.backoffice import Caller

from . import messages as m

SUPERVISOR = "supervisor"
MAX_IDENTITIES = 50  # in one customer_edit (the service allows fewer and says so)
MAX_IDENTITY_CHARS = 320


def card_view(c: Any) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "since": c.created_at,
            "identities": [{"kind": i.kind, "value": i.value} for i in c.identities]}


class CustomerRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        if session.role != SUPERVISOR:
            raise Forbidden(session.sub, f"{kind} (supervisors only)")
        office = getattr(self.desks, "backoffice", None)
        if office is None or not office.features()["customers"]:
            return m.error(m.NOT_AVAILABLE, "no customer search here", rid)
        return await getattr(self, "_" + kind)(office, Caller(session.sub, session.role), msg,
                                               rid)

    async def _customer_search(self, office, caller, msg, rid):
        found = await to_future(office.find_customers(caller, m.field(msg, "query")))
        return m.ok(rid, customers=[card_view(c) for c in found])

    async def _customer_edit(self, office, caller, msg, rid):
        identities = msg.get("identities")
        if not (isinstance(identities, list) and len(identities) <= MAX_IDENTITIES and all(
                isinstance(i, dict) and isinstance(i.get("kind"), str)
                and isinstance(i.get("value"), str) and len(i["value"]) <= MAX_IDENTITY_CHARS
                for i in identities)):
            raise m.BadMessage('customer_edit: `identities` is a list of {"kind": "email" or '
                               '"phone", "value": ...}')
        name = m.field(msg, "name", limit=m.MAX_FIELD_CHARS) or ""
        changed = await to_future(office.edit_customer(
            caller, m.field(msg, "customer_id"), name,
            [(i["kind"], i["value"]) for i in identities]))
        return m.ok(rid, customer=card_view(changed))
