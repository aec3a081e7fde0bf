"""The mail store on SQL (dispatcher.service.mail): e-mail tasks with their request numbers,
messages and attachments, delivery statuses (appended, never updated), the e-mail outbox.

Sits under `dispatcher.storage`; `SqlMail` is a mixin of `SqlStore` (sql.py). A new e-mail task
is stored by the intake of tasks.py plus its request, messages and outbox rows, in the same
transaction; every write goes through the group commit.

Request numbers are taken in the transaction that stores the task (lookups.py
`take_request_numbers`), so two processes on one database never give the same number: on
PostgreSQL from the sequence
`email_request_numbers` (migration 0013; a number taken by a transaction that rolled back is a
gap, never given again), on SQLite as the highest stored number plus one (every transaction is
`BEGIN IMMEDIATE`, engine.py: one writer at a time, from its first statement; requests are never
deleted). The rows that name the number (the task's attributes, its events, the acknowledgement)
are made there too, by the caller's `numbered(number, last_ack)`, given as well when the
sender the call named was last acknowledged: one read for the batch's senders, in the same
transaction, not a read of its own before each intake. On PostgreSQL the numbers, those
acknowledgements, the customers of the senders' identities and (a batch of one) whether the
task id is stored are one statement (lookups.py `thd_lookups`).
`find_mail_task` (threading) reads through the group commit: it sees every write this process
queued before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Task
from dispatcher.service.ports import (
    Changes,
    Identity,
    MailAttachment,
    MailMessage,
    NewMail,
    Numbering,
    OutboundMail,
    StoredMail,
)

from . import rows as r
from . import tables as t
from .bulk import append, append_events
from .commit import GroupCommit, mergeable
from .lookups import thd_lookups
from .pool import Pool
from .statements import chunks, insert_rows
from .tasks import (
    NOT_IN_HAND,
    UNKEYED,
    ChangeRows,
    Intake,
    Key,
    change_keys,
    intake_ids,
    row_keys,
    thd_intake_tasks,
    thd_record_many,
)

OUTBOX_EMAIL = "email"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"


@dataclass(slots=True)
class MailRows:
    """The rows of one new e-mail task (its request row is made once the number is known)."""

    intake: Intake
    messages: list[r.Row]
    attachments: list[r.Row]
    outbox: list[r.Row]


@dataclass(slots=True)
class MailIntake:
    """One `create_mail_task` call: the draft, snapshotted when the caller gave no `numbered`
    (`rows`), else the pure `numbered` that makes it once the number is taken; `keys` are the
    draft's (the task, its identity, its events' and messages' keys: what the call touches)."""

    draft: NewMail
    identity: tuple[str, str] | None
    customer_name: str
    numbered: Numbering | None
    rows: MailRows | None
    keys: set[Key]
    ack_peer: str | None = None


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


def new_mail_rows(mail: NewMail, identity: tuple[str, str] | None, customer_name: str
                  ) -> MailRows:
    """The rows of a new e-mail task (a snapshot: on the thread that made `mail`)."""
    messages, attachments = mail_rows(mail.messages)
    return MailRows(
        intake=Intake(task=r.intake_row(mail.task, mail.preview), identity=identity,
                      customer_name=customer_name, events=[r.event_row(e) for e in mail.events]),
        messages=messages, attachments=attachments,
        outbox=[r.outbox_row(item) for item in mail.outbox])


def _numbered(mail: MailIntake, number: int, last_ack: float | None
              ) -> tuple[NewMail, MailRows]:
    if mail.numbered is None:
        assert mail.rows is not None
        return mail.draft, mail.rows
    made = mail.numbered(number, last_ack)
    if made.task.id != mail.draft.task.id:
        raise ValueError(f"numbered({number}) made task {made.task.id}, "
                         f"not the draft's {mail.draft.task.id}")
    return made, new_mail_rows(made, mail.identity, mail.customer_name)


def insert_messages(conn: sa.Connection, messages: list[r.Row], attachments: list[r.Row]
                    ) -> None:
    """The email_messages and email_attachments rows of a batch, one statement per table."""
    append(conn, t.email_messages, messages)
    append(conn, t.email_attachments, attachments)


def thd_create_mail_tasks(conn: sa.Connection, batch: Sequence[MailIntake]
                          ) -> list[StoredMail]:
    # Numbers, last acknowledgements, customers and (alone) a stored id: one read (lookups.py).
    looked = thd_lookups(
        conn, numbers=len(batch), peers={m.ack_peer for m in batch if m.ack_peer is not None},
        identities={m.identity for m in batch if m.identity is not None},
        ids=intake_ids([m.draft.task.id for m in batch]))
    numbers, acks = looked.numbers, looked.acks
    made = [_numbered(m, n, None if m.ack_peer is None else acks.get(m.ack_peer))
            for m, n in zip(batch, numbers, strict=True)]
    # The requests, messages, attachments and outbox rows go with the tasks and their events,
    # in bulk at the driver's level (bulk.py): one round trip on PostgreSQL for all.
    stored = thd_intake_tasks(conn, [rows.intake for _, rows in made], [
        (t.email_requests, [{"number": n, "task_id": m.draft.task.id}
                            for m, n in zip(batch, numbers, strict=True)]),
        (t.email_messages, [row for _, rows in made for row in rows.messages]),
        (t.email_attachments, [row for _, rows in made for row in rows.attachments]),
        (t.outbox, [row for _, rows in made for row in rows.outbox]),
    ], looked)
    return [StoredMail(s.customer_id, number, mail, s.new) for s, number, (mail, _)
            in zip(stored, numbers, made, strict=True)]


