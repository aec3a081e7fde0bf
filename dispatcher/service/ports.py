"""Ports: what the service layer needs from the outside, as Protocols.

Implemented by `dispatcher.storage.sql.SqlStore` (SQLAlchemy Core on a thread pool, the real
one), `dispatcher.storage.memory.MemoryStore` (in-process, for the simulator and unit tests;
proven by the same contract suite) and the reactor's `IReactorTime` for the clock.

Every method returns a Deferred. A Deferred from `record` or `create_task` fires only after the
data is committed: callers acknowledge the outside world after that, never before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.answers import (
    Answer,
    AnswerVersion,
    Article,
    Deflection,
    ResponseRule,
    ReviewItem,
)
from dispatcher.domain.categories import Category, CategoryRule
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Task


@dataclass(frozen=True)
class Revocations:
    """What is revoked: token ids, and per subject the time before which its tokens are (the
    revocation store's answer; the rules are in service/tokens.py)."""

    jtis: frozenset[str] = frozenset()
    subjects: Mapping[str, float] = field(default_factory=dict)


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


class IdentityTaken(InvalidValue):
    """An identity given to a customer belongs to another customer (`Store.edit_customer`):
    the two are the same person, to be merged, not to share an identity."""

    def __init__(self, identity: Identity, owner_id: str) -> None:
        super().__init__(f"{identity.kind} {identity.value} belongs to customer {owner_id}: "
                         "merge the two customers instead")
        self.identity, self.owner_id = identity, owner_id


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
    # What intake noted: an e-mail's `request` and `subject`, a call's `caller`, ...
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing keeps: each field set must match (None: any)."""

    state: str | None = None
    queue: str | None = None
    channel: str | None = None
    agent: str | None = None  # the agent holding or offered it (`TaskSummary.agent_id`)
    customer: str | None = None

    def keeps(self, task: TaskSummary, after: tuple[float, str] | None = None) -> bool:
        """Whether a listing keeps `task`: every field set matches, and it comes after the
        cursor `after` (newest first: `(created_at, id)` below it). The SQL store says the same
        in its WHERE clause."""
        return (self.state in (None, task.state) and self.queue in (None, task.queue)
                and self.channel in (None, task.channel)
                and self.agent in (None, task.agent_id)
                and self.customer in (None, task.customer_id)
                and (after is None or (task.created_at, task.id) < after))


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
class CustomerHistory:
    """What `Store.customer_history` read in one transaction: the customer (None: no such
    customer) and their newest tasks with their events, as `customer_records` gives them."""

    customer: Customer | None
    records: list[TaskRecord]


@dataclass(frozen=True, slots=True)
class StoredTask:
    """What `Store.intake_task` committed: the task's customer id and, when this intake created
    that customer, the customer as stored (`new`; the task is then their only task, unless
    another intake of the same transaction joined them). None: the customer existed before."""

    customer_id: str
    new: Customer | None = None


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
    content_id: str | None = None  # an inline part's Content-ID (HTML refers to it as cid:)


# `MailMessage.kind` of an acknowledgement: what the store looks for when it reads the last
# one a sender was sent (`Store.create_mail_task`).
ACK_KIND = "ack"


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One e-mail of a task's conversation, inbound or outbound. `raw` is the message exactly as
    received or sent; the parsed fields are what could be read from it (`malformed` and
    `defects` say what could not). `peer` is the customer-side address, lower-cased. `status`:
    received | queued | sent | retrying | dead | bounced. `kind`: customer | reply | ack |
    auto_reply (a robot's answer, recorded on the thread) | dsn (a delivery report) | consult
    | redirect."""

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
    cc_addrs: tuple[str, ...] = ()
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class NewMail:
    """A new e-mail task as `Store.create_mail_task` stores it: the task, its events
    (`task.created` first), its messages and its outbox items, and its preview (the first
    lines of the mail, stored with the task but not among its attributes: the router does not
    hold it; readers of the store find it among them, `Store.previews` by task)."""

    task: Task
    events: Sequence[Event] = ()
    messages: Sequence[MailMessage] = ()
    outbox: Sequence[OutboxItem] = ()
    preview: str | None = None


# What a new e-mail task becomes once the store gave it its request number (the number is
# taken in the transaction that stores the task, so the rows that name it are made there), given
# too when the sender the call named (`ack_peer`) was last sent an acknowledgement, as that same
# transaction read it (None: never, or no sender named).
Numbering = Callable[[int, float | None], NewMail]


@dataclass(frozen=True, slots=True)
class StoredMail:
    """What `Store.create_mail_task` committed: the customer's id, the request number the store
    gave, and the task with its rows as stored; `new` as in `StoredTask` (the customer as
    stored when this intake created them)."""

    customer_id: str
    number: int
    mail: NewMail
    new: Customer | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """A file an agent uploaded for a reply (it becomes one of the reply's attachments)."""

    id: str
    owner: str  # the agent
    filename: str
    content_type: str
    size: int
    content: bytes
    created_at: float


class UploadStore(Protocol):
    def put(self, upload: Upload) -> Deferred[None]:
        """Store a file (committed when the Deferred fires)."""
    def take(self, owner: str, ids: Sequence[str]) -> Deferred[list[Upload]]:
        """The owner's files with these ids, in that order (others' are not found)."""
    def drop(self, ids: Sequence[str]) -> Deferred[None]:
        """Remove files (once a reply carrying them is committed)."""
    def prune(self, before: float) -> Deferred[int]:
        """Remove files uploaded before `before`; how many."""


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery status notification (RFC 3464): what happened to one of our messages."""

    original_message_id: str | None
    recipients: tuple[DsnRecipient, ...] = ()
    reporting_mta: str = ""

    @property
    def failed(self) -> bool:
        return any(r.action == "failed" for r in self.recipients)


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

    def intake_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[StoredTask]:
        """`create_task`, firing with a StoredTask: the customer id, and the customer as stored
        when this intake created them (so that their card is known without a read)."""

    def record(self, changes: Changes) -> Deferred[None]:
        """Commit one batch of changes (group commit may merge several calls)."""

    # start-up
    def load_state(self) -> Deferred[State]: ...

    def last_event_at(self) -> Deferred[float | None]:
        """When the newest event of the task and agent logs happened; None when both are
        empty (the recovery of calls lost in a crash dates their end by it)."""

    # configuration (`events`: its audit in the agent log, in the same transaction)
    def put_queue(self, queue: Queue, events: Sequence[Event] = ()) -> Deferred[None]: ...
    def put_agent(self, agent: Agent, events: Sequence[Event] = ()) -> Deferred[None]:
        """Insert or update an agent's configuration (name, skills, queues, capacity, channels,
        disabled); presence is not stored: agents start offline."""
    def put_calendar(self, calendar: Calendar, events: Sequence[Event] = ()) -> Deferred[None]:
        ...
    def remove_queue(self, name: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        """Delete a queue's configuration and every agent's membership of it (tasks keep its
        name); False when there was no such queue (nothing written)."""
    def remove_agent(self, agent_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        """Delete an agent's configuration, skills and memberships (tasks and the logs keep
        the id); False when there was no such agent (nothing written)."""
    def list_queues(self) -> Deferred[list[Queue]]: ...
    def list_agents(self) -> Deferred[list[Agent]]: ...

    # queries
    def get_customer(self, customer_id: str) -> Deferred[Customer | None]: ...
    def find_customer(self, identity: Identity) -> Deferred[Customer | None]: ...
    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = 1000,
        newest_first: bool = False,
    ) -> Deferred[list[TaskSummary]]:
        """Tasks in arrival order (newest first when asked), at most `limit`."""
    def page_tasks(
        self, where: TaskFilter, after: tuple[float, str] | None, limit: int,
    ) -> Deferred[list[TaskSummary]]:
        """The tasks matching `where`, newest first (by `(created_at, id)`, descending), only
        those strictly after the key `after` in that order, at most `limit` (ask for one more
        than a page to learn whether another follows). A keyset query: its cost is the page's,
        not the table's."""
    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]: ...
    def previews(self, task_ids: Sequence[str]) -> Deferred[dict[str, str]]:
        """The previews of those of the stored tasks `task_ids` that have one (as their
        attributes are shown by reads of the store: `NewMail.preview`), by task id."""
    def list_calendars(self) -> Deferred[list[Calendar]]: ...
    def customer_tasks(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskSummary]]:
        """The customer's tasks across channels, newest first."""
    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        """The task's trail in order."""

    # customer history (dispatcher.service.history)
    def customer_records(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskRecord]]:
        """The customer's tasks across channels, newest first, at most `limit`, each with its
        attributes and its events in order."""
    def customer_history(self, customer_id: str, limit: int = 50
                         ) -> Deferred[CustomerHistory]:
        """`get_customer` and `customer_records` in one read (one transaction)."""
    def merge_customers(
        self, survivor_id: str, merged_id: str, events: Sequence[Event]
    ) -> Deferred[MergedCustomers]:
        """Move every identity and task of `merged_id` to `survivor_id` and append `events`,
        in one transaction ordered with the other writes (the merged customer row stays, empty).
        """

    # customers (dispatcher.service.customers): the supervisors' search and corrections
    def search_customers(self, needles: Sequence[str], limit: int = 50
                         ) -> Deferred[list[Customer]]:
        """Customers whose name, lower-cased, or the value of one of whose identities
        contains one of `needles` (lower-case; `%` and `_` are plain characters), newest first
        (ties: by id), at most `limit`."""
    def edit_customer(self, customer_id: str, name: str, identities: Sequence[Identity],
                      events: Sequence[Event]) -> Deferred[Customer | None]:
        """Set the customer's name, make `identities` their whole set of identities and
        append `events`, in one transaction ordered with the other writes; fire with the
        customer as stored, or None (nothing written) when there is no such customer. Fails
        with IdentityTaken, nothing written, when one of them belongs to another customer."""

    # e-mail (dispatcher.service.mail)
    def create_mail_task(
        self,
        draft: NewMail,
        identity: Identity | None,
        customer_name: str,
        numbered: Numbering | None = None,
        ack_peer: str | None = None,
    ) -> Deferred[StoredMail]:
        """As `create_task`, and in the same transaction: take the next request number (never
        given twice, increasing in the order of the calls; a number whose transaction rolled
        back may be skipped), read when `ack_peer` (a bare address) was last sent an
        acknowledgement (a message of kind "ack"; None: never, or no `ack_peer`), then store
        `numbered(number, last_ack)` (else `draft`): the task, its events, messages (with
        attachments) and outbox items, and the request. `numbered` runs inside the store's
        transaction, on its thread: it must be pure and keep the draft's task id and message
        ids (the draft names the rows the call touches). Fires with the StoredMail once
        committed."""
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
    def mail_messages(self, task_id: str, content: bool = True
                      ) -> Deferred[list[MailMessage]]:
        """The task's messages in order (attachments included); without `content`, no raw
        bytes and no attachment contents."""
    def mail_message(self, id: str | None = None, message_id: str | None = None,
                     direction: str | None = None) -> Deferred[MailMessage | None]:
        """One message by row id, or the newest with that Message-ID (and direction)."""
    def mark_mail(self, message: str, status: str, error: str | None,
                  messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        """Record a new delivery status of a message (a bounce) and store `messages` (the
        report) with `changes`, in one transaction. Stored messages never change: the status is
        appended, and `mail_messages`/`mail_message` show the newest."""
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
        `retrying` stays pending until `next_attempt_at`), the message's new status (appended,
        as in `mark_mail`), and events."""


# --- phone --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhoneAccount:
    """An agent's phone: SIP digest credentials (HA1 hashes made with `realm`, never the
    password) and/or the agent's extension on a PBX that reports to us over CTI."""

    agent_id: str
    sip_user: str | None
    realm: str
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """The contact an agent's phone registered last (one per agent; the latest REGISTER wins).
    `source` is where the REGISTER came from ("udp:127.0.0.1:5071"), `expires_at` in reactor
    seconds; `call_id`/`cseq` order refreshes (RFC 3261 §10.3)."""

    agent_id: str
    contact: str
    expires_at: float
    source: str
    call_id: str
    cseq: int


