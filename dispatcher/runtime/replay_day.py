"""A recorded day as `switchboard replay` plays it, and the figures of an event log.

Pure (no I/O, no clock): built from the events of a period (storage/day_log.py reads them).
What it promises:
- `day_from_events`: what the customers and the agents did, taken from the log: each task's
  arrival (channel, queue, priority, deadline and skills of its `task.created`, attributes as
  stored), the agents' chosen presence (`agent.status` available / break / offline, and
  `agent.channels`), each offer's answer by agent (accepted or rejected after how long, or
  missed or withdrawn), each task's work (handle time = first `task.assigned` to `task.wrap_up`,
  or to `task.completed` without a wrap-up; the wrap-up's length), the caller's patience
  (created -> `task.abandoned`), cancellations, picks from pull queues; every input keeps its log position (`key`) so
  that inputs of the same instant are played in the order they were recorded;
- `Tally`: the outcome of a log, the same for the recorded one and the replayed one, so the
  two sides are compared on one definition: per task its arrival, first answer (assigned),
  completion, abandonment and agent; per agent the tasks handled (assigned), the time signed
  in and not on break (statuses available and not_responding) and the working time within it
  (holding at least one task); only events before the period's end count.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatcher.domain import events as ev
from dispatcher.domain.agents import CHOSEN
from dispatcher.domain.routing import WRAP_UP_ATTRIBUTE
from dispatcher.domain.tasks import Channel

from .centre import TaskRecord

STAFFED = frozenset({"available", "not_responding"})
ACCEPTED, REJECTED, EXPIRED, WITHDRAWN = "accepted", "rejected", "expired", "withdrawn"
_ANSWERS = {ev.OFFER_ACCEPTED: ACCEPTED, ev.OFFER_REJECTED: REJECTED,
            ev.OFFER_EXPIRED: EXPIRED, ev.OFFER_WITHDRAWN: WITHDRAWN}
# Kinds of a recorded task's life that the replay does not play (counted and reported).
NOT_PLAYED = {ev.TASK_TRANSFERRED: "transferred", ev.TASK_REQUEUED: "requeued",
              ev.TASK_CHANGED: "changed"}


class Record(Protocol):
    """One logged event (`Event`, or the reports' `LogEvent`)."""

    id: Any
    kind: str
    at: float
    task_id: str | None
    agent_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Arrival:
    task_id: str
    at: float
    key: int
    channel: Channel
    queue: str
    priority: int
    deadline: float | None
    skills: dict[str, int]
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """How an agent answered one offer: `kind` (ACCEPTED ...) at `at`, `offered_at` its offer."""

    offered_at: float
    at: float
    key: int
    kind: str
    reason: str = ""

    @property
    def delay(self) -> float:
        return self.at - self.offered_at


@dataclass(frozen=True)
class Work:
    """The work on a task once an agent had it: `handle` seconds, then a wrap-up of `wrap`
    seconds (None: completed without one)."""

    handle: float
    wrap: float | None
    disposition: str


@dataclass(frozen=True)
class PresenceChange:
    at: float
    key: int
    agent_id: str
    status: str | None = None  # available | break | offline
    reason: str | None = None
    channels: tuple[str, ...] | None = None  # per-channel presence


@dataclass
class RecordedDay:
    start: float
    end: float
    arrivals: list[Arrival] = field(default_factory=list)
    presence: list[PresenceChange] = field(default_factory=list)
    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    work: dict[str, Work] = field(default_factory=dict)
    patience: dict[str, tuple[float, int]] = field(default_factory=dict)  # seconds, key
    cancels: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    # Tasks an agent picked from a pull queue's list: agent, seconds after arrival, key.
    picks: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    not_played: dict[str, int] = field(default_factory=dict)  # what, tasks

    def accept_delays(self) -> dict[str, float]:
        """Each agent's median accept delay (seconds), over their recorded accepted offers."""
        delays: dict[str, list[float]] = defaultdict(list)
        for (_, agent_id), answers in self.answers.items():
            delays[agent_id].extend(a.delay for a in answers if a.kind == ACCEPTED)
        return {a: statistics.median(d) for a, d in delays.items() if d}

    def handle_times(self) -> dict[tuple[str, Channel], float]:
        """The median recorded handle time per queue and channel, and per channel alone
        (queue "")."""
        channel_of = {a.task_id: (a.queue, a.channel) for a in self.arrivals}
        times: dict[tuple[str, Channel], list[float]] = defaultdict(list)
        for task_id, work in self.work.items():
            queue, channel = channel_of[task_id]
            times[(queue, channel)].append(work.handle)
            times[("", channel)].append(work.handle)
        return {k: statistics.median(v) for k, v in times.items()}


def day_from_events(start: float, end: float, task_events: Iterable[Record],
                    agent_events: Iterable[Record],
                    attributes: Mapping[str, Mapping[str, Any]]) -> RecordedDay:
    """The day of the module docstring from its events (task events in log order)."""
    day = RecordedDay(start, end)
    by_task: dict[str, list[Record]] = defaultdict(list)
    for e in task_events:
        if e.task_id is not None:
            by_task[e.task_id].append(e)
    skipped: dict[str, set[str]] = defaultdict(set)
    for task_id, events in by_task.items():
        first = events[0]
        if first.kind != ev.TASK_CREATED or not start <= first.at < end:
            continue
        _task(day, task_id, events, attributes.get(task_id, {}), skipped)
    day.arrivals.sort(key=lambda a: (a.at, a.key))
    day.not_played = {what: len(ids) for what, ids in sorted(skipped.items())}
    for e in agent_events:
        if e.agent_id is None:
            continue
        if e.kind == ev.AGENT_STATUS:
            status = e.data.get("status")
            if status in CHOSEN:
                day.presence.append(PresenceChange(max(e.at, start), int(e.id), e.agent_id,
                                                   status=status, reason=e.data.get("reason")))
        elif e.kind == ev.AGENT_CHANNELS and e.at >= start:
            day.presence.append(PresenceChange(e.at, int(e.id), e.agent_id,
                                               channels=tuple(e.data.get("channels", ()))))
    day.presence.sort(key=lambda p: (p.at, p.key))
    return day


def _task(day: RecordedDay, task_id: str, events: list[Record],
          attributes: Mapping[str, Any], skipped: dict[str, set[str]]) -> None:
    created = events[0]
    data = created.data
    day.arrivals.append(Arrival(
        task_id, created.at, int(created.id), Channel(data["channel"]), data["queue"],
        int(data.get("priority") or 0), data.get("deadline"), dict(data.get("skills") or {}),
        {k: v for k, v in attributes.items() if k != WRAP_UP_ATTRIBUTE}))
    offers: dict[str, Record] = {}
    assigned = wrap = None
    for e in events[1:]:
        kind = e.kind
        if kind == ev.TASK_OFFERED:
            offers[e.data.get("offer_id") or ""] = e
        elif kind in _ANSWERS:
            offer = offers.pop(e.data.get("offer_id") or "", None)
            if offer is not None and offer.agent_id is not None:
                day.answers.setdefault((task_id, offer.agent_id), []).append(
                    Answer(offer.at, e.at, int(e.id), _ANSWERS[kind],
                           str(e.data.get("reason") or "")))
        elif kind == ev.TASK_ASSIGNED and assigned is None:
            assigned = e.at
            if e.data.get("via") == "pick" and e.agent_id is not None:
                day.picks[task_id] = (e.agent_id, e.at - created.at, int(e.id))
        elif kind == ev.TASK_WRAP_UP and assigned is not None and wrap is None:
            wrap = e.at
        elif kind == ev.TASK_COMPLETED and assigned is not None:
            day.work[task_id] = Work(
                (wrap if wrap is not None else e.at) - assigned,
                None if wrap is None else e.at - wrap, str(e.data.get("disposition") or ""))
            break
        elif kind == ev.TASK_ABANDONED:
            day.patience[task_id] = (e.at - created.at, int(e.id))
            break
        elif kind == ev.TASK_CANCELLED:
            day.cancels[task_id] = (e.at - created.at, int(e.id),
                                    str(e.data.get("reason") or "cancelled"))
            break
        elif kind in NOT_PLAYED:
            skipped[NOT_PLAYED[kind]].add(task_id)


@dataclass
class _Book:
    """One agent's account: signed in (not on break) since `on`, holding `held`."""

    on: float | None = None
    held: set[str] = field(default_factory=set)
    mark: float = 0.0
    staffed: float = 0.0
    busy: float = 0.0
    handled: int = 0


class Tally:
    """The outcome of a log (see the module docstring); `fold` every event of the period (in
    order; later ones are ignored), then `close`."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.records: dict[str, TaskRecord] = {}
        self.agent_of: dict[str, str] = {}  # task -> the agent it was first assigned to
        self.books: dict[str, _Book] = defaultdict(_Book)
        self._holder: dict[str, str] = {}

    def fold(self, e: Record) -> None:
        if not self.start <= e.at < self.end and e.kind != ev.AGENT_STATUS:
            return
        if e.at >= self.end:
            return
        kind, task_id = e.kind, e.task_id
        if kind == ev.AGENT_STATUS and e.agent_id is not None:
            self._status(e.agent_id, max(e.at, self.start), e.data.get("status") in STAFFED)
            return
        if task_id is None:
            return
        if kind == ev.TASK_CREATED:
            self.records[task_id] = TaskRecord(Channel(e.data["channel"]), e.data["queue"],
                                               e.at, e.data.get("deadline"))
            return
        record = self.records.get(task_id)
        if record is not None:  # else a task of before the period
            self._task(e, task_id, record)

    def _task(self, e: Record, task_id: str, record: TaskRecord) -> None:
        kind = e.kind
        if kind == ev.TASK_ASSIGNED and e.agent_id is not None:
            if record.answered is None:
                record.answered = e.at
                self.agent_of[task_id] = e.agent_id
            book = self._account(e.agent_id, e.at)
            book.handled += 1
            book.held.add(task_id)
            self._holder[task_id] = e.agent_id
        elif kind in (ev.TASK_COMPLETED, ev.TASK_CANCELLED, ev.TASK_REQUEUED,
                      ev.TASK_TRANSFERRED, ev.TASK_ABANDONED):
            holder = self._holder.pop(task_id, None)
            if holder is not None:
                self._account(holder, e.at).held.discard(task_id)
            if kind == ev.TASK_COMPLETED:
                record.done = e.at
            elif kind == ev.TASK_ABANDONED and record.answered is None:
                record.abandoned = True

    def _status(self, agent_id: str, at: float, staffed: bool) -> None:
        book = self._account(agent_id, at)
        if staffed and book.on is None:
            book.on = book.mark
        elif not staffed and book.on is not None:
            book.staffed += book.mark - book.on
            book.on = None

    def _account(self, agent_id: str, at: float) -> _Book:
        book = self.books[agent_id]
        if book.on is not None and book.held:
            book.busy += at - book.mark
        book.mark = at
        return book

    def close(self) -> None:
        for agent_id, book in self.books.items():
            self._account(agent_id, self.end)
            if book.on is not None:
                book.staffed += self.end - book.on
                book.on = self.end

    def agents(self) -> dict[str, dict[str, Any]]:
        return {a: {"handled": b.handled, "staffed_hours": b.staffed / 3600,
                    "occupancy": b.busy / b.staffed if b.staffed else None}
                for a, b in sorted(self.books.items())}
