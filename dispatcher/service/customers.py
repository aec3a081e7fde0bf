"""Customers: finding a customer by name, e-mail address or phone number, and correcting their
card (name and identities) — what supervisors do on the back-office page.

Sits in the service layer beside `history.py` (the card, the timeline and the merge); reads and
writes through the `Store` port only. Who may call it is decided by `backoffice.py` (supervisors
only); this module takes the supervisor's id for the audit. What it promises:
- `search(query)`: customers whose name contains what was typed (case-insensitive), or one of
  whose e-mail addresses or phone numbers contains it; a phone number typed with spaces, dots,
  dashes or brackets is compared as digits (a leading `00` read as `+`, a national leading `0`
  also matched without it), newest customer first, at most SEARCH_LIMIT. At least
  MIN_QUERY_CHARS characters.
- `edit(customer_id, name, identities, supervisor_id)`: the full new name and list of
  identities, each checked and normalised as intake does (`email`: trimmed, lower-cased;
  `phone`: digits with an optional leading `+`). An identity of another customer is refused
  (`IdentityTaken`: they are the same person, merge them). Stored with one `customer.changed`
  event in the supervisor's own log (actor `supervisor:<id>`; data: customer_id, name, was,
  added, removed) in the same transaction; an edit that changes nothing writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import CUSTOMER_CHANGED

from .history import UnknownCustomer
from .intake import email_identity, phone_identity
from .ports import Customer, Identity, Store

SEARCH_LIMIT = 50
MIN_QUERY_CHARS = 2
MAX_QUERY_CHARS = 200
MAX_NAME_CHARS = 200
MAX_IDENTITIES = 20
MIN_PHONE_DIGITS = 3  # a typed number shorter than this is searched as text only
IDENTITY_KINDS = ("email", "phone")

_PHONE_TYPED = re.compile(r"^\+?[\d\s().\-/]+$")


def needles_for(query: str) -> tuple[str, ...]:
    """What a typed query is looked for as: the text, lower-cased, and for a phone number its
    digits (see the module's docstring)."""
    if not isinstance(query, str):
        raise InvalidValue("a search is text")
    text = " ".join(query.split()).lower()
    if not MIN_QUERY_CHARS <= len(text) <= MAX_QUERY_CHARS:
        raise InvalidValue(f"type {MIN_QUERY_CHARS}-{MAX_QUERY_CHARS} characters to search")
    out = [text]
    if _PHONE_TYPED.match(text) and sum(ch.isdigit() for ch in text) >= MIN_PHONE_DIGITS:
        number = phone_identity(text).value
        if number.startswith("00"):
            number = "+" + number[2:]
        out.append(number)
        national = number.lstrip("0")
        if number.startswith("0") and len(national) >= MIN_PHONE_DIGITS:
            out.append(national)
    return tuple(dict.fromkeys(out))


def identity_of(kind: Any, value: Any) -> Identity:
    """An identity as intake would store it; InvalidValue for anything else."""
    if kind not in IDENTITY_KINDS or not isinstance(value, str):
        raise InvalidValue(f"an identity is an {' or a '.join(IDENTITY_KINDS)} with a value")
    return email_identity(value) if kind == "email" else phone_identity(value)


def clean_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidValue("a customer's name is text")
    cleaned = " ".join(name.split())
    if len(cleaned) > MAX_NAME_CHARS:
        raise InvalidValue(f"a customer's name has at most {MAX_NAME_CHARS} characters")
    return cleaned


def _listed(identities: Sequence[Identity]) -> list[dict[str, str]]:
    return [{"kind": i.kind, "value": i.value}
            for i in sorted(identities, key=lambda i: (i.kind, i.value))]


class Customers:
    def __init__(self, store: Store, clock: Any) -> None:
        self.store = store
        self.clock = clock

    def search(self, query: str, limit: int = SEARCH_LIMIT) -> Deferred[list[Customer]]:
        """Customers matching what was typed, newest first (see the module's docstring)."""
        return ensureDeferred(self._search(query, limit))

    async def _search(self, query: str, limit: int) -> list[Customer]:
        needles = needles_for(query)
        return await self.store.search_customers(needles, max(1, min(limit, SEARCH_LIMIT)))

    def edit(self, customer_id: str, name: str, identities: Sequence[tuple[str, str]],
             supervisor_id: str) -> Deferred[Customer]:
        """Set the name and the whole list of identities (`(kind, value)` pairs), audited
        with the supervisor's id; fires with the customer as stored."""
        return ensureDeferred(self._edit(customer_id, name, identities, supervisor_id))

    async def _edit(self, customer_id: str, name: str, identities: Sequence[tuple[str, str]],
                    supervisor_id: str) -> Customer:
        if not supervisor_id:
            raise InvalidValue("a change of a customer needs the supervisor's id")
        name = clean_name(name)
        if len(identities) > MAX_IDENTITIES:
            raise InvalidValue(f"a customer has at most {MAX_IDENTITIES} identities")
        wanted = tuple(dict.fromkeys(identity_of(kind, value) for kind, value in identities))
        current = await self.store.get_customer(customer_id)
        if current is None:
            raise UnknownCustomer(customer_id)
        added = [i for i in wanted if i not in current.identities]
        removed = [i for i in current.identities if i not in wanted]
        if name == current.name and not added and not removed:
            return current
        event = ev.Event(CUSTOMER_CHANGED, self.clock.seconds(), None, supervisor_id,
                         ev.supervisor_actor(supervisor_id),
                         {"customer_id": customer_id, "name": name, "was": current.name,
                          "added": _listed(added), "removed": _listed(removed)})
        stored = await self.store.edit_customer(customer_id, name, wanted, [event])
        if stored is None:
            raise UnknownCustomer(customer_id)
        return stored
