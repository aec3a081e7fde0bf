"""`SqlStore`: the `dispatcher.service.ports.Store` port on SQLite or PostgreSQL, through
SQLAlchemy Core on a thread pool (buildbot's `db/` pattern).

Sits under `dispatcher.storage`; the runtime builds it from a `Pool` and a `GroupCommit`. The
writes of intake and routing (`create_task`, `record`) go through the group commit: their
Deferreds fire after the commit that holds them, and the calls of one reactor turn share one
transaction. Configuration writes and reads run in a transaction of their own on the pool.

The database work is done by the module-level `thd_*` functions: each takes a Connection and
plain values (rows snapshotted in the reactor thread by `rows.py`) and returns plain values or
dataclasses. A batch of intakes costs one duplicate check, one identity lookup per chunk and one
executemany per table, whatever its size.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import FINAL_STATES, Task
from dispatcher.service.ports import (
    Calendar,
    Changes,
    Customer,
    Identity,
    IdentityTaken,
    MailAttachment,
    MailMessage,
    MergedCustomers,
    OutboundMail,
    OutboxItem,
    State,
    StoredEvent,
    TaskRecord,
    TaskSummary,
)

from . import rows as r
from . import tables as t
from .commit import GroupCommit, mergeable
from .pool import Pool

# Values per `IN (...)` lookup: well under SQLite's bound-parameter limit.
IN_CHUNK = 500
FINAL = sorted(s.value for s in FINAL_STATES)


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
    return uuid.uuid4().hex


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- statements, built once per dialect --------------------------------------------------------


def _dialect_insert(dialect: str) -> Callable[[sa.Table], Any]:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"SqlStore supports SQLite and PostgreSQL, not {dialect}")
    return insert


@functools.cache
def _upsert(dialect: str, table: sa.Table, keep: tuple[str, ...] = ()) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column except `keep`."""
    stmt = _dialect_insert(dialect)(table)
    keys = [c.name for c in table.primary_key.columns]
    update = {
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys + list(keep)
    }
    return stmt.on_conflict_do_update(index_elements=keys, set_=update)


@functools.cache
def _insert_ignore(dialect: str, table: sa.Table) -> Any:
    return _dialect_insert(dialect)(table).on_conflict_do_nothing()


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


@functools.cache
def _plain_insert(table: sa.Table) -> sa.Insert:
    return table.insert()


