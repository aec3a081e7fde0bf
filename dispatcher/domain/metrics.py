"""Metrics: the one definition of every statistic, as a fold over the event log.

Sits in the pure domain (stdlib only, no I/O, no clock: times are arguments). Both the reports
(`dispatcher.service.reports`, folding a period of the stored log) and the supervisors' live
view (folding today's events as they are committed) use `Tally`, so a figure means the same
everywhere. docs/metrics.md states each definition in words; this module is its code.

Using it
--------
    tally = Tally(start, end=None, interval=900.0, targets={"sales": QueueTarget(...)})
    for event in events_in_time_order:          # anything with kind, at, task_id, agent_id,
        tally.add(event)                         # actor, data (Event, StoredEvent, EventRecord)
    figures = tally.figures(now)                 # a snapshot; the tally keeps folding after it
    figures.cell().value("service_level")        # whole period, every queue and channel
    figures.cell("queue", "sales", bucket=0)     # first interval, one queue (both channels)
    figures.rows()                               # every figure, flat (what every format prints)

- Feed events in time order (`at` non-decreasing; ties in log order: a task's `task.created`
  before its other events of the same instant). Events *before* `start`
  are context: they set the state of tasks and agents (who is logged in, which task is held,
  which e-mail still waits for an answer) but count nothing. A report feeds, before the period,
  the earlier events of tasks still open at `start` and each agent's last `agent.status`.
- `end=None` (the live view) counts everything from `start` on; with an `end`, events at or
  after `end` are ignored.
- `targets`: per queue, its service-level target per channel, its share to reach and the kind of
  its e-mail deadline rule (`QueueTarget.from_queue(queue)` builds one from a domain `Queue`).
  A queue missing from `targets` gets the defaults of `dispatcher.domain.queues`.
- `queue`: count only the tasks of this queue (agents' logged-in time is counted anyway).
- `figures(now)` does not change the tally: spans still open (an agent logged in, a task held)
  are counted up to `now`, and e-mails whose deadline passed before `now` without an answer count
  as missed. A period that runs into the future is counted up to `now` only: pass the time it
  is (a report built today for all of today), never the period's end, or the spans would count
  time that has not happened; intervals that begin after `now` are left out of the snapshot
  (`Figures.buckets`), not filled with zeros or with the last depth. Call it as often as you like (cost: proportional to the cells, the agents and the
  unanswered e-mails, not to the events folded). The snapshot copies the cells, so it does not
  change when the tally goes on; `figures(now, copy=False)` skips that for a finished tally.
- Not thread-safe: fold and take snapshots from one thread at a time.
- Unknown kinds are ignored; kinds that appear only when other features are present
  (`call.answered`, `call.ended`, `reply.reviewed`, `task.categorised`, the `mode` of a reply)
  simply leave their figures at zero or absent.

Cells and scopes
----------------
Figures are kept per *cell* = (interval bucket, queue, channel, deadline type), and per agent
for the whole period. `Figures.cell(scope, key, bucket)` merges cells: scope "all" (key ""),
"channel" (key "email" | "phone"), "queue" (key = queue name), "queue_channel" (key
"queue/channel"), "deadline" (key = deadline type), "agent" (key = agent id; period only).
`bucket=None` is the whole period. Each `Cell.values()` is a flat dict of named figures (see
METRICS for names and meanings).

Deadline types: "sliding" and "scheduled" (the queue's e-mail deadline rule), "given" (a deadline
set at intake on a queue without a rule), "none" (an e-mail without deadline: the queue's e-mail
service-level target applies), "target" (calls: the queue's phone service-level target).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import events as ev
from .events import (  # the log's kinds these figures read (missing ones leave them empty)
    CALL_ANSWERED,
    CALL_ENDED,
    CALLBACK_DIALLED,
    CALLBACK_NO_ANSWER,
    CALLBACK_REACHED,
    CALLBACK_REQUESTED,
    CALLBACK_RETRY,
    EMAIL_QUEUED,
    EMAIL_RECEIVED,
    EMAIL_REOPENED,
    EMAIL_SENT,
    REMINDER_DUE,
    REPLY_REVIEWED,
    TASK_CATEGORISED,
)
from .queues import DEFAULT_SL_SHARE, DEFAULT_SL_TARGET, Queue
from .tasks import Channel

# Interval lengths the reports offer.
QUARTER_HOUR = 900.0
HOUR = 3600.0
DAY = 86_400.0
INTERVALS = {"15m": QUARTER_HOUR, "1h": HOUR, "1d": DAY}

# A reminder sets a task aside (completed with this disposition) until it comes back
# (`reminder.due`): not a resolution, and its return is not a customer's reopening.
REMINDER_DISPOSITION = "reminder"
OUT_ACK = "ack"
OUT_REPLY = "reply"

# Deadline types.
SLIDING, SCHEDULED, GIVEN, NO_DEADLINE, TARGET = "sliding", "scheduled", "given", "none", "target"

# Histogram edges (seconds) for the distribution plots: a value v falls in the first bin whose
# upper edge is >= v (bin `_le_<edge>`); the last bin (`_gt_<last edge>`) is open.
PHONE_WAIT_EDGES = (10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
EMAIL_RESPONSE_EDGES = (3600.0, 4 * 3600.0, 8 * 3600.0, 24 * 3600.0, 48 * 3600.0, 72 * 3600.0)

OFFLINE, BREAK = "offline", "break"
EMAIL, PHONE = Channel.EMAIL.value, Channel.PHONE.value  # plain strings: enum access is slow
EPSILON = 1e-9  # a period of exactly k intervals has k buckets, not k + 1

# The figures, by name: what each one counts (docs/metrics.md says it at length).
METRICS: dict[str, str] = {
    "tasks_arrived": "tasks created (both channels)",
    "tasks_handled": "tasks completed by an agent",
    "emails_received": "inbound e-mails (every message, new requests and follow-ups)",
    "email_requests": "new e-mail tasks",
    "emails_sent": "outbound e-mails delivered to the relay (acks and replies)",
    "replies": "answers queued by agents (or automatically) to customers",
    "acks": "automatic acknowledgements queued",
    "ack_share": "acks / email_requests",
    "first_response": "seconds from a request's arrival to its first answer",
    "response": "seconds from the oldest unanswered customer message to each answer",
    "closed_without_reply": "e-mail tasks completed or cancelled with no answer at all",
    "interactions": "customer messages + answers of an e-mail task when it is completed",
    "calls_offered": "calls that entered a queue",
    "calls_answered": "calls taken by an agent",
    "answer_wait": "seconds from a call's arrival to its answer",
    "calls_abandoned": "callers who hung up before an answer",
    "abandon_wait": "seconds a caller waited before hanging up",
    "abandon_rate": "calls_abandoned / (calls_answered + calls_abandoned)",
    "talk": "seconds of conversation of ended calls (call.ended talk_seconds)",
    "sl_total": "requests settled: calls answered or abandoned; e-mails answered or overdue",
    "sl_met": "of sl_total: calls answered within the target; e-mails answered by the deadline",
    "service_level": "sl_met / sl_total",
    "sl_target": "queues: the share of requests the queue's service level must reach",
    "sla_met": "queues: 1 when service_level >= sl_target (interval or period), else 0",
    "sla_compliance": "queues, period: share of the intervals with settled requests where "
                      "sla_met is 1",
    "offers_made": "offers made to agents",
    "offers_accepted": "offers accepted",
    "offers_rejected": "offers rejected",
    "offers_expired": "offers that timed out",
    "review_score": "review scores in percent of the maximum score",
    "depth_max": "largest number of waiting tasks in the interval",
    "depth_end": "waiting tasks at the end of the interval",
    "logged_in": "seconds an agent was logged in (any status but offline)",
    "on_break": "seconds an agent was on a break",
    "occupied": "seconds an agent held at least one task while logged in",
    "handle": "seconds from assignment to completion of a task (wrap-up included)",
    "tasks_per_hour": "tasks_handled per hour logged in",
    "occupancy": "occupied / (logged_in - on_break)",
    "callbacks_requested": "callbacks asked for (a queued caller keeping their place, the web "
                           "form, the API)",
    "callback_attempts": "dials of a callback's customer (callback.dialled)",
    "callbacks_reached": "callbacks whose customer answered",
    "callback_no_answers": "dials of a callback's customer not answered (no answer, busy...)",
    "callback_retries": "callbacks put back to wait for another attempt",
    "callbacks_not_reached": "callbacks ended unanswered after their last attempt (or window)",
}


class EventRecord(Protocol):
    """What `Tally.add` reads of an event (`domain.events.Event` and `ports.StoredEvent` fit)."""

    kind: str
    at: float
    task_id: str | None
    agent_id: str | None
    actor: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """A queue's service-level settings as the tally needs them."""

    sl_target: Mapping[str, float] = field(
        default_factory=lambda: {c.value: s for c, s in DEFAULT_SL_TARGET.items()})
    sl_share: float = DEFAULT_SL_SHARE
    deadline_type: str | None = None  # "sliding" | "scheduled" | None (no rule)

    @classmethod
    def from_queue(cls, queue: Queue) -> QueueTarget:
        rule = (queue.deadline_rule or "").split()
        kind = rule[0].lower() if rule else None
        return cls({Channel(c).value: float(s) for c, s in queue.sl_target.items()},
                   queue.sl_share, kind if kind in (SLIDING, SCHEDULED) else None)

    def seconds(self, channel: str) -> float:
        if channel in self.sl_target:
            return float(self.sl_target[channel])
        return DEFAULT_SL_TARGET[Channel(channel)]


