"""The reads a batch of intakes makes before it writes, in one round trip on PostgreSQL.

Sits under `dispatcher.storage`, on the database thread; the intakes of tasks.py and mail.py use
it. A batch of new e-mails reads its request numbers, when its senders were last acknowledged,
the customers of its identities and (a batch of one) whether its task id is stored: four
statements, each a round trip that waits for the interpreter lock behind a busy reactor when it
returns (under load, several times its idle cost). `thd_lookups` sends them as one `UNION ALL`
of rows tagged by what they answer and gives back the same values as the separate reads, which
SQLite (no network, one writer) and lists longer than a chunk (`IN_CHUNK`) still use.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dispatcher.service.ports import ACK_KIND

from . import tables as t
from .statements import IN_CHUNK, chunks

Pair = tuple[str, str]  # an identity: (kind, value)

# Each part of the union gives these columns; what a part does not answer is a typed NULL.
_NUMBER, _ACK, _IDENTITY, _STORED = "n", "a", "i", "d"

_EXISTING_TASKS = sa.select(t.tasks.c.id).where(
    t.tasks.c.id.in_(sa.bindparam("ids", expanding=True))
)
# One kind per query: `value IN (...)` becomes a single index probe (`= ANY(array)`) on
# PostgreSQL, where a row-value `(kind, value) IN (...)` is planned as hundreds of ORs.
_KNOWN_IDENTITIES = sa.select(
    t.customer_identities.c.value, t.customer_identities.c.customer_id
).where(
    t.customer_identities.c.kind == sa.bindparam("kind"),
    t.customer_identities.c.value.in_(sa.bindparam("values", expanding=True)),
)


@dataclass(slots=True)
class Lookups:
    """What a batch read: `numbers` (as many as asked, increasing), `acks` (peer -> when it was
    last sent an acknowledgement; absent: never), `known` (identity -> its customer's id) and
    `stored` (the ids asked for that are stored)."""

    numbers: list[int] = field(default_factory=list)
    acks: dict[str, float] = field(default_factory=dict)
    known: dict[Pair, str] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)


def thd_lookups(conn: sa.Connection, numbers: int = 0, peers: Collection[str] = (),
                identities: Collection[Pair] = (), ids: Sequence[str] = ()) -> Lookups:
    """`numbers` request numbers taken, the last acknowledgement of each of `peers`, the
    customers of `identities`, which of `ids` are stored: one statement on PostgreSQL when
    every list fits a chunk, else one per read."""
    peers, by_kind = sorted(set(peers)), _by_kind(identities)
    if (conn.dialect.name != "postgresql" or len(peers) > IN_CHUNK or len(ids) > IN_CHUNK
            or any(len(values) > IN_CHUNK for values in by_kind.values())):
        return Lookups(take_request_numbers(conn, numbers), last_acks(conn, peers),
                       known_identities(conn, by_kind), stored_ids(conn, ids))
    statement = _statement(numbers > 0, bool(peers), len(by_kind), bool(ids))
    found = Lookups()
    if statement is None:
        return found
    params: dict[str, Any] = {"count": numbers, "peers": peers, "ids": list(ids)}
    for i, (kind, values) in enumerate(by_kind.items()):
        params[f"kind{i}"], params[f"values{i}"] = kind, values
    for tag, a, b, c, n, at in conn.execute(statement, params):
        if tag == _NUMBER:
            found.numbers.append(n)
        elif tag == _ACK:
            found.acks[a] = at
        elif tag == _IDENTITY:
            found.known[(a, b)] = c
        else:
            found.stored.add(a)
    found.numbers.sort()
    return found


def _by_kind(identities: Collection[Pair]) -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {}
    for kind, value in sorted(set(identities)):
        by_kind.setdefault(kind, []).append(value)
    return by_kind


def _columns(tag: str, a: Any = None, b: Any = None, c: Any = None, n: Any = None,
             at: Any = None) -> list[Any]:
    def text(value: Any) -> Any:
        return sa.cast(sa.null(), sa.Text) if value is None else value

    return [sa.literal_column(f"'{tag}'", sa.Text).label("tag"), text(a).label("a"),
            text(b).label("b"), text(c).label("c"),
            (sa.cast(sa.null(), sa.BigInteger) if n is None else n).label("n"),
            (sa.cast(sa.null(), sa.Float) if at is None else at).label("at")]


@functools.cache
def _statement(numbers: bool, peers: bool, kinds: int, ids: bool) -> Any:
    """The union of the parts asked for (None: none), with bound parameters: `count`,
    `peers`, `kind{i}` and `values{i}` for each of `kinds` identity kinds, `ids`. Built once
    per shape: building it per batch took about 0.5 ms of the database thread."""
    m, ci = t.email_messages, t.customer_identities
    parts: list[Any] = []
    if numbers:
        parts.append(sa.select(*_columns(_NUMBER, n=t.email_request_numbers.next_value()))
                     .select_from(sa.func.generate_series(1, sa.bindparam("count"))))
    if peers:
        parts.append(sa.select(*_columns(_ACK, a=m.c.peer, at=sa.func.max(m.c.created_at)))
                     .where(m.c.peer.in_(sa.bindparam("peers", expanding=True)),
                            m.c.kind == ACK_KIND).group_by(m.c.peer))
    for i in range(kinds):  # one kind per part: see `_KNOWN_IDENTITIES`
        parts.append(sa.select(*_columns(_IDENTITY, a=ci.c.kind, b=ci.c.value,
                                         c=ci.c.customer_id))
                     .where(ci.c.kind == sa.bindparam(f"kind{i}"),
                            ci.c.value.in_(sa.bindparam(f"values{i}", expanding=True))))
    if ids:
        parts.append(sa.select(*_columns(_STORED, a=t.tasks.c.id))
                     .where(t.tasks.c.id.in_(sa.bindparam("ids", expanding=True))))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)


def take_request_numbers(conn: sa.Connection, count: int) -> list[int]:
    """`count` request numbers no other transaction gets, increasing (mail.py's module doc)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        q = (sa.select(t.email_request_numbers.next_value())
             .select_from(sa.func.generate_series(1, count)))
        return sorted(conn.execute(q).scalars())
    last = conn.execute(sa.select(sa.func.max(t.email_requests.c.number))).scalar() or 0
    return list(range(last + 1, last + 1 + count))


def last_acks(conn: sa.Connection, peers: Collection[str]) -> dict[str, float]:
    """When each of `peers` was last sent an acknowledgement (peers never sent one: absent)."""
    m = t.email_messages
    last: dict[str, float] = {}
    for chunk in chunks(sorted(peers)):
        q = (sa.select(m.c.peer, sa.func.max(m.c.created_at))
             .where(m.c.peer.in_(list(chunk)), m.c.kind == ACK_KIND).group_by(m.c.peer))
        last.update((peer, at) for peer, at in conn.execute(q))
    return last


def known_identities(conn: sa.Connection, by_kind: dict[str, list[str]]) -> dict[Pair, str]:
    """The customer of each identity stored, by kind (`_by_kind`)."""
    known: dict[Pair, str] = {}
    for kind, values in by_kind.items():
        for chunk in chunks(values):
            params = {"kind": kind, "values": list(chunk)}
            for value, customer_id in conn.execute(_KNOWN_IDENTITIES, params):
                known[(kind, value)] = customer_id
    return known


def stored_ids(conn: sa.Connection, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are stored task ids."""
    stored: set[str] = set()
    for chunk in chunks(list(ids)):
        stored.update(conn.execute(_EXISTING_TASKS, {"ids": list(chunk)}).scalars())
    return stored