class PhoneStore(Protocol):
    """Phone accounts and registrar bindings. Every write commits before its Deferred fires;
    an account's change commits with its audit `events` (agent log) in one transaction."""

    def put_phone_account(self, account: PhoneAccount, events: Sequence[Event] = ()
                          ) -> Deferred[None]: ...
    def remove_phone_account(self, agent_id: str, events: Sequence[Event] = ()
                             ) -> Deferred[bool]:
        """False (nothing written, events included) when the agent has no account."""
    def list_phone_accounts(self) -> Deferred[list[PhoneAccount]]: ...
    def put_binding(self, binding: Binding) -> Deferred[None]: ...
    def remove_binding(self, agent_id: str) -> Deferred[None]: ...
    def list_bindings(self) -> Deferred[list[Binding]]: ...


# --- answers, knowledge base, response modes, quality review (dispatcher.service.answers) -----


@dataclass(frozen=True, slots=True)
class ReviewFigures:
    """Quality-review figures of one (queue, agent): decided items and checklist points.
    `agent_id` None: automatic answers."""

    queue: str
    agent_id: str | None
    reviewed: int
    approved: int
    edited: int
    rejected: int
    score: int
    max_score: int


class AnswerStore(Protocol):
    """The answer library (with version history), the knowledge base and its /help feedback,
    the response-mode rules and the review items. Writes that touch a task (holding an answer,
    deciding on one) commit together with the task's events and outbound mail."""

    # library
    def save_answer(self, answer: Answer, version: AnswerVersion,
                    events: Sequence[Event] = ()) -> Deferred[None]:
        """Store `answer` (dispatcher.domain.answers.Answer) as current and append `version`
        (AnswerVersion) and `events` (the agent log: who changed the library), atomically; a
        version number already stored for this answer is an error."""
    def get_answer(self, answer_id: str) -> Deferred[Answer | None]: ...
    def list_answers(self, include_retired: bool = False) -> Deferred[list[Answer]]: ...
    def answer_versions(self, answer_id: str) -> Deferred[list[AnswerVersion]]:
        """Every version of the answer, oldest first."""

    # knowledge base
    def put_article(self, article: Article) -> Deferred[None]: ...
    def list_articles(self, include_retired: bool = False) -> Deferred[list[Article]]: ...
    def record_help(self, article_id: str, at: float, helped: bool | None) -> Deferred[None]:
        """One /help event: a view (`helped` None) or a visitor's yes/no."""
    def deflections(self) -> Deferred[list[Deflection]]:
        """Per article: views, helped, not helped (dispatcher.domain.answers.Deflection)."""

    # response modes
    def put_mode_rule(self, rule: ResponseRule) -> Deferred[None]: ...
    def remove_mode_rule(self, queue: str, category: str) -> Deferred[bool]: ...
    def list_mode_rules(self) -> Deferred[list[ResponseRule]]: ...
    def put_agent_review(self, agent_id: str, share: float | None) -> Deferred[None]:
        """The agent's own review share (None removes it)."""
    def agent_reviews(self) -> Deferred[dict[str, float]]: ...
    def answered_examples(self, limit: int) -> Deferred[list[tuple[str, str]]]:
        """(answer_id, customer text) of the newest replies sent with a library answer: the
        past replies the ranking learns from."""

    # quality review
    def hold_review(self, item: ReviewItem, events: Sequence[Event]) -> Deferred[None]:
        """Store a held ReviewItem with the task's events, atomically."""
    def decide_review(self, item: ReviewItem, messages: Sequence[MailMessage],
                      changes: Changes) -> Deferred[None]:
        """Store the decision on a held item with the mail it sends and the task's changes,
        atomically; fails with InvalidValue if the item was already decided."""
    def get_review(self, item_id: str) -> Deferred[ReviewItem | None]: ...
    def list_reviews(self, state: str | None = "held", limit: int = 100) -> Deferred[list[ReviewItem]]:
        """Items in `state` (None: all), oldest first."""
    def review_figures(self) -> Deferred[list[ReviewFigures]]:
        """Per (queue, agent): the decided items and their checklist points."""


