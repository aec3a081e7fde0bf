"""Storage of codification and collaboration: categories, rules, training examples (the
`CodificationStore` port) and notes, consults, reminders (the `CollaborationStore` port).

Sits under `dispatcher.storage`, beside `sql.py`. Two implementations of each port, proven by
one contract suite (tests/dispatcher/storage/test_codification_store.py):

- `SqlCodificationStore` / `SqlCollaborationStore`: module-level `thd_*` functions on the
  `Pool` (configuration, with its audit events in the same transaction; reads) or through the
  `GroupCommit` (anything written with task events or mail), so a note, a consult or a reminder commits in the same transaction as its events,
  its e-mail and its outbox item, ordered with the router's own writes.
- `MemoryCodificationStore` / `MemoryCollaborationStore`: in process memory, writing task events
  and mail (and configuration audit events) through a `MemoryStore`, so a unit test sees them in
  the task's trail (the agent log).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain import events as ev
from dispatcher.domain.categories import Category, CategoryRule
from dispatcher.domain.events import Event
from dispatcher.service.ports import (
    Changes,
    Consult,
    MailMessage,
    Reminder,
    TaskNote,
    TrainingExample,
)

from . import rows as r
from . import tables as t
from .bulk import append_events
from .commit import GroupCommit
from .pool import Pool
from .sql import ChangeRows, MailAddition, mail_rows, thd_add_mail, thd_record

PENDING = "pending"


def _rule_order() -> tuple[Any, ...]:
    return (t.category_rules.c.position, t.category_rules.c.id)


def _changes(changes: Changes) -> ChangeRows:
    """Snapshot a batch of changes in the reactor thread (as SqlStore.record does)."""
    return ChangeRows(
        tasks=[r.task_row(task) for task in changes.tasks],
        events=[r.event_row(e) for e in changes.events],
        declines=[{"task_id": k, "agent_id": a} for k, a in changes.declines],
        outbox=[r.outbox_row(item) for item in changes.outbox],
    )


# --- categories, rules, examples ---------------------------------------------------------------


def thd_put_category(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None
                     ) -> None:
    c = t.categories
    conn.execute(c.delete().where(c.c.name == row["name"]))
    conn.execute(c.insert().values(**row))
    append_events(conn, events or [])


def thd_list_categories(conn: sa.Connection) -> list[Category]:
    return [
        Category(name=row.name, queue=row.queue, priority=row.priority, skills=dict(row.skills),
                 attributes=dict(row.attributes), description=row.description)
        for row in conn.execute(sa.select(t.categories).order_by(t.categories.c.name))
    ]


def thd_add_rule(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None) -> int:
    """The new rule's id, also added to the data of its audit events (`rule`)."""
    rule_id = int(conn.execute(t.category_rules.insert().values(**row)).inserted_primary_key[0])
    append_events(conn, [{**e, "data": {**e["data"], "rule": rule_id}} for e in events or []])
    return rule_id


def thd_remove_rule(conn: sa.Connection, rule_id: int, events: list[r.Row] | None = None
                    ) -> bool:
    rules = t.category_rules
    if conn.execute(rules.delete().where(rules.c.id == rule_id)).rowcount == 0:
        return False
    append_events(conn, events or [])
    return True


def thd_list_rules(conn: sa.Connection) -> list[CategoryRule]:
    return [
        CategoryRule(category=row.category, field=row.field, pattern=row.pattern,
                     match=row.match, position=row.position, enabled=bool(row.enabled),
                     id=int(row.id))
        for row in conn.execute(sa.select(t.category_rules).order_by(*_rule_order()))
    ]


def thd_add_examples(conn: sa.Connection, rows: list[r.Row]) -> None:
    if rows:
        conn.execute(t.category_examples.insert(), rows)


def thd_examples(conn: sa.Connection, limit: int) -> list[TrainingExample]:
    e = t.category_examples
    q = sa.select(e).order_by(e.c.id.desc()).limit(limit)
    found = [
        TrainingExample(text=row.text, category=row.category, source=row.source, at=row.at,
                        task_id=row.task_id, actor=row.actor, id=int(row.id))
        for row in conn.execute(q)
    ]
    found.reverse()
    return found


def thd_example_count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(t.category_examples))
               .scalar() or 0)