DEFAULT_TARGET = QueueTarget()


class Stat:
    """Count, sum, min, max and (optionally) a histogram of a series of values."""

    __slots__ = ("n", "total", "low", "high", "bins")

    def __init__(self, edges: tuple[float, ...] | None = None) -> None:
        self.n = 0
        self.total = 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.bins: list[int] | None = [0] * (len(edges) + 1) if edges else None

    def add(self, value: float, edges: tuple[float, ...] | None = None) -> None:
        self.n += 1
        self.total += value
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value
        if edges:
            if self.bins is None:
                self.bins = [0] * (len(edges) + 1)
            self.bins[bisect_left(edges, value)] += 1

    def merge(self, other: Stat) -> None:
        self.n += other.n
        self.total += other.total
        if other.low is not None and (self.low is None or other.low < self.low):
            self.low = other.low
        if other.high is not None and (self.high is None or other.high > self.high):
            self.high = other.high
        if other.bins is not None:
            if self.bins is None:
                self.bins = [0] * len(other.bins)
            for i, k in enumerate(other.bins):
                self.bins[i] += k

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


# Which histogram edges a stat uses.
STAT_EDGES: dict[str, tuple[float, ...]] = {
    "answer_wait": PHONE_WAIT_EDGES,
    "first_response": EMAIL_RESPONSE_EDGES,
}