# --- codification and collaboration (issue 7: categories, spam, notes, consults, reminders) ---


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """A labelled text for the category classifier: from an agent's correction, from a task
    completed with its category, or imported. `id` is given by the store."""

    text: str
    category: str
    source: str  # agent | disposition | import
    at: float
    task_id: str | None = None
    actor: str = "system"
    id: int | None = None


@dataclass(frozen=True, slots=True)
class TaskNote:
    """An internal note on a task: never sent to the customer."""

    task_id: str
    author: str  # actor: agent:<id> | supervisor:<sub> | system
    text: str
    at: float
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Consult:
    """An expert outside the centre asked by e-mail about a task; `token` is in the subject of
    the outbound mail, so the expert's reply threads back into the task."""

    token: str
    task_id: str
    agent_id: str
    expert: str  # lower-cased address
    message_id: str | None
    created_at: float
    answered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reminder:
    """A task set aside until `due_at` (its deadline paused from `created_at`). state: pending |
    done | superseded (the task came back before, e.g. the customer wrote)."""

    id: str
    task_id: str
    agent_id: str
    due_at: float
    created_at: float
    note: str = ""
    state: str = "pending"


class CodificationStore(Protocol):
    """Categories, their rules and the classifier's training examples."""

    def put_category(self, category: Category, events: Sequence[Event] = ()
                     ) -> Deferred[None]:
        """Insert or replace a category, with its audit `events` in the same transaction."""
    def list_categories(self) -> Deferred[list[Category]]: ...
    def add_rule(self, rule: CategoryRule, events: Sequence[Event] = ()) -> Deferred[int]:
        """Store a rule with its audit `events` (the new id added to their data as `rule`);
        fires with its id."""
    def remove_rule(self, rule_id: int, events: Sequence[Event] = ()) -> Deferred[bool]:
        """False (nothing written, events included) when there is no such rule."""
    def list_rules(self) -> Deferred[list[CategoryRule]]:
        """Every rule, in evaluation order (position, id)."""
    def add_examples(self, examples: Sequence[TrainingExample]) -> Deferred[None]: ...
    def examples(self, limit: int) -> Deferred[list[TrainingExample]]:
        """The newest `limit` examples, oldest first."""
    def example_count(self) -> Deferred[int]: ...


