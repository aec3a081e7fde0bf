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
  (only the events committed since the last refresh), for the live view and `/metrics`; with
  checkpoints on, it saves that tally now and then and at stop, and a restart resumes from it,
  folding only the log after it, with the same figures as a fold of the whole day.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from dispatcher.domain import metrics_state
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

from .ports import Progress, ReportCheckpoint, ReportStore, Store

log = logging.getLogger(__name__)

MAX_BUCKETS = 5000  # a month by 15 minutes is 2976; a year by hour 8760 (too many to read)
# `Today`: events are re-read from this many seconds before the newest one seen, and the ones
# already folded skipped, so a commit that lands a little late is not missed.
REFRESH_OVERLAP_SECONDS = 10.0
FAR_FUTURE = 1e12
# `Today` re-reads the queues' targets (from the store) at most this often.
TARGETS_REFRESH_SECONDS = 60.0
# `Today`'s checkpoints: saved under this name, in this format (the tally's own format,
# metrics_state.VERSION, times 100 plus the version of what `Today` adds to it); how often by
# default ([reports] checkpoint_seconds).
CHECKPOINT_NAME = "today"
CHECKPOINT_VERSION = metrics_state.VERSION * 100 + 1
CHECKPOINT_SECONDS = 60.0


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
    new day starts a new tally. `day_start(now)` says when the day began (default: UTC).

    Checkpoints (`checkpoint_seconds` > 0: the process that routes; docs/metrics.md): `start()`
    saves the tally (metrics_state.dump) with what the next refresh needs to resume — the
    events already folded in the overlap window (`_seen`) and the count of the day's events
    folded before it — every `checkpoint_seconds`, and `stop()` once more; the first refresh
    of a new `Today` then loads today's checkpoint and folds only the log after it.

    Why that is the same as a full fold: a checkpoint is taken between two refreshes (under
    the lock both take), so resuming from it *is* the next incremental refresh of the process
    that saved it — the same tally, the same `_seen`, the same read from `last_at -
    REFRESH_OVERLAP_SECONDS` with the events already folded skipped. That read is what keeps
    events that commit out of id order (two group commits in flight, storage/commit.py; the
    id gaps storage/cursor.py settles) from being missed or counted twice: an event commits
    within a few seconds of the time it carries, so one not yet visible at a refresh carries a
    time in the overlap window of the next one, and one visible is in `_seen`. What the overlap
    cannot see — an event written later with a time before the window (a bulk import, a
    commit stalled longer than the overlap) or events removed — the checkpoint catches: it
    holds how many events of the day it folded before the window, and the log must still hold
    exactly as many (`count_events`) or the checkpoint is ignored. So is one of another day,
    of another format (`CHECKPOINT_VERSION`) or unreadable; each is logged once, and the day is
    folded in full as without a checkpoint."""

    def __init__(self, events: ReportStore, store: Store, clock: IReactorTime,
                 interval: float = HOUR,
                 day_start: Callable[[float], float] = utc_day_start,
                 checkpoint_seconds: float = 0.0, checkpoint_name: str = CHECKPOINT_NAME,
                 ) -> None:
        self.events, self.store, self.clock = events, store, clock
        self.interval = interval
        self.day_start = day_start
        self.tally: Tally | None = None
        self._seen: dict[tuple[int, bool], float] = {}  # (id, agent log) -> at, in the overlap
        self._period = 0  # events of the day (at >= its start) folded, each once
        self._waiters: list[Deferred[Figures]] = []
        self._targets_at = 0.0
        self._lock = DeferredLock()  # a fold or a checkpoint at a time
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_name = checkpoint_name
        self._loop: LoopingCall | None = None
        # How the day's first fold went: "checkpoint" (resumed), or why it folded the whole
        # day ("none", "other day" (or interval), "other version", "unreadable ...", "log
        # changed", "off").
        self.resumed: str | None = None
        self.saved_bytes = 0  # the last checkpoint's JSON length
        self._saved_position: tuple[float, int, float, int] | None = None

    def refresh(self) -> Deferred[Figures]:
        """Today's figures up to now; calls made while a refresh runs share its result."""
        waiter: Deferred[Figures] = Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            ensureDeferred(self._locked(self._refresh)).addBoth(self._done)
        return waiter

    def _done(self, result: Any) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(result)

    async def _locked(self, fn: Callable[[], Any]) -> Any:
        await self._lock.acquire()
        try:
            return await fn()
        finally:
            self._lock.release()

    async def _refresh(self) -> Figures:
        now = self.clock.seconds()
        start = self.day_start(now)
        if self.tally is None or self.tally.start != start:
            targets = await queue_targets(self.store)
            self._targets_at = now
            # Resumed at the first read only: a new day that begins while running has no
            # checkpoint of its own yet.
            if not (self.tally is None and await self._resume(start, targets)):
                self.tally = Tally(start, None, self.interval, targets)
                self._seen, self._period = {}, 0
                await self.events.fold_events(start, FAR_FUTURE, self._sink(self.tally))
                return self.tally.figures(now)
        elif now - self._targets_at >= TARGETS_REFRESH_SECONDS:  # a queue's target changed
            self.tally.targets = await queue_targets(self.store)
            self._targets_at = now
        since = max(start, self.tally.last_at - REFRESH_OVERLAP_SECONDS)
        await self.events.fold_events(since, FAR_FUTURE, self._sink(self.tally), context=False)
        return self.tally.figures(now)

    def _sink(self, tally: Tally) -> Callable[[Sequence[Any]], None]:
        def sink(rows: Sequence[Any]) -> None:
            seen = self._seen
            start = tally.start
            for r in rows:
                key = (r.id, r.task_id is None)
                if key in seen:
                    continue
                seen[key] = r.at
                if r.at >= start:
                    self._period += 1
                tally.add(r)
            # Rebuilt, not pruned in place: a dict never gives back the room it grew to (the
            # day's first fold passes the open tasks' earlier events, several per open task).
            horizon = tally.last_at - REFRESH_OVERLAP_SECONDS
            self._seen = {k: at for k, at in seen.items() if at >= horizon}
        return sink

    # ------------------------------------------------------------------ checkpoints

    def start(self) -> None:
        """Save a checkpoint every `checkpoint_seconds` (none when it is 0)."""
        if self.checkpoint_seconds > 0 and self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.checkpoint_seconds, now=False).addErrback(
                lambda f: log.error("today's checkpoints stopped: %s", f.getErrorMessage()))

    def stop(self) -> Deferred[None]:
        """Stop saving; after `start()` with checkpoints on, save one last one (the tally
        brought up to date first). Fires when it is stored (or could not be: logged, never
        failed)."""
        started, self._loop = self._loop, None
        if started is None:  # never started (or checkpoints off): nothing to save
            return succeed(None)
        if started.running:
            started.stop()
        if self.tally is None and not self._waiters:  # the day never read: nothing to save
            return succeed(None)
        return self._tick()

    def _tick(self) -> Deferred[None]:
        d = self.refresh()
        d.addCallback(lambda _: self.checkpoint())
        d.addErrback(lambda f: log.warning("today's figures: no checkpoint saved: %s",
                                           f.getErrorMessage()))
        return d.addCallback(lambda _: None)

    def checkpoint(self) -> Deferred[int]:
        """Save the tally as it is (after the refresh in progress, if any); fires with the
        JSON's length (0: nothing folded yet, nothing saved)."""
        return ensureDeferred(self._locked(self._save))

    async def _save(self) -> int:
        tally = self.tally
        if tally is None:
            return 0
        position = (tally.start, tally.events, tally.last_at, self._period)
        if position == self._saved_position:  # nothing folded since the last save
            return self.saved_bytes
        saved_at = self.clock.seconds()
        seen, period = dict(self._seen), self._period
        horizon = max(tally.start, tally.last_at - REFRESH_OVERLAP_SECONDS)

        def make() -> ReportCheckpoint:  # on the store's thread; the lock keeps folds away
            return ReportCheckpoint(self.checkpoint_name, tally.start, CHECKPOINT_VERSION,
                                    saved_at, {
                "tally": metrics_state.dump(tally),
                "seen": [[i, agent, at] for (i, agent), at in seen.items()],
                "before": period - sum(1 for at in seen.values() if at >= horizon),
                "period": period,
                "horizon": horizon,
            })
        self.saved_bytes = await self.events.save_checkpoint(make)
        self._saved_position = position
        return self.saved_bytes

    async def _resume(self, start: float, targets: dict[str, QueueTarget]) -> bool:
        """Today's checkpoint loaded (True), or why not in `resumed` (False)."""
        if self.checkpoint_seconds <= 0:
            self.resumed = "off"
            return False

        def decode(cp: ReportCheckpoint | None) -> Any:  # on the store's thread
            return _decode_checkpoint(cp, start)
        try:
            got = await self.events.load_checkpoint(self.checkpoint_name, decode)
        except Exception as exc:  # noqa: BLE001 - any failure: the day is folded in full
            got = f"unreadable ({exc!r})"
        if isinstance(got, tuple):
            tally, seen, period, before, horizon = got
            if (tally.start, tally.end, tally.interval, tally.queue) != (
                    start, None, self.interval, None):
                got = "other day"
            elif await self.events.count_events(start, horizon) != before:
                got = "log changed"
        if not isinstance(got, tuple):
            self.resumed = got
            if got != "none":
                log.info("today's figures: checkpoint ignored (%s): the whole day is read", got)
            return False
        tally.targets = targets
        self.tally, self._seen, self._period = tally, seen, period
        self.resumed = "checkpoint"
        return True


def _decode_checkpoint(cp: ReportCheckpoint | None, start: float) -> Any:
    """(tally, seen, period, before, horizon) of `Today`'s checkpoint of the day beginning at
    `start`, or why it cannot be resumed from (a string)."""
    if cp is None:
        return "none"
    if cp.version != CHECKPOINT_VERSION:
        return "other version"
    if cp.day_start != start:
        return "other day"
    try:
        data = cp.data
        tally = metrics_state.load(data["tally"])
        seen = {(int(i), bool(agent)): float(at) for i, agent, at in data["seen"]}
        return tally, seen, int(data["period"]), int(data["before"]), float(data["horizon"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"unreadable ({exc})"