class Cell:
    """Counts (`counts[name]`), series (`stats[name]`) and spans (`spans[name]`, seconds) of one
    cell; `values()` flattens them with the derived ratios."""

    __slots__ = ("counts", "stats", "spans", "depth_max", "depth_end", "extra")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.stats: dict[str, Stat] = {}
        self.spans: dict[str, float] = {}
        self.depth_max: int | None = None
        self.depth_end: int | None = None
        self.extra: dict[str, float | None] | None = None  # figures of a merged scope only

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def stat(self, name: str, value: float) -> None:
        s = self.stats.get(name)
        if s is None:
            s = self.stats[name] = Stat()
        s.add(value, STAT_EDGES.get(name))

    def span(self, name: str, seconds: float) -> None:
        self.spans[name] = self.spans.get(name, 0.0) + seconds

    def merge(self, other: Cell) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, s in other.stats.items():
            mine = self.stats.get(k)
            if mine is None:
                mine = self.stats[k] = Stat()
            mine.merge(s)
        for k, v in other.spans.items():
            self.spans[k] = self.spans.get(k, 0.0) + v
        if other.depth_max is not None:
            self.depth_max = (other.depth_max if self.depth_max is None
                              else self.depth_max + other.depth_max)
        if other.depth_end is not None:
            self.depth_end = (other.depth_end if self.depth_end is None
                              else self.depth_end + other.depth_end)

    @property
    def empty(self) -> bool:
        return not (self.counts or self.stats or self.spans or self.depth_max is not None)

    def copy(self) -> Cell:
        out = Cell()
        out.merge(self)
        return out

    def value(self, name: str) -> float | None:
        return self.values().get(name)

    def values(self) -> dict[str, float | None]:
        """Every figure of the cell by name: counts; for each series `<name>_n`, `_avg`, `_min`,
        `_max` (and `_le_<edge>` / `_gt_<edge>` histogram bins for the distributions); spans in
        seconds; derived ratios (None when their denominator is 0)."""
        out: dict[str, float | None] = {}
        for k in sorted(self.counts):
            out[k] = self.counts[k]
        for k in sorted(self.stats):
            s = self.stats[k]
            out[f"{k}_n"] = s.n
            out[f"{k}_avg"] = s.mean
            out[f"{k}_min"] = s.low
            out[f"{k}_max"] = s.high
            edges = STAT_EDGES.get(k)
            if edges and s.bins is not None:
                for edge, n in zip(edges, s.bins, strict=False):
                    out[f"{k}_le_{edge:g}"] = n
                out[f"{k}_gt_{edges[-1]:g}"] = s.bins[-1]
        for k in sorted(self.spans):
            out[k] = self.spans[k]
        if self.depth_max is not None:
            out["depth_max"] = self.depth_max
            out["depth_end"] = self.depth_end
        c = self.counts
        out["service_level"] = _ratio(c.get("sl_met", 0), c.get("sl_total", 0))
        out["ack_share"] = _ratio(c.get("acks", 0), c.get("email_requests", 0))
        settled_calls = c.get("calls_answered", 0) + c.get("calls_abandoned", 0)
        out["abandon_rate"] = _ratio(c.get("calls_abandoned", 0), settled_calls)
        if "logged_in" in self.spans:
            logged = self.spans.get("logged_in", 0.0)
            working = logged - self.spans.get("on_break", 0.0)
            out["tasks_per_hour"] = _ratio(c.get("tasks_handled", 0), logged / HOUR)
            out["occupancy"] = _ratio(self.spans.get("occupied", 0.0), working)
        for k in sorted(c):
            if k.startswith("mode:"):
                mode = k[5:]
                out[f"reopen_rate:{mode}"] = _ratio(c.get(f"reopened:{mode}", 0), c[k])
        if self.extra:
            out.update(self.extra)
        return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


# `_Task.flags`: the task's yes/no state, one int (five slots less a task: the tally keeps
# every task of the day).
WAITING = 1  # in its queue, waiting for an agent
ANSWERED = 2  # calls: answered; e-mails: a first answer was given
SETTLED = 4  # counted in the service level (met or missed)
OPEN = 8
# In the queue filter. The highest flag, so `flags >= COUNTED` tests it: a compare of two ints
# costs less than `&`, and the fold tests it at most events.
COUNTED = 16


class _Task:
    """What the tally remembers of one task. `kind` is (queue, channel, deadline type), the
    key of its cells without the bucket: few differ, so tasks share them."""

    __slots__ = ("kind", "created_at", "due", "flags", "pending_since", "inbound", "replies",
                 "agent", "assigned_at", "last_mode")

    def __init__(self, kind: tuple[str, str, str], created_at: float, due: float | None,
                 counted: bool) -> None:
        self.kind = kind
        self.created_at = created_at
        self.due = due  # e-mails: when the first answer is due
        self.flags = OPEN | COUNTED if counted else OPEN
        self.pending_since: float | None = None  # e-mails: oldest unanswered customer message
        self.inbound = 0
        self.replies = 0
        self.agent: str | None = None  # holder
        self.assigned_at: float | None = None
        self.last_mode: str | None = None


class _Agent:
    __slots__ = ("status", "since", "held", "busy_since")

    def __init__(self) -> None:
        self.status = OFFLINE
        self.since = 0.0
        self.held: set[str] = set()
        self.busy_since: float | None = None