def storable(value: Any) -> Any:
    """`value` as both databases take it: NUL removed from text (PostgreSQL refuses it, in
    text and in JSON), lone surrogates (bytes an edge kept undecoded) replaced by U+FFFD
    (neither driver encodes them); inside lists and dicts too (JSON columns). Anything else
    as it is."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _storable_rows(rows: list[r.Row]) -> list[r.Row]:
    return [{k: storable(v) for k, v in row.items()} for row in rows]


def _insert(conn: sa.Connection, table: sa.Table, rows: list[r.Row]) -> None:
    """Every insert goes through here: text is made storable, so that no message or name a
    client sent can make a commit fail for ever."""
    if rows:
        conn.execute(_plain_insert(table), _storable_rows(rows))


# --- intake ------------------------------------------------------------------------------------


def thd_create_tasks(conn: sa.Connection, intakes: Sequence[Intake]) -> list[str]:
    """Store each intake in order, as `create_task` promises; return the customer ids."""
    _refuse_duplicates(conn, [i.task["id"] for i in intakes])
    known = _known_identities(conn, {i.identity for i in intakes if i.identity is not None})
    customers: list[r.Row] = []
    identities: list[r.Row] = []
    task_rows: list[r.Row] = []
    events: list[r.Row] = []
    result: list[str] = []
    for intake in intakes:
        customer_id = known.get(intake.identity) if intake.identity is not None else None
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
        task_rows.append({**intake.task, "customer_id": customer_id})
        events.extend(intake.events)
        result.append(customer_id)
    _insert(conn, t.customers, customers)
    _insert(conn, t.customer_identities, identities)
    _insert(conn, t.tasks, task_rows)
    _insert_events(conn, events)
    return result


@mergeable(thd_create_tasks)
def thd_create_task(conn: sa.Connection, intake: Intake) -> str:
    return thd_create_tasks(conn, [intake])[0]


def _refuse_duplicates(conn: sa.Connection, ids: list[str]) -> None:
    seen: set[str] = set()
    for task_id in ids:
        if task_id in seen:
            raise DuplicateTask(task_id)
        seen.add(task_id)
    for chunk in _chunks(ids):
        existing = conn.execute(_EXISTING_TASKS, {"ids": list(chunk)}).scalars().first()
        if existing is not None:
            raise DuplicateTask(existing)


def _known_identities(
    conn: sa.Connection, pairs: set[tuple[str, str]]
) -> dict[tuple[str, str] | None, str]:
    by_kind: dict[str, list[str]] = {}
    for kind, value in sorted(pairs):
        by_kind.setdefault(kind, []).append(value)
    known: dict[tuple[str, str] | None, str] = {}
    for kind, values in by_kind.items():
        for chunk in _chunks(values):
            params = {"kind": kind, "values": list(chunk)}
            for value, customer_id in conn.execute(_KNOWN_IDENTITIES, params):
                known[(kind, value)] = customer_id
    return known


# --- state changes -----------------------------------------------------------------------------


def thd_record_many(conn: sa.Connection, batch: Sequence[ChangeRows]) -> list[None]:
    """Apply each batch of changes in order: the last snapshot of a task wins, events keep
    their order, declines are remembered once."""
    latest: dict[str, r.Row] = {}
    declines: dict[tuple[str, str], r.Row] = {}
    events: list[r.Row] = []
    outbox: list[r.Row] = []
    for changes in batch:
        for row in changes.tasks:
            latest.pop(row["id"], None)
            latest[row["id"]] = row
        for row in changes.declines:
            declines.setdefault((row["task_id"], row["agent_id"]), row)
        events.extend(changes.events)
        outbox.extend(changes.outbox)
    dialect = conn.dialect.name
    if latest:
        conn.execute(_upsert(dialect, t.tasks), _storable_rows(list(latest.values())))
    if declines:
        conn.execute(_insert_ignore(dialect, t.task_declines), list(declines.values()))
    _insert_events(conn, events)
    _insert(conn, t.outbox, outbox)
    return [None] * len(batch)


@mergeable(thd_record_many)
def thd_record(conn: sa.Connection, changes: ChangeRows) -> None:
    thd_record_many(conn, [changes])


def _insert_events(conn: sa.Connection, events: list[r.Row]) -> None:
    _insert(conn, t.task_events, [e for e in events if e["task_id"] is not None])
    _insert(conn, t.agent_events, [e for e in events if e["task_id"] is None])


# --- configuration -----------------------------------------------------------------------------


def thd_put_queue(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None) -> None:
    conn.execute(_upsert(conn.dialect.name, t.queues), [row])
    _insert_events(conn, events or [])


def thd_put_calendar(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None) -> None:
    conn.execute(_upsert(conn.dialect.name, t.calendars), [row])
    _insert_events(conn, events or [])


def thd_put_agent(
    conn: sa.Connection, row: r.Row, skills: list[r.Row], queues: list[r.Row],
    events: list[r.Row] | None = None,
) -> None:
    conn.execute(_upsert(conn.dialect.name, t.agents, ("created_at",)), [row])
    conn.execute(t.agent_skills.delete().where(t.agent_skills.c.agent_id == row["id"]))
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.agent_id == row["id"]))
    _insert(conn, t.agent_skills, skills)
    _insert(conn, t.agent_queues, queues)
    _insert_events(conn, events or [])


def thd_remove_queue(conn: sa.Connection, name: str, events: list[r.Row]) -> bool:
    if conn.execute(sa.select(t.queues.c.name).where(t.queues.c.name == name)).first() is None:
        return False
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.queue == name))
    conn.execute(t.queues.delete().where(t.queues.c.name == name))
    _insert_events(conn, events)
    return True


def thd_remove_agent(conn: sa.Connection, agent_id: str, events: list[r.Row]) -> bool:
    if conn.execute(sa.select(t.agents.c.id).where(t.agents.c.id == agent_id)).first() is None:
        return False
    conn.execute(t.agent_skills.delete().where(t.agent_skills.c.agent_id == agent_id))
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.agent_id == agent_id))
    conn.execute(t.agents.delete().where(t.agents.c.id == agent_id))
    _insert_events(conn, events)
    return True


def thd_list_queues(conn: sa.Connection) -> list[Queue]:
    result = conn.execute(sa.select(t.queues).order_by(t.queues.c.name))
    return [r.queue_from_row(row) for row in result]


def thd_list_agents(conn: sa.Connection) -> list[Agent]:
    skills: dict[str, dict[str, int]] = {}
    for agent_id, skill, level in conn.execute(sa.select(t.agent_skills)):
        skills.setdefault(agent_id, {})[skill] = level
    queues: dict[str, set[str]] = {}
    for agent_id, queue in conn.execute(sa.select(t.agent_queues)):
        queues.setdefault(agent_id, set()).add(queue)
    result = conn.execute(sa.select(t.agents).order_by(t.agents.c.id))
    return [
        r.agent_from_rows(row, skills.get(row.id, {}), queues.get(row.id, set())) for row in result
    ]


def thd_list_calendars(conn: sa.Connection) -> list[Calendar]:
    result = conn.execute(sa.select(t.calendars).order_by(t.calendars.c.name))
    return [r.calendar_from_row(row) for row in result]


# --- start-up ----------------------------------------------------------------------------------


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


def thd_load_state(conn: sa.Connection) -> State:
    return State(
        queues=thd_list_queues(conn),
        agents=thd_list_agents(conn),
        open_tasks=thd_open_tasks(conn),
        declines=thd_open_declines(conn),
        calendars=thd_list_calendars(conn),
    )


# --- queries -----------------------------------------------------------------------------------


def thd_get_customer(conn: sa.Connection, customer_id: str) -> Customer | None:
    row = conn.execute(sa.select(t.customers).where(t.customers.c.id == customer_id)).first()
    if row is None:
        return None
    ids = t.customer_identities
    query = (
        sa.select(ids.c.kind, ids.c.value)
        .where(ids.c.customer_id == customer_id)
        .order_by(ids.c.kind, ids.c.value)
    )
    identities = tuple(Identity(kind, value) for kind, value in conn.execute(query))
    return Customer(id=row.id, name=row.name, created_at=row.created_at, identities=identities)


def thd_find_customer(conn: sa.Connection, kind: str, value: str) -> Customer | None:
    ids = t.customer_identities
    query = sa.select(ids.c.customer_id).where(ids.c.kind == kind, ids.c.value == value)
    customer_id = conn.execute(query).scalar()
    return None if customer_id is None else thd_get_customer(conn, customer_id)


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


def thd_get_task(conn: sa.Connection, task_id: str) -> TaskSummary | None:
    row = conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).first()
    return None if row is None else r.summary_from_row(row)


def thd_customer_tasks(conn: sa.Connection, customer_id: str, limit: int) -> list[TaskSummary]:
    query = (
        sa.select(t.tasks)
        .where(t.tasks.c.customer_id == customer_id)
        .order_by(t.tasks.c.created_at.desc(), t.tasks.c.id.desc())
        .limit(limit)
    )
    return [r.summary_from_row(row) for row in conn.execute(query)]


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


# --- customer history --------------------------------------------------------------------------


def thd_customer_records(conn: sa.Connection, customer_id: str, limit: int) -> list[TaskRecord]:
    """The customer's newest tasks with their attributes and their events (two queries)."""
    query = (
        sa.select(t.tasks)
        .where(t.tasks.c.customer_id == customer_id)
        .order_by(t.tasks.c.created_at.desc(), t.tasks.c.id.desc())
        .limit(limit)
    )
    rows = list(conn.execute(query))
    trails: dict[str, list[StoredEvent]] = {row.id: [] for row in rows}
    e = t.task_events
    for chunk in _chunks(list(trails)):
        events = sa.select(e).where(e.c.task_id.in_(list(chunk))).order_by(e.c.id)
        for row in conn.execute(events):
            trails[row.task_id].append(r.stored_event_from_row(row))
    return [
        TaskRecord(r.summary_from_row(row), dict(row.attributes or {}), tuple(trails[row.id]))
        for row in rows
    ]


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
    _insert_events(conn, events)
    return MergedCustomers(survivor_id, merged_id, moved, task_ids)


