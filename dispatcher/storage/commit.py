"""Group commit: the writes of one reactor turn share one transaction, so durable throughput is
not one fsync per decision.

Sits under `dispatcher.storage`, between `SqlStore` and `Pool`. `GroupCommit.run(thd_fn, *args)`
queues a call and returns a Deferred. What it promises:

- Every call made during one reactor turn goes into one transaction, flushed at the end of the
  turn (`reactor.callLater(0, ...)`); calls that arrive while transactions are in flight form
  the next one. Up to `in_flight` batches commit at once (1 on SQLite, its one writer: the next
  batch then starts as soon as the one in flight commits; `POSTGRES_IN_FLIGHT` on PostgreSQL).
  A batch starts beside others in flight only when they are large or many calls wait (at least
  `beside` calls, `BESIDE_CALLS` unless told): a few calls behind a small batch wait for it to
  commit and then go as one transaction. On a machine of few cores, a second transaction of a
  few calls competes for them with the one in flight (the database's processes, the pool's
  threads and the reactor share the cores and the interpreter lock), and both take longer.
- Pipelining keeps the order per key (the `keys` below): a pending call joins a batch that
  starts beside others in flight only if its keys are disjoint from theirs and from those of
  every earlier pending call held back; a call without keys is a barrier (it starts once
  nothing is in flight, and nothing starts while it is in flight). With nothing in flight, a
  batch takes every pending call. So two calls on one task or agent commit, and their Deferreds
  fire, in the order they were made; calls on other tasks and agents may commit in another
  order (an event log's ids may then become visible out of order: its readers by id use
  cursor.py's gap rule, and the history cache resolves writes task by task).
- Each call's Deferred fires with its own result only after its transaction committed. None is
  lost. A committed batch leaves the in-flight ones at once and hands its results back in
  slices of `SLICE` calls: after each slice, the calls its callbacks made may start as the next
  batch, so the database commits them while the reactor works on the rest of the results
  (pipelining across the reactor and the database, not only between batches). A batch started
  so fires its Deferreds only after every Deferred of the one before it (they fire in the
  reactor thread, which is busy handing the earlier results back; a batch that commits at once
  waits in `_deliveries`), so the order per key holds. At reactor shutdown the queue is
  drained first (a "before shutdown" trigger), so the pool's threads stop only once it is
  empty.
- Behind a fence (`fence_with`, the router's lease: storage/lease.py), every transaction runs
  inside the fence (on PostgreSQL its check travels with the transaction's first statement:
  fence.py); when it raises `Deposed`, every call of that transaction errbacks with it and
  none is re-run: a deposed leader commits nothing more.
- When a batch raises, it is rolled back and each call is re-run alone, in order, in its own
  transaction, the batch still in flight (its keys held) meanwhile: only the faulty call
  errbacks (the batch failure is logged).

A one-argument `thd_` function marked with `@mergeable(many)` has several of its calls in one
batch run as a single `many(conn, [arg, ...]) -> [result, ...]`, which must have the same effect
as those calls one after the other; so a batch can use one lookup and one executemany per table
instead of a round trip per call. Which calls merge (`plan`):

- Consecutive calls of one mergeable function always merge (the calls stay in order).
- A mergeable function may also declare `keys(arg) -> set`: every row its call writes or reads,
  named by key (("task", id), ("agent", id), ...; see tasks.py `change_keys`). Such a call is then
  moved back into the latest earlier group of calls of its function if it shares no key with
  any call between that group and it. Any call without keys (every non-mergeable call, every
  mergeable one without `keys`) shares every key: nothing moves past it.

Why that is the same effect: only calls with disjoint keys swap, so every row is written by the
same calls in the same order; per task and per agent, log rows (events, outbox) keep their
order; only rows of different tasks or agents in an append-only log may interleave in another
order within the one transaction, which no reader sees (they commit together) or relies on
(trails and replays read per task or per agent). Results still map back to each call in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence, Set
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .lease import Deposed, Fence

F = TypeVar("F", bound=Callable[..., Any])
Call = tuple[Callable[..., Any], tuple[Any, ...]]

END_OF_TURN = 0  # callLater delay: after everything already queued in this reactor turn
# Batches committing at once: SQLite has one writer; PostgreSQL commits in parallel on the pool's
# threads (pool.py POSTGRES_THREADS = 4), leaving threads for reads and re-runs.
SQLITE_IN_FLIGHT = 1
POSTGRES_IN_FLIGHT = 2
# Results of a committed batch handed back before the calls they caused may start as a batch.
SLICE = 256
# A batch starts beside others in flight only when they, or the calls waiting, number at least
# this many (module doc). Measured on PostgreSQL with 2 cores: bench/smtp.py (batches of 2 or 3
# mails) 1.14-1.20x msg/s and less CPU per message; bench/durable.py (batches of hundreds of
# calls, still two at once) unchanged; bench/push.py (batches of about 13 calls) uses less CPU
# and no longer falls into its slow regime (p99 150-200 ms), but no longer reaches its fast one
# either (p99 23-40 ms): its p99 is not lower.
BESIDE_CALLS = 32

log = Logger()


class Runner(Protocol):
    """What group commit needs from `Pool`."""

    def run(self, thd_fn: Callable[..., Any], *args: Any) -> Deferred[Any]: ...


def mergeable(
    many: Callable[[sa.Connection, list[Any]], list[Any]],
    keys: Callable[[Any], Set[Hashable]] | None = None,
) -> Callable[[F], F]:
    """Mark a one-argument `thd_` function: calls of it in a batch run together as
    `many(conn, [arg, ...])`, which returns one result per argument, in order. With `keys`
    (every row a call touches, by key), calls merge past calls that touch none of those rows;
    `keys` gives a new set at each call (group commit keeps it, and never changes it)."""

    def mark(fn: F) -> F:
        fn.many = many  # type: ignore[attr-defined]
        fn.keys = keys  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(slots=True)
class _Group:
    """Calls of one function run at one place of the batch: one call, or a merge."""

    fn: Callable[..., Any]
    positions: list[int]
    keys: set[Hashable] | None  # None: every key (nothing moves past this group)
    owned: bool = False  # `keys` is this group's own set (else its first call's: not changed)


def _keys_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> set[Hashable] | None:
    """The keys of a call (`mergeable`): a set of its own, never changed after."""
    keys = getattr(fn, "keys", None)
    if keys is None or len(args) != 1:
        return None
    found = keys(args[0])
    return found if type(found) is set else set(found)


_UNKNOWN: Any = object()  # keys not computed yet


def plan(calls: Sequence[Call], known: Sequence[Any] | None = None) -> list[_Group]:
    """The groups that run `calls` with the same effect, in the order they run (module doc).
    `known`: the keys of each call when already computed (`_UNKNOWN` where not), so that a
    call's keys are computed once."""
    groups: list[_Group] = []
    for position, (fn, args) in enumerate(calls):
        keys = _UNKNOWN if known is None else known[position]
        if keys is _UNKNOWN:
            keys = _keys_of(fn, args)
        target = None
        if getattr(fn, "many", None) is not None and len(args) == 1:
            for group in reversed(groups):
                if group.fn is fn:
                    target = group
                    break
                if keys is None or group.keys is None or not keys.isdisjoint(group.keys):
                    break
        if target is None:
            groups.append(_Group(fn, [position], keys))
            continue
        target.positions.append(position)
        if target.keys is not None:
            if keys is None:
                target.keys = None
            elif target.owned:
                target.keys |= keys  # in place: a copy per call would be quadratic
            else:  # the first call's set (shared with the reactor thread): copied once
                target.keys, target.owned = target.keys | keys, True
    return groups