class _Due:
    """The unanswered e-mails by the time their first answer is due: (due, task id) pairs
    taken in (due, id) order, as one heap would give them. They are kept as two runs in that
    order (`run_at`: the due times, the very floats their tasks hold; `run`: the ids), without
    a tuple each (~56 bytes less per e-mail): a tally resumed from a checkpoint gets its many
    at once, sorted, and a new pair that comes in order after the runs' last joins them (a
    fold of the day and new mail mostly do); any other goes to the heap. `next_at`: the
    first due time (inf when none)."""

    __slots__ = ("heap", "run_at", "run", "next_at")

    def __init__(self, pairs: Iterable[tuple[float, str]] = ()) -> None:
        """`pairs` in (due, id) order."""
        self.heap: list[tuple[float, str]] = []
        self.run_at: deque[float] = deque()
        self.run: deque[str] = deque()
        for due, task_id in pairs:
            self.run_at.append(due)
            self.run.append(task_id)
        self.next_at = self.run_at[0] if self.run_at else math.inf

    def push(self, due: float, task_id: str) -> None:
        run_at = self.run_at
        # In order after the run's last (a day's fold, new mail: due times mostly grow), it
        # joins the run, without a tuple; otherwise the heap.
        if not run_at or due > run_at[-1] or (due == run_at[-1] and task_id >= self.run[-1]):
            run_at.append(due)
            self.run.append(task_id)
        else:
            heapq.heappush(self.heap, (due, task_id))
        if due < self.next_at:
            self.next_at = due

    def pop(self) -> tuple[float, str]:
        """The first pair, taken out (IndexError when none)."""
        heap, run_at = self.heap, self.run_at
        if run_at and (not heap or (run_at[0], self.run[0]) < heap[0]):
            entry = (run_at.popleft(), self.run.popleft())
        else:
            entry = heapq.heappop(heap)
        first = heap[0][0] if heap else math.inf
        self.next_at = run_at[0] if run_at and run_at[0] < first else first
        return entry

    def __iter__(self) -> Iterator[tuple[float, str]]:
        """Every pair, in no particular order."""
        yield from self.heap
        yield from zip(self.run_at, self.run, strict=True)

    def __len__(self) -> int:
        return len(self.heap) + len(self.run)

    def before(self, now: float) -> Iterator[tuple[float, str]]:
        """The pairs due before `now`, left in place, in no particular order."""
        for entry in self.heap:
            if entry[0] < now:
                yield entry
        for entry in zip(self.run_at, self.run, strict=True):
            if entry[0] >= now:
                return  # the runs are in order: none after it is due either
            yield entry


Key = tuple[int, str, str, str]  # (bucket, queue, channel, deadline type)
PERIOD = -1  # the bucket of the agents' cells: they are kept for the whole period only


