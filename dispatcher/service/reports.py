"""Reports: statistics of a period from the event log, and today's figures kept up to date.

Sits in `dispatcher.service`; reads through `ports.ReportStore` (the event logs) and
`ports.Store` (the queues' targets) and computes with `dispatcher.domain.metrics.Tally` (the one
definition of every figure, docs/metrics.md). It gives figures and their plain JSON data
(`report_data`, served by the REST API), not documents: rendering (text, CSV, JSON, HTML with
SVG plots) is the admin edge's, admin/report_views.py.
What it promises:
- `Reports.build(start, end, interval, queue)` folds [start, end) of both logs, streamed, and
  fires with a `Report` (its `Figures`, the period and the interval);
- `Today` keeps a tally of the current day (UTC) and refreshes it incrementally from the log
  (only the events committed since the last refresh), for the live view and `/metrics`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dispatcher.domain.errors import InvalidValue, UnknownQueue
from dispatcher.domain.metrics import (
    DAY,
    HOUR,
    INTERVALS,
    METRICS,
    SCOPES,
    Figures,
    QueueTarget,
    Tally,
)

from .ports import Progress, ReportStore, Store

MAX_BUCKETS = 5000  # a month by 15 minutes is 2976; a year by hour 8760 (too many to read)
# `Today`: events are re-read from this many seconds before the newest one seen, and the ones
# already folded skipped, so a commit that lands a little late is not missed.
REFRESH_OVERLAP_SECONDS = 10.0
FAR_FUTURE = 1e12
# `Today` re-reads the queues' targets (from the store) at most this often.
TARGETS_REFRESH_SECONDS = 60.0


def parse_interval(text: str) -> float:
    if text not in INTERVALS:
        raise InvalidValue(f"interval must be one of {', '.join(INTERVALS)}, not {text!r}")
    return INTERVALS[text]


def interval_name(seconds: float) -> str:
    for name, value in INTERVALS.items():
        if value == seconds:
            return name
    return f"{seconds:g}s"


def parse_time(text: str) -> float:
    """An ISO 8601 date or date-time (no zone: UTC), or seconds since the epoch."""
    text = (text or "").strip()
    try:
        return float(text)
    except ValueError:
        pass
    if "T" in text:  # a "+01:00" offset that went through a URL query unencoded
        text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"not a date or time: {text!r} (use e.g. 2026-11-01 or "
                           f"2026-11-01T08:00+01:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class Report:
    start: float
    end: float
    interval: float
    queue: str | None
    figures: Figures
    events: int  # events of the period read from the log
    generated_at: float

    @property
    def until(self) -> float:
        """What the figures count up to: the end, or the time the report was built when the
        period runs into the future."""
        return self.figures.until


def report_data(report: Report, when: Callable[[float], Any] = float) -> dict[str, Any]:
    """A report's figures as plain JSON data (data, not rendering; the REST API serves it, the
    admin edge's JSON adds the epoch seconds beside ISO times): the period, the metrics'
    definitions (docs/metrics.md) under `definitions`, the period's figures per scope, per
    agent, and per interval. `when(seconds)` gives a time's JSON value (default: the seconds)."""
    f = report.figures
    return {
        "report": {"from": when(report.start), "to": when(report.end),
                   "interval": interval_name(report.interval), "queue": report.queue,
                   "events": report.events, "generated_at": when(report.generated_at),
                   "until": when(report.until)},
        "definitions": METRICS,
        "period": _figures_data(f, None),
        "agents": {a: f.cell("agent", a).values() for a in f.keys("agent")},
        "intervals": [{"from": when(f.bucket_start(b)),
                       "to": when(min(report.end, f.bucket_start(b) + report.interval)),
                       "figures": _figures_data(f, b)} for b in f.buckets],
    }


