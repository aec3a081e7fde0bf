"""Group commit (`dispatcher.storage.commit`).

The batching rules are tested with a `FakePool` whose transactions the test completes by hand,
so "in flight" is exact; the promises about real transactions (one commit per turn, a faulty
call isolated and the others committed) are tested on SQLite and PostgreSQL with the real Pool,
driven by a `TurnReactor` (see turns.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet.defer import Deferred, fail, succeed

from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.tasks import Channel, Task
from dispatcher.storage import tables as t
from dispatcher.storage.commit import GroupCommit, mergeable, thd_batch
from tests.dispatcher.storage.turns import TurnReactor
from tests.dispatcher.storage.wiring import Wiring

T0 = 1_700_000_000.0


class FakePool:
    """Runs `thd_fn(log, *args)` when the test calls `finish()`; `log` stands in for the
    connection and collects what each transaction did."""

    def __init__(self) -> None:
        self.transactions: list[list[Any]] = []
        self._open: list[tuple[Callable[..., Any], tuple, Deferred[Any]]] = []

    def run(self, thd_fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._open.append((thd_fn, args, d))
        return d

    @property
    def in_flight(self) -> int:
        return len(self._open)

    def finish(self) -> None:
        thd_fn, args, d = self._open.pop(0)
        work: list[Any] = []
        try:
            result = thd_fn(work, *args)
        except Exception as exc:  # noqa: BLE001 - any error rolls back, as in the real Pool
            d.errback(exc)
        else:
            self.transactions.append(work)
            d.callback(result)


def write(log: list[Any], value: Any) -> Any:
    if value == "boom":
        raise ValueError("boom")
    log.append(value)
    return value * 2


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


@pytest.fixture
def fake() -> tuple[TurnReactor, FakePool, GroupCommit]:
    reactor, pool = TurnReactor(), FakePool()
    return reactor, pool, GroupCommit(pool, reactor)


def test_calls_of_one_turn_share_one_transaction(fake) -> None:
    reactor, pool, gc = fake
    results = [collect(gc.run(write, i)) for i in range(5)]
    assert pool.in_flight == 0  # nothing before the end of the turn
    reactor.turn()
    assert pool.in_flight == 1
    assert results == [[]] * 5  # nothing fires before the commit
    pool.finish()
    assert pool.transactions == [[0, 1, 2, 3, 4]]
    assert results == [[0], [2], [4], [6], [8]]
    assert (gc.commits, gc.calls) == (1, 5)


def test_calls_made_while_a_batch_is_in_flight_form_the_next_batch(fake) -> None:
    reactor, pool, gc = fake
    gc.run(write, 1)
    reactor.turn()
    later = [collect(gc.run(write, v)) for v in (2, 3)]
    reactor.turn()
    later.append(collect(gc.run(write, 4)))
    reactor.turn()
    assert pool.in_flight == 1  # one batch in flight at a time
    pool.finish()
    assert pool.in_flight == 1  # the next one starts at once, without waiting for a turn
    pool.finish()
    assert pool.transactions == [[1], [2, 3, 4]]
    assert later == [[4], [6], [8]]


def test_a_faulty_call_is_isolated_and_the_others_commit_in_order(fake) -> None:
    reactor, pool, gc = fake
    results = [collect(gc.run(write, v)) for v in (1, "boom", 3)]
    reactor.turn()
    pool.finish()  # the batch fails and is rolled back
    assert pool.transactions == [] and results == [[], [], []]
    while pool.in_flight:
        pool.finish()
    assert pool.transactions == [[1], [3]]
    assert results[0] == [2] and results[2] == [6]
    results[1][0].trap(ValueError)


def test_a_single_failing_call_errbacks_without_a_retry(fake) -> None:
    reactor, pool, gc = fake
    result = collect(gc.run(write, "boom"))
    reactor.turn()
    pool.finish()
    assert pool.in_flight == 0
    result[0].trap(ValueError)


def test_drain_fires_when_everything_queued_has_settled(fake) -> None:
    reactor, pool, gc = fake
    assert collect(gc.drain()) == [None]
    gc.run(write, 1)
    drained = collect(gc.drain())
    reactor.turn()
    gc.run(write, 2)
    pool.finish()
    assert drained == []
    pool.finish()
    assert drained == [None]


def test_shutdown_waits_for_the_queue() -> None:
    reactor = TurnReactor()
    pool = type("SyncPool", (), {"run": lambda self, fn, *a: succeed(fn([], *a))})()
    gc = GroupCommit(pool, reactor)
    result = collect(gc.run(write, 21))
    reactor.shutdown()
    assert result == [42]


def test_mergeable_runs_consecutive_calls_as_one() -> None:
    seen: list[Any] = []

    def many(log: list[Any], values: list[int]) -> list[int]:
        seen.append(list(values))
        return [v + 1 for v in values]

    @mergeable(many)
    def one(log: list[Any], value: int) -> int:
        return many(log, [value])[0]

    calls = [(one, (1,)), (one, (2,)), (write, (5,)), (one, (3,))]
    assert thd_batch([], calls) == [2, 3, 10, 4]
    assert seen == [[1, 2], [3]]


def test_a_failure_of_the_pool_itself_fails_every_call() -> None:
    reactor = TurnReactor()
    pool = type("DeadPool", (), {"run": lambda self, fn, *a: fail(OSError("disk gone"))})()
    gc = GroupCommit(pool, reactor)
    results = [collect(gc.run(write, v)) for v in (1, 2)]
    reactor.turn()
    for r in results:
        r[0].trap(OSError)
    assert gc.idle


# --- on real databases -----------------------------------------------------------------------


def make_task(task_id: str) -> Task:
    return Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None, created_at=T0)


def count_commits(engine: sa.Engine) -> list[int]:
    commits = [0]

    def on_commit(conn: sa.Connection) -> None:
        commits[0] += 1

    sa.event.listen(engine, "commit", on_commit)
    return commits


def test_intakes_of_one_turn_are_one_transaction(wiring: Wiring) -> None:
    commits = count_commits(wiring.engine)
    ds = [wiring.store.create_task(make_task(f"t{i}"), None, "", []) for i in range(50)]
    for d in ds:
        wiring.wait(d)
    assert commits == [1]
    assert (wiring.commit.commits, wiring.commit.calls) == (1, 50)


def test_a_duplicate_in_a_batch_fails_alone(wiring: Wiring) -> None:
    wiring.wait(wiring.store.create_task(make_task("t0"), None, "", []))
    ds = [wiring.store.create_task(make_task(i), None, "", []) for i in ("t1", "t0", "t2", "t2")]
    outcomes = [collect(d) for d in ds]
    wiring.wait(wiring.commit.drain())
    assert isinstance(outcomes[0][0], str) and isinstance(outcomes[2][0], str)
    outcomes[1][0].trap(DuplicateTask)
    outcomes[3][0].trap(DuplicateTask)
    with wiring.engine.connect() as conn:
        ids = conn.scalars(sa.select(t.tasks.c.id).order_by(t.tasks.c.id)).all()
        customers = conn.scalar(sa.select(sa.func.count()).select_from(t.customers))
    assert ids == ["t0", "t1", "t2"] and customers == 3