class Tally:
    """The accumulator (see the module docstring)."""

    def __init__(self, start: float, end: float | None = None, interval: float = HOUR,
                 targets: Mapping[str, QueueTarget] | None = None,
                 queue: str | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if end is not None and end <= start:
            raise ValueError("the period must end after it starts")
        self.start = float(start)
        self.end = None if end is None else float(end)
        self.interval = float(interval)
        self.targets = dict(targets or {})
        self.queue = queue
        self.cells: dict[Key, Cell] = {}
        self.agent_cells: dict[tuple[int, str], Cell] = {}
        self.tasks: dict[str, _Task] = {}
        self._kinds: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # one each (_Task)
        self.agents: dict[str, _Agent] = {}
        self.depth: dict[tuple[str, str, str], int] = {}  # waiting tasks per (queue, ch, dtype)
        self._depth_bucket: int | None = None
        self._due = _Due()  # (due, task id) of unanswered e-mails
        self.events = 0
        self.last_at = self.start

    # ------------------------------------------------------------------ time

    def bucket(self, at: float) -> int | None:
        """The interval index of `at`, None outside the period."""
        if at < self.start or (self.end is not None and at >= self.end):
            return None
        return int((at - self.start) // self.interval)

    def bucket_start(self, b: int) -> float:
        return self.start + b * self.interval

    def buckets(self, now: float | None = None) -> range:
        """The bucket indexes of the period that have begun by `now` (or by the newest event
        folded, if later): an interval that has not begun yet has no figures, not zeros. The
        bucket holding `now` is included (a period that begins after `now` has its first
        bucket only); with an end and no `now`, every bucket of the period."""
        full = None
        if self.end is not None:
            full = max(1, math.ceil((self.end - self.start) / self.interval - EPSILON))
            if now is None or now >= self.end:
                return range(full)
        stop = max(now if now is not None else self.last_at, self.last_at, self.start)
        n = int((stop - self.start) // self.interval) + 1
        return range(n if full is None else min(n, full))

    # ------------------------------------------------------------------ cells

    def _cell(self, b: int, t: _Task) -> Cell:
        queue, channel, dtype = t.kind
        key = (b, queue, channel, dtype)
        c = self.cells.get(key)
        if c is None:
            c = self.cells[key] = Cell()
        return c

    def _agent_cell(self, b: int, agent_id: str) -> Cell:
        """The agent's cell: agents' figures are kept for the whole period only (`b`, the
        event's bucket, only says the event is in the period)."""
        key = (PERIOD, agent_id)
        c = self.agent_cells.get(key)
        if c is None:
            c = self.agent_cells[key] = Cell()
        return c

    def _target(self, queue: str) -> QueueTarget:
        return self.targets.get(queue, DEFAULT_TARGET)

    def _agent(self, agent_id: str) -> _Agent:
        a = self.agents.get(agent_id)
        if a is None:
            a = self.agents[agent_id] = _Agent()
        return a

    def _spans(self, agent_id: str, name: str, a: float, b: float,
               into: dict[tuple[int, str], Cell] | None = None) -> None:
        """Add the seconds of [a, b) clipped to the period to the agent's `name`."""
        lo = max(a, self.start)
        hi = b if self.end is None else min(b, self.end)
        if lo >= hi:
            return
        key = (PERIOD, agent_id)
        if into is None:
            c = self.agent_cells.get(key)
            if c is None:
                c = self.agent_cells[key] = Cell()
        else:
            c = _writable(into, key)
        c.span(name, hi - lo)

    # ------------------------------------------------------------------ folding

    def add_all(self, records: Iterable[EventRecord]) -> None:
        for r in records:
            self.add(r)

    def add(self, e: EventRecord) -> None:
        """Fold one event (in time order)."""
        at = e.at
        end = self.end
        if end is not None and at >= end:
            return
        self.events += 1
        if at > self.last_at:
            self.last_at = at
        if self._due.next_at < at:
            self._overdue(at)
        if at < self.start:
            b = None
        else:
            b = int((at - self.start) // self.interval)
            if b != self._depth_bucket:
                self._roll_depth(b)
        fold = _FOLDS.get(e.kind)
        if fold is not None:
            fold(self, e, b)

    # tasks -------------------------------------------------------------

    def _created(self, e: EventRecord, b: int | None) -> None:
        d = e.data
        channel = str(d.get("channel") or EMAIL)
        queue = str(d.get("queue") or "")
        target = self._target(queue)
        deadline = d.get("deadline")
        if channel == PHONE:
            dtype, due = TARGET, None
        elif deadline is not None:
            dtype, due = target.deadline_type or GIVEN, float(deadline)
        else:
            dtype, due = NO_DEADLINE, e.at + target.seconds(channel)
        kind = (queue, channel, dtype)
        t = _Task(self._kinds.setdefault(kind, kind), e.at, due,
                  self.queue is None or queue == self.queue)
        self.tasks[e.task_id] = t
        self._set_waiting(t, True, b)
        if channel == EMAIL:
            t.pending_since = e.at
            self._due.push(due, e.task_id)
        if b is not None and t.flags >= COUNTED:
            c = self._cell(b, t)
            c.count("tasks_arrived")
            c.count("calls_offered" if channel == PHONE else "email_requests")

    def _set_waiting(self, t: _Task, waiting: bool, b: int | None) -> None:
        flags = t.flags
        t.flags = new = flags | WAITING if waiting else flags & ~WAITING
        if new == flags or flags < COUNTED:
            return
        key = t.kind
        n = self.depth.get(key, 0) + (1 if waiting else -1)
        self.depth[key] = n
        if b is not None:
            c = self._cell(b, t)
            if c.depth_max is None or n > c.depth_max:
                c.depth_max = n
            c.depth_end = n

    def _roll_depth(self, b: int) -> None:
        """A new bucket begins: every queue's depth carries over as its start (and peak so
        far); buckets without events get the depth they inherited when figures are taken."""
        self._depth_bucket = b
        for (queue, channel, dtype), n in self.depth.items():
            key = (b, queue, channel, dtype)
            c = self.cells.get(key)
            if c is None:
                c = self.cells[key] = Cell()
            if c.depth_max is None or n > c.depth_max:
                c.depth_max = n
            c.depth_end = n

    def _requeued(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        self._release(t, e.at)
        if e.kind == ev.TASK_TRANSFERRED:
            to_queue = e.data.get("to_queue")
            if to_queue:
                self._set_waiting(t, False, b)
                self._move(t, str(to_queue))
        self._set_waiting(t, True, b)

    def _changed(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        queue = e.data.get("queue")
        if t is None or not queue or queue == t.kind[0]:
            return
        waiting = bool(t.flags & WAITING)
        self._set_waiting(t, False, b)
        self._move(t, str(queue))
        self._set_waiting(t, waiting, b)

    def _move(self, t: _Task, queue: str) -> None:
        """The task is in `queue` now."""
        _, channel, dtype = t.kind
        kind = (queue, channel, dtype)
        t.kind = self._kinds.setdefault(kind, kind)
        if self.queue is None or queue == self.queue:
            t.flags |= COUNTED
        else:
            t.flags &= ~COUNTED

    def _offer(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if b is None or t is None or t.flags < COUNTED:
            return
        name = _OFFER_COUNTS[e.kind]
        self._cell(b, t).count(name)
        if e.agent_id:
            self._agent_cell(b, e.agent_id).count(name)

    def _callback(self, e: EventRecord, b: int | None) -> None:
        """A callback's request, dial, answer, no answer or retry (one count each); the no
        answer that ends it (`final`) is also `callbacks_not_reached`."""
        t = self.tasks.get(e.task_id)
        if b is None or t is None or t.flags < COUNTED:
            return
        c = self._cell(b, t)
        c.count(_CALLBACK_COUNTS[e.kind])
        if e.kind == CALLBACK_NO_ANSWER and e.data.get("final"):
            c.count("callbacks_not_reached")

    def _assigned(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        self._set_waiting(t, False, b)
        agent_id = e.agent_id or e.data.get("agent_id")
        if agent_id:
            self._hold(t, e.task_id, str(agent_id), e.at)
        if t.kind[1] == PHONE:
            self._answer_call(t, e.at, b)

    def _call_answered(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is not None:
            self._answer_call(t, e.at, b)

    def _answer_call(self, t: _Task, at: float, b: int | None) -> None:
        """A call is answered at its first `task.assigned` or `call.answered`."""
        if t.flags & ANSWERED:
            return
        t.flags |= ANSWERED | SETTLED
        if b is None or t.flags < COUNTED:
            return
        wait = at - t.created_at
        c = self._cell(b, t)
        c.count("calls_answered")
        c.stat("answer_wait", wait)
        c.count("sl_total")
        queue, channel, _ = t.kind
        if wait <= self._target(queue).seconds(channel):
            c.count("sl_met")

    def _call_ended(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if b is None or t is None or t.flags < COUNTED:
            return
        c = self._cell(b, t)
        talk = e.data.get("talk_seconds")
        if isinstance(talk, int | float) and not isinstance(talk, bool):
            c.stat("talk", float(talk))
            if t.agent:
                self._agent_cell(b, t.agent).stat("talk", float(talk))
        by = e.data.get("by")
        if by:
            c.count(f"ended_by:{by}")

    def _hold(self, t: _Task, task_id: str, agent_id: str, at: float) -> None:
        if t.agent == agent_id:
            return
        self._release(t, at)
        t.agent, t.assigned_at = agent_id, at
        a = self._agent(agent_id)
        if not a.held:
            a.busy_since = at
        a.held.add(task_id)

    def _release(self, t: _Task, at: float, task_id: str | None = None) -> None:
        if t.agent is None:
            return
        a = self._agent(t.agent)
        for held in list(a.held):
            if self.tasks.get(held) is t:
                a.held.discard(held)
        if not a.held and a.busy_since is not None:
            if a.status != OFFLINE:
                self._spans(t.agent, "occupied", max(a.busy_since, a.since), at)
            a.busy_since = None
        t.agent = None
        t.assigned_at = None

    def _completed(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        agent_id, assigned_at = t.agent, t.assigned_at
        self._set_waiting(t, False, b)
        self._release(t, e.at)
        t.flags &= ~OPEN
        if b is None or t.flags < COUNTED:
            return
        c = self._cell(b, t)
        c.count("tasks_handled")
        if agent_id:
            ac = self._agent_cell(b, agent_id)
            ac.count("tasks_handled")
            if assigned_at is not None:
                ac.stat("handle", e.at - assigned_at)
                c.stat("handle", e.at - assigned_at)
        if t.kind[1] == EMAIL and e.data.get("disposition") != REMINDER_DISPOSITION:
            c.stat("interactions", t.inbound + t.replies)
            if not t.replies:
                c.count("closed_without_reply")

    def _closed(self, e: EventRecord, b: int | None) -> None:
        """Cancelled or abandoned."""
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        self._set_waiting(t, False, b)
        self._release(t, e.at)
        t.flags &= ~OPEN
        if b is None or t.flags < COUNTED:
            return
        c = self._cell(b, t)
        if e.kind == ev.TASK_ABANDONED:
            if t.kind[1] == PHONE and not t.flags & ANSWERED:
                t.flags |= SETTLED
                c.count("calls_abandoned")
                c.stat("abandon_wait", e.at - t.created_at)
                c.count("sl_total")
            else:
                c.count("tasks_abandoned")
        else:
            c.count("tasks_cancelled")
            if t.kind[1] == EMAIL and not t.replies:
                c.count("closed_without_reply")

    # e-mail ------------------------------------------------------------

    def _received(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        t.inbound += 1
        if t.pending_since is None:
            t.pending_since = e.at
        if b is not None and t.flags >= COUNTED:
            self._cell(b, t).count("emails_received")

    def _reopened(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        t.flags |= OPEN
        self._set_waiting(t, True, b)
        if b is not None and t.flags >= COUNTED:
            c = self._cell(b, t)
            c.count("reopened")
            if t.last_mode:
                c.count(f"reopened:{t.last_mode}")

    def _back_from_reminder(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if t is None:
            return
        t.flags |= OPEN
        self._set_waiting(t, True, b)

    def _queued(  # noqa: C901 - one counter per figure a reply moves, top to bottom
        self, e: EventRecord, b: int | None
    ) -> None:
        t = self.tasks.get(e.task_id)
        d = e.data
        kind = str(d.get("kind") or "")
        if t is None:
            return
        if kind == OUT_ACK:
            if b is not None and t.flags >= COUNTED:
                self._cell(b, t).count("acks")
            return
        if kind != OUT_REPLY:
            if b is not None and t.flags >= COUNTED:
                self._cell(b, t).count(f"queued:{kind}")
            return
        t.replies += 1
        mode = d.get("mode")
        t.last_mode = str(mode) if mode else None
        first = not t.flags & ANSWERED
        t.flags |= ANSWERED
        pending, t.pending_since = t.pending_since, None
        met = None
        if first and not t.flags & SETTLED:
            t.flags |= SETTLED
            met = t.due is None or e.at <= t.due
        if b is None or t.flags < COUNTED:
            return
        c = self._cell(b, t)
        c.count("replies")
        if mode:
            c.count(f"mode:{mode}")
        if first:
            c.stat("first_response", e.at - t.created_at)
        if pending is not None:
            c.stat("response", e.at - pending)
        if met is not None:
            c.count("sl_total")
            if met:
                c.count("sl_met")
        agent_id = e.agent_id or (e.actor[6:] if e.actor.startswith("agent:") else None)
        if agent_id:
            self._agent_cell(b, agent_id).count("replies")

    def _sent(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        if b is not None and t is not None and t.flags >= COUNTED:
            self._cell(b, t).count("emails_sent")

    def _overdue(self, now: float) -> None:
        """E-mails whose first answer was due before `now` and never came: missed, counted in
        the bucket of their due time."""
        pending = self._due
        while pending.next_at < now:
            due, task_id = pending.pop()
            t = self.tasks.get(task_id)
            if t is None or t.flags & (SETTLED | ANSWERED) or not t.flags & OPEN:
                continue
            t.flags |= SETTLED
            b = self.bucket(due)
            if b is not None and t.flags >= COUNTED:
                c = self._cell(b, t)
                c.count("sl_total")
                c.count("overdue")

    # other features ----------------------------------------------------

    def _reviewed(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        d = e.data
        score, top = d.get("score"), d.get("max_score")
        if b is None or not _number(score) or not _number(top) or not top:
            return
        pct = 100.0 * float(score) / float(top)
        if t is not None and t.flags >= COUNTED:
            self._cell(b, t).stat("review_score", pct)
        agent_id = d.get("agent_id") or e.agent_id
        if agent_id and (t is None or t.flags >= COUNTED):
            self._agent_cell(b, str(agent_id)).stat("review_score", pct)

    def _categorised(self, e: EventRecord, b: int | None) -> None:
        t = self.tasks.get(e.task_id)
        category = e.data.get("category")
        if b is not None and t is not None and t.flags >= COUNTED and category:
            self._cell(b, t).count(f"category:{category}")

    # agents ------------------------------------------------------------

    def _status(self, e: EventRecord, b: int | None) -> None:
        if not e.agent_id:
            return
        status = str(e.data.get("status") or "")
        if not status:
            return
        a = self._agent(e.agent_id)
        self._close_agent_spans(e.agent_id, a, e.at)
        if status != OFFLINE and a.held and a.busy_since is None:
            a.busy_since = e.at
        a.status, a.since = status, e.at

    def _close_agent_spans(self, agent_id: str, a: _Agent, at: float,
                           into: dict[tuple[int, str], Cell] | None = None) -> None:
        if a.status == OFFLINE:
            return
        self._spans(agent_id, "logged_in", a.since, at, into)
        if a.status == BREAK:
            self._spans(agent_id, "on_break", a.since, at, into)
        if a.held and a.busy_since is not None:
            self._spans(agent_id, "occupied", max(a.busy_since, a.since), at, into)
            if into is None:
                a.busy_since = at

    # ------------------------------------------------------------------ reading

    def figures(self, now: float | None = None, copy: bool = True) -> Figures:
        """A snapshot of every figure up to `now` (default: the period's end, or the last event
        for a live tally). Open spans and overdue e-mails are counted up to `now` in the
        snapshot only. `copy=False` saves copying the cells when the tally is not fed any more
        (a finished report): the figures would change with the tally otherwise."""
        if now is None:
            now = self.end if self.end is not None else self.last_at
        if self.end is not None:
            now = min(now, self.end)
        if copy:
            cells = {k: c.copy() for k, c in self.cells.items()}
            agent_cells = {k: c.copy() for k, c in self.agent_cells.items()}
        else:
            cells = _CopyOnWrite(self.cells)
            agent_cells = _CopyOnWrite(self.agent_cells)
        for agent_id, a in self.agents.items():
            if a.status != OFFLINE:
                self._close_agent_spans(agent_id, a, now, agent_cells)
        for due, task_id in self._due.before(now):
            t = self.tasks.get(task_id)
            if t is None or t.flags & (SETTLED | ANSWERED) or (
                    t.flags & (OPEN | COUNTED) != OPEN | COUNTED):
                continue
            b = self.bucket(due)
            if b is not None:
                c = _writable(cells, (b, *t.kind))
                c.count("sl_total")
                c.count("overdue")
        return Figures(self.start, self.end if self.end is not None else now, self.interval,
                       self.buckets(now), cells, agent_cells, self.queue, self.events,
                       self.targets, until=now)


class _CopyOnWrite(dict):
    """The tally's cells for a snapshot taken without copying: a cell is copied the first time
    the snapshot asks for it to change it (`cells.get` / `cells[key]` for writing go through
    `writable`)."""

    def __init__(self, cells: Mapping[Any, Cell]) -> None:
        super().__init__(cells)
        self._copied: set[Any] = set()

    def writable(self, key: Any) -> Cell:
        c = dict.get(self, key)
        if c is None:
            c = self[key] = Cell()
        elif key not in self._copied:
            c = self[key] = c.copy()
        self._copied.add(key)
        return c


def _writable(cells: dict[Any, Cell], key: Any) -> Cell:
    if isinstance(cells, _CopyOnWrite):
        return cells.writable(key)
    c = cells.get(key)
    if c is None:
        c = cells[key] = Cell()
    return c


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_OFFER_COUNTS = {
    ev.TASK_OFFERED: "offers_made",
    ev.OFFER_ACCEPTED: "offers_accepted",
    ev.OFFER_REJECTED: "offers_rejected",
    ev.OFFER_EXPIRED: "offers_expired",
    ev.OFFER_WITHDRAWN: "offers_withdrawn",
}

_CALLBACK_COUNTS = {
    CALLBACK_REQUESTED: "callbacks_requested",
    CALLBACK_DIALLED: "callback_attempts",
    CALLBACK_REACHED: "callbacks_reached",
    CALLBACK_NO_ANSWER: "callback_no_answers",
    CALLBACK_RETRY: "callback_retries",
}

_FOLDS = {
    ev.TASK_CREATED: Tally._created,
    ev.TASK_OFFERED: Tally._offer,
    ev.OFFER_ACCEPTED: Tally._offer,
    ev.OFFER_REJECTED: Tally._offer,
    ev.OFFER_EXPIRED: Tally._offer,
    ev.OFFER_WITHDRAWN: Tally._offer,
    ev.TASK_ASSIGNED: Tally._assigned,
    ev.TASK_COMPLETED: Tally._completed,
    ev.TASK_CANCELLED: Tally._closed,
    ev.TASK_ABANDONED: Tally._closed,
    ev.TASK_REQUEUED: Tally._requeued,
    ev.TASK_TRANSFERRED: Tally._requeued,
    ev.TASK_CHANGED: Tally._changed,
    ev.AGENT_STATUS: Tally._status,
    EMAIL_RECEIVED: Tally._received,
    EMAIL_QUEUED: Tally._queued,
    EMAIL_SENT: Tally._sent,
    EMAIL_REOPENED: Tally._reopened,
    REMINDER_DUE: Tally._back_from_reminder,
    CALL_ANSWERED: Tally._call_answered,
    CALL_ENDED: Tally._call_ended,
    REPLY_REVIEWED: Tally._reviewed,
    TASK_CATEGORISED: Tally._categorised,
    **dict.fromkeys(_CALLBACK_COUNTS, Tally._callback),
}

SCOPES = ("all", "channel", "queue", "queue_channel", "deadline")


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: `bucket` None = the whole period; `scope`/`key` as in `Figures.cell`, or
    scope "agent" with the agent id."""

    bucket: int | None
    start: float
    scope: str
    key: str
    metric: str
    value: float | None


class Figures:
    """A snapshot of a tally: merged views of its cells (see the module docstring)."""

    def __init__(self, start: float, end: float, interval: float, buckets: range,
                 cells: Mapping[Key, Cell], agent_cells: Mapping[tuple[int, str], Cell],
                 queue: str | None, events: int,
                 targets: Mapping[str, QueueTarget] | None = None,
                 until: float | None = None) -> None:
        self.start, self.end, self.interval = start, end, interval
        # What the figures count up to: `end`, or `now` when the period runs into the future
        # (nothing after it is counted, and the intervals after it are not in `buckets`).
        self.until = end if until is None else min(until, end)
        self.bucket_range = buckets
        self._cells = cells
        self._agent_cells = agent_cells
        self.queue = queue
        self.events = events
        self.targets = dict(targets or {})
        self._memo: dict[tuple[str, str, int | None], Cell] = {}
        self._fill_depth()
        self._by_bucket: dict[int, list[tuple[str, str, str, Cell]]] = {}
        for (b, q, ch, dt), c in self._cells.items():
            self._by_bucket.setdefault(b, []).append((q, ch, dt, c))
        self._by_agent: dict[str, list[tuple[int, Cell]]] = {}
        for (b, a), c in self._agent_cells.items():
            self._by_agent.setdefault(a, []).append((b, c))
        self._keys = {scope: sorted({_key(scope, q, ch, dt) for (_, q, ch, dt) in self._cells})
                      for scope in SCOPES}
        self._keys["agent"] = sorted(self._by_agent)

    def _fill_depth(self) -> None:
        """Buckets in which nothing happened to a queue keep the depth it had at the end of
        the previous bucket."""
        last: dict[tuple[str, str, str], int] = {}
        by_bucket: dict[int, dict[tuple[str, str, str], Cell]] = {}
        for (b, q, ch, dt), c in self._cells.items():
            by_bucket.setdefault(b, {})[(q, ch, dt)] = c
        cells = dict(self._cells)
        for b in self.bucket_range:
            here = by_bucket.get(b, {})
            for key, n in last.items():
                if key not in here or here[key].depth_end is None:
                    c = here.get(key)
                    c = Cell() if c is None else c.copy()  # never change the tally's cells
                    cells[(b, *key)] = c
                    c.depth_max = n if c.depth_max is None else max(c.depth_max, n)
                    c.depth_end = n
            for key, c in here.items():
                if c.depth_end is not None:
                    last[key] = c.depth_end
        self._cells = cells

    def bucket_start(self, b: int) -> float:
        return self.start + b * self.interval

    @property
    def buckets(self) -> list[int]:
        return list(self.bucket_range)

    def keys(self, scope: str) -> list[str]:
        """The keys seen in a scope (e.g. the queue names for "queue")."""
        return list(self._keys.get(scope, ()))

    def cell(self, scope: str = "all", key: str = "", bucket: int | None = None) -> Cell:
        """The merged cell of one scope and key, for one bucket or (None) the whole period.
        The period's depth figures are the peak over the buckets and the depth at the end."""
        memo = self._memo.get((scope, key, bucket))
        if memo is not None:
            return memo
        out = Cell()
        if scope == "agent":
            if bucket is None:  # agents' figures are for the whole period only
                for _, c in self._by_agent.get(key, ()):
                    out.merge(c)
        elif bucket is None:
            for b in self.bucket_range:
                part = self.cell(scope, key, b)
                depth_max, depth_end = out.depth_max, part.depth_end
                out.merge(part)
                if part.depth_max is not None:
                    out.depth_max = (part.depth_max if depth_max is None
                                     else max(depth_max, part.depth_max))
                    out.depth_end = depth_end
        else:
            for q, ch, dt, c in self._by_bucket.get(bucket, ()):
                if scope == "all" or _key(scope, q, ch, dt) == key:
                    out.merge(c)
        if scope in ("queue", "queue_channel"):
            out.extra = self._sla(scope, key, bucket, out)
        self._memo[(scope, key, bucket)] = out
        return out

    def _sla(self, scope: str, key: str, bucket: int | None, cell: Cell,
             ) -> dict[str, float | None]:
        """SLA compliance of a queue: `sl_target` the share its service level must reach;
        `sla_met` 1 when it did (in the interval, or over the period), 0 when it did not, None
        with nothing settled; over the period, `sla_compliance` the share of the intervals with
        settled requests in which it did."""
        queue = key.rpartition("/")[0] if scope == "queue_channel" else key
        share = self.targets.get(queue, DEFAULT_TARGET).sl_share
        settled = cell.counts.get("sl_total", 0)
        met = None if not settled else float(cell.counts.get("sl_met", 0) / settled >= share)
        out: dict[str, float | None] = {"sl_target": share, "sla_met": met}
        if bucket is None:
            marks = [self.cell(scope, key, b).extra["sla_met"] for b in self.bucket_range]
            judged = [m for m in marks if m is not None]
            out["sla_compliance"] = sum(judged) / len(judged) if judged else None
        return out

    def rows(self, intervals: bool = True) -> list[Row]:
        """Every figure: the period first, then each interval; per scope and key (cells with
        nothing in them are left out)."""
        out: list[Row] = []
        for b in [None] + (self.buckets if intervals else []):
            start = self.start if b is None else self.bucket_start(b)
            for scope in SCOPES:
                for key in ([""] if scope == "all" else self.keys(scope)):
                    cell = self.cell(scope, key, b)
                    if cell.empty:
                        continue
                    for metric, value in cell.values().items():
                        out.append(Row(b, start, scope, key, metric, value))
            if b is None:
                for agent in self.keys("agent"):
                    for metric, value in self.cell("agent", agent).values().items():
                        out.append(Row(None, start, "agent", agent, metric, value))
        return out


def _key(scope: str, queue: str, channel: str, dtype: str) -> str:
    if scope == "channel":
        return channel
    if scope == "queue":
        return queue
    if scope == "queue_channel":
        return f"{queue}/{channel}"
    if scope == "deadline":
        return dtype
    return ""