def _category_row(c: Category) -> r.Row:
    return {"name": c.name, "queue": c.queue, "priority": c.priority,
            "skills": dict(c.skills), "attributes": r.snapshot(dict(c.attributes)),
            "description": c.description}


def _rule_row(rule: CategoryRule) -> r.Row:
    return {"position": rule.position, "category": rule.category, "field": rule.field,
            "pattern": rule.pattern, "match": rule.match, "enabled": bool(rule.enabled)}


def _example_row(e: TrainingExample) -> r.Row:
    return {"task_id": e.task_id, "text": e.text, "category": e.category, "source": e.source,
            "actor": e.actor, "at": e.at}


class SqlCodificationStore:
    def __init__(self, pool: Pool, group_commit: GroupCommit) -> None:
        self._pool = pool
        self._commit = group_commit

    def put_category(self, category: Category, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_category, _category_row(category),
                              [r.event_row(e) for e in events])

    def list_categories(self) -> Deferred[list[Category]]:
        return self._pool.run(thd_list_categories)

    def add_rule(self, rule: CategoryRule, events: Sequence[Event] = ()) -> Deferred[int]:
        return self._pool.run(thd_add_rule, _rule_row(rule), [r.event_row(e) for e in events])

    def remove_rule(self, rule_id: int, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_rule, int(rule_id), [r.event_row(e) for e in events])

    def list_rules(self) -> Deferred[list[CategoryRule]]:
        return self._pool.run(thd_list_rules)

    def add_examples(self, examples: Sequence[TrainingExample]) -> Deferred[None]:
        return self._commit.run(thd_add_examples, [_example_row(e) for e in examples])

    def examples(self, limit: int) -> Deferred[list[TrainingExample]]:
        return self._pool.run(thd_examples, int(limit))

    def example_count(self) -> Deferred[int]:
        return self._pool.run(thd_example_count)


class MemoryCodificationStore:
    """Audit events go to `store`'s agent log (a `MemoryStore`; without one, a write with
    events is refused)."""

    def __init__(self, store: Any = None) -> None:
        self._store = store
        self._categories: dict[str, Category] = {}
        self._rules: dict[int, CategoryRule] = {}
        self._rule_ids = itertools.count(1)
        self._examples: list[TrainingExample] = []
        self._example_ids = itertools.count(1)

    def _log(self, events: Sequence[Event]) -> None:
        if events:
            if self._store is None:
                raise ValueError("MemoryCodificationStore(store=...) is needed to keep audit "
                                 "events")
            self._store.record(Changes(events=list(events)))

    def put_category(self, category: Category, events: Sequence[Event] = ()) -> Deferred[None]:
        self._categories[category.name] = copy.deepcopy(category)
        self._log(events)
        return succeed(None)

    def list_categories(self) -> Deferred[list[Category]]:
        return succeed([copy.deepcopy(c) for _, c in sorted(self._categories.items())])

    def add_rule(self, rule: CategoryRule, events: Sequence[Event] = ()) -> Deferred[int]:
        rule_id = next(self._rule_ids)
        self._rules[rule_id] = replace(rule, id=rule_id)
        self._log([replace(e, data={**e.data, "rule": rule_id}) for e in events])
        return succeed(rule_id)

    def remove_rule(self, rule_id: int, events: Sequence[Event] = ()) -> Deferred[bool]:
        if self._rules.pop(int(rule_id), None) is None:
            return succeed(False)
        self._log(events)
        return succeed(True)

    def list_rules(self) -> Deferred[list[CategoryRule]]:
        return succeed(sorted(self._rules.values(), key=lambda x: (x.position, x.id)))

    def add_examples(self, examples: Sequence[TrainingExample]) -> Deferred[None]:
        for e in examples:
            self._examples.append(replace(e, id=next(self._example_ids)))
        return succeed(None)

    def examples(self, limit: int) -> Deferred[list[TrainingExample]]:
        return succeed(list(self._examples[-limit:]) if limit > 0 else [])

    def example_count(self) -> Deferred[int]:
        return succeed(len(self._examples))


# --- notes, consults, reminders ----------------------------------------------------------------


