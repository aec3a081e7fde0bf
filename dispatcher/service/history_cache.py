"""The customer history cache: the card and timeline every offer carries, served from memory so
that an offer leaves without a query, kept equal to what the database holds.

Sits in the service layer under `history.py` (`History.view` asks it first). Every write of the
process reaches the database through one `Store` port, which the runtime wraps in a
`WatchedStore`; the cache hears each write when it is issued and applies it when it is
committed (before the writer's own callbacks run, so before the console builds an offer or an
assigned frame from that commit). What it promises:
- Bounded: at most `customers` customers (least recently used first out, default
  `HISTORY_CACHE_CUSTOMERS`), each with their `depth` newest tasks (the timeline's length).
- A cached view equals a fresh read of the store: new tasks (intake, e-mail intake) join their
  customer's timeline when their commit fires; task rows and events of a committed batch update
  the entries they concern with the same rule as a read (`history.fold`); a failed write
  changes nothing. An edit replaces the card with the customer as stored; a merge, or a batch
  that moves a cached task to another customer, drops both customers (read again on next use).
- A miss reads the store (the customer, and their newest tasks with their events). The writes
  concerning that customer which overlap the read are resolved task by task: a task's writes
  commit in order, so the read saw a prefix of them, which its event trail ends with; the
  later ones are applied (at once if committed, else at their commit) and the ones it saw are
  not applied twice. A read overlapped by what it cannot resolve (a task row written without
  events, an edit, a merge, an event on a task whose customer it cannot tell) answers
  its callers as a plain read but is not kept; it is tried again once that customer's writes
  have settled. Concurrent misses share one read.
- Filled ahead of the offer without a read when the intake created the customer: the store
  says so (`Store.intake_task`: the customer as its transaction inserted them), and a new
  customer's history is their card and this one task, so the card is kept at the task's commit
  (unless a read or a write of theirs is already in flight: then as below).
- Otherwise filled ahead of the offer: when a new task's commit fires for a customer not
  cached, their history is read at once (prefetch, one read: `Store.customer_history`); the
  offer frame that follows shares that read, or finds the card in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Task

from .history import (
    FOLDED_KINDS,
    TIMELINE_LIMIT,
    CustomerView,
    Fold,
    TimelineEntry,
    UnknownCustomer,
    card_of,
    entry_of,
    fold,
    preview_from,
    preview_of,
    preview_source,
    subject_of,
)
from .ports import (
    Changes,
    Customer,
    CustomerHistory,
    Identity,
    MailMessage,
    NewMail,
    Numbering,
    Store,
    StoredMail,
    StoredTask,
    TaskRecord,
)

# Customers kept in memory (each with at most `depth` timeline entries: a few KB each).
HISTORY_CACHE_CUSTOMERS = 10_000
# A read that saw writes in flight is tried again (once they settled) at most this many times.
FILL_RETRIES = 2


@dataclass(slots=True)
class _Row:
    """What a task row tells a timeline, taken when the write is issued (the router goes on
    changing its tasks)."""

    task_id: str
    customer_id: str | None
    channel: str
    queue: str
    state: str
    at: float
    agent_id: str | None
    subject: str | None
    preview: str | None
    # What the preview was made of (history.py `preview_source`): a later row of the task whose
    # source is this very string takes the preview as it is, instead of making it again.
    source: Any = None

    @classmethod
    def of(cls, task: Task, before: _Row | None = None, stored: str | None = None) -> _Row:
        """The row of `task` now; `before`, an earlier row of it, may lend its preview.
        `stored`: the preview stored with the task (NewMail.preview), which its attributes do
        not hold; a later row of such a task takes its preview from `before` (or `_apply`
        keeps the entry's): the column is written once."""
        channel = getattr(task.channel, "_value_", task.channel)  # `value` is a descriptor
        attrs = task.attributes
        source = preview = None
        if channel == "email":
            source = preview_source(attrs)
            if source is None:
                source = stored
            if source is None and before is not None:
                source, preview = before.source, before.preview
            else:
                preview = (before.preview if before is not None and before.source is source
                           and source is not None else preview_from(source))
        return cls(task.id, task.customer_id, channel, task.queue,
                   getattr(task.state, "_value_", task.state), task.created_at, task.agent_id,
                   subject_of(attrs), preview, source)


@dataclass(slots=True)
class _Entry:
    """One cached task of a timeline: its row as last written (or read) and the fold of its
    events."""

    row: _Row
    folded: Fold = field(default_factory=Fold)

    def key(self) -> tuple[float, str]:
        return (self.row.at, self.row.task_id)

    @property
    def task_id(self) -> str:
        return self.row.task_id

    def entry(self) -> TimelineEntry:
        r, f = self.row, self.folded
        ended, answered = f.ended, f.answered
        return TimelineEntry(
            task_id=r.task_id, channel=r.channel, queue=r.queue, state=r.state,
            at=r.at, agent_id=f.agent_id or r.agent_id, disposition=f.disposition,
            subject=r.subject, preview=r.preview, answered_at=answered, ended_at=ended,
            duration=(ended - answered) if answered is not None and ended is not None else None,
        )


def _entry_of_record(record: TaskRecord) -> _Entry:
    s, attrs = record.summary, record.attributes
    entry = _Entry(_Row(s.id, s.customer_id, s.channel, s.queue, s.state, s.created_at,
                        s.agent_id, subject_of(attrs),
                        preview_of(attrs) if s.channel == "email" else None))
    for e in record.events:
        fold(entry.folded, e.kind, e.at, e.agent_id, e.data)
    return entry


@dataclass(slots=True)
class _Card:
    customer: Customer
    entries: dict[str, _Entry]
    views: dict[int, CustomerView] = field(default_factory=dict)  # by limit, until a change


@dataclass(slots=True)
class _Write:
    """One write: the customers it concerns and what it tells their timelines (taken when it is
    issued), whether it is committed, and the tasks a kept read already saw it on."""

    customers: set[str]
    rows: dict[str, _Row] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    unknown: bool = False  # an event on a task whose customer it cannot tell
    state: str = "issued"  # issued | committed | failed
    seen: set[str] = field(default_factory=set)

    def trail(self, task_id: str) -> list[tuple[str, float, str | None]]:
        return [(e.kind, e.at, e.agent_id) for e in self.events if e.task_id == task_id]


@dataclass(slots=True)
class _Fill:
    """A read in flight for one customer, and the writes concerning them that overlap it."""

    overlap: list[_Write]
    broken: bool = False  # overlapped by something it cannot tell whether it saw
    waiters: list[Deferred[CustomerView]] = field(default_factory=list)
    created: list[tuple[_Row, list[Event]]] = field(default_factory=list)


class HistoryCache:
    def __init__(self, store: Store | None = None, customers: int = HISTORY_CACHE_CUSTOMERS,
                 depth: int = TIMELINE_LIMIT) -> None:
        if customers < 0 or depth < 1:
            raise ValueError("a history cache needs customers >= 0 and depth >= 1")
        self.store = store  # the inner store (reads); set by WatchedStore
        self.customers = customers
        self.depth = depth
        self._cards: OrderedDict[str, _Card] = OrderedDict()
        self._owner: dict[str, str] = {}  # task id -> customer id, for the cached entries
        self._inflight: dict[str, list[_Write]] = {}  # customer id -> writes not settled
        self._fills: dict[str, _Fill] = {}
        self._retries: dict[str, int] = {}  # customers to read again once settled
        # Views answered from memory, views that waited on a read (their own or a prefetch's),
        # reads of the store, and new customers kept without a read.
        self.hits = self.misses = self.reads = self.born = 0

    def __len__(self) -> int:
        return len(self._cards)

    @property
    def reading(self) -> int:
        """Customers whose history is being read (a miss or a prefetch)."""
        return len(self._fills)

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._cards

    # ------------------------------------------------------------------ reading

    def cached(self, customer_id: str, limit: int) -> CustomerView | None:
        """The view from memory when cached (a hit), else None (nothing is read)."""
        card = self._cards.get(customer_id)
        if card is None or limit > self.depth:
            return None
        self.hits += 1
        self._cards.move_to_end(customer_id)
        return self._view(card, limit)

    def view(self, customer_id: str, limit: int) -> Deferred[CustomerView]:
        """The view from memory when cached (an already fired Deferred), else from the store."""
        found = self.cached(customer_id, limit)
        if found is not None:
            return succeed(found)
        self.misses += 1
        if limit > self.depth:
            return self._read(customer_id, limit)
        d: Deferred[CustomerView] = Deferred()
        d.addCallback(_cut, limit)
        fill = self._fills.get(customer_id)
        if fill is None or fill.broken:  # a broken read may predate a commit the caller saw
            self._fill(customer_id, d)
        else:  # it will answer with every write committed before it ends
            fill.waiters.append(d)
        return d

    def _view(self, card: _Card, limit: int) -> CustomerView:
        view = card.views.get(limit)
        if view is None:
            ordered = sorted(card.entries.values(), key=_Entry.key, reverse=True)[:limit]
            timeline = tuple(e.entry() for e in ordered)
            view = card.views[limit] = CustomerView(card_of(card.customer, timeline), timeline)
        return view

    def _both(self, customer_id: str, limit: int) -> Deferred[Any]:
        assert self.store is not None
        self.reads += 1
        d: Deferred[CustomerHistory] = self.store.customer_history(customer_id, limit)
        return d.addCallback(lambda found: (found.customer, found.records))

    def _read(self, customer_id: str, limit: int) -> Deferred[Any]:
        """A plain read, not kept (a longer timeline than the cache holds)."""

        def built(found: tuple[Customer | None, list[TaskRecord]]) -> CustomerView:
            customer, records = found
            if customer is None:
                raise UnknownCustomer(customer_id)
            timeline = tuple(entry_of(rec) for rec in records)
            return CustomerView(card_of(customer, timeline), timeline)

        return self._both(customer_id, limit).addCallback(built)

    def _fill(self, customer_id: str, waiter: Deferred[CustomerView] | None = None) -> _Fill:
        """Read a customer's history and keep it, unless it overlapped what it cannot tell."""
        fill = _Fill(overlap=list(self._inflight.get(customer_id, ())))
        if waiter is not None:
            fill.waiters.append(waiter)
        self._fills[customer_id] = fill
        self._both(customer_id, self.depth).addCallbacks(
            lambda found: self._filled(customer_id, fill, *found),
            lambda failure: self._fill_failed(customer_id, fill, failure))
        return fill

    def _filled(self, customer_id: str, fill: _Fill, customer: Customer | None,
                records: list[TaskRecord]) -> None:
        if self._fills.get(customer_id) is fill:
            del self._fills[customer_id]
        if customer is None:
            self._fill_failed(customer_id, fill, Failure(UnknownCustomer(customer_id)))
            return
        card = _Card(customer, {})
        trails: dict[str, list[tuple[str, float, str | None]]] = {}
        for record in records:
            card.entries[record.summary.id] = _entry_of_record(record)
            trails[record.summary.id] = [(e.kind, e.at, e.agent_id) for e in record.events]
        for row, events in fill.created:  # committed during the read, and not seen by it
            if row.task_id not in card.entries:
                self._insert(card, None, row, events)
                trails[row.task_id] = []  # nothing after its creation was seen either
        seen = None if fill.broken else self._resolve(card, trails, fill.overlap)
        view = self._view(card, self.depth)
        if seen is None:
            fill.broken = True
            if customer_id not in self._cards and self.customers:
                self._retries.setdefault(customer_id, FILL_RETRIES)
                self._retry(customer_id)
        elif customer_id not in self._cards and self.customers:
            for write, task_id in seen:
                write.seen.add(task_id)
            self._keep(customer_id, card)
            self._retries.pop(customer_id, None)
        for waiter in fill.waiters:
            waiter.callback(view)

    def _resolve(self, card: _Card, trails: dict[str, list[tuple[str, float, str | None]]],
                 overlap: list[_Write]) -> list[tuple[_Write, str]] | None:
        """Bring a card read while `overlap` was in flight up to the committed writes: per
        task, the read saw a prefix of its writes (they commit in order), which its event trail
        ends with; the committed ones after it are applied now, the ones in flight will be at
        their commit, and those it saw (returned) are not to be applied twice. None when a
        write's share cannot be told (a row without events)."""
        seen_by_read: list[tuple[_Write, str]] = []
        for task_id, trail in trails.items():
            writes = [w for w in overlap if w.state != "failed"
                      and (task_id in w.rows or w.trail(task_id))]
            if not writes:
                continue
            shares = [w.trail(task_id) for w in writes]
            if not all(shares):
                return None
            seen = 0
            for j in range(len(writes), 0, -1):
                tail = [e for share in shares[:j] for e in share]
                if trail[len(trail) - len(tail):] == tail:
                    seen = j
                    break
            entry = card.entries[task_id]
            for i, write in enumerate(writes):
                if i < seen:
                    seen_by_read.append((write, task_id))
                elif write.state == "committed":
                    _apply(entry, write, task_id)
        card.views.clear()
        return seen_by_read

    def _fill_failed(self, customer_id: str, fill: _Fill, failure: Failure) -> None:
        if self._fills.get(customer_id) is fill:
            del self._fills[customer_id]
        for waiter in fill.waiters:
            waiter.errback(failure)

    def _retry(self, customer_id: str) -> None:
        left = self._retries.get(customer_id)
        if (left is None or self._inflight.get(customer_id) or customer_id in self._fills
                or customer_id in self._cards):
            return
        if left <= 0:
            del self._retries[customer_id]
            return
        self._retries[customer_id] = left - 1
        self._fill(customer_id)

    def prefetch(self, customer_id: str) -> None:
        """Read a customer's history ahead of their offer, unless cached or being read."""
        if (self.customers and customer_id not in self._cards
                and customer_id not in self._fills and self.store is not None):
            self._fill(customer_id)

    def _keep(self, customer_id: str, card: _Card) -> None:
        self._cards[customer_id] = card
        for task_id in card.entries:
            self._owner[task_id] = customer_id
        while len(self._cards) > self.customers:
            self.drop(next(iter(self._cards)))

    def drop(self, customer_id: str) -> None:
        """Forget a customer (read again on next use)."""
        card = self._cards.pop(customer_id, None)
        if card is not None:
            for task_id in card.entries:
                if self._owner.get(task_id) == customer_id:
                    del self._owner[task_id]
        fill = self._fills.get(customer_id)
        if fill is not None:
            fill.broken = True

    # ------------------------------------------------------------------ writes

    def issued(self, tasks: Sequence[Task], events: Sequence[Event]) -> _Write:
        """A batch of task rows and events is being written: note whom it concerns."""
        write = _Write(set())
        customer_of: dict[str, str] = {}
        for task in tasks:
            if task.customer_id is not None:
                customer_of[task.id] = task.customer_id
                holder = self._owner.get(task.id)  # whose card holds it (it may be moving)
                before = None
                if holder is not None:
                    write.customers.add(holder)
                    card = self._cards.get(holder)
                    entry = card.entries.get(task.id) if card is not None else None
                    before = entry.row if entry is not None else None
                write.rows[task.id] = _Row.of(task, before)
        owner = self._owner
        for e in events:
            if e.task_id is None:
                continue
            customer_id = customer_of.get(e.task_id) or owner.get(e.task_id)
            if customer_id is not None:
                write.customers.add(customer_id)
                write.events.append(e)
            else:  # a read in flight could not match its trail: it will not be kept
                write.unknown = True
        write.customers.update(customer_of.values())
        for customer_id in write.customers:
            self._inflight.setdefault(customer_id, []).append(write)
            fill = self._fills.get(customer_id)
            if fill is not None:
                fill.overlap.append(write)
        if write.unknown:
            self.disturb(self._fills)
        return write

    def disturb(self, customers: Iterable[str]) -> None:
        """Something these customers' reads in flight cannot account for is being written."""
        for customer_id in list(customers):
            fill = self._fills.get(customer_id)
            if fill is not None:
                fill.broken = True

    def _settle(self, write: _Write) -> None:
        for customer_id in write.customers:
            writes = self._inflight.get(customer_id)
            if writes is not None:
                writes.remove(write)
                if not writes:
                    del self._inflight[customer_id]
        if write.unknown:
            self.disturb(self._fills)
        for customer_id in write.customers:
            if customer_id in self._retries:
                self._retry(customer_id)

    def committed(self, write: _Write) -> None:
        """The batch is committed: bring the cached timelines it concerns up to date."""
        write.state = "committed"
        changed: set[str] = set()
        for task_id, row in write.rows.items():
            owner = self._owner.get(task_id)
            if owner is not None and row.customer_id != owner:
                self.drop(owner)  # moved to another customer: both read again
                if row.customer_id is not None:
                    self.drop(row.customer_id)
        # The tasks this write tells of (a row, or events): looked up in each card, rather than
        # every entry of the card matched against the write (a card holds a whole timeline).
        touched = set(write.rows)
        touched.update(e.task_id for e in write.events if e.task_id is not None)  # all are
        touched -= write.seen
        for customer_id in write.customers:
            card = self._cards.get(customer_id)
            if card is None:
                continue
            entries = card.entries
            for task_id in touched:
                entry = entries.get(task_id)
                if entry is not None:
                    _apply(entry, write, task_id)
                    changed.add(customer_id)
        for customer_id in changed:
            self._cards[customer_id].views.clear()
        self._settle(write)

    def failed(self, write: _Write) -> None:
        """The batch was not committed: the database did not change."""
        write.state = "failed"
        self._settle(write)

    def created(self, customer_id: str, row: _Row, events: Sequence[Event],
                new: Customer | None = None) -> None:
        """A new task was committed for `customer_id` (with its first events); `new`: the
        customer as this task's transaction created them (their history is this task alone)."""
        if (new is not None and self.customers and customer_id not in self._cards
                and customer_id not in self._fills and customer_id not in self._inflight):
            card = _Card(new, {})
            self._insert(card, customer_id, row, events)
            self._keep(customer_id, card)
            self.born += 1
            return
        fill = self._fills.get(customer_id)
        if fill is not None:
            fill.created.append((row, list(events)))
        card = self._cards.get(customer_id)
        if card is not None:
            self._insert(card, customer_id, row, events)
            card.views.clear()
        else:
            self.prefetch(customer_id)

    def _insert(self, card: _Card, customer_id: str | None, row: _Row,
                events: Sequence[Event]) -> None:
        """Add a new task to a card (`customer_id`: the cached customer it belongs to, whose
        task index follows; None for a card not kept yet)."""
        entry = _Entry(row)
        for e in events:
            if e.task_id == row.task_id:
                fold(entry.folded, e.kind, e.at, e.agent_id, e.data)
        card.entries[row.task_id] = entry
        if customer_id is not None:
            self._owner[row.task_id] = customer_id
        if len(card.entries) > self.depth:  # keep the newest `depth`
            oldest = min(card.entries.values(), key=_Entry.key)
            del card.entries[oldest.task_id]
            if customer_id is not None and self._owner.get(oldest.task_id) == customer_id:
                del self._owner[oldest.task_id]

    def edited(self, customer: Customer) -> None:
        card = self._cards.get(customer.id)
        if card is not None:
            card.customer = customer
            card.views.clear()


def _apply(entry: _Entry, write: _Write, task_id: str) -> None:
    """One committed write's row and events for one task."""
    row = write.rows.get(task_id)
    if row is not None:
        if row.source is None and row.preview is None and entry.row.preview is not None:
            # A row of a task whose preview is stored apart (written once), made when the
            # write was issued without the entry at hand: the entry's preview stays.
            row = replace(row, source=entry.row.source, preview=entry.row.preview)
        entry.row = row
    for e in write.events:
        if e.task_id == task_id and e.kind in FOLDED_KINDS:
            fold(entry.folded, e.kind, e.at, e.agent_id, e.data)


def _cut(view: CustomerView, limit: int) -> CustomerView:
    if len(view.timeline) <= limit:
        return view
    timeline = view.timeline[:limit]
    card = view.card
    open_tasks = tuple(t for t in card.open_tasks if t in {e.task_id for e in timeline})
    return CustomerView(type(card)(card.id, card.name, card.identities, open_tasks, card.since),
                        timeline)


# The `Store` methods that write what a timeline shows (overridden by `WatchedStore`), and the
# others, which it passes through: a method added to the port must join one of the two
# (tests/dispatcher/service/test_history_cache.py checks it).
WATCHED = frozenset({"create_task", "intake_task", "record", "create_mail_task", "add_mail",
                     "merge_customers", "edit_customer"})
PASSED_THROUGH = frozenset({
    "load_state", "last_event_at", "put_queue", "put_agent", "put_calendar", "remove_queue",
    "remove_agent", "list_queues", "list_agents", "get_customer", "find_customer",
    "list_tasks", "page_tasks", "get_task", "previews", "list_calendars", "customer_tasks",
    "task_events", "customer_records", "customer_history", "search_customers", "find_mail_task",
    "mail_messages", "mail_message", "mark_mail", "known_mail_sources",
    "due_mail", "settle_mail",
})


class WatchedStore:
    """The `Store` port with every write of a task, event or customer told to a
    `HistoryCache` (issued, then committed or failed); everything else is the inner store's."""

    def __init__(self, inner: Store, cache: HistoryCache) -> None:
        self.inner = inner
        self.cache = cache
        cache.store = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _watch(self, d: Deferred[Any], write: _Write) -> Deferred[Any]:
        def done(value: Any) -> Any:
            self.cache.committed(write)
            return value

        def failed(failure: Failure) -> Failure:
            self.cache.failed(write)
            return failure

        return d.addCallbacks(done, failed)

    def record(self, changes: Changes) -> Deferred[None]:
        write = self.cache.issued(changes.tasks, changes.events)
        return self._watch(self.inner.record(changes), write)

    def add_mail(self, messages: Sequence[MailMessage], changes: Changes) -> Deferred[None]:
        write = self.cache.issued(changes.tasks, changes.events)
        return self._watch(self.inner.add_mail(messages, changes), write)

    def intake_task(self, task: Task, identity: Identity | None, customer_name: str,
                    events: Sequence[Event]) -> Deferred[StoredTask]:
        row, events = _Row.of(task), list(events)  # as stored: taken when the call is made

        def done(stored: StoredTask) -> StoredTask:
            row.customer_id = stored.customer_id
            self.cache.created(stored.customer_id, row, events, stored.new)
            return stored

        d = self.inner.intake_task(task, identity, customer_name, events)
        return d.addCallback(done)

    def create_task(self, task: Task, identity: Identity | None, customer_name: str,
                    events: Sequence[Event]) -> Deferred[str]:
        d = self.intake_task(task, identity, customer_name, events)
        return d.addCallback(lambda stored: stored.customer_id)

    def create_mail_task(self, draft: NewMail, identity: Identity | None, customer_name: str,
                         numbered: Numbering | None = None, ack_peer: str | None = None,
                         ) -> Deferred[StoredMail]:
        # The task and events as stored are known once committed (the store numbers them).
        def done(stored: StoredMail) -> StoredMail:
            row = _Row.of(stored.mail.task, stored=stored.mail.preview)
            row.customer_id = stored.customer_id
            self.cache.created(stored.customer_id, row, list(stored.mail.events), stored.new)
            return stored

        d = self.inner.create_mail_task(draft, identity, customer_name, numbered, ack_peer)
        return d.addCallback(done)

    def merge_customers(self, survivor_id: str, merged_id: str, events: Sequence[Event]
                        ) -> Deferred[Any]:
        both = (survivor_id, merged_id)
        self.cache.disturb(both)

        def done(value: Any) -> Any:
            for customer_id in both:
                self.cache.drop(customer_id)
            return value

        def failed(failure: Failure) -> Failure:
            self.cache.disturb(both)
            return failure

        return self.inner.merge_customers(survivor_id, merged_id, events).addCallbacks(
            done, failed)

    def edit_customer(self, customer_id: str, name: str, identities: Sequence[Identity],
                      events: Sequence[Event]) -> Deferred[Customer | None]:
        self.cache.disturb((customer_id,))

        def done(customer: Customer | None) -> Customer | None:
            self.cache.disturb((customer_id,))
            if customer is not None:
                self.cache.edited(customer)
            return customer

        def failed(failure: Failure) -> Failure:
            self.cache.disturb((customer_id,))
            return failure

        return self.inner.edit_customer(customer_id, name, identities, events).addCallbacks(
            done, failed)
