"""Reading the event logs for reports: `SqlReportStore`, the SQL side of `ports.ReportStore`.

Sits under `dispatcher.storage`. What it promises:
- a period's events (both logs, merged in time order, ties in log order) are streamed in chunks
  of `CHUNK` rows (PostgreSQL: server-side cursors; SQLite: the cursor fetches as it goes), so a
  month of a large centre is never held in memory at once; so is the context before it (the
  earlier events of the tasks open at its start: several per open task after a restart); the
  rows go to the sink as they are read and are not kept;
- reads run on the store's own engine and thread, never on the dispatcher's write pool: a long
  report does not delay a commit. On SQLite the read transaction is a plain (deferred) `BEGIN`,
  which in WAL mode takes no lock that writers wait for; all the reads of one report see one
  snapshot on both databases;
- only what the figures read is read: the kinds `metrics.Tally` folds (FOLDED), their `data`
  only where a fold reads it (DATA_KINDS), and in the context only the kinds that set a task's
  state (STATE_KINDS); the figures are the same as from every event (tested);
- checkpoints of today's fold are saved and loaded on the same reading thread, in turn with the
  folds (report_checkpoints.py);
- indexes used: `ix_task_events_at` / `ix_agent_events_at` for the period,
  `ix_tasks_state_queue` and the primary key for the tasks open at the start,
  `ix_task_events_task_id_id` / `ix_agent_events_agent_id_id` for the context.
"""

from __future__ import annotations

import bisect
import json
import operator
import time
from collections.abc import Callable, Iterator
from sys import intern
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain import events as ev
from dispatcher.domain.tasks import OPEN_STATES
from dispatcher.service.ports import (
    STATUS_LOOKBACK_SECONDS,
    EventSink,
    Progress,
    ReportCheckpoint,
)

from . import tables as t
from .engine import SQLITE_BUSY_TIMEOUT_MS, is_sqlite
from .pool import Pool
from .report_checkpoints import thd_load_checkpoint, thd_save_checkpoint

CHUNK = 10_000  # rows per fetch and per call of the sink
# Snapshot isolation for the reads of one report on PostgreSQL (the default READ COMMITTED
# would let the count, the context and the period see different commits).
POSTGRES_READ_ISOLATION = "REPEATABLE READ"

_COLUMNS = ("id", "kind", "at", "task_id", "agent_id", "actor", "data")

# What `metrics.Tally` reads of the log (tests/dispatcher/storage/test_reports.py holds these
# against its folds, kind by kind). FOLDED: the kinds it folds; the others change no figure
# and are not read. DATA_KINDS: the folds that read an event's `data`; the others' data is not
# even fetched (most of the log's bytes: an e-mail's subject and sender). STATE_KINDS: the
# folds that change what the tally remembers of a task before the period starts; the context
# (the earlier events of the tasks open at the start) reads only these, since an earlier event
# counts nothing.
FOLDED = frozenset({
    ev.TASK_CREATED, ev.TASK_OFFERED, ev.OFFER_ACCEPTED, ev.OFFER_REJECTED, ev.OFFER_EXPIRED,
    ev.OFFER_WITHDRAWN, ev.TASK_ASSIGNED, ev.TASK_COMPLETED, ev.TASK_CANCELLED,
    ev.TASK_ABANDONED, ev.TASK_REQUEUED, ev.TASK_TRANSFERRED, ev.TASK_CHANGED, ev.AGENT_STATUS,
    ev.EMAIL_RECEIVED, ev.EMAIL_QUEUED, ev.EMAIL_SENT, ev.EMAIL_REOPENED, ev.REMINDER_DUE,
    ev.CALL_ANSWERED, ev.CALL_ENDED, ev.REPLY_REVIEWED, ev.TASK_CATEGORISED,
    ev.CALLBACK_REQUESTED, ev.CALLBACK_DIALLED, ev.CALLBACK_REACHED, ev.CALLBACK_NO_ANSWER,
    ev.CALLBACK_RETRY,
})
DATA_KINDS = frozenset({
    ev.TASK_CREATED, ev.TASK_ASSIGNED, ev.TASK_COMPLETED, ev.TASK_TRANSFERRED, ev.TASK_CHANGED,
    ev.AGENT_STATUS, ev.EMAIL_QUEUED, ev.CALL_ENDED, ev.REPLY_REVIEWED, ev.TASK_CATEGORISED,
    ev.CALLBACK_NO_ANSWER,
})
STATE_KINDS = frozenset({
    ev.TASK_CREATED, ev.TASK_ASSIGNED, ev.TASK_COMPLETED, ev.TASK_CANCELLED, ev.TASK_ABANDONED,
    ev.TASK_REQUEUED, ev.TASK_TRANSFERRED, ev.TASK_CHANGED, ev.EMAIL_RECEIVED, ev.EMAIL_QUEUED,
    ev.EMAIL_REOPENED, ev.REMINDER_DUE, ev.CALL_ANSWERED,
})