def thd_add_note(conn: sa.Connection, row: r.Row, changes: ChangeRows) -> int:
    note_id = int(conn.execute(t.task_notes.insert().values(**row)).inserted_primary_key[0])
    for e in changes.events:  # the trail names the note it shows
        if e["data"].get("note") is None and e["kind"] == ev.TASK_NOTE:
            e["data"] = {**e["data"], "note": note_id}
    thd_record(conn, changes)
    return note_id


def thd_notes(conn: sa.Connection, task_id: str) -> list[TaskNote]:
    n = t.task_notes
    q = sa.select(n).where(n.c.task_id == task_id).order_by(n.c.id)
    return [TaskNote(task_id=row.task_id, author=row.author, text=row.text, at=row.at,
                     id=int(row.id)) for row in conn.execute(q)]


def _consult_from(row: Any) -> Consult:
    return Consult(token=row.token, task_id=row.task_id, agent_id=row.agent_id,
                   expert=row.expert, message_id=row.message_id, created_at=row.created_at,
                   answered_at=row.answered_at)


def thd_add_consult(conn: sa.Connection, row: r.Row, mail: MailAddition) -> None:
    conn.execute(t.consults.insert().values(**row))
    thd_add_mail(conn, mail)


def thd_find_consult(conn: sa.Connection, token: str | None,
                     message_ids: list[str]) -> Consult | None:
    c = t.consults
    if token is not None:
        row = conn.execute(sa.select(c).where(c.c.token == token)).first()
        if row is not None:
            return _consult_from(row)
    if message_ids:
        row = conn.execute(sa.select(c).where(c.c.message_id.in_(message_ids))
                           .order_by(c.c.created_at.desc()).limit(1)).first()
        if row is not None:
            return _consult_from(row)
    return None


def thd_answer_consult(conn: sa.Connection, token: str, at: float, mail: MailAddition) -> None:
    c = t.consults
    conn.execute(c.update().where(c.c.token == token).values(answered_at=at))
    thd_add_mail(conn, mail)


def thd_consults(conn: sa.Connection, task_id: str) -> list[Consult]:
    c = t.consults
    q = sa.select(c).where(c.c.task_id == task_id).order_by(c.c.created_at, c.c.token)
    return [_consult_from(row) for row in conn.execute(q)]


def _reminder_from(row: Any) -> Reminder:
    return Reminder(id=row.id, task_id=row.task_id, agent_id=row.agent_id, due_at=row.due_at,
                    created_at=row.created_at, note=row.note, state=row.state)


def thd_add_reminder(conn: sa.Connection, row: r.Row, changes: ChangeRows) -> None:
    rem = t.reminders
    # A task has at most one pending reminder: a new one replaces it.
    conn.execute(rem.update().where(rem.c.task_id == row["task_id"], rem.c.state == PENDING)
                 .values(state="superseded"))
    conn.execute(rem.insert().values(**row))
    thd_record(conn, changes)


def thd_pending_reminders(conn: sa.Connection) -> list[Reminder]:
    rem = t.reminders
    q = sa.select(rem).where(rem.c.state == PENDING).order_by(rem.c.due_at, rem.c.id)
    return [_reminder_from(row) for row in conn.execute(q)]


def thd_settle_reminder(conn: sa.Connection, reminder_id: str, state: str,
                        changes: ChangeRows) -> None:
    rem = t.reminders
    conn.execute(rem.update().where(rem.c.id == reminder_id).values(state=state))
    thd_record(conn, changes)


def _reminder_row(x: Reminder) -> r.Row:
    return {"id": x.id, "task_id": x.task_id, "agent_id": x.agent_id, "due_at": x.due_at,
            "created_at": x.created_at, "note": x.note, "state": x.state}


def _consult_row(c: Consult) -> r.Row:
    return {"token": c.token, "task_id": c.task_id, "agent_id": c.agent_id,
            "expert": c.expert, "message_id": c.message_id, "created_at": c.created_at,
            "answered_at": c.answered_at}


def _mail_addition(messages: Sequence[MailMessage], changes: Changes) -> MailAddition:
    rows, attachments = mail_rows(messages)
    return MailAddition(rows, attachments, _changes(changes))