def thd_batch(conn: sa.Connection, calls: Sequence[Call], fence: Fence | None = None,
              known: Sequence[Any] | None = None) -> list[Any]:
    """Run `calls` on one connection (one transaction), merged as `plan` says; return their
    results in the order of `calls`. They run inside `fence(conn)`, which raises `Deposed` to
    refuse the batch.
    `known`: `plan`'s."""
    with _behind(conn, fence):
        results: list[Any] = [None] * len(calls)
        for group in plan(calls, known):
            if len(group.positions) == 1:
                position = group.positions[0]
                results[position] = group.fn(conn, *calls[position][1])
                continue
            merged = group.fn.many(conn, [calls[p][1][0] for p in group.positions])
            if len(merged) != len(group.positions):
                raise RuntimeError(
                    f"{group.fn.__name__}.many gave {len(merged)} results"
                    f" for {len(group.positions)} calls"
                )
            for position, result in zip(group.positions, merged, strict=True):
                results[position] = result
    return results


def thd_fenced(conn: sa.Connection, fence: Fence | None, fn: Callable[..., Any],
               *args: Any) -> Any:
    """One call alone, behind the fence."""
    with _behind(conn, fence):
        return fn(conn, *args)


def _behind(conn: sa.Connection, fence: Fence | None) -> AbstractContextManager[None]:
    return nullcontext() if fence is None else fence(conn)