class CollaborationStore(Protocol):
    """Notes, consults and reminders, each written atomically with its task events (and, for a
    consult, its e-mail and outbox item)."""

    def add_note(self, note: TaskNote, changes: Changes) -> Deferred[int]: ...
    def notes(self, task_id: str) -> Deferred[list[TaskNote]]: ...
    def add_consult(self, consult: Consult, messages: Sequence[MailMessage],
                    changes: Changes) -> Deferred[None]: ...
    def find_consult(self, token: str | None = None,
                     message_ids: Sequence[str] = ()) -> Deferred[Consult | None]:
        """The consult with this token, else the one whose outbound Message-ID is one of
        `message_ids`; None if none."""
    def answer_consult(self, token: str, at: float, messages: Sequence[MailMessage],
                       changes: Changes) -> Deferred[None]: ...
    def consults(self, task_id: str) -> Deferred[list[Consult]]: ...
    def add_reminder(self, reminder: Reminder, changes: Changes) -> Deferred[None]: ...
    def pending_reminders(self) -> Deferred[list[Reminder]]: ...
    def settle_reminder(self, reminder_id: str, state: str,
                        changes: Changes) -> Deferred[None]: ...


# --- reports (issue 6: statistics from the event log) -----------------------------------------

# A chunk of events as the report fold reads them: objects with kind, at, task_id, agent_id,
# actor, data (`dispatcher.domain.metrics.EventRecord`); valid only during the call.
EventSink = Callable[[Sequence[Any]], None]
Progress = Callable[[int, int], None]  # (events read so far, events in the period)
# How far before `start` an agent's last status is looked for (bounds the scan of the agent log
# for an old period); an agent with no status change in that time counts as offline.
STATUS_LOOKBACK_SECONDS = 31 * 86_400.0