def make_read_engine(url: str | sa.URL) -> sa.Engine:
    """An engine for reading reports only. SQLite: WAL, a busy timeout and a deferred BEGIN
    (the write engine's BEGIN IMMEDIATE would lock writers out for the whole report)."""
    if is_sqlite(url):
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    return sa.create_engine(url, pool_size=1, pool_pre_ping=True,
                            isolation_level=POSTGRES_READ_ISOLATION)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the "begin" listener emits BEGIN
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


# A decoded event's short string values (a queue, a channel, an agent) are shared (`sys.intern`):
# a tally keeps some for every task it follows (today's figures follow every open task).
SHARED_VALUE_CHARS = 24


class LogEvent:
    """One event as read for a report (a `metrics.EventRecord`): `data` is decoded from its
    JSON text on first use only, since most figures never look at it (decoding is most of the
    cost of reading the log); its short string values are shared (SHARED_VALUE_CHARS), and its
    task id (a tally keeps it for every task it follows)."""

    __slots__ = ("id", "kind", "at", "task_id", "agent_id", "actor", "_raw", "_data")

    def __init__(self, id: int, kind: str, at: float, task_id: str | None,
                 agent_id: str | None, actor: str, raw: Any) -> None:
        self.id, self.kind, self.at = id, kind, at
        # The task id interned, as the router's loaded tasks have theirs: one string for both.
        self.task_id = None if task_id is None else intern(task_id)
        self.agent_id, self.actor = agent_id, actor
        self._raw = raw
        self._data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            raw = self._raw
            if isinstance(raw, str):
                try:  # the C scanner alone: the text is what json.dumps wrote
                    value = _scan(raw, 0)[0]
                except (StopIteration, ValueError):
                    value = json.loads(raw)
            else:
                value = raw if isinstance(raw, dict) else json.loads(raw or "{}")
            if isinstance(value, dict):
                for k, v in value.items():  # no key added or removed: safe while iterating
                    if type(v) is str and len(v) <= SHARED_VALUE_CHARS:
                        value[k] = intern(v)
                self._data = value
            else:
                self._data = {}
        return self._data


_scan = json.JSONDecoder().scan_once


def _select(table: sa.Table, kinds: frozenset[str] = FOLDED) -> sa.Select:
    """The events of `kinds`; their JSON as text, decoded lazily by LogEvent (psycopg2 would
    decode every json value), and only for DATA_KINDS (NULL, read as {}, for the others)."""
    data = sa.case((table.c.kind.in_(sorted(DATA_KINDS)), sa.cast(table.c.data, sa.Text)),
                   else_=sa.null())
    return (sa.select(*(table.c[name] for name in _COLUMNS[:-1]), data.label("data"))
            .where(table.c.kind.in_(sorted(kinds))))


def _stream(conn: sa.Connection, stmt: sa.Select) -> Iterator[list[LogEvent]]:
    """Events of `stmt` in lists of up to `CHUNK`, fetched as they are needed (a server-side
    cursor on PostgreSQL)."""
    result = conn.execution_options(yield_per=CHUNK).execute(stmt)
    for part in result.partitions():
        yield [LogEvent(*row) for row in part]


def _merged(tasks: Iterator[list[LogEvent]], agents: Iterator[list[LogEvent]],
            ) -> Iterator[list[LogEvent]]:
    """The two logs' chunks merged in time order (ties: task events first), a chunk at a time:
    each chunk of task events takes the agent events before its last time, and is sorted again
    only when it took any (timsort on two sorted runs: linear, in C)."""
    pending: list[LogEvent] = []  # agent events read ahead, in order
    more_agents = True
    for chunk in tasks:
        if not chunk:
            continue
        hi = chunk[-1].at
        while more_agents and (not pending or pending[-1].at <= hi):
            nxt = next(agents, None)
            if nxt is None:
                more_agents = False
            else:
                pending.extend(nxt)
        # Agent events strictly before the chunk's last time: one at that very time waits, the
        # next task chunk may start with more task events of the same time, which go first.
        cut = bisect.bisect_left(pending, hi, key=_at)
        if cut:
            chunk = chunk + pending[:cut]
            chunk.sort(key=_at)  # stable: task events stay before agent events of the same time
            del pending[:cut]
        yield chunk
    if pending:
        yield pending
    yield from agents


