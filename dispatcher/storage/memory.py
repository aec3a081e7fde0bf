"""`MemoryStore`: the `dispatcher.service.ports.Store` port in process memory.

Sits under `dispatcher.storage`, beside `SqlStore`, and keeps the same promises (the contract
suite in tests/dispatcher/storage runs on both): customers found by identity, the last snapshot
of a task wins, events in order, declines remembered once, configuration stored without
presence. Every Deferred it returns has already fired. It copies what it is given and what it
returns, so callers may keep mutating their objects; JSON-like values come back as they would
from the database (tuples as lists). For the simulator and for unit tests of the service layer.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed

from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import AGENT_STATUS, Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import OPEN_STATES, Channel, Task
from dispatcher.service.ports import (
    ACK_KIND,
    STATUS_LOOKBACK_SECONDS,
    Calendar,
    Changes,
    Customer,
    CustomerHistory,
    EventSink,
    Identity,
    IdentityTaken,
    MailMessage,
    MergedCustomers,
    NewMail,
    Numbering,
    OutboundMail,
    OutboxItem,
    Progress,
    ReportCheckpoint,
    State,
    StoredEvent,
    StoredMail,
    StoredTask,
    TaskFilter,
    TaskRecord,
    TaskSummary,
)

from .report_checkpoints import dumps as checkpoint_dumps
from .report_checkpoints import loads as checkpoint_loads
from .rows import DEFAULT_HISTORY_LIMIT, DEFAULT_LIST_LIMIT, PREVIEW_ATTRIBUTE, snapshot


@dataclass(slots=True)
class _CustomerRow:
    name: str
    created_at: float


def _copy_task(task: Task) -> Task:
    out = task.snapshot()
    out.attributes = snapshot(task.attributes)
    return out


def _config_only(agent: Agent) -> Agent:
    """What the store keeps of an agent: configuration, no presence (as `SqlStore` does)."""
    return Agent(
        id=agent.id,
        name=agent.name,
        skills=dict(agent.skills),
        queues=set(agent.queues),
        capacity={ch: agent.capacity.get(ch, 0) for ch in Channel},
        channels={Channel(c) for c in agent.channels},
        disabled=agent.disabled,
        attributes=copy.deepcopy(agent.attributes),
        interruptions=agent.interruptions,
    )


def _attributes(task: Task, preview: str | None) -> dict[str, Any]:
    """The task's attributes as a read of the store shows them (rows.py `stored_attributes`)."""
    out = snapshot(task.attributes)
    if preview is not None:
        out[PREVIEW_ATTRIBUTE] = preview
    return out


def _summary(task: Task, preview: str | None = None) -> TaskSummary:
    return TaskSummary(
        id=task.id,
        channel=Channel(task.channel).value,
        queue=task.queue,
        state=task.state.value,
        customer_id=task.customer_id,
        created_at=task.created_at,
        deadline=task.deadline,
        agent_id=task.agent_id,
        priority=task.priority,
        attributes=_attributes(task, preview),
    )


@dataclass(slots=True)
class _MailOutboxRow:
    task_id: str | None
    payload: dict
    next_attempt_at: float
    state: str = "pending"
    attempts: int = 0
    error: str | None = None


