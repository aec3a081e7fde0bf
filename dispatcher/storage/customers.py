"""Customers on SQL: identities, history, the supervisors' search, corrections and merges.

Sits under `dispatcher.storage`; `SqlCustomers` is a mixin of `SqlStore` (sql.py). Merges and
edits go through the group commit, ordered with intakes (which look identities up) and with
task upserts (none written from an older snapshot can put a task back on a merged customer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.events import Event
from dispatcher.service.ports import (
    Customer,
    CustomerHistory,
    Identity,
    IdentityTaken,
    MergedCustomers,
    StoredEvent,
    TaskRecord,
    TaskSummary,
)

from . import rows as r
from . import tables as t
from .bulk import append_events
from .commit import GroupCommit
from .pool import Pool
from .reads import TurnReads
from .statements import chunks, insert_rows

_CUSTOMERS = (
    sa.select(t.customers.c.id, t.customers.c.name, t.customers.c.created_at,
              t.customer_identities.c.kind, t.customer_identities.c.value)
    .select_from(t.customers.outerjoin(
        t.customer_identities, t.customer_identities.c.customer_id == t.customers.c.id))
    .where(t.customers.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(t.customers.c.id, t.customer_identities.c.kind, t.customer_identities.c.value)
)


def _customers_of(conn: sa.Connection, ids: Sequence[str]) -> dict[str, Customer]:
    """The customers among `ids` with their identities (one query per IN_CHUNK customers: the
    rows joined with their identities)."""
    found: dict[str, list[Any]] = {}  # customer id -> their rows (one per identity)
    for chunk in chunks(ids):
        for row in conn.execute(_CUSTOMERS, {"ids": list(chunk)}):
            found.setdefault(row.id, []).append(row)
    return {
        customer_id: Customer(id=mine[0].id, name=mine[0].name, created_at=mine[0].created_at,
                              identities=tuple(Identity(row.kind, row.value) for row in mine
                                               if row.kind is not None))
        for customer_id, mine in found.items()}


def thd_get_customer(conn: sa.Connection, customer_id: str) -> Customer | None:
    """The customer with their identities (one query)."""
    return _customers_of(conn, [customer_id]).get(customer_id)


def thd_customer_histories(conn: sa.Connection, asks: list[tuple[str, int]]
                           ) -> list[CustomerHistory]:
    """For each (customer id, limit) of `asks`: the customer and their newest `limit` tasks
    with their events (none for an unknown customer), in one transaction: three queries for
    all (per IN_CHUNK customers, and per limit asked for)."""
    customers = _customers_of(conn, list(dict.fromkeys(customer_id for customer_id, _ in asks)))
    wanted: dict[int, list[str]] = {}  # limit -> the known customers asked for with it
    for customer_id, limit in dict.fromkeys(asks):
        if customer_id in customers:
            wanted.setdefault(limit, []).append(customer_id)
    records = {limit: _records_of(conn, known, limit) for limit, known in wanted.items()}
    out: list[CustomerHistory] = []
    given: set[tuple[str, int]] = set()
    for ask in asks:
        customer = customers.get(ask[0])
        if customer is None:
            out.append(CustomerHistory(None, []))
            continue
        mine = records[ask[1]].get(ask[0], [])
        if ask in given:  # asked twice: each answer its own list and attributes
            mine = [replace(rec, attributes=dict(rec.attributes)) for rec in mine]
        given.add(ask)
        out.append(CustomerHistory(customer, mine))
    return out


def _records_of(conn: sa.Connection, customer_ids: list[str], limit: int
                ) -> dict[str, list[TaskRecord]]:
    """The newest `limit` tasks of each customer, newest first, with their attributes and
    events. One customer's take LIMIT (the index stops there, however many tasks they have);
    several customers' are ranked in the database (ROW_NUMBER over each one's tasks)."""
    if not customer_ids or limit < 1:
        return {}
    k = t.tasks.c
    newest = (k.created_at.desc(), k.id.desc())
    queries: list[Any] = []
    if len(customer_ids) == 1:
        queries.append(sa.select(t.tasks).where(k.customer_id == customer_ids[0])
                       .order_by(*newest).limit(limit))
    else:
        rank = sa.func.row_number().over(partition_by=k.customer_id, order_by=newest)
        for chunk in chunks(customer_ids):
            ranked = sa.select(t.tasks, rank.label("rank")).where(
                k.customer_id.in_(list(chunk))).subquery()
            queries.append(sa.select(ranked).where(ranked.c.rank <= limit)
                           .order_by(ranked.c.customer_id, ranked.c.rank))
    rows = [row for query in queries for row in conn.execute(query)]
    trails = _trails(conn, [row.id for row in rows])
    out: dict[str, list[TaskRecord]] = {}
    for row in rows:
        out.setdefault(row.customer_id, []).append(TaskRecord(
            r.summary_from_row(row), r.stored_attributes(row), tuple(trails[row.id])))
    return out


def thd_find_customer(conn: sa.Connection, kind: str, value: str) -> Customer | None:
    ids = t.customer_identities
    query = sa.select(ids.c.customer_id).where(ids.c.kind == kind, ids.c.value == value)
    customer_id = conn.execute(query).scalar()
    return None if customer_id is None else thd_get_customer(conn, customer_id)


def thd_customer_tasks(conn: sa.Connection, customer_id: str, limit: int) -> list[TaskSummary]:
    query = (
        sa.select(t.tasks)
        .where(t.tasks.c.customer_id == customer_id)
        .order_by(t.tasks.c.created_at.desc(), t.tasks.c.id.desc())
        .limit(limit)
    )
    return [r.summary_from_row(row) for row in conn.execute(query)]


def thd_customer_records(conn: sa.Connection, customer_id: str, limit: int) -> list[TaskRecord]:
    """The customer's newest tasks with their attributes and their events (two queries)."""
    return _records_of(conn, [customer_id], limit).get(customer_id, [])