def _message_keys(messages: Sequence[r.Row]) -> set[Key]:
    return row_keys(messages, "task_id") | {("message", m["id"]) for m in messages}


def draft_keys(draft: NewMail, identity: tuple[str, str] | None) -> set[Key]:
    """What creating `draft` touches: its task (and agent), identity, the tasks and agents of
    its events and outbox items, its messages. The numbered rows are about the same task and
    identity: events and messages they add belong to that task."""
    keys: set[Key] = {("task", draft.task.id)}
    if draft.task.agent_id is not None:
        keys.add(("agent", draft.task.agent_id))
    for e in draft.events:  # as tasks.py `row_keys` (per message: no set made per event)
        if e.task_id is not None:
            keys.add(("task", e.task_id))
        if e.agent_id is not None:
            keys.add(("agent", e.agent_id))
        elif e.task_id is None:
            keys.add(UNKEYED)
    keys |= {("task", item.task_id) for item in draft.outbox if item.task_id}
    keys |= {("message", m.id) for m in draft.messages}
    if identity is not None:
        keys.add(("identity", *identity))
    return keys


def mail_intake_keys(mail: MailIntake) -> set[Key]:
    """What `thd_create_mail_task` touches (group commit's merge rule, commit.py)."""
    return mail.keys


def addition_keys(mail: MailAddition) -> set[Key]:
    """What `thd_add_mail` touches (group commit's merge rule, commit.py)."""
    return _message_keys(mail.messages) | change_keys(mail.changes)


@mergeable(thd_create_mail_tasks, mail_intake_keys)
def thd_create_mail_task(conn: sa.Connection, mail: MailIntake) -> StoredMail:
    return thd_create_mail_tasks(conn, [mail])[0]


def thd_add_mails(conn: sa.Connection, batch: Sequence[MailAddition]) -> list[None]:
    insert_messages(conn, [row for m in batch for row in m.messages],
                    [row for m in batch for row in m.attachments])
    thd_record_many(conn, [m.changes for m in batch])
    return [None] * len(batch)


@mergeable(thd_add_mails, addition_keys)
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
    for chunk in chunks(message_ids):
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
    q = q.where(m.c.id == id) if id is not None else q.where(m.c.message_id == message_id)
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
    for chunk in chunks(ids):
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


def thd_known_mail_sources(conn: sa.Connection, sources: list[str]) -> set[str]:
    m = t.email_messages
    found: set[str] = set()
    for chunk in chunks(sources):
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
    insert_rows(conn, t.email_statuses,
            [{"message_id": message, "at": at, "status": status, "error": error}])
    append_events(conn, events)


def thd_mark_mails(conn: sa.Connection, batch: Sequence[MailMark]) -> list[None]:
    """A delivery report on one of our messages: its status and error appended, the report
    itself stored."""
    insert_rows(conn, t.email_statuses, [
        {"message_id": mark.message, "at": mark.at, "status": mark.status, "error": mark.error}
        for mark in batch])
    thd_add_mails(conn, [mark.addition for mark in batch])
    return [None] * len(batch)


@mergeable(thd_mark_mails)
def thd_mark_mail(conn: sa.Connection, mark: MailMark) -> None:
    thd_mark_mails(conn, [mark])


class SqlMail:
    """The mail store: part of the `Store` port. A mixin of `SqlStore` (dispatcher/storage/sql.py): it uses the store's `_pool`, `_commit`
    and `_clock`."""

    _pool: Pool
    _commit: GroupCommit
    _clock: Callable[[], float]
    _sent_in_intake: Callable[[StoredMail, r.Row], object]  # SqlTasks'

    def create_mail_task(
        self,
        draft: NewMail,
        identity: Identity | None,
        customer_name: str,
        numbered: Numbering | None = None,
        ack_peer: str | None = None,
    ) -> Deferred[StoredMail]:
        who = None if identity is None else (identity.kind, identity.value)
        rows = new_mail_rows(draft, who, customer_name) if numbered is None else None
        mail = MailIntake(draft, who, customer_name, numbered, rows, draft_keys(draft, who),
                          ack_peer)
        d = self._commit.run(thd_create_mail_task, mail)
        if draft.task.state not in NOT_IN_HAND:  # routed in its intake: Intake.commit_routed
            d.addCallback(self._mail_sent)
        return d

    def _mail_sent(self, stored: StoredMail) -> StoredMail:
        """As a task offered in its own intake (tasks.py): its next change sends hot columns."""
        self._sent_in_intake(stored, r.task_row(stored.mail.task))
        return stored

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
        # Through the group commit: after every write this process queued before it (a task
        # just completed by the router is read as completed, not as it was a moment ago).
        return self._commit.run(thd_find_mail_task, request_number, list(message_ids), task_id)

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