class ReportStore(Protocol):
    """Reads the two event logs (task_events, agent_events) for reports and the live view,
    streamed in chunks, never the whole period at once."""

    def fold_events(self, start: float, end: float, sink: EventSink,
                    progress: Progress | None = None, context: bool = True) -> Deferred[int]:
        """Call `sink(chunk)` with every event in time order (ties: log order), first the
        context (unless `context` is False), then the period:

        - context (all before `start`): every earlier event of the tasks still open at `start`
          (or changed after it: a task completed later, a reopened e-mail), and each agent's
          last `agent.status` before `start` (within STATUS_LOOKBACK_SECONDS);
        - the period: every event of both logs with `start <= at < end`.

        A store may leave out what no figure of `metrics.Tally` reads: the kinds it does not
        fold, the data of the kinds whose fold does not read it (given as {}), and context
        events that set no task's state (the SQL store does: storage/reports.py).

        `sink` and `progress` run on the store's reading thread (the SQL store) or at once (the
        memory store): they must not touch the reactor. Fires with the number of events of the
        period given to `sink`, once the last chunk was given to it."""

    def count_events(self, start: float, end: float) -> Deferred[int]:
        """How many events of the period [start, end) `fold_events` would give (no context)."""

    def save_checkpoint(self, make: Callable[[], ReportCheckpoint]) -> Deferred[int]:
        """Store the checkpoint `make()` returns in place of the one of its name, its data as
        JSON; fires with the JSON's length. `make` runs where `fold_events`' sink runs (the
        store's reading thread), so a fold in progress is not delayed by it; the caller makes
        sure no fold of its own changes what `make` reads meanwhile."""

    def load_checkpoint(self, name: str, decode: Callable[[ReportCheckpoint | None], Any]
                        ) -> Deferred[Any]:
        """`decode(checkpoint)` of the stored checkpoint of `name` (None if there is none), run
        where `save_checkpoint`'s `make` runs; its data is the JSON read back (None when it is
        not JSON). Fires with what `decode` returns, or fails with what it raises."""