def _trails(conn: sa.Connection, task_ids: list[str]) -> dict[str, list[StoredEvent]]:
    """The events of each task, oldest first (one query per IN_CHUNK tasks)."""
    trails: dict[str, list[StoredEvent]] = {task_id: [] for task_id in task_ids}
    e = t.task_events
    for chunk in chunks(list(trails)):
        events = sa.select(e).where(e.c.task_id.in_(list(chunk))).order_by(e.c.id)
        for row in conn.execute(events):
            trails[row.task_id].append(r.stored_event_from_row(row))
    return trails


def thd_merge_customers(
    conn: sa.Connection, survivor_id: str, merged_id: str, events: list[r.Row]
) -> MergedCustomers:
    ids = t.customer_identities
    moved = tuple(
        Identity(kind, value)
        for kind, value in conn.execute(
            sa.select(ids.c.kind, ids.c.value)
            .where(ids.c.customer_id == merged_id)
            .order_by(ids.c.kind, ids.c.value)
        )
    )
    task_ids = tuple(
        conn.execute(
            sa.select(t.tasks.c.id).where(t.tasks.c.customer_id == merged_id).order_by(t.tasks.c.id)
        ).scalars()
    )
    conn.execute(
        ids.update().where(ids.c.customer_id == merged_id).values(customer_id=survivor_id)
    )
    conn.execute(
        t.tasks.update().where(t.tasks.c.customer_id == merged_id).values(customer_id=survivor_id)
    )
    append_events(conn, events)
    return MergedCustomers(survivor_id, merged_id, moved, task_ids)


LIKE_ESCAPE = "\\"


def _contains(needle: str) -> str:
    """A LIKE pattern for "contains `needle`", its wildcards taken literally."""
    plain = needle.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
    return "%" + plain.replace("_", LIKE_ESCAPE + "_") + "%"


def thd_search_customers(conn: sa.Connection, needles: list[str], limit: int) -> list[Customer]:
    """Matching customers, newest first, with their identities (two queries, plus one per
    chunk of identities)."""
    c, ids = t.customers, t.customer_identities
    if not needles:
        return []
    patterns = [_contains(n) for n in needles]
    by_identity = sa.select(ids.c.customer_id).where(
        sa.or_(*(ids.c.value.like(p, escape=LIKE_ESCAPE) for p in patterns)))
    query = (
        sa.select(c)
        .where(sa.or_(*(sa.func.lower(c.c.name).like(p, escape=LIKE_ESCAPE) for p in patterns),
                      c.c.id.in_(by_identity)))
        .order_by(c.c.created_at.desc(), c.c.id)
        .limit(limit)
    )
    rows = list(conn.execute(query))
    found: dict[str, list[Identity]] = {row.id: [] for row in rows}
    for chunk in chunks(list(found)):
        for kind, value, owner in conn.execute(
                sa.select(ids.c.kind, ids.c.value, ids.c.customer_id)
                .where(ids.c.customer_id.in_(list(chunk)))
                .order_by(ids.c.kind, ids.c.value)):
            found[owner].append(Identity(kind, value))
    return [Customer(row.id, row.name, row.created_at, tuple(found[row.id])) for row in rows]


