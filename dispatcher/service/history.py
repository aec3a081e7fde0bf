"""History: one customer across channels — the customer card, the timeline of their e-mails and
calls, and the merge of two customers found to be the same person.

Sits in the service layer beside `queries.py`; reads and writes through the `Store` port only.
What it promises:
- `view(customer_id)` gives the card (name, identities, open tasks) and the timeline, newest
  first, at most `limit` entries; every offer the console pushes carries it (the screen pop).
  With a `HistoryCache` (history_cache.py) it answers from memory what a read would give;
  `cached(customer_id)` gives that answer at once, without a Deferred, or None on a miss.
- One rule turns a task and its events into a timeline entry (`fold`, `entry_of`), for a read
  and for the cache alike.
- Who may read it (`view_for`, the one rule every edge uses): a supervisor; an agent who holds
  or is offered a task of that customer; never an integration (a PBX's token sees calls only,
  through the CTI), whatever its subject — anyone else gets `Forbidden`.
- E-mails show their subject and first lines from the task's attributes (`subject`, `preview`,
  else the start of `text`/`body`); calls show when they were answered, by whom, how long they
  lasted and their disposition, all derived from the task's events.
- `merge(survivor, merged, supervisor)` moves identities and tasks to the survivor in one
  transaction ordered with the routing writes, and records who did it (`customer.merged`, on
  each moved task and once in the supervisor's own log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail

from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, Forbidden, InvalidValue
from dispatcher.domain.events import CUSTOMER_MERGED
from dispatcher.domain.tasks import OPEN_STATES

from .assignment import Assignment
from .ports import Customer, Identity, MergedCustomers, Store, TaskRecord

# Timeline entries per customer view; an offer carries one view.
TIMELINE_LIMIT = 20
# An e-mail's preview: at most this many non-empty lines, this many characters.
PREVIEW_LINES = 3
PREVIEW_CHARS = 280
SUBJECT_CHARS = 200

# Roles of the tokens (dispatcher/service/tokens.py) that may read a customer's history.
READER_ROLES = ("agent", "supervisor")

_OPEN = frozenset(s.value for s in OPEN_STATES)


class UnknownCustomer(DomainError):
    code = "unknown_customer"

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no such customer: {customer_id}")
        self.customer_id = customer_id


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One task in a customer's history. E-mails fill `subject` and `preview`; calls fill
    `answered_at`, `ended_at` and `duration` (seconds from answer to hang-up or completion)."""

    task_id: str
    channel: str
    queue: str
    state: str
    at: float  # when the task arrived
    agent_id: str | None = None  # who handled it last
    disposition: str | None = None
    subject: str | None = None
    preview: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class CustomerCard:
    id: str
    name: str
    identities: tuple[Identity, ...]
    open_tasks: tuple[str, ...]  # ids, newest first (among the timeline's entries)
    since: float


@dataclass(frozen=True, slots=True)
class CustomerView:
    card: CustomerCard
    timeline: tuple[TimelineEntry, ...] = field(default_factory=tuple)


def preview_of(attributes: dict[str, Any]) -> str | None:
    """The first lines of an e-mail, as plain text, bounded."""
    return preview_from(preview_source(attributes))


def preview_source(attributes: dict[str, Any]) -> Any:
    """What `preview_of` makes its text of: the preview, else the text or the body."""
    text = attributes.get("preview")
    if not isinstance(text, str):
        text = attributes.get("text", attributes.get("body"))
    return text


def preview_from(text: Any) -> str | None:
    """`preview_of`, given its source (`preview_source`)."""
    if not isinstance(text, str) or not text.strip():
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()][:PREVIEW_LINES]
    out = "\n".join(lines)
    return out if len(out) <= PREVIEW_CHARS else out[: PREVIEW_CHARS - 1] + "…"


# The event kinds a timeline entry is derived from (`fold`); the others do not change it.
FOLDED_KINDS = frozenset({ev.TASK_ASSIGNED, ev.TASK_WRAP_UP, ev.TASK_COMPLETED,
                          ev.TASK_CANCELLED, ev.TASK_ABANDONED, ev.TASK_REQUEUED})


@dataclass(slots=True)
class Fold:
    """What a task's events, in order, say of its timeline entry."""

    agent_id: str | None = None  # the last agent named by an assignment or a completion
    disposition: str | None = None
    answered: float | None = None
    ended: float | None = None


def fold(f: Fold, kind: str, at: float, agent_id: str | None, data: dict[str, Any]) -> None:
    """Apply one event to a fold: the one rule of a read (`entry_of`) and of the cache."""
    if kind == ev.TASK_ASSIGNED:
        f.agent_id = agent_id or f.agent_id
        f.answered = at if f.answered is None else f.answered
    elif kind == ev.TASK_WRAP_UP:
        f.ended = at
    elif kind == ev.TASK_COMPLETED:
        f.disposition = data.get("disposition") or None
        f.agent_id = agent_id or f.agent_id
        f.ended = at if f.ended is None else f.ended
    elif kind in (ev.TASK_CANCELLED, ev.TASK_ABANDONED):
        f.ended = at
    elif kind == ev.TASK_REQUEUED:
        f.answered = None


def subject_of(attributes: dict[str, Any]) -> str | None:
    subject = attributes.get("subject")
    return subject[:SUBJECT_CHARS] if isinstance(subject, str) else None