class SqlCollaborationStore:
    def __init__(self, pool: Pool, group_commit: GroupCommit) -> None:
        self._pool = pool
        self._commit = group_commit

    def add_note(self, note: TaskNote, changes: Changes) -> Deferred[int]:
        row = {"task_id": note.task_id, "author": note.author, "text": note.text, "at": note.at}
        return self._commit.run(thd_add_note, row, _changes(changes))

    def notes(self, task_id: str) -> Deferred[list[TaskNote]]:
        return self._pool.run(thd_notes, task_id)

    def add_consult(self, consult: Consult, messages: Sequence[MailMessage],
                    changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_add_consult, _consult_row(consult),
                                _mail_addition(messages, changes))

    def find_consult(self, token: str | None = None,
                     message_ids: Sequence[str] = ()) -> Deferred[Consult | None]:
        return self._pool.run(thd_find_consult, token, list(message_ids))

    def answer_consult(self, token: str, at: float, messages: Sequence[MailMessage],
                       changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_answer_consult, token, at,
                                _mail_addition(messages, changes))

    def consults(self, task_id: str) -> Deferred[list[Consult]]:
        return self._pool.run(thd_consults, task_id)

    def add_reminder(self, reminder: Reminder, changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_add_reminder, _reminder_row(reminder), _changes(changes))

    def pending_reminders(self) -> Deferred[list[Reminder]]:
        return self._pool.run(thd_pending_reminders)

    def settle_reminder(self, reminder_id: str, state: str,
                        changes: Changes) -> Deferred[None]:
        return self._commit.run(thd_settle_reminder, reminder_id, state, _changes(changes))


class MemoryCollaborationStore:
    """Over a `MemoryStore` (`store`), which keeps the task events and the mail."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._notes: list[TaskNote] = []
        self._note_ids = itertools.count(1)
        self._consults: dict[str, Consult] = {}
        self._reminders: dict[str, Reminder] = {}

    def add_note(self, note: TaskNote, changes: Changes) -> Deferred[int]:
        note_id = next(self._note_ids)
        self._notes.append(replace(note, id=note_id))
        events = [replace(e, data={**e.data, "note": note_id})
                  if e.kind == ev.TASK_NOTE and e.data.get("note") is None else e
                  for e in changes.events]
        d = self.store.record(replace(changes, events=events))
        d.addCallback(lambda _: note_id)
        return d

    def notes(self, task_id: str) -> Deferred[list[TaskNote]]:
        return succeed([n for n in self._notes if n.task_id == task_id])

    def add_consult(self, consult: Consult, messages: Sequence[MailMessage],
                    changes: Changes) -> Deferred[None]:
        self._consults[consult.token] = consult
        return self.store.add_mail(messages, changes)

    def find_consult(self, token: str | None = None,
                     message_ids: Sequence[str] = ()) -> Deferred[Consult | None]:
        if token is not None and token in self._consults:
            return succeed(self._consults[token])
        wanted = set(message_ids)
        found = [c for c in self._consults.values() if c.message_id in wanted]
        found.sort(key=lambda c: c.created_at)
        return succeed(found[-1] if found else None)

    def answer_consult(self, token: str, at: float, messages: Sequence[MailMessage],
                       changes: Changes) -> Deferred[None]:
        if token in self._consults:
            self._consults[token] = replace(self._consults[token], answered_at=at)
        return self.store.add_mail(messages, changes)

    def consults(self, task_id: str) -> Deferred[list[Consult]]:
        return succeed(sorted((c for c in self._consults.values() if c.task_id == task_id),
                              key=lambda c: (c.created_at, c.token)))

    def add_reminder(self, reminder: Reminder, changes: Changes) -> Deferred[None]:
        for key, old in list(self._reminders.items()):
            if old.task_id == reminder.task_id and old.state == PENDING:
                self._reminders[key] = replace(old, state="superseded")
        self._reminders[reminder.id] = reminder
        return self.store.record(changes)

    def pending_reminders(self) -> Deferred[list[Reminder]]:
        return succeed(sorted((x for x in self._reminders.values() if x.state == PENDING),
                              key=lambda x: (x.due_at, x.id)))

    def settle_reminder(self, reminder_id: str, state: str,
                        changes: Changes) -> Deferred[None]:
        if reminder_id in self._reminders:
            self._reminders[reminder_id] = replace(self._reminders[reminder_id], state=state)
        return self.store.record(changes)