@dataclass(frozen=True, slots=True)
class CustomerEdit:
    customer_id: str
    name: str
    identities: tuple[tuple[str, str], ...]  # (kind, value)
    events: list[r.Row]


def thd_edit_customer(conn: sa.Connection, edit: CustomerEdit) -> Customer | None:
    c, ids = t.customers, t.customer_identities
    if conn.execute(sa.select(c.c.id).where(c.c.id == edit.customer_id)).first() is None:
        return None
    wanted = set(edit.identities)
    for kind, value in sorted(wanted):
        owner = conn.execute(sa.select(ids.c.customer_id).where(
            ids.c.kind == kind, ids.c.value == value)).scalar()
        if owner is not None and owner != edit.customer_id:
            raise IdentityTaken(Identity(kind, value), owner)
    current = {(kind, value) for kind, value in conn.execute(
        sa.select(ids.c.kind, ids.c.value).where(ids.c.customer_id == edit.customer_id))}
    for kind, value in sorted(current - wanted):
        conn.execute(ids.delete().where(ids.c.kind == kind, ids.c.value == value,
                                        ids.c.customer_id == edit.customer_id))
    insert_rows(conn, ids, [{"kind": k, "value": v, "customer_id": edit.customer_id}
                        for k, v in sorted(wanted - current)])
    conn.execute(c.update().where(c.c.id == edit.customer_id).values(name=edit.name))
    append_events(conn, edit.events)
    return thd_get_customer(conn, edit.customer_id)


class SqlCustomers:
    """Customers: part of the `Store` port. A mixin of `SqlStore` (dispatcher/storage/sql.py): it uses the store's `_pool`, `_commit`
    and `_clock`."""

    _pool: Pool
    _commit: GroupCommit
    _clock: Callable[[], float]
    _histories: TurnReads[tuple[str, int], CustomerHistory]  # made by SqlStore

    def get_customer(self, customer_id: str) -> Deferred[Customer | None]:
        return self._pool.run(thd_get_customer, customer_id)

    def find_customer(self, identity: Identity) -> Deferred[Customer | None]:
        return self._pool.run(thd_find_customer, identity.kind, identity.value)

    def customer_tasks(
        self, customer_id: str, limit: int = r.DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskSummary]]:
        return self._pool.run(thd_customer_tasks, customer_id, limit)

    def customer_records(
        self, customer_id: str, limit: int = r.DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskRecord]]:
        return self._pool.run(thd_customer_records, customer_id, limit)

    def customer_history(
        self, customer_id: str, limit: int = r.DEFAULT_HISTORY_LIMIT
    ) -> Deferred[CustomerHistory]:
        # Those asked for in one reactor turn are read together (reads.py): after a restart,
        # every returning customer's first offer asks for one.
        return self._histories.run((customer_id, limit))

    def merge_customers(
        self, survivor_id: str, merged_id: str, events: Sequence[Event]
    ) -> Deferred[MergedCustomers]:
        # Through the group commit: ordered with the task upserts, so none written from an
        # older snapshot can put a task back on the merged customer afterwards.
        rows = [r.event_row(e) for e in events]
        return self._commit.run(thd_merge_customers, survivor_id, merged_id, rows)

    def search_customers(self, needles: Sequence[str], limit: int = r.DEFAULT_HISTORY_LIMIT
                         ) -> Deferred[list[Customer]]:
        return self._pool.run(thd_search_customers, list(needles), limit)

    def edit_customer(self, customer_id: str, name: str, identities: Sequence[Identity],
                      events: Sequence[Event]) -> Deferred[Customer | None]:
        # Through the group commit: ordered with intakes, which look identities up.
        edit = CustomerEdit(customer_id, name, tuple((i.kind, i.value) for i in identities),
                            [r.event_row(e) for e in events])
        return self._commit.run(thd_edit_customer, edit)