_at = operator.attrgetter("at")


def thd_count_events(conn: sa.Connection, start: float, end: float) -> int:
    total = 0
    for table in (t.task_events, t.agent_events):
        total += conn.execute(
            sa.select(sa.func.count()).select_from(table)
            .where(table.c.at >= start, table.c.at < end, table.c.kind.in_(sorted(FOLDED)))
        ).scalar_one()
    return total


def _context(conn: sa.Connection, start: float) -> Iterator[list[LogEvent]]:
    """Events before `start` that set the state at `start`, in time order (ties: task events
    first), streamed in chunks as the period is: every earlier event of the tasks open at
    `start` (or changed after it), each agent's last status before `start` (within
    STATUS_LOOKBACK_SECONDS). A restart with many open tasks reads several of them each: held
    at once, they were the fold's largest allocation, and the room they took stayed with the
    process."""
    e, tk = t.task_events, t.tasks
    open_then = (
        sa.select(tk.c.id)
        .where(tk.c.created_at < start,
               sa.or_(tk.c.state.in_([s.value for s in OPEN_STATES]),
                      tk.c.updated_at >= start))
    )
    a = t.agent_events
    last = (
        sa.select(sa.func.max(a.c.id))
        .where(a.c.kind == ev.AGENT_STATUS, a.c.at < start,
               a.c.at >= start - STATUS_LOOKBACK_SECONDS)
        .group_by(a.c.agent_id)
    )
    # one per agent at most: read first, in time order (stable: log order for ties)
    agents = sorted((LogEvent(*r) for r in conn.execute(
        _select(a).where(a.c.id.in_(last)).order_by(a.c.id))), key=_at)
    tasks = _stream(conn, _select(e, STATE_KINDS).where(e.c.task_id.in_(open_then),
                                                        e.c.at < start)
                    .order_by(e.c.at, e.c.id))
    return _merged(tasks, iter([agents] if agents else []))


def thd_fold_events(conn: sa.Connection, start: float, end: float, sink: EventSink,
                    progress: Progress | None = None, context: bool = True) -> int:
    """`ReportStore.fold_events` on the calling (pool) thread; returns the period's count."""
    total = thd_count_events(conn, start, end) if progress is not None else 0
    if context:
        for chunk in _context(conn, start):
            sink(chunk)
    tasks, agents = (
        _stream(conn, _select(table).where(table.c.at >= start, table.c.at < end)
                .order_by(table.c.at, table.c.id))
        for table in (t.task_events, t.agent_events)
    )
    done = 0
    for chunk in _merged(tasks, agents):
        sink(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    if progress is not None and not done:
        progress(0, 0)
    return done


def thd_ping(conn: sa.Connection) -> float:
    started = time.perf_counter()
    conn.execute(sa.text("SELECT 1")).scalar_one()
    return time.perf_counter() - started


class SqlReportStore:
    """`ports.ReportStore` on its own read engine and one reading thread."""

    def __init__(self, url: str | sa.URL, reactor: Any) -> None:
        self.engine = make_read_engine(url)
        self.pool = Pool(self.engine, reactor, threads=1)

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()
        self.engine.dispose()

    def fold_events(self, start: float, end: float, sink: EventSink,
                    progress: Progress | None = None, context: bool = True) -> Deferred[int]:
        return self.pool.run(thd_fold_events, start, end, sink, progress, context)

    def count_events(self, start: float, end: float) -> Deferred[int]:
        return self.pool.run(thd_count_events, start, end)

    def save_checkpoint(self, make: Callable[[], ReportCheckpoint]) -> Deferred[int]:
        """`ReportStore.save_checkpoint`, on the reading thread (report_checkpoints.py)."""
        return self.pool.run(thd_save_checkpoint, make)

    def load_checkpoint(self, name: str,
                        decode: Callable[[ReportCheckpoint | None], Any]) -> Deferred[Any]:
        return self.pool.run(thd_load_checkpoint, name, decode)

    def ping(self) -> Deferred[float]:
        """A round trip to the database (`SELECT 1`) on the reading thread; fires with its
        duration in seconds (for /healthz)."""
        return self.pool.run(thd_ping)

    def fold_events_now(self, start: float, end: float, sink: EventSink,
                        progress: Progress | None = None, context: bool = True) -> int:
        """The same in the calling thread, without a reactor (benchmarks, commands that block
        anyway); never from the reactor thread."""
        return self.pool.run_in_thread(thd_fold_events, start, end, sink, progress, context)
