"""Tasks on SQL: intake (`create_task`), state changes (`record`, through the group commit),
the open tasks at start-up, and the task queries (list, a keyset page, one task, its trail).

Sits under `dispatcher.storage`; `SqlTasks` is a mixin of `SqlStore` (sql.py). The writes of
intake and routing go through the group commit: their Deferreds fire after the commit that holds
them, and the calls of one reactor turn share one transaction. A batch of intakes costs one
read before its writes (the customers of its identities and, alone, whether its id is stored:
lookups.py) and one round trip of writes on PostgreSQL (an executemany per table on SQLite),
whatever its size; intakes and changes interleaved in a batch merge too when they touch other
tasks and agents (`intake_keys`, `change_keys`: the merge rule of commit.py); task rows and
events are written in bulk at the driver's level (bulk.py). A change of a task in hand sends
only the columns routing changes when the others are as last sent (`SqlTasks.record`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import FINAL_STATES, Task, TaskState
from dispatcher.service.ports import (
    Changes,
    Customer,
    Identity,
    StoredEvent,
    StoredTask,
    TaskFilter,
    TaskSummary,
)

from . import rows as r
from . import tables as t
from .bulk import append_all, event_logs, record_rows
from .commit import GroupCommit, mergeable
from .lookups import Lookups, thd_lookups
from .pool import Pool
from .statements import chunks

FINAL = sorted(s.value for s in FINAL_STATES)
# States of a task nobody holds: `SqlTasks.record` does not remember what it sent of these.
NOT_IN_HAND = FINAL_STATES | {TaskState.QUEUED}

Key = tuple[str, ...]  # a row named for the group commit's merge rule: ("task", id), ...
KEY_KINDS = {"id": "task", "task_id": "task", "agent_id": "agent"}
EVENT_KEYS = ("task_id", "agent_id")
UNKEYED: Key = ("unkeyed",)


@dataclass(slots=True)
class Intake:
    """One `create_task` call, snapshotted: the task row (its customer_id is decided in the
    database thread), the identity as (kind, value), and the event rows."""

    task: r.Row
    identity: tuple[str, str] | None
    customer_name: str
    events: list[r.Row]


@dataclass(slots=True)
class ChangeRows:
    """One `record` call, snapshotted."""

    tasks: list[r.Row] = field(default_factory=list)
    events: list[r.Row] = field(default_factory=list)
    declines: list[r.Row] = field(default_factory=list)
    outbox: list[r.Row] = field(default_factory=list)


def new_customer_id() -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex gave, at a tenth of its cost.
    return os.urandom(16).hex()


def thd_create_tasks(conn: sa.Connection, intakes: Sequence[Intake]) -> list[str]:
    """Store each intake in order, as `create_task` promises; return the customer ids."""
    return [stored.customer_id for stored in thd_intake_tasks(conn, intakes)]


def thd_intake_tasks(conn: sa.Connection, intakes: Sequence[Intake],
                     more: Sequence[tuple[sa.Table, Sequence[r.Row]]] = (),
                     looked: Lookups | None = None) -> list[StoredTask]:
    """Store each intake in order, as `intake_task` promises: the customer ids, and the
    customers this batch created (as inserted: the first intake of an identity creates its
    customer, the later ones of the batch join them). `more`: rows of other tables that go
    after them, in the same round trip (a channel's rows about these tasks). `looked`: the
    customers of `intake_identities` and which of `intake_ids` are stored, read already by the
    caller (with reads of its own, in one round trip: lookups.py)."""
    if looked is None:
        looked = thd_lookups(conn, identities=intake_identities(intakes),
                             ids=intake_ids([i.task["id"] for i in intakes]))
    _refuse_duplicates([i.task["id"] for i in intakes], looked.stored)
    known: dict[tuple[str, str] | None, str] = dict(looked.known)
    customers: list[r.Row] = []
    identities: list[r.Row] = []
    task_rows: list[r.Row] = []
    events: list[r.Row] = []
    result: list[StoredTask] = []
    for intake in intakes:
        customer_id = known.get(intake.identity) if intake.identity is not None else None
        new = None
        if customer_id is None:
            customer_id = new_customer_id()
            created = intake.task["created_at"]
            customers.append(
                {"id": customer_id, "name": intake.customer_name, "created_at": created}
            )
            if intake.identity is not None:
                kind, value = intake.identity
                identities.append({"kind": kind, "value": value, "customer_id": customer_id})
                known[intake.identity] = customer_id
            new = Customer(customer_id, intake.customer_name, created,
                           () if intake.identity is None else (Identity(*intake.identity),))
        task_rows.append({**intake.task, "customer_id": customer_id})
        events.extend(intake.events)
        result.append(StoredTask(customer_id, new))
    # One round trip on PostgreSQL (bulk.append_all), in the order the foreign keys ask.
    append_all(conn, [
        (t.customers, customers),
        (t.customer_identities, identities),
        (t.tasks, task_rows),
        *event_logs(events),
        *more,
    ])
    return result


def row_keys(rows: Sequence[r.Row], *columns: str) -> set[Key]:
    """The tasks and agents that `rows` (tasks, events, declines, outbox...) are about; a row
    about neither is keyed `UNKEYED`, so such rows keep their order among themselves."""
    keys: set[Key] = set()
    for row in rows:
        found = {(KEY_KINDS[c], row[c]) for c in columns if row.get(c) is not None}
        keys |= found or {UNKEYED}
    return keys


def intake_keys(intake: Intake) -> set[Key]:
    """What `thd_create_task` touches (group commit's merge rule, commit.py): the task, its
    identity (which decides its customer), the agents and tasks of its events."""
    keys = row_keys([intake.task], "id", "agent_id") | row_keys(intake.events, *EVENT_KEYS)
    if intake.identity is not None:
        keys.add(("identity", *intake.identity))
    return keys


def change_keys(changes: ChangeRows) -> set[Key]:
    """What `thd_record` touches: its tasks (and their agents), declines, events and outbox."""
    return (row_keys(changes.tasks, "id", "agent_id")
            | row_keys(changes.declines, *EVENT_KEYS)
            | row_keys(changes.events, *EVENT_KEYS)
            | row_keys(changes.outbox, *EVENT_KEYS))


@mergeable(thd_create_tasks, intake_keys)
def thd_create_task(conn: sa.Connection, intake: Intake) -> str:
    return thd_create_tasks(conn, [intake])[0]


@mergeable(thd_intake_tasks, intake_keys)
def thd_intake_task(conn: sa.Connection, intake: Intake) -> StoredTask:
    return thd_intake_tasks(conn, [intake])[0]


def intake_identities(intakes: Sequence[Intake]) -> set[tuple[str, str]]:
    """The identities whose customers a batch of intakes reads before it writes."""
    return {i.identity for i in intakes if i.identity is not None}


def intake_ids(ids: Sequence[str]) -> list[str]:
    """Of the task ids of a batch of intakes, those it looks up before it writes: a batch of
    one only (`_refuse_duplicates`)."""
    return list(ids) if len(ids) == 1 else []


def _refuse_duplicates(ids: list[str], stored: set[str]) -> None:
    """DuplicateTask for an id given twice or stored (`stored`: of the ids looked up). A
    merged batch does not look its ids up (`intake_ids`): the primary key refuses a stored
    one, the batch fails and the group commit re-runs each call alone, where the lookup names
    it. Duplicates are rare (a call's task id retried), and the lookup cost a batch of ten
    e-mails about 1 ms."""
    seen: set[str] = set()
    for task_id in ids:
        if task_id in seen or task_id in stored:
            raise DuplicateTask(task_id)
        seen.add(task_id)


def thd_record_many(conn: sa.Connection, batch: Sequence[ChangeRows]) -> list[None]:
    """Apply each batch of changes in order: the last snapshot of a task wins, events keep
    their order, declines are remembered once."""
    latest: dict[str, r.Row] = {}
    declines: dict[tuple[str, str], r.Row] = {}
    events: list[r.Row] = []
    outbox: list[r.Row] = []
    for changes in batch:
        for row in changes.tasks:
            # A row of hot columns only (SqlTasks.record) updates the one before it.
            before = latest.pop(row["id"], None)
            latest[row["id"]] = row if before is None else {**before, **row}
        for row in changes.declines:
            declines.setdefault((row["task_id"], row["agent_id"]), row)
        events.extend(changes.events)
        outbox.extend(changes.outbox)
    # One row per id at most (`latest`): a multi-row statement cannot touch a row twice. The
    # rows, declines and logs in one round trip on PostgreSQL (bulk.record_rows).
    record_rows(conn, list(latest.values()), list(declines.values()),
                [*event_logs(events), (t.outbox, outbox)])
    return [None] * len(batch)


@mergeable(thd_record_many, change_keys)
def thd_record(conn: sa.Connection, changes: ChangeRows) -> None:
    thd_record_many(conn, [changes])


def thd_open_tasks(conn: sa.Connection) -> list[Task]:
    result = conn.execute(sa.select(t.tasks).where(t.tasks.c.state.not_in(FINAL)))
    return [r.task_from_row(row) for row in result]


def thd_open_declines(conn: sa.Connection) -> list[tuple[str, str]]:
    d, k = t.task_declines, t.tasks
    query = (
        sa.select(d.c.task_id, d.c.agent_id)
        .join(k, k.c.id == d.c.task_id)
        .where(k.c.state.not_in(FINAL))
    )
    return [(task_id, agent_id) for task_id, agent_id in conn.execute(query)]


def thd_list_tasks(
    conn: sa.Connection, state: str | None, queue: str | None, limit: int,
    newest_first: bool = False,
) -> list[TaskSummary]:
    order = (t.tasks.c.created_at.desc(), t.tasks.c.id.desc()) if newest_first else (
        t.tasks.c.created_at, t.tasks.c.id)
    query = sa.select(t.tasks).order_by(*order).limit(limit)
    if state is not None:
        query = query.where(t.tasks.c.state == state)
    if queue is not None:
        query = query.where(t.tasks.c.queue == queue)
    return [r.summary_from_row(row) for row in conn.execute(query)]


def thd_page_tasks(
    conn: sa.Connection, where: TaskFilter, after: tuple[float, str] | None, limit: int,
) -> list[TaskSummary]:
    """Newest first by (created_at, id); a row-value comparison with the key of the last row
    seen, so each index (created_at, id), (queue, created_at, id), (agent_id, created_at) or
    (customer_id, created_at) is read from the key on, never from the top."""
    k = t.tasks.c
    query = sa.select(t.tasks).order_by(k.created_at.desc(), k.id.desc()).limit(limit)
    for column, value in ((k.state, where.state), (k.queue, where.queue),
                          (k.channel, where.channel), (k.agent_id, where.agent),
                          (k.customer_id, where.customer)):
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(sa.tuple_(k.created_at, k.id) < sa.tuple_(*after))
    return [r.summary_from_row(row) for row in conn.execute(query)]


def thd_get_task(conn: sa.Connection, task_id: str) -> TaskSummary | None:
    row = conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).first()
    return None if row is None else r.summary_from_row(row)


def thd_previews(conn: sa.Connection, task_ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    k = t.tasks.c
    for chunk in chunks(list(task_ids)):
        for row in conn.execute(sa.select(k.id, k.preview, k.attributes).where(
                k.id.in_(list(chunk)))):
            preview = r.stored_attributes(row).get(r.PREVIEW_ATTRIBUTE)
            if isinstance(preview, str):
                out[row.id] = preview
    return out


def thd_task_events(conn: sa.Connection, task_id: str) -> list[StoredEvent]:
    e = t.task_events
    query = sa.select(e).where(e.c.task_id == task_id).order_by(e.c.id)
    return [r.stored_event_from_row(row) for row in conn.execute(query)]


def thd_last_event_at(conn: sa.Connection) -> float | None:
    """When the newest event of either log happened (the last sign of life of whoever wrote
    it); None for an empty log. Two index lookups (`at` is indexed in both logs)."""
    times = [conn.execute(sa.select(sa.func.max(log.c.at))).scalar()
             for log in (t.task_events, t.agent_events)]
    known = [float(at) for at in times if at is not None]
    return max(known) if known else None


class SqlTasks:
    """Tasks: part of the `Store` port. A mixin of `SqlStore` (dispatcher/storage/sql.py): it uses the store's `_pool`, `_commit`
    and `_clock`."""

    _pool: Pool
    _commit: GroupCommit
    _clock: Callable[[], float]

    def create_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[str]:
        d = self.intake_task(task, identity, customer_name, events)
        return d.addCallback(lambda stored: stored.customer_id)

    def intake_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[StoredTask]:
        intake = Intake(
            task=r.intake_row(task),
            identity=None if identity is None else (identity.kind, identity.value),
            customer_name=customer_name,
            events=[r.event_row(e) for e in events],
        )
        d = self._commit.run(thd_intake_task, intake)
        if task.state not in NOT_IN_HAND:  # routed in its intake (offered): `record` below
            d.addCallback(self._sent_in_intake, intake.task)
        return d

    def _sent_in_intake(self, stored: StoredTask, row: r.Row) -> StoredTask:
        """A task offered in its own intake: its next change sends only the hot columns."""
        self._sent()[row["id"]] = r.cold_of({**row, "customer_id": stored.customer_id})
        return stored

    def _sent(self) -> dict[str, tuple[Any, ...]]:
        if self._cold_sent is None:
            self._cold_sent = {}
        return self._cold_sent

    # Of each task in hand (offered, assigned, in wrap-up), the cold columns of the last row
    # this store sent for it (rows.py `cold_of`); made on first use.
    _cold_sent: dict[str, tuple[Any, ...]] | None = None

    def record(self, changes: Changes) -> Deferred[None]:
        """A task's row is sent whole, or only its hot columns (rows.py HOT_TASK_COLUMNS) when
        its other columns equal those of the last row sent for it, which is remembered while
        the task is in hand: not while it waits (a queue can hold many) or once it ended, nor
        after a change that failed. Routing changes only hot columns: an offer sends the whole
        row, its accept and the completion that follows send the hot ones."""
        sent = self._sent()
        rows: list[r.Row] = []
        for task in changes.tasks:
            before = sent.get(task.id)
            if before is not None and before == r.task_cold(task):
                rows.append(r.task_hot_row(task))
                if task.state in NOT_IN_HAND:
                    del sent[task.id]
                continue
            row = r.task_row(task)
            rows.append(row)
            if task.state in NOT_IN_HAND:
                sent.pop(task.id, None)
            else:
                sent[task.id] = r.cold_of(row)
        snap = ChangeRows(
            tasks=rows,
            events=[r.event_row(e) for e in changes.events],
            declines=[{"task_id": k, "agent_id": a} for k, a in changes.declines],
            outbox=[r.outbox_row(item) for item in changes.outbox],
        )
        d = self._commit.run(thd_record, snap)
        if rows:
            d.addErrback(self._forget_sent, [row["id"] for row in rows])
        return d

    def _forget_sent(self, failure: Failure, task_ids: list[str]) -> Failure:
        """A change failed: what it sent is not known to be stored, so the next change of
        each of its tasks sends the whole row."""
        if self._cold_sent is not None:
            for task_id in task_ids:
                self._cold_sent.pop(task_id, None)
        return failure

    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = r.DEFAULT_LIST_LIMIT,
        newest_first: bool = False,
    ) -> Deferred[list[TaskSummary]]:
        return self._pool.run(thd_list_tasks, state, queue, limit, newest_first)

    def page_tasks(
        self, where: TaskFilter, after: tuple[float, str] | None, limit: int,
    ) -> Deferred[list[TaskSummary]]:
        return self._pool.run(thd_page_tasks, where, after, limit)

    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]:
        return self._pool.run(thd_get_task, task_id)

    def previews(self, task_ids: Sequence[str]) -> Deferred[dict[str, str]]:
        return self._pool.run(thd_previews, list(task_ids))

    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        return self._pool.run(thd_task_events, task_id)

    def last_event_at(self) -> Deferred[float | None]:
        return self._pool.run(thd_last_event_at)