# --- customers: the supervisors' search and corrections ----------------------------------------

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
    for chunk in _chunks(list(found)):
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
    _insert(conn, ids, [{"kind": k, "value": v, "customer_id": edit.customer_id}
                        for k, v in sorted(wanted - current)])
    conn.execute(c.update().where(c.c.id == edit.customer_id).values(name=edit.name))
    _insert_events(conn, edit.events)
    return thd_get_customer(conn, edit.customer_id)


# --- e-mail (dispatcher.service.mail) ----------------------------------------------------------

OUTBOX_EMAIL = "email"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"


@dataclass(slots=True)
class MailIntake:
    """One `create_mail_task` call, snapshotted."""

    intake: Intake
    request: r.Row
    messages: list[r.Row]
    attachments: list[r.Row]
    outbox: list[r.Row]


@dataclass(slots=True)
class MailAddition:
    """One `add_mail` call, snapshotted."""

    messages: list[r.Row]
    attachments: list[r.Row]
    changes: ChangeRows


@dataclass(slots=True)
class MailMark:
    """One `mark_mail` call, snapshotted."""

    message: str
    status: str
    error: str | None
    addition: MailAddition
    at: float  # when the status changed (appended to email_statuses)


def mail_rows(messages: Sequence[MailMessage]) -> tuple[list[r.Row], list[r.Row]]:
    """The email_messages and email_attachments rows of `messages` (reactor thread)."""
    rows, attachments = [], []
    for m in messages:
        rows.append({
            "id": m.id, "task_id": m.task_id, "direction": m.direction, "kind": m.kind,
            "created_at": m.created_at, "message_id": m.message_id,
            "in_reply_to": m.in_reply_to, "refs": list(m.references), "peer": m.peer,
            "from_addr": m.from_addr, "to_addrs": list(m.to_addrs), "subject": m.subject,
            "text_body": m.text, "html_body": m.html, "raw": bytes(m.raw),
            "defects": list(m.defects), "malformed": bool(m.malformed), "source": m.source,
            "status": m.status, "error": m.error, "cc_addrs": list(m.cc_addrs),
            "reply_to": m.reply_to,
        })
        for position, a in enumerate(m.attachments):
            attachments.append({
                "message_id": m.id, "position": position, "filename": a.filename,
                "content_type": a.content_type, "size": a.size, "content": a.content,
                "path": a.path, "content_id": a.content_id,
            })
    return rows, attachments


