"""The customer part of offer, assigned and welcome frames, encoded once per version of the
customer's card and timeline.

Sits in the console edge, between the history service (its `CustomerView`s) and the sockets
(session.py). What it promises:
- `Cards.of(view)` is the customer as pushed (`customer_view`): a dict, which also carries its
  JSON text (`Card.text`, what `messages.dumps` gives for it).
- The text is made once per view object. Views are frozen, and the history cache
  (dispatcher/service/history_cache.py) hands out one view per customer until a committed write
  concerning them replaces it; so one object is one version of the card and timeline, and a
  changed card or timeline is a new object, encoded afresh. A view read from the store (no
  cache, or a miss) is a new object too. At most `size` views are remembered (oldest first out).
- `dumps(frame)` is `messages.dumps(frame)`, the same string, with the cards among the frame's
  values spliced in as their text instead of being encoded again.
Frames are built once and not changed after (session.py): a `Card` is shared by every frame of
that version and must not be modified.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import fields
from typing import Any

from dispatcher.service.history import TimelineEntry

from . import messages as m

# Views whose encoded customer is remembered (a few KB each at most).
CARDS_REMEMBERED = 4096

# A timeline entry's fields, all plain values: read one by one (dataclasses.asdict deep-copies
# each value, the larger part of a returning customer's offer frame).
_ENTRY_FIELDS = tuple(f.name for f in fields(TimelineEntry))


def customer_view(view: Any) -> dict[str, Any]:
    """The customer as the console pushes it (docs/console-protocol.md "Offers": `customer`)."""
    card = view.card
    return {
        "id": card.id, "name": card.name, "since": card.since,
        "identities": [{"kind": i.kind, "value": i.value} for i in card.identities],
        "open_tasks": list(card.open_tasks),
        "timeline": [{name: getattr(e, name) for name in _ENTRY_FIELDS} for e in view.timeline],
    }


class Card(dict):  # type: ignore[type-arg]
    """`customer_view(view)` with its JSON text."""

    __slots__ = ("text",)

    def __init__(self, content: dict[str, Any]) -> None:
        super().__init__(content)
        self.text = m.dumps(content)


class Cards:
    """The encoded customers of the last `size` views, by view identity (each entry holds its
    view, so an identity is never reused while remembered)."""

    def __init__(self, size: int = CARDS_REMEMBERED) -> None:
        self.size = size
        self._by_view: OrderedDict[int, tuple[Any, Card]] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._by_view)

    def of(self, view: Any) -> Card:
        key = id(view)
        found = self._by_view.get(key)
        if found is not None and found[0] is view:
            self.hits += 1
            return found[1]
        self.misses += 1
        card = Card(customer_view(view))
        if self.size > 0:
            self._by_view[key] = (view, card)
            if len(self._by_view) > self.size:
                self._by_view.popitem(last=False)
        return card


def dumps(frame: dict[str, Any]) -> str:
    """`messages.dumps(frame)`, with each `Card` value of the frame spliced in as its text."""
    if not any(type(v) is Card for v in frame.values()):
        return m.dumps(frame)
    parts: list[str] = []
    plain: dict[str, Any] = {}
    for key, value in frame.items():
        if type(value) is Card:
            if plain:
                parts.append(m.dumps(plain)[1:-1])
                plain = {}
            parts.append(f"{json.dumps(key)}:{value.text}")
        else:
            plain[key] = value
    if plain:
        parts.append(m.dumps(plain)[1:-1])
    return "{" + ",".join(parts) + "}"