def entry_of(record: TaskRecord) -> TimelineEntry:
    """A timeline entry from a task and its events."""
    s, attrs = record.summary, record.attributes
    f = Fold()
    for e in record.events:
        fold(f, e.kind, e.at, e.agent_id, e.data)
    answered, ended = f.answered, f.ended
    email = s.channel == "email"
    return TimelineEntry(
        task_id=s.id,
        channel=s.channel,
        queue=s.queue,
        state=s.state,
        at=s.created_at,
        agent_id=f.agent_id or s.agent_id,
        disposition=f.disposition,
        subject=subject_of(attrs),
        preview=preview_of(attrs) if email else None,
        answered_at=answered,
        ended_at=ended,
        duration=(ended - answered) if answered is not None and ended is not None else None,
    )


class History:
    def __init__(self, store: Store, assignment: Assignment, limit: int = TIMELINE_LIMIT,
                 cache: Any = None) -> None:
        self.store = store
        self.assignment = assignment
        self.limit = limit
        self.cache = cache  # a HistoryCache (history_cache.py) kept fresh by the store's writes

    def view(self, customer_id: str, limit: int | None = None) -> Deferred[CustomerView]:
        """The card and the timeline; fails with UnknownCustomer. With a cache, a customer
        it holds is answered from memory (a Deferred already fired)."""
        if self.cache is not None:
            return self.cache.view(customer_id, limit or self.limit)
        return ensureDeferred(self._view(customer_id, limit or self.limit))

    def cached(self, customer_id: str, limit: int | None = None) -> CustomerView | None:
        """`view` when the cache holds the customer, at once (no Deferred); else None: ask
        `view`."""
        if self.cache is None:
            return None
        return self.cache.cached(customer_id, limit or self.limit)

    def view_for(self, role: str, sub: str, customer_id: str,
                 limit: int | None = None) -> Deferred[CustomerView]:
        """`view` for a token's holder, after `check_reader`."""
        try:
            check_reader(role, sub, customer_id,
                         role == "agent" and self.serves(sub, customer_id))
        except Forbidden as exc:
            return fail(exc)
        return self.view(customer_id, limit)

    def serves(self, agent_id: str, customer_id: str) -> bool:
        """Whether the agent holds (assigned, wrap-up) or is offered a task of this customer,
        as the live router sees it."""
        router = self.assignment.router
        agent = router.agents.get(agent_id)
        if agent is None:
            return False
        ids = set(agent.held)
        offer = router.offers.get(agent.offer_id) if agent.offer_id is not None else None
        if offer is not None:
            ids.add(offer.task_id)
        return any(t is not None and t.customer_id == customer_id
                   for t in (router.tasks.get(i) for i in ids))

    async def _view(self, customer_id: str, limit: int) -> CustomerView:
        found = await self.store.customer_history(customer_id, limit)  # one read
        customer = found.customer
        if customer is None:
            raise UnknownCustomer(customer_id)
        timeline = tuple(entry_of(rec) for rec in found.records)
        return CustomerView(card_of(customer, timeline), timeline)

    def find(self, identity: Identity) -> Deferred[Customer | None]:
        return self.store.find_customer(identity)

    def merge(self, survivor_id: str, merged_id: str, supervisor_id: str
              ) -> Deferred[MergedCustomers]:
        """Merge `merged_id` into `survivor_id`, on a supervisor's authority (audited)."""
        return ensureDeferred(self._merge(survivor_id, merged_id, supervisor_id))

    async def _merge(self, survivor_id: str, merged_id: str, supervisor_id: str
                     ) -> MergedCustomers:
        if survivor_id == merged_id:
            raise InvalidValue("a customer cannot be merged into itself")
        if not supervisor_id:
            raise InvalidValue("a merge needs the supervisor's id")
        for customer_id in (survivor_id, merged_id):
            if await self.store.get_customer(customer_id) is None:
                raise UnknownCustomer(customer_id)
        now = self.assignment.now()
        actor = f"supervisor:{supervisor_id}"
        data = {"survivor_id": survivor_id, "merged_id": merged_id,
                "supervisor_id": supervisor_id}
        moved = await self.store.customer_records(merged_id, limit=2**31 - 1)
        # The router's open tasks carry the customer too: change them first, so that no later
        # write of theirs puts them back on the merged customer.
        for task in self.assignment.router.tasks.values():
            if task.customer_id == merged_id:
                task.customer_id = survivor_id
        events = [ev.Event(CUSTOMER_MERGED, now, rec.summary.id, None, actor, data)
                  for rec in moved]
        events.append(ev.Event(CUSTOMER_MERGED, now, None, supervisor_id, actor, data))
        return await self.store.merge_customers(survivor_id, merged_id, events)


def check_reader(role: str, sub: str, customer_id: str, serves: bool) -> None:
    """Forbidden unless `role`/`sub` may read this customer's history: a supervisor, or an
    agent serving the customer; never an integration."""
    if role == "supervisor" or (role == "agent" and serves):
        return
    raise Forbidden(sub, f"customer {customer_id}" + (
        "" if role in READER_ROLES else f" (a token of role {role} reads no customer)"))


def card_of(customer: Customer, timeline: tuple[TimelineEntry, ...]) -> CustomerCard:
    return CustomerCard(
        id=customer.id,
        name=customer.name,
        identities=customer.identities,
        open_tasks=tuple(e.task_id for e in timeline if e.state in _OPEN),
        since=customer.created_at,
    )