def thd_create_mail_tasks(conn: sa.Connection, batch: Sequence[MailIntake]) -> list[str]:
    result = thd_create_tasks(conn, [m.intake for m in batch])
    _insert(conn, t.email_requests, [m.request for m in batch])
    _insert(conn, t.email_messages, [row for m in batch for row in m.messages])
    _insert(conn, t.email_attachments, [row for m in batch for row in m.attachments])
    _insert(conn, t.outbox, [row for m in batch for row in m.outbox])
    return result


@mergeable(thd_create_mail_tasks)
def thd_create_mail_task(conn: sa.Connection, mail: MailIntake) -> str:
    return thd_create_mail_tasks(conn, [mail])[0]


def thd_add_mails(conn: sa.Connection, batch: Sequence[MailAddition]) -> list[None]:
    _insert(conn, t.email_messages, [row for m in batch for row in m.messages])
    _insert(conn, t.email_attachments, [row for m in batch for row in m.attachments])
    thd_record_many(conn, [m.changes for m in batch])
    return [None] * len(batch)


@mergeable(thd_add_mails)
def thd_add_mail(conn: sa.Connection, mail: MailAddition) -> None:
    thd_add_mails(conn, [mail])


def _task_by_id(conn: sa.Connection, task_id: str) -> Task | None:
    row = conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).first()
    return None if row is None else r.task_from_row(row)


def thd_find_mail_task(
    conn: sa.Connection, number: int | None, message_ids: list[str], task_id: str | None
) -> Task | None:
    if number is not None:
        q = sa.select(t.email_requests.c.task_id).where(t.email_requests.c.number == number)
        found = conn.execute(q).scalar()
        if found is not None:
            return _task_by_id(conn, found)
    m = t.email_messages
    for chunk in _chunks(message_ids):
        q = (
            sa.select(m.c.task_id)
            .where(m.c.message_id.in_(list(chunk)))
            .order_by(m.c.created_at.desc())
            .limit(1)
        )
        found = conn.execute(q).scalar()
        if found is not None:
            return _task_by_id(conn, found)
    return None if task_id is None else _task_by_id(conn, task_id)


def thd_mail_messages(conn: sa.Connection, task_id: str, content: bool = True
                      ) -> list[MailMessage]:
    m = t.email_messages
    columns = [c for c in m.c if content or c.name != "raw"]
    return _messages(conn, sa.select(*columns).where(m.c.task_id == task_id)
                     .order_by(m.c.created_at, m.c.id), content)