@dataclass(slots=True)
class _MailState:
    """What SqlStore keeps in email_requests, email_messages (+ attachments) and the e-mail rows
    of the outbox."""

    requests: dict[int, str] = field(default_factory=dict)
    last_number: int = 0  # the last request number given (email_request_numbers in SqlStore)
    messages: dict[str, MailMessage] = field(default_factory=dict)  # as stored: never replaced
    statuses: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # newest appended
    sources: set[str] = field(default_factory=set)
    outbox: dict[int, _MailOutboxRow] = field(default_factory=dict)
    outbox_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class MemoryStore:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._customers: dict[str, _CustomerRow] = {}
        self._identities: dict[Identity, str] = {}
        # Indexes, so a customer's card and history cost what they hold, not the whole store.
        self._ids_of: dict[str, set[Identity]] = {}  # customer id -> identities
        self._tasks_of: dict[str, set[str]] = {}  # customer id -> task ids
        self._trail_index: dict[str, list[StoredEvent]] = {}  # task id -> its events
        self._trail_seen = 0
        self._declines: dict[tuple[str, str], None] = {}  # ordered set
        self._task_events: list[StoredEvent] = []
        self._queues: dict[str, Queue] = {}
        self._agents: dict[str, Agent] = {}
        self._calendars: dict[str, Calendar] = {}
        self._task_event_ids = itertools.count(1)
        self._agent_event_ids = itertools.count(1)
        self._checkpoints: dict[str, tuple[float, int, float, str]] = {}  # name -> row, JSON
        self._previews: dict[str, str] = {}  # task id -> its preview (NewMail.preview)
        # Inspectable by tests: what SqlStore writes to `agent_events` and `outbox`.
        self.agent_events: list[StoredEvent] = []
        self.outbox: list[OutboxItem] = []

    # intake
    def create_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[str]:
        d = self.intake_task(task, identity, customer_name, events)
        return d.addCallback(lambda stored: stored.customer_id)

    def intake_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[StoredTask]:
        if task.id in self._tasks:
            return fail(DuplicateTask(task.id))
        customer_id = self._identities.get(identity) if identity is not None else None
        new = None
        if customer_id is None:
            customer_id = uuid.uuid4().hex
            self._customers[customer_id] = _CustomerRow(customer_name, task.created_at)
            if identity is not None:
                key = Identity(identity.kind, identity.value)
                self._identities[key] = customer_id
                self._ids_of.setdefault(customer_id, set()).add(key)
            new = self._customer(customer_id)
        stored = _copy_task(task)
        stored.customer_id = customer_id
        self._put(stored)
        self._append(events)
        return succeed(StoredTask(customer_id, new))

    def record(self, changes: Changes) -> Deferred[None]:
        for task in changes.tasks:
            self._put(_copy_task(task))
        for task_id, agent_id in changes.declines:
            self._declines[(task_id, agent_id)] = None
        self._append(changes.events)
        self.outbox.extend(
            OutboxItem(i.kind, i.task_id, snapshot(i.payload), i.created_at) for i in changes.outbox
        )
        return succeed(None)

    def _append(self, events: Sequence[Event]) -> None:
        for e in events:
            if e.task_id is not None:
                log, ids = self._task_events, self._task_event_ids
            else:
                log, ids = self.agent_events, self._agent_event_ids
            log.append(
                StoredEvent(
                    next(ids), e.kind, e.at, e.task_id, e.agent_id, e.actor, snapshot(e.data)
                )
            )

    # start-up
    def load_state(self) -> Deferred[State]:
        open_tasks = [_copy_task(t) for t in self._tasks.values() if t.is_open]
        open_ids = {t.id for t in open_tasks}
        return succeed(
            State(
                queues=self._sorted_queues(),
                agents=self._sorted_agents(),
                open_tasks=open_tasks,
                declines=[d for d in self._declines if d[0] in open_ids],
                calendars=[copy.deepcopy(self._calendars[k]) for k in sorted(self._calendars)],
            )
        )

    # configuration
    def put_queue(self, queue: Queue, events: Sequence[Event] = ()) -> Deferred[None]:
        self._queues[queue.name] = copy.deepcopy(queue)
        self._append(events)
        return succeed(None)

    def put_agent(self, agent: Agent, events: Sequence[Event] = ()) -> Deferred[None]:
        self._agents[agent.id] = _config_only(agent)
        self._append(events)
        return succeed(None)

    def put_calendar(self, calendar: Calendar, events: Sequence[Event] = ()) -> Deferred[None]:
        self._calendars[calendar.name] = copy.deepcopy(calendar)
        self._append(events)
        return succeed(None)

    def remove_queue(self, name: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        if self._queues.pop(name, None) is None:
            return succeed(False)
        for agent in self._agents.values():
            agent.queues.discard(name)
        self._append(events)
        return succeed(True)

    def remove_agent(self, agent_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        if self._agents.pop(agent_id, None) is None:
            return succeed(False)
        self._append(events)
        return succeed(True)

    def list_queues(self) -> Deferred[list[Queue]]:
        return succeed(self._sorted_queues())

    def list_agents(self) -> Deferred[list[Agent]]:
        return succeed(self._sorted_agents())

    def _sorted_queues(self) -> list[Queue]:
        return [copy.deepcopy(self._queues[k]) for k in sorted(self._queues)]

    def _sorted_agents(self) -> list[Agent]:
        return [_config_only(self._agents[k]) for k in sorted(self._agents)]

    # queries
    def get_customer(self, customer_id: str) -> Deferred[Customer | None]:
        return succeed(self._customer(customer_id))

    def find_customer(self, identity: Identity) -> Deferred[Customer | None]:
        customer_id = self._identities.get(Identity(identity.kind, identity.value))
        return succeed(None if customer_id is None else self._customer(customer_id))

    def _put(self, task: Task) -> None:
        old = self._tasks.get(task.id)
        if old is not None and old.customer_id != task.customer_id:
            self._tasks_of.get(old.customer_id, set()).discard(task.id)
        self._tasks[task.id] = task
        self._tasks_of.setdefault(task.customer_id, set()).add(task.id)

    def _of_customer(self, customer_id: str) -> list[Task]:
        return [self._tasks[t] for t in self._tasks_of.get(customer_id, ())]

    def _customer(self, customer_id: str) -> Customer | None:
        row = self._customers.get(customer_id)
        if row is None:
            return None
        identities = sorted(self._ids_of.get(customer_id, ()), key=lambda i: (i.kind, i.value))
        return Customer(customer_id, row.name, row.created_at, tuple(identities))

    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT,
        newest_first: bool = False,
    ) -> Deferred[list[TaskSummary]]:
        found = [
            t
            for t in self._tasks.values()
            if (state is None or t.state.value == state) and (queue is None or t.queue == queue)
        ]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=newest_first)
        return succeed([self._summary(t) for t in found[:limit]])

    def page_tasks(
        self, where: TaskFilter, after: tuple[float, str] | None, limit: int,
    ) -> Deferred[list[TaskSummary]]:
        found = [s for s in map(self._summary, self._tasks.values()) if where.keeps(s, after)]
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return succeed(found[:limit])

    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]:
        task = self._tasks.get(task_id)
        return succeed(None if task is None else self._summary(task))

    def previews(self, task_ids: Sequence[str]) -> Deferred[dict[str, str]]:
        out: dict[str, str] = {}
        for task_id in task_ids:
            task = self._tasks.get(task_id)
            if task is None:
                continue
            preview = self._previews.get(task_id, task.attributes.get(PREVIEW_ATTRIBUTE))
            if isinstance(preview, str):
                out[task_id] = preview
        return succeed(out)

    def _summary(self, task: Task) -> TaskSummary:
        return _summary(task, self._previews.get(task.id))

    def list_calendars(self) -> Deferred[list[Calendar]]:
        return succeed([copy.deepcopy(self._calendars[k]) for k in sorted(self._calendars)])

    def customer_tasks(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskSummary]]:
        found = self._of_customer(customer_id)
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return succeed([self._summary(t) for t in found[:limit]])

    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        return succeed([copy.deepcopy(e) for e in self._trails().get(task_id, ())])

    def last_event_at(self) -> Deferred[float | None]:
        times = [e.at for log in (self._task_events, self.agent_events) for e in log]
        return succeed(max(times) if times else None)

    # reports (ports.ReportStore)
    def fold_events(self, start: float, end: float, sink: EventSink,
                    progress: Progress | None = None, context: bool = True) -> Deferred[int]:
        open_states = {s.value for s in OPEN_STATES}
        then = {t.id for t in self._tasks.values() if t.created_at < start and (
            t.state in open_states or (t.updated_at or 0) >= start)}
        earlier = sorted((e for e in self._task_events if e.task_id in then and e.at < start),
                         key=lambda e: (e.at, e.id))
        last: dict[str, StoredEvent] = {}
        for e in self.agent_events:
            if e.kind == AGENT_STATUS and start - STATUS_LOOKBACK_SECONDS <= e.at < start:
                last[e.agent_id] = e
        earlier = sorted(earlier + sorted(last.values(), key=lambda e: e.id),
                         key=lambda e: e.at)
        period = heapq.merge(*(sorted((e for e in log if start <= e.at < end),
                                      key=lambda e: (e.at, e.id))
                               for log in (self._task_events, self.agent_events)),
                             key=lambda e: e.at)
        rows = [copy.deepcopy(e) for e in period]
        if context and earlier:
            sink(copy.deepcopy(earlier))
        if rows:
            sink(rows)
        if progress is not None:
            progress(len(rows), len(rows))
        return succeed(len(rows))

    def count_events(self, start: float, end: float) -> Deferred[int]:
        return succeed(sum(1 for log in (self._task_events, self.agent_events)
                           for e in log if start <= e.at < end))

    def save_checkpoint(self, make: Callable[[], ReportCheckpoint]) -> Deferred[int]:
        """Kept as the JSON text the SQL store writes (so what cannot be JSON fails here too)."""
        cp = make()
        text = checkpoint_dumps(cp.data)
        self._checkpoints[cp.name] = (cp.day_start, cp.version, cp.saved_at, text)
        return succeed(len(text))

    def load_checkpoint(self, name: str,
                        decode: Callable[[ReportCheckpoint | None], Any]) -> Deferred[Any]:
        row = self._checkpoints.get(name)
        if row is None:
            return maybeDeferred(decode, None)
        day_start, version, saved_at, text = row
        try:
            data = checkpoint_loads(text)
        except ValueError:
            data = None
        return maybeDeferred(decode, ReportCheckpoint(name, day_start, version, saved_at, data))

    # customer history
    def customer_records(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskRecord]]:
        found = self._of_customer(customer_id)
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        found = found[:limit]
        trails = self._trails()
        return succeed([
            TaskRecord(self._summary(t), _attributes(t, self._previews.get(t.id)),
                       tuple(copy.deepcopy(e) for e in trails.get(t.id, ())))
            for t in found
        ])

    def customer_history(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> Deferred[CustomerHistory]:
        customer = self._customer(customer_id)
        if customer is None:
            return succeed(CustomerHistory(None, []))
        return self.customer_records(customer_id, limit).addCallback(
            lambda records: CustomerHistory(customer, records))

    def _trails(self) -> dict[str, list[StoredEvent]]:
        """Task id -> its events, kept up to date from the append-only log (only the events
        appended since the last call are looked at)."""
        trails = self._trail_index
        for e in self._task_events[self._trail_seen:]:
            trails.setdefault(e.task_id, []).append(e)
        self._trail_seen = len(self._task_events)
        return trails

    def merge_customers(
        self, survivor_id: str, merged_id: str, events: Sequence[Event]
    ) -> Deferred[MergedCustomers]:
        moved = sorted(self._ids_of.pop(merged_id, ()), key=lambda i: (i.kind, i.value))
        for identity in moved:
            self._identities[identity] = survivor_id
        self._ids_of.setdefault(survivor_id, set()).update(moved)
        task_ids = sorted(self._tasks_of.pop(merged_id, ()))
        for task_id in task_ids:
            self._tasks[task_id].customer_id = survivor_id
        self._tasks_of.setdefault(survivor_id, set()).update(task_ids)
        self._append(events)
        return succeed(MergedCustomers(survivor_id, merged_id, tuple(moved), tuple(task_ids)))

    # customers
    def search_customers(self, needles: Sequence[str], limit: int = DEFAULT_HISTORY_LIMIT
                         ) -> Deferred[list[Customer]]:
        hits = {customer_id for i, customer_id in self._identities.items()
                if any(n in i.value for n in needles)}
        hits.update(customer_id for customer_id, row in self._customers.items()
                    if any(n in row.name.lower() for n in needles))
        found = sorted(hits, key=lambda k: (-self._customers[k].created_at, k))[:limit]
        return succeed([self._customer(k) for k in found])

    def edit_customer(self, customer_id: str, name: str, identities: Sequence[Identity],
                      events: Sequence[Event]) -> Deferred[Customer | None]:
        row = self._customers.get(customer_id)
        if row is None:
            return succeed(None)
        wanted = {Identity(i.kind, i.value) for i in identities}
        for identity in sorted(wanted, key=lambda i: (i.kind, i.value)):
            owner = self._identities.get(identity)
            if owner is not None and owner != customer_id:
                return fail(IdentityTaken(identity, owner))
        for identity in self._ids_of.get(customer_id, set()) - wanted:
            del self._identities[identity]
        for identity in wanted:
            self._identities[identity] = customer_id
        self._ids_of[customer_id] = wanted
        row.name = name
        self._append(events)
        return succeed(self._customer(customer_id))

    # e-mail
    @property
    def _mail(self) -> _MailState:
        state = self.__dict__.get("_mail_state")
        if state is None:
            state = self.__dict__["_mail_state"] = _MailState()
        return state

    def create_mail_task(
        self,
        draft: NewMail,
        identity: Identity | None,
        customer_name: str,
        numbered: Numbering | None = None,
        ack_peer: str | None = None,
    ) -> Deferred[StoredMail]:
        mail = self._mail
        number = mail.last_number + 1  # as SqlStore: the next number, in the same "transaction"
        last_ack = None if ack_peer is None else max(
            (m.created_at for m in mail.messages.values()
             if m.peer == ack_peer and m.kind == ACK_KIND), default=None)
        try:
            made = draft if numbered is None else numbered(number, last_ack)
        except Exception as exc:  # noqa: BLE001 - as SqlStore: the call fails, nothing stored
            return fail(exc)
        if made.task.id != draft.task.id:
            return fail(ValueError(f"numbered({number}) made another task than the draft's"))
        if made.task.id in self._tasks or made.task.id in mail.requests.values():
            return fail(DuplicateTask(made.task.id))
        if any(m.source is not None and m.source in mail.sources for m in made.messages):
            return fail(DuplicateTask(made.task.id))
        d = self.intake_task(made.task, identity, customer_name, made.events)
        d.addCallback(self._mail_stored, number, made)
        return d

    def _mail_stored(self, stored: StoredTask, number: int, made: NewMail) -> StoredMail:
        mail = self._mail
        mail.last_number = number
        mail.requests[number] = made.task.id
        if made.preview is not None:
            self._previews[made.task.id] = made.preview
        self._keep_messages(made.messages)
        self.record(Changes(outbox=list(made.outbox)))
        self._queue_mail(made.outbox)
        return StoredMail(stored.customer_id, number, made, stored.new)

    def _keep_messages(self, messages: Sequence[MailMessage]) -> None:
        for m in messages:
            self._mail.messages[m.id] = copy.deepcopy(m)
            if m.source is not None:
                self._mail.sources.add(m.source)

    def _queue_mail(self, outbox: Sequence[OutboxItem]) -> None:
        for item in outbox:
            if item.kind == "email":
                self._mail.outbox[next(self._mail.outbox_ids)] = _MailOutboxRow(
                    item.task_id, snapshot(item.payload), item.created_at)

    def add_mail(self, messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        if any(m.source is not None and m.source in self._mail.sources for m in messages):
            return fail(ValueError("a message with this source is already stored"))
        self._keep_messages(messages)
        self._queue_mail(changes.outbox)
        return self.record(changes)

    def find_mail_task(
        self,
        request_number: int | None = None,
        message_ids: Sequence[str] = (),
        task_id: str | None = None,
    ) -> Deferred[Task | None]:
        mail = self._mail
        found = mail.requests.get(request_number) if request_number is not None else None
        if found is None and message_ids:
            wanted = set(message_ids)
            hits = [m for m in mail.messages.values() if m.message_id in wanted]
            if hits:
                found = max(hits, key=lambda m: m.created_at).task_id
        if found is None:
            found = task_id
        task = self._tasks.get(found) if found is not None else None
        return succeed(None if task is None else _copy_task(task))

    def _current(self, m: MailMessage) -> MailMessage:
        """The message with its newest delivery status (email_statuses in SqlStore)."""
        status = self._mail.statuses.get(m.id)
        return m if status is None else dataclasses.replace(m, status=status[0], error=status[1])

    def mail_messages(self, task_id: str, content: bool = True
                      ) -> Deferred[list[MailMessage]]:
        found = [self._current(m) for m in self._mail.messages.values() if m.task_id == task_id]
        found.sort(key=lambda m: (m.created_at, m.id))
        if not content:
            found = [dataclasses.replace(m, raw=b"", attachments=tuple(
                dataclasses.replace(a, content=None) for a in m.attachments)) for m in found]
        return succeed([copy.deepcopy(m) for m in found])

    def mail_message(self, id: str | None = None, message_id: str | None = None,
                     direction: str | None = None) -> Deferred[MailMessage | None]:
        found = [m for m in self._mail.messages.values()
                 if (m.id == id if id is not None else m.message_id == message_id)
                 and (direction is None or m.direction == direction)]
        found.sort(key=lambda m: m.created_at)
        return succeed(copy.deepcopy(self._current(found[-1])) if found else None)

    def mark_mail(self, message: str, status: str, error: str | None,
                  messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        if message not in self._mail.messages:
            return fail(KeyError(message))
        self._mail.statuses[message] = (status, error)
        return self.add_mail(messages, changes)

    def known_mail_sources(self, sources: Sequence[str]) -> Deferred[set[str]]:
        return succeed(set(sources) & self._mail.sources)

    def due_mail(self, now: float, limit: int) -> Deferred[list[OutboundMail]]:
        due = sorted(
            (row.next_attempt_at, outbox_id) for outbox_id, row in self._mail.outbox.items()
            if row.state == "pending" and row.next_attempt_at <= now
        )
        out = []
        for _, outbox_id in due[:limit]:
            row = self._mail.outbox[outbox_id]
            message = self._mail.messages[row.payload["message"]]
            out.append(OutboundMail(outbox_id, message.id, row.task_id, message.raw,
                                    row.payload["mail_from"], tuple(row.payload["rcpt"]),
                                    row.attempts))
        return succeed(out)

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
        if message not in self._mail.messages:
            return fail(KeyError(message))
        row = self._mail.outbox[outbox_id]
        row.state = status if status in ("sent", "dead") else "pending"
        row.attempts = attempts
        row.next_attempt_at = next_attempt_at if next_attempt_at is not None else row.next_attempt_at
        row.error = error
        self._mail.statuses[message] = (status, error)
        self._append(events)
        return succeed(None)
