"""Turn reads: the reads of one kind asked for during one reactor turn share one transaction on
the database thread, so that a burst of them (every returning customer's first offer after a
restart) is a few queries for all, not a thread's turn and a transaction each.

Sits under `dispatcher.storage`, beside commit.py (group commit does the same for writes).
`TurnReads(pool, thd_many).run(arg)` returns a Deferred; at the end of the turn
(`reactor.callLater(0, ...)`) every argument asked for in it goes to one
`thd_many(conn, [arg, ...]) -> [result, ...]` (one result per argument, in order) on a pool
thread, and each Deferred fires with its own result, or all of that call's fail with its
failure. Reads asked for while a call runs wait for the next turn's call: one call at a time
per `TurnReads`, so a burst takes one pool thread, and the others stay free for commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from .pool import Pool

A = TypeVar("A")
R = TypeVar("R")


class TurnReads(Generic[A, R]):
    def __init__(self, pool: Pool, thd_many: Callable[[sa.Connection, list[A]], list[R]]
                 ) -> None:
        self._pool = pool
        self._thd_many = thd_many
        self._asked: list[tuple[A, Deferred[R]]] = []
        self._scheduled = False
        self._running = False
        self.calls = 0  # database calls made (for tests and benchmarks)

    def run(self, arg: A) -> Deferred[R]:
        d: Deferred[R] = Deferred()
        self._asked.append((arg, d))
        self._schedule()
        return d

    def _schedule(self) -> None:
        if not self._scheduled and not self._running and self._asked:
            self._scheduled = True
            self._pool.reactor.callLater(0, self._start)

    def _start(self) -> None:
        self._scheduled = False
        asked, self._asked = self._asked, []
        self._running = True
        self.calls += 1
        d = self._pool.run(self._thd_many, [arg for arg, _ in asked])
        d.addCallbacks(self._answered, self._failed, callbackArgs=(asked,),
                       errbackArgs=(asked,))

    def _answered(self, results: list[R], asked: list[tuple[A, Deferred[R]]]) -> None:
        if len(results) != len(asked):
            self._failed(Failure(RuntimeError(
                f"{len(results)} results for {len(asked)} reads")), asked)
            return
        self._running = False
        self._schedule()
        for (_, d), result in zip(asked, results, strict=True):
            d.callback(result)

    def _failed(self, failure: Failure, asked: list[tuple[A, Deferred[Any]]]) -> None:
        self._running = False
        self._schedule()
        for _, d in asked:
            d.errback(failure)