@dataclass(frozen=True, slots=True)
class ReportCheckpoint:
    """A fold's state saved so that it resumes instead of folding again (today's figures:
    service/reports.py, migration 0019): whose (`name`), of which day (`day_start`), in which
    format (`version`), when (`saved_at`); `data` is plain JSON data."""

    name: str
    day_start: float
    version: int
    saved_at: float
    data: Any


# --- accounts: who signs in to the console (migration 0006) ----------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A person who signs in to the console: an agent (`id` is the agent's id) or a supervisor.
    `password_hash` is an argon2 hash, never the password; None: no password (tokens only)."""

    id: str
    role: str  # agent | supervisor
    name: str
    password_hash: str | None
    disabled: bool
    created_at: float
    updated_at: float


class AccountStore(Protocol):
    """Accounts, and the audit of their changes in the agent log (same transaction)."""

    def get_account(self, account_id: str) -> Deferred[Account | None]: ...
    def list_accounts(self) -> Deferred[list[Account]]:
        """Every account, by id."""
    def put_account(self, account: Account, events: Sequence[Event] = ()) -> Deferred[None]:
        """Insert or replace the account (an existing one keeps its `created_at`) and append
        `events` to the agent log, atomically."""
    def remove_account(self, account_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        """Delete the account and append `events`; False (and nothing written) if none."""
    def replace_hash(self, account_id: str, old: str, new: str, now: float) -> Deferred[bool]:
        """Set the password hash to `new` only if it is still `old` (a rehash never undoes a
        change made meanwhile); whether it did."""


class RevocationStore(Protocol):
    """Revoked bearer tokens, by `jti` (until the token's own expiry) and by subject ("every
    token issued before")."""

    def revoke_token(self, jti: str, expires_at: float, now: float,
                     actor: str) -> Deferred[None]: ...

    def revoke_subject(self, subject: str, not_before: float, now: float,
                       actor: str) -> Deferred[None]: ...

    def revocations(self, now: float) -> Deferred[Revocations]: ...


class SecretStore(Protocol):
    """Secrets shared by every process on the database (the console's token key)."""

    def shared_secret(self, name: str, candidate: bytes, now: float) -> Deferred[bytes]:
        """The secret stored under `name`; when there is none, `candidate` is stored first.
        Race-safe: of several processes storing at once, one wins and all get its value."""


# --- webhooks (dispatcher/service/webhooks.py, dispatcher/storage/webhooks.py) ------------------

WEBHOOK_PENDING = "pending"
WEBHOOK_DELIVERED = "delivered"
WEBHOOK_DEAD = "dead"
WEBHOOK_STATES = (WEBHOOK_PENDING, WEBHOOK_DELIVERED, WEBHOOK_DEAD)


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    """Another system's subscription to the event logs; its secret is never part of it."""

    id: str
    url: str
    kinds: tuple[str, ...]  # event kinds, "family.*" or "*"
    created_at: float
    created_by: str
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event to one subscription, and how its delivery went."""

    id: int
    subscription_id: str
    event_id: str  # "task-<id>" | "agent-<id>": the receiver's de-duplication key
    kind: str
    state: str  # pending | delivered | dead
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None


@dataclass(frozen=True, slots=True)
class WebhookDue:
    """A pending delivery whose time has come, with what its POST needs."""

    id: int
    subscription_id: str
    url: str
    secret: str
    event_id: str
    payload: dict[str, Any]
    attempts: int


class WebhookStore(Protocol):
    """Subscriptions and their deliveries. A change's audit `events` go to the agent log in the
    same transaction."""

    def add_subscription(self, subscription: WebhookSubscription, secret: str,
                         events: Sequence[Event] = ()) -> Deferred[None]:
        """Store it with its cursors at the end of both logs: only later events reach it."""
    def subscriptions(self) -> Deferred[list[WebhookSubscription]]: ...
    def subscription(self, subscription_id: str) -> Deferred[WebhookSubscription | None]: ...
    def remove_subscription(self, subscription_id: str,
                            events: Sequence[Event] = ()) -> Deferred[bool]:
        """Delete it and its deliveries; False (nothing written) when there is none."""
    def deliveries(self, subscription_id: str, state: str | None, limit: int,
                   before: int | None) -> Deferred[list[WebhookDelivery]]:
        """Newest first; `before`: only ids below it (the next page)."""
    def redeliver(self, subscription_id: str, delivery_id: int, now: float,
                  events: Sequence[Event] = ()) -> Deferred[bool]:
        """Make the delivery pending again, due at `now`, attempts from zero; False (nothing
        written) when the subscription has no such delivery."""
    def fan_out(self, now: float, settle: float, limit: int,
                matches: Callable[[Sequence[str], str], bool]) -> Deferred[int]:
        """For each enabled subscription, turn the events committed after its cursors whose
        kind `matches` its kinds into pending deliveries and advance the cursors, in one
        transaction; an id missing from a log holds its cursor back until the event after it
        is `settle` seconds old (a transaction that took that id may still commit). Returns how
        many deliveries it made."""
    def due(self, now: float, each: int,
            exclude: Sequence[int] = ()) -> Deferred[list[WebhookDue]]:
        """Pending deliveries due by `now` (ids in `exclude` left out): of each enabled
        subscription, its `each` oldest."""
    def delivered(self, delivery_id: int, now: float, status: int) -> Deferred[None]: ...
    def failed(self, delivery_id: int, now: float, status: int | None, error: str,
               next_attempt_at: float | None) -> Deferred[None]:
        """One more failed attempt; `next_attempt_at` None: give up (dead)."""
    def prune(self, delivered_before: float) -> Deferred[int]:
        """Forget deliveries delivered before that time (dead ones stay); how many."""
    def dead_count(self) -> Deferred[int]:
        """How many deliveries are dead (of every subscription): one index count."""


class WebhookPoster(Protocol):
    """POSTs one body; fires with the HTTP status, or fails (connection error, or no answer
    within `timeout` seconds)."""

    def post(self, url: str, headers: dict[str, str], body: bytes,
             timeout: float) -> Deferred[int]: ...


class EdgeReactor(Protocol):
    """The reactor as the edges use it: the real one in `serve`, a `task.Clock` (with what a
    test needs) elsewhere. Time and timers (IReactorTime), ports and connections (IReactorTCP,
    IReactorUDP), the e-mail parsers' processes (IReactorProcess) and thread pool
    (IReactorThreads), and shutdown triggers (IReactorCore); the names are Twisted's."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, fn: Callable[..., Any],
                  *args: Any, **kw: Any) -> Any: ...
    def listenTCP(self, port: int, factory: Any, backlog: int = 50,  # noqa: N802 - Twisted API
                  interface: str = "") -> Any: ...
    def connectTCP(self, host: str, port: int, factory: Any,  # noqa: N802 - Twisted API
                   timeout: float = 30, bindAddress: Any = None) -> Any: ...  # noqa: N803
    def listenUDP(self, port: int, protocol: Any, interface: str = "",  # noqa: N802
                  maxPacketSize: int = 8192) -> Any: ...  # noqa: N803 - Twisted API
    def spawnProcess(self, processProtocol: Any, executable: Any,  # noqa: N802, N803
                     *args: Any, **kw: Any) -> Any: ...
    def getThreadPool(self) -> Any: ...
    def addSystemEventTrigger(self, phase: str, eventType: str,  # noqa: N803
                              fn: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class HeldMail:
    """A message a node that does not route accepted, until the router takes it in (held.py)."""

    id: str
    received_at: float
    node: str
    queue: str
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes
    verdict: Mapping[str, Any] | None  # the sender checks' fields (authenticity.Verdict)
    attempts: int = 0
    next_attempt_at: float = 0.0
    error: str | None = None


class HeldStore(Protocol):
    """Held mail on the database (storage/held.py)."""

    def hold(self, mail: HeldMail) -> Deferred[None]: ...

    def waiting(self, now: float, limit: int) -> Deferred[list[HeldMail]]: ...

    def taken(self, ids: Sequence[str]) -> Deferred[None]: ...

    def retry_later(self, id: str, attempts: int, next_attempt_at: float,
                    error: str) -> Deferred[None]: ...

    def oldest(self) -> Deferred[tuple[int, float | None]]: ...


@dataclass(frozen=True)
class NodeAddress:
    """Where a node of the cluster can be reached (service/nodes.py): the host other nodes use,
    and the URL of each endpoint it serves by kind (`http`, `console`, `cti`, `sip`,
    `sip_tcp`)."""

    name: str
    host: str
    endpoints: dict[str, str]
    started_at: float


class NodeStore(Protocol):
    """The nodes of a cluster on the database (storage/nodes.py)."""

    def publish(self, node: NodeAddress) -> Deferred[None]: ...

    def nodes(self) -> Deferred[list[NodeAddress]]: ...

    def leader(self) -> Deferred[NodeAddress | None]: ...  # the lease's unexpired holder
