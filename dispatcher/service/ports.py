"""Ports: what the service layer needs from the outside, as Protocols.

Implemented by `dispatcher.storage.sql.SqlStore` (SQLAlchemy Core on a thread pool, the real
one), `dispatcher.storage.memory.MemoryStore` (in-process, for the simulator and unit tests;
proven by the same contract suite) and the reactor's `IReactorTime` for the clock.

Every method returns a Deferred. A Deferred from `record` or `create_task` fires only after the
data is committed: callers acknowledge the outside world after that, never before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Task


@dataclass(frozen=True, slots=True)
class Identity:
    """How a customer is recognised: kind is 'email' (lower-cased address) or 'phone' (E.164-ish
    digits with optional leading '+')."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    created_at: float
    identities: tuple[Identity, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A side effect towards the outside world, written in the same transaction as the state
    change that caused it (an e-mail to send, a call to hand over)."""

    kind: str
    task_id: str | None
    payload: dict[str, Any]
    created_at: float


@dataclass(slots=True)
class Changes:
    """One batch of state changes to commit atomically: the tasks to upsert (their full current
    row; the store copies them when `record` is called, so the caller may go on changing them),
    events to append, declines to remember, outbox items to queue."""

    tasks: list[Task] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    declines: list[tuple[str, str]] = field(default_factory=list)  # (task_id, agent_id)
    outbox: list[OutboxItem] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.events or self.declines or self.outbox)


@dataclass(frozen=True, slots=True)
class Calendar:
    """A business calendar as stored: weekly opening hours and holidays (see domain.deadlines)."""

    name: str
    timezone: str
    hours: dict[str, list[list[str]]]  # weekday name ("mon".."sun") -> [["09:00", "17:00"], ...]
    holidays: tuple[str, ...] = ()  # ISO dates


@dataclass(slots=True)
class State:
    """Everything the router needs to rebuild itself at start."""

    queues: list[Queue]
    agents: list[Agent]
    open_tasks: list[Task]  # every task not in a final state, any order
    declines: list[tuple[str, str]]
    calendars: list[Calendar]


@dataclass(frozen=True, slots=True)
class TaskSummary:
    id: str
    channel: str
    queue: str
    state: str
    customer_id: str | None
    created_at: float
    deadline: float | None
    agent_id: str | None
    priority: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    kind: str
    at: float
    task_id: str | None
    agent_id: str | None
    actor: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task of a customer's timeline: its summary, its attributes (an e-mail's `subject`,
    `preview`...) and its event trail in order (calls: when answered, by whom, how it ended)."""

    summary: TaskSummary
    attributes: dict[str, Any]
    events: tuple[StoredEvent, ...]


@dataclass(frozen=True, slots=True)
class MergedCustomers:
    """What `Store.merge_customers` moved to the surviving customer."""

    survivor_id: str
    merged_id: str
    identities: tuple[Identity, ...]
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """An attachment of a stored e-mail: its content is in the database (`content`) or in the
    configured folder (`path`)."""

    filename: str | None
    content_type: str
    size: int
    content: bytes | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One e-mail of a task's conversation, inbound or outbound. `raw` is the message exactly as
    received or sent; the parsed fields are what could be read from it (`malformed` and
    `defects` say what could not). `peer` is the customer-side address, lower-cased. `status`:
    received | queued | sent | retrying | dead."""

    id: str
    task_id: str
    direction: str  # "in" | "out"
    kind: str  # "customer" | "reply" | "ack"
    created_at: float
    raw: bytes
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    peer: str | None = None
    from_addr: str | None = None
    to_addrs: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str = ""
    defects: tuple[str, ...] = ()
    malformed: bool = False
    source: str | None = None  # "imap:<account>/<mailbox>/<uidvalidity>/<uid>" for polled mail
    status: str = "received"
    error: str | None = None
    attachments: tuple[MailAttachment, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundMail:
    """A due outbox item of kind `email`: the message to relay and its envelope."""

    outbox_id: int
    message: str  # MailMessage.id
    task_id: str | None
    raw: bytes
    mail_from: str
    rcpt: tuple[str, ...]
    attempts: int


class Store(Protocol):
    # intake
    def create_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[str]:
        """Identify the customer by `identity` (create one if unknown; no identity: a new
        anonymous customer), store the task with that customer and its events; fire with the
        customer id once committed."""

    def record(self, changes: Changes) -> Deferred[None]:
        """Commit one batch of changes (group commit may merge several calls)."""

    # start-up
    def load_state(self) -> Deferred[State]: ...

    # configuration
    def put_queue(self, queue: Queue) -> Deferred[None]: ...
    def put_agent(self, agent: Agent) -> Deferred[None]:
        """Insert or update an agent's configuration (name, skills, queues, capacity, channels);
        presence is not stored: agents start offline."""
    def put_calendar(self, calendar: Calendar) -> Deferred[None]: ...
    def list_queues(self) -> Deferred[list[Queue]]: ...
    def list_agents(self) -> Deferred[list[Agent]]: ...

    # queries
    def get_customer(self, customer_id: str) -> Deferred[Customer | None]: ...
    def find_customer(self, identity: Identity) -> Deferred[Customer | None]: ...
    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = 1000
    ) -> Deferred[list[TaskSummary]]: ...
    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]: ...
    def list_calendars(self) -> Deferred[list[Calendar]]: ...
    def customer_tasks(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskSummary]]:
        """The customer's tasks across channels, newest first."""
    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        """The task's trail in order."""

    # customer history (dispatcher.service.history)
    def customer_records(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskRecord]]:
        """The customer's tasks across channels, newest first, at most `limit`, each with its
        attributes and its events in order."""
    def merge_customers(
        self, survivor_id: str, merged_id: str, events: Sequence[Event]
    ) -> Deferred[MergedCustomers]:
        """Move every identity and task of `merged_id` to `survivor_id` and append `events`,
        in one transaction ordered with the other writes (the merged customer row stays, empty).
        """

    # e-mail (dispatcher.service.mail)
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
        """As `create_task`, and in the same transaction: give the task its request number
        (unique), store its messages (with attachments) and queue the outbox items. Fires with
        the customer id once committed."""
    def add_mail(self, messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        """Store messages of existing tasks together with a batch of changes, atomically."""
    def find_mail_task(
        self,
        request_number: int | None = None,
        message_ids: Sequence[str] = (),
        task_id: str | None = None,
    ) -> Deferred[Task | None]:
        """The task with this request number, else the newest task holding one of these
        Message-IDs, else the task with this id; None if there is none."""
    def mail_messages(self, task_id: str) -> Deferred[list[MailMessage]]:
        """The task's messages in order (attachments included)."""
    def last_mail_to(self, peer: str, kind: str) -> Deferred[float | None]:
        """When the newest message of `kind` with this peer was created, or None."""
    def max_request_number(self) -> Deferred[int]:
        """The highest request number given so far (0 when none)."""
    def known_mail_sources(self, sources: Sequence[str]) -> Deferred[set[str]]:
        """Which of these `MailMessage.source` keys are already stored."""
    def due_mail(self, now: float, limit: int) -> Deferred[list[OutboundMail]]:
        """Pending `email` outbox items whose next attempt is due, oldest first."""
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
        """Record a delivery attempt: the outbox item's state (`sent` and `dead` are final;
        `retrying` stays pending until `next_attempt_at`), the message's status, and events."""