def thd_mail_message(conn: sa.Connection, id: str | None, message_id: str | None,
                     direction: str | None) -> MailMessage | None:
    """One message by its row id, or the newest with that Message-ID (and direction)."""
    m = t.email_messages
    q = sa.select(m)
    if id is not None:
        q = q.where(m.c.id == id)
    else:
        q = q.where(m.c.message_id == message_id)
    if direction is not None:
        q = q.where(m.c.direction == direction)
    found = _messages(conn, q.order_by(m.c.created_at.desc()).limit(1))
    return found[0] if found else None


def _messages(conn: sa.Connection, query: sa.Select, content: bool = True
              ) -> list[MailMessage]:
    """Messages with their attachments and their current delivery status (the newest appended
    to email_statuses, else the one stored with the message); without `content`, no raw bytes
    nor attachment contents (what a conversation view needs)."""
    a, st = t.email_attachments, t.email_statuses
    rows = conn.execute(query).all()
    ids = [row.id for row in rows]
    attached: dict[str, list[MailAttachment]] = {}
    columns = [c for c in a.c if content or c.name != "content"]
    current: dict[str, tuple[str, str | None]] = {row.id: (row.status, row.error) for row in rows}
    for chunk in _chunks(ids):
        q = sa.select(*columns).where(a.c.message_id.in_(list(chunk))).order_by(a.c.position)
        for row in conn.execute(q):
            attached.setdefault(row.message_id, []).append(MailAttachment(
                row.filename, row.content_type, row.size, row.content if content else None,
                row.path, row.content_id))
        q = (sa.select(st.c.message_id, st.c.status, st.c.error)
             .where(st.c.message_id.in_(list(chunk))).order_by(st.c.id))
        for row in conn.execute(q):
            current[row.message_id] = (row.status, row.error)  # in order: the newest stays
    return [
        MailMessage(
            id=row.id, task_id=row.task_id, direction=row.direction, kind=row.kind,
            created_at=row.created_at, raw=bytes(row.raw) if content else b"",
            message_id=row.message_id,
            in_reply_to=row.in_reply_to, references=tuple(row.refs), peer=row.peer,
            from_addr=row.from_addr, to_addrs=tuple(row.to_addrs), subject=row.subject,
            text=row.text_body, html=row.html_body, defects=tuple(row.defects),
            malformed=bool(row.malformed), source=row.source, status=current[row.id][0],
            error=current[row.id][1], attachments=tuple(attached.get(row.id, ())),
            cc_addrs=tuple(row.cc_addrs or ()), reply_to=row.reply_to,
        )
        for row in rows
    ]


def thd_last_mail_to(conn: sa.Connection, peer: str, kind: str) -> float | None:
    m = t.email_messages
    q = sa.select(sa.func.max(m.c.created_at)).where(m.c.peer == peer, m.c.kind == kind)
    return conn.execute(q).scalar()


def thd_max_request_number(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.max(t.email_requests.c.number))).scalar() or 0


def thd_known_mail_sources(conn: sa.Connection, sources: list[str]) -> set[str]:
    m = t.email_messages
    found: set[str] = set()
    for chunk in _chunks(sources):
        found.update(conn.execute(sa.select(m.c.source).where(m.c.source.in_(list(chunk))))
                     .scalars())
    return found


def thd_due_mail(conn: sa.Connection, now: float, limit: int) -> list[OutboundMail]:
    o, m = t.outbox, t.email_messages
    q = (
        sa.select(o.c.id, o.c.task_id, o.c.payload, o.c.attempts, m.c.raw)
        .join(m, m.c.id == o.c.payload["message"].as_string())
        .where(o.c.kind == OUTBOX_EMAIL, o.c.state == t.OUTBOX_PENDING,
               o.c.next_attempt_at <= now)
        .order_by(o.c.next_attempt_at, o.c.id)
        .limit(limit)
    )
    return [
        OutboundMail(
            outbox_id=row.id, message=row.payload["message"], task_id=row.task_id,
            raw=bytes(row.raw), mail_from=row.payload["mail_from"],
            rcpt=tuple(row.payload["rcpt"]), attempts=row.attempts,
        )
        for row in conn.execute(q)
    ]


