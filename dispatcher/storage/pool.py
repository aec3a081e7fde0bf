"""Run database work off the reactor thread: `Pool.run(thd_fn, *args) -> Deferred`.

Sits under `dispatcher.storage` (buildbot's `db/pool.py` pattern). Every call runs
`thd_fn(conn, *args)` in a Twisted `ThreadPool`, inside exactly one transaction
(`engine.begin()`): committed when `thd_fn` returns, rolled back when it raises. The Deferred fires
in the reactor thread with what `thd_fn` returned, which must be plain values or dataclasses,
never a `Row` or a `Result` (they would be read from the wrong thread after the connection went
back to the pool); returning one is a `TypeError`.

SQLite gets one thread (it has a single writer; more threads would only queue on its lock);
PostgreSQL gets a few. The pool starts when the reactor runs and stops at its shutdown; tests and
commands without a running reactor call `start()` and `stop()` themselves.

The interpreter lock. A pool thread lets the lock go while it waits for the database and must
take it back afterwards, once per round trip (a SQLite step, a PostgreSQL execute, a commit).
When the reactor is running Python, the thread gets the lock only when the reactor does I/O or
when the interpreter makes it hand over, after its switch interval: 5 ms by default, so under
load a transaction waited up to 5 ms per round trip, in front of every offer it held.
`hand_over_sooner` sets the process's interval to `SWITCH_INTERVAL`; the composition root calls
it when it starts the runtime's storage (runtime/app.py `Storage.start`), since the interval is
the whole process's, not a thread's: a pool alone (tests, commands) leaves the interpreter's.
Measured beside a thread that keeps the lock (psycopg2, one insert and its commit, medians of
300): 11.4 ms at 5 ms, 2.8 ms at 1 ms, 1.7 ms at 0.5 ms; the busy thread lost about 7 % of its
loop rate at 1 and 0.5 ms alike, part of it the database thread's own Python now running sooner.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from .engine import POSTGRES_POOL_SIZE, is_sqlite

T = TypeVar("T")

SQLITE_THREADS = 1
POSTGRES_THREADS = min(4, POSTGRES_POOL_SIZE)
# Seconds the interpreter lets a thread keep its lock while another waits (CPython: 0.005).
SWITCH_INTERVAL = 0.0005


def hand_over_sooner() -> None:
    """Make the interpreter hand its lock to a waiting thread after `SWITCH_INTERVAL` at most
    (the process's setting; an interval already shorter is kept)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


class Pool:
    def __init__(self, engine: sa.Engine, reactor: Any, threads: int | None = None) -> None:
        self.engine = engine
        self._reactor = reactor
        if threads is None:
            threads = SQLITE_THREADS if is_sqlite(engine) else POSTGRES_THREADS
        self._threads = ThreadPool(minthreads=1, maxthreads=threads, name="switchboard-db")
        self._shutdown_trigger: Any = None
        reactor.callWhenRunning(self.start)

    @property
    def reactor(self) -> Any:
        """The reactor whose thread pool this is (storage/reads.py schedules on it)."""
        return self._reactor

    @property
    def running(self) -> bool:
        return bool(self._threads.started)

    def start(self) -> None:
        """Start the threads (idempotent); they stop at reactor shutdown or on `stop()`."""
        if self._threads.started:
            return
        self._threads.start()
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._stop_at_shutdown
        )

    def stop(self) -> None:
        """Finish the queued work and join the threads (idempotent)."""
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._stop_at_shutdown()

    def _stop_at_shutdown(self) -> None:
        self._shutdown_trigger = None
        if self._threads.started:
            self._threads.stop()

    def run(self, thd_fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run `thd_fn(conn, *args)` in one transaction on a pool thread."""
        return threads.deferToThreadPool(
            self._reactor, self._threads, self.run_in_thread, thd_fn, *args
        )

    def run_in_thread(self, thd_fn: Callable[..., T], *args: Any) -> T:
        """The body of `run`, in the calling thread: for pool threads and for commands that have
        no reactor (never from the reactor thread: it blocks)."""
        with self.engine.begin() as conn:
            result = thd_fn(conn, *args)
            if isinstance(result, (sa.Row, sa.Result)):  # roll back: a programming error
                raise TypeError(f"{thd_fn.__name__} returned a {type(result).__name__}")
        return result