def _figures_data(f: Figures, bucket: int | None) -> dict[str, dict[str, dict[str, Any]]]:
    """{scope: {key: {metric: value}}} of one bucket (None: the whole period), empty cells
    left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scope in SCOPES:
        keys = [""] if scope == "all" else f.keys(scope)
        part = {k: f.cell(scope, k, bucket).values() for k in keys
                if not f.cell(scope, k, bucket).empty}
        if part:
            out[scope] = part
    return out


class Reports:
    def __init__(self, events: ReportStore, store: Store, clock: IReactorTime) -> None:
        self.events = events
        self.store = store
        self.clock = clock

    def build(self, start: float, end: float, interval: float = HOUR, queue: str | None = None,
              progress: Progress | None = None) -> Deferred[Report]:
        """Fold [start, end) of the log; fails with InvalidValue / UnknownQueue for bad input."""
        return ensureDeferred(self._build(start, end, interval, queue, progress))

    async def _build(self, start: float, end: float, interval: float, queue: str | None,
                     progress: Progress | None) -> Report:
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise InvalidValue("the report must end after it starts")
        if interval not in INTERVALS.values():
            raise InvalidValue(f"interval must be one of {', '.join(INTERVALS)}")
        if (end - start) / interval > MAX_BUCKETS:
            raise InvalidValue(f"more than {MAX_BUCKETS} intervals: choose a longer interval "
                               f"or a shorter period")
        targets = await queue_targets(self.store)
        if queue is not None and queue not in targets:
            raise UnknownQueue(queue)
        tally = Tally(start, end, interval, targets, queue)
        n = await self.events.fold_events(start, end, tally.add_all, progress)
        now = self.clock.seconds()
        # Up to now: a period that runs into the future counts no time that has not happened
        # (logged in, occupied, overdue) and has no intervals after now.
        return Report(start, end, interval, queue, tally.figures(min(end, now), copy=False), n,
                      now)


async def queue_targets(store: Store) -> dict[str, QueueTarget]:
    return {q.name: QueueTarget.from_queue(q) for q in await store.list_queues()}


def utc_day_start(t: float) -> float:
    return math.floor(t / DAY) * DAY


class Today:
    """A tally of the current day, refreshed from the log on demand (`refresh()`): the first
    call folds the day so far (with its context), later ones only what was committed since. A
    new day starts a new tally. `day_start(now)` says when the day began (default: UTC)."""

    def __init__(self, events: ReportStore, store: Store, clock: IReactorTime,
                 interval: float = HOUR,
                 day_start: Callable[[float], float] = utc_day_start) -> None:
        self.events, self.store, self.clock = events, store, clock
        self.interval = interval
        self.day_start = day_start
        self.tally: Tally | None = None
        self._seen: dict[tuple[int, bool], float] = {}  # (id, agent log) -> at, in the overlap
        self._waiters: list[Deferred[Figures]] = []
        self._targets_at = 0.0

    def refresh(self) -> Deferred[Figures]:
        """Today's figures up to now; calls made while a refresh runs share its result."""
        waiter: Deferred[Figures] = Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            ensureDeferred(self._refresh()).addBoth(self._done)
        return waiter

    def _done(self, result: Any) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(result)

    async def _refresh(self) -> Figures:
        now = self.clock.seconds()
        start = self.day_start(now)
        if self.tally is None or self.tally.start != start:
            self.tally = Tally(start, None, self.interval, await queue_targets(self.store))
            self._seen = {}
            await self.events.fold_events(start, FAR_FUTURE, self._sink(self.tally))
            self._targets_at = now
        else:
            if now - self._targets_at >= TARGETS_REFRESH_SECONDS:  # a queue's target changed
                self.tally.targets = await queue_targets(self.store)
                self._targets_at = now
            since = max(start, self.tally.last_at - REFRESH_OVERLAP_SECONDS)
            await self.events.fold_events(since, FAR_FUTURE, self._sink(self.tally),
                                          context=False)
        return self.tally.figures(now)

    def _sink(self, tally: Tally) -> Callable[[Sequence[Any]], None]:
        def sink(rows: Sequence[Any]) -> None:
            seen = self._seen
            for r in rows:
                key = (r.id, r.task_id is None)
                if key in seen:
                    continue
                seen[key] = r.at
                tally.add(r)
            horizon = tally.last_at - REFRESH_OVERLAP_SECONDS
            for key in [k for k, at in seen.items() if at < horizon]:
                del seen[key]
        return sink