def thd_settle_mail(
    conn: sa.Connection, outbox_id: int, message: str, status: str, attempts: int,
    next_attempt_at: float | None, error: str | None, events: list[r.Row], at: float,
) -> None:
    """A delivery attempt: the outbox row's state (the outbox is work, not evidence: updated),
    the message's new status appended (the message row never changes), the events."""
    state = status if status in (OUTBOX_SENT, OUTBOX_DEAD) else t.OUTBOX_PENDING
    conn.execute(
        t.outbox.update().where(t.outbox.c.id == outbox_id).values(
            state=state, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error)
    )
    _insert(conn, t.email_statuses,
            [{"message_id": message, "at": at, "status": status, "error": error}])
    _insert_events(conn, events)


def thd_mark_mails(conn: sa.Connection, batch: Sequence[MailMark]) -> list[None]:
    """A delivery report on one of our messages: its status and error appended, the report
    itself stored."""
    _insert(conn, t.email_statuses, [
        {"message_id": mark.message, "at": mark.at, "status": mark.status, "error": mark.error}
        for mark in batch])
    thd_add_mails(conn, [mark.addition for mark in batch])
    return [None] * len(batch)


@mergeable(thd_mark_mails)
def thd_mark_mail(conn: sa.Connection, mark: MailMark) -> None:
    thd_mark_mails(conn, [mark])


# --- the port ----------------------------------------------------------------------------------