@dataclass(slots=True)
class _Queued:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: Deferred[Any]
    _keys: Any = _UNKNOWN

    @property
    def keys(self) -> set[Hashable] | None:
        """Every key the call touches; None: every key (a barrier). Computed once, when needed."""
        if self._keys is _UNKNOWN:
            self._keys = _keys_of(self.fn, self.args)
        return self._keys


@dataclass(slots=True, eq=False)  # identity: `_flying.remove` must find this very batch
class _Batch:
    """One transaction in flight: its calls, and (computed when another batch would start
    beside it) every key they touch."""

    calls: list[_Queued]
    _keys: Any = _UNKNOWN
    flying: bool = True

    @property
    def keys(self) -> set[Hashable] | None:
        if self._keys is _UNKNOWN:
            keys: set[Hashable] | None = set()
            for queued in self.calls:
                call_keys = queued.keys
                if call_keys is None:
                    keys = None
                    break
                keys |= call_keys  # type: ignore[operator]
            self._keys = keys
        return self._keys


class GroupCommit:
    def __init__(self, pool: Runner, reactor: Any, in_flight: int = 1,
                 beside: int = BESIDE_CALLS) -> None:
        """`in_flight`: how many batches may be committing at once (1 on SQLite, its one
        writer; a few, below the pool's threads, on PostgreSQL). `beside`: a batch starts
        beside others in flight only when they or the calls waiting number at least this many
        (module doc; 1: whenever there is room)."""
        if in_flight < 1:
            raise ValueError("group commit needs in_flight >= 1")
        if beside < 1:
            raise ValueError("group commit needs beside >= 1")
        self._pool = pool
        self._reactor = reactor
        self._limit = in_flight
        self._beside = beside
        self._pending: list[_Queued] = []
        self._scheduled = False
        self._flying: list[_Batch] = []
        self._idle_waiters: list[Deferred[None]] = []
        # Committed batches whose results are being handed back (`_committed`), in order.
        self._deliveries: deque[tuple[list[_Queued], list[Any]]] = deque()
        self._delivering = False
        self._fence: Fence | None = None
        self._on_deposed: Callable[[Failure], None] | None = None
        # For tests and benchmarks: transactions committed, and calls committed in them.
        self.commits = 0
        self.calls = 0
        reactor.addSystemEventTrigger("before", "shutdown", self.drain)

    def run(self, thd_fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Queue `thd_fn(conn, *args)`; fire with its result once its batch committed."""
        queued = _Queued(thd_fn, args, Deferred())
        self._pending.append(queued)
        if not self._scheduled and self._may_start():  # `_take` decides
            self._scheduled = True
            self._reactor.callLater(END_OF_TURN, self._end_of_turn)
        return queued.done

    def fence_with(self, fence: Fence, on_deposed: Callable[[Failure], None]) -> None:
        """Run every transaction inside `fence(conn)` from now on. When it raises `Deposed`
        (storage/lease.py) the transaction's calls all errback with it, none is re-run, and
        `on_deposed` hears of it (each time: the node is to stop routing)."""
        self._fence = fence
        self._on_deposed = on_deposed

    @property
    def idle(self) -> bool:
        return not (self._pending or self._flying or self._delivering)

    @property
    def in_flight(self) -> int:
        """Batches committing now."""
        return len(self._flying)

    def drain(self) -> Deferred[None]:
        """Fire once every call queued so far, and any queued meanwhile, has settled."""
        if self.idle:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _may_start(self) -> bool:
        """May a batch start now, as far as counts tell? Nothing in flight; or room below the
        limit, and the batches in flight or the calls waiting are large enough (`beside`)."""
        flying = self._flying
        if not flying:
            return True
        if len(flying) >= self._limit:
            return False
        beside = self._beside
        return len(self._pending) >= beside or all(len(b.calls) >= beside for b in flying)

    def _room(self) -> bool:
        """May a batch start beside those in flight? Not beside a barrier, nor past the limit,
        nor beside small batches while few calls wait (`_may_start`)."""
        if not self._flying:
            return True
        return self._may_start() and all(b.keys is not None for b in self._flying)

    def _take(self) -> list[_Queued]:
        """The pending calls that may start now, in order (module doc); the others stay."""
        if not self._flying:
            taken, self._pending = self._pending, []
            return taken
        if not self._pending or not self._room():
            return []
        busy: set[Hashable] = set()
        for batch in self._flying:
            busy |= batch.keys  # type: ignore[arg-type]  # not None: _room
        taken, held = [], []
        for position, queued in enumerate(self._pending):
            keys = queued.keys
            if keys is None:  # a barrier: it and everything after it wait
                held.extend(self._pending[position:])
                break
            if keys.isdisjoint(busy):
                taken.append(queued)
            else:  # held back, and so is every later call sharing one of its keys
                held.append(queued)
                busy |= keys
        self._pending = held
        return taken

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self._start()

    def _start(self) -> None:
        calls = self._take()
        if not calls:
            return
        batch = _Batch(calls)
        self._flying.append(batch)
        # The keys computed so far go along (read only there), so none is computed twice.
        d = self._pool.run(thd_batch, [(q.fn, q.args) for q in calls], self._fence,
                           [q._keys for q in calls])
        d.addCallbacks(self._committed, self._batch_failed, (calls, batch), None, (calls,))
        d.addBoth(self._settled, batch)

    def _land(self, batch: _Batch) -> None:
        """`batch` is no longer in flight (committed, or settled otherwise)."""
        if batch.flying:
            batch.flying = False
            self._flying.remove(batch)

    def _committed(self, results: list[Any], calls: list[_Queued], batch: _Batch) -> None:
        """Hand the results back in order, starting the next batch after each SLICE of them
        (module doc). A batch that commits while results are being handed back (a runner that
        fires at once) waits for them: Deferreds fire in commit order, batch after batch."""
        if len(results) != len(calls):
            raise RuntimeError(f"{len(results)} results for {len(calls)} calls")
        self.commits += 1
        self.calls += len(calls)
        self._land(batch)
        self._deliveries.append((calls, results))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._deliveries:
                calls, results = self._deliveries.popleft()
                for position, (queued, result) in enumerate(zip(calls, results, strict=True)):
                    queued.done.callback(result)
                    if position % SLICE == SLICE - 1 and self._pending:
                        self._start()
        finally:
            self._delivering = False

    def _batch_failed(self, failure: Failure, batch: list[_Queued]) -> Deferred[None] | None:
        if failure.check(Deposed):  # another node routes now: nothing of ours may commit
            for queued in batch:
                queued.done.errback(failure)
            if self._on_deposed is not None:
                self._on_deposed(failure)
            return None
        if len(batch) == 1:
            batch[0].done.errback(failure)
            return None
        log.failure(
            "group commit of {count} calls failed; re-running each alone", failure, count=len(batch)
        )
        d: Deferred[None] = succeed(None)
        for queued in batch:
            d.addCallback(self._run_alone, queued)
        return d

    def _run_alone(self, _: None, queued: _Queued) -> Deferred[None]:
        return self._pool.run(thd_fenced, self._fence, queued.fn, *queued.args).addBoth(
            self._settle_alone, queued)

    def _settle_alone(self, outcome: Any, queued: _Queued) -> None:
        if isinstance(outcome, Failure):
            queued.done.errback(outcome)
            if outcome.check(Deposed) and self._on_deposed is not None:
                self._on_deposed(outcome)
            return
        self.commits += 1
        self.calls += 1
        queued.done.callback(outcome)

    def _settled(self, outcome: Any, batch: _Batch) -> None:
        self._land(batch)
        if isinstance(outcome, Failure):  # a bug here, not in a call: say so loudly
            log.failure("group commit bookkeeping failed", outcome)
        if self._pending:
            self._start()
        if self.idle:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