class SqlStore:
    """The `Store` port on SQL. `clock` stamps `agents.created_at` (configuration has no time
    of its own); every other time comes from the caller."""

    def __init__(
        self, pool: Pool, group_commit: GroupCommit, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
        self._commit = group_commit
        self._clock = clock

    # intake
    def create_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[str]:
        intake = Intake(
            task=r.task_row(task),
            identity=None if identity is None else (identity.kind, identity.value),
            customer_name=customer_name,
            events=[r.event_row(e) for e in events],
        )
        return self._commit.run(thd_create_task, intake)

    def record(self, changes: Changes) -> Deferred[None]:
        snap = ChangeRows(
            tasks=[r.task_row(task) for task in changes.tasks],
            events=[r.event_row(e) for e in changes.events],
            declines=[{"task_id": k, "agent_id": a} for k, a in changes.declines],
            outbox=[r.outbox_row(item) for item in changes.outbox],
        )
        return self._commit.run(thd_record, snap)

    # start-up
    def load_state(self) -> Deferred[State]:
        return self._pool.run(thd_load_state)

    # configuration
    def put_queue(self, queue: Queue, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_queue, r.queue_row(queue), [r.event_row(e) for e in events])

    def put_agent(self, agent: Agent, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_agent, *r.agent_rows(agent, self._clock()),
                              [r.event_row(e) for e in events])

    def put_calendar(self, calendar: Calendar, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_calendar, r.calendar_row(calendar),
                              [r.event_row(e) for e in events])

    def remove_queue(self, name: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_queue, name, [r.event_row(e) for e in events])

    def remove_agent(self, agent_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_agent, agent_id, [r.event_row(e) for e in events])

    def list_queues(self) -> Deferred[list[Queue]]:
        return self._pool.run(thd_list_queues)

    def list_agents(self) -> Deferred[list[Agent]]:
        return self._pool.run(thd_list_agents)

    # queries
    def get_customer(self, customer_id: str) -> Deferred[Customer | None]:
        return self._pool.run(thd_get_customer, customer_id)

    def find_customer(self, identity: Identity) -> Deferred[Customer | None]:
        return self._pool.run(thd_find_customer, identity.kind, identity.value)

    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = r.DEFAULT_LIST_LIMIT,
        newest_first: bool = False,
    ) -> Deferred[list[TaskSummary]]:
        return self._pool.run(thd_list_tasks, state, queue, limit, newest_first)

    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]:
        return self._pool.run(thd_get_task, task_id)

    def list_calendars(self) -> Deferred[list[Calendar]]:
        return self._pool.run(thd_list_calendars)

    def customer_tasks(
        self, customer_id: str, limit: int = r.DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskSummary]]:
        return self._pool.run(thd_customer_tasks, customer_id, limit)

    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        return self._pool.run(thd_task_events, task_id)

    def last_event_at(self) -> Deferred[float | None]:
        return self._pool.run(thd_last_event_at)

    # customer history
    def customer_records(
        self, customer_id: str, limit: int = r.DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskRecord]]:
        return self._pool.run(thd_customer_records, customer_id, limit)

    def merge_customers(
        self, survivor_id: str, merged_id: str, events: Sequence[Event]
    ) -> Deferred[MergedCustomers]:
        # Through the group commit: ordered with the task upserts, so none written from an
        # older snapshot can put a task back on the merged customer afterwards.
        rows = [r.event_row(e) for e in events]
        return self._commit.run(thd_merge_customers, survivor_id, merged_id, rows)

    # customers
    def search_customers(self, needles: Sequence[str], limit: int = r.DEFAULT_HISTORY_LIMIT
                         ) -> Deferred[list[Customer]]:
        return self._pool.run(thd_search_customers, list(needles), limit)

    def edit_customer(self, customer_id: str, name: str, identities: Sequence[Identity],
                      events: Sequence[Event]) -> Deferred[Customer | None]:
        # Through the group commit: ordered with intakes, which look identities up.
        edit = CustomerEdit(customer_id, name, tuple((i.kind, i.value) for i in identities),
                            [r.event_row(e) for e in events])
        return self._commit.run(thd_edit_customer, edit)

    # e-mail
    def create_mail_task(
        self,
        task: Task,
        identity: Identity | None,
        customer_name: str,
        events: Sequence[Event],
        request_number: int,
        messages: Sequence[MailMessage],
        outbox: Sequence[OutboxItem] = (),
    ) -> Deferred[str]:
        rows, attachments = mail_rows(messages)
        mail = MailIntake(
            intake=Intake(
                task=r.task_row(task),
                identity=None if identity is None else (identity.kind, identity.value),
                customer_name=customer_name,
                events=[r.event_row(e) for e in events],
            ),
            request={"number": request_number, "task_id": task.id},
            messages=rows,
            attachments=attachments,
            outbox=[r.outbox_row(item) for item in outbox],
        )
        return self._commit.run(thd_create_mail_task, mail)

    def add_mail(self, messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_add_mail, self._addition(messages, changes))

    @staticmethod
    def _addition(messages: Sequence[MailMessage], changes: Changes) -> MailAddition:
        rows, attachments = mail_rows(messages)
        snap = ChangeRows(
            tasks=[r.task_row(task) for task in changes.tasks],
            events=[r.event_row(e) for e in changes.events],
            declines=[{"task_id": k, "agent_id": a} for k, a in changes.declines],
            outbox=[r.outbox_row(item) for item in changes.outbox],
        )
        return MailAddition(rows, attachments, snap)

    def find_mail_task(
        self,
        request_number: int | None = None,
        message_ids: Sequence[str] = (),
        task_id: str | None = None,
    ) -> Deferred[Task | None]:
        return self._pool.run(thd_find_mail_task, request_number, list(message_ids), task_id)

    def mail_messages(self, task_id: str, content: bool = True
                      ) -> Deferred[list[MailMessage]]:
        return self._pool.run(thd_mail_messages, task_id, content)

    def mail_message(self, id: str | None = None, message_id: str | None = None,
                     direction: str | None = None) -> Deferred[MailMessage | None]:
        return self._pool.run(thd_mail_message, id, message_id, direction)

    def mark_mail(self, message: str, status: str, error: str | None,
                  messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_mark_mail, MailMark(
            message, status, error, self._addition(messages, changes),
            at=self._status_time(changes.events)))

    def _status_time(self, events: Sequence[Event]) -> float:
        """When a delivery status changed: its event's time, else now by the store's clock."""
        return events[0].at if events else self._clock()

    def last_mail_to(self, peer: str, kind: str) -> Deferred[float | None]:
        return self._pool.run(thd_last_mail_to, peer, kind)

    def max_request_number(self) -> Deferred[int]:
        return self._pool.run(thd_max_request_number)

    def known_mail_sources(self, sources: Sequence[str]) -> Deferred[set[str]]:
        return self._pool.run(thd_known_mail_sources, list(sources))

    def due_mail(self, now: float, limit: int) -> Deferred[list[OutboundMail]]:
        return self._pool.run(thd_due_mail, now, limit)

    def settle_mail(
        self,
        outbox_id: int,
        message: str,
        status: str,
        attempts: int,
        next_attempt_at: float | None,
        error: str | None,
        events: Sequence[Event],
    ) -> Deferred[None]:
        rows = [r.event_row(e) for e in events]
        return self._commit.run(
            thd_settle_mail, outbox_id, message, status, attempts, next_attempt_at, error, rows,
            self._status_time(events),
        )
