"""Group commit (`dispatcher.storage.commit`).

The batching rules are tested with a `FakePool` whose transactions the test completes by hand,
so "in flight" is exact; the promises about real transactions (one commit per turn, a faulty
call isolated and the others committed) are tested on SQLite and PostgreSQL with the real Pool,
driven by a `TurnReactor` (see turns.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet.defer import Deferred, fail, succeed

from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import Changes
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.commit import GroupCommit, mergeable, thd_batch
from dispatcher.storage.lease import ROUTER, Deposed, Fence, fence, thd_claim
from dispatcher.storage.sql import SqlStore
from dispatcher.storage.tasks import UNKEYED, ChangeRows, change_keys
from tests.dispatcher.storage.turns import TurnReactor
from tests.dispatcher.storage.wiring import Wiring, wire

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

    def finish(self, index: int = 0) -> None:
        """Complete the `index`-th open transaction (the oldest by default)."""
        thd_fn, args, d = self._open.pop(index)
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


def keyed() -> tuple[list[Any], Callable[..., Any]]:
    """A mergeable `record(log, (key, value))` whose calls touch the row `key`; `seen` collects
    each run of it: the values of its calls, together."""
    seen: list[Any] = []

    def many(log: list[Any], items: list[tuple[str, int]]) -> list[int]:
        seen.append([value for _, value in items])
        log.extend(items)
        return [value * 10 for _, value in items]

    @mergeable(many, lambda item: {item[0]})
    def record(log: list[Any], item: tuple[str, int]) -> int:
        return many(log, [item])[0]

    return seen, record


def touch(log: list[Any], item: tuple[str, int]) -> int:
    log.append(item)
    return item[1]


def marked(fn: Callable[..., Any], keys: Callable[[Any], set[Any]]) -> Callable[..., Any]:
    """A fresh mergeable copy of `fn` (marking `fn` itself would change it for every test)."""

    def each(log: list[Any], item: Any) -> Any:
        return fn(log, item)

    return mergeable(lambda log, items: [fn(log, i) for i in items], keys)(each)


def test_interleaved_calls_on_other_rows_merge_into_one_run() -> None:
    seen, record = keyed()
    seen_b, other = keyed()
    calls = [(record, (("a", 1),)), (other, (("b", 2),)), (record, (("c", 3),)),
             (other, (("d", 4),)), (record, (("e", 5),))]
    log: list[Any] = []
    assert thd_batch(log, calls) == [10, 20, 30, 40, 50]  # results map back, in order
    assert seen == [[1, 3, 5]] and seen_b == [[2, 4]]
    assert log == [("a", 1), ("c", 3), ("e", 5), ("b", 2), ("d", 4)]


def test_a_call_does_not_move_past_a_call_on_the_same_row() -> None:
    seen, record = keyed()
    _, other = keyed()
    calls = [(record, (("a", 1),)), (other, (("a", 2),)), (record, (("a", 3),)),
             (record, (("b", 4),))]
    log: list[Any] = []
    assert thd_batch(log, calls) == [10, 20, 30, 40]
    assert log == [("a", 1), ("a", 2), ("a", 3), ("b", 4)]  # every write to "a" in order
    assert seen == [[1], [3, 4]]


def test_a_call_does_not_move_past_what_merged_before_it() -> None:
    """`other` on "b" merged into the group of `other` on "x": `record` on "b" cannot move
    back past that group; when that group runs before its own, it merges."""
    seen, record = keyed()
    _, other = keyed()
    log: list[Any] = []
    thd_batch(log, [(record, (("a", 1),)), (other, (("x", 2),)), (other, (("b", 3),)),
                    (record, (("b", 4),))])
    assert log == [("a", 1), ("x", 2), ("b", 3), ("b", 4)] and seen == [[1], [4]]
    seen.clear()
    log.clear()
    thd_batch(log, [(other, (("x", 1),)), (record, (("a", 2),)), (other, (("b", 3),)),
                    (record, (("b", 4),))])
    assert log == [("x", 1), ("b", 3), ("a", 2), ("b", 4)] and seen == [[2, 4]]


def test_nothing_moves_past_a_call_without_keys() -> None:
    seen, record = keyed()
    calls = [(record, (("a", 1),)), (touch, (("z", 2),)), (record, (("b", 3),))]
    log: list[Any] = []
    assert thd_batch(log, calls) == [10, 2, 30]
    assert log == [("a", 1), ("z", 2), ("b", 3)] and seen == [[1], [3]]


def test_mergeable_without_keys_merges_only_neighbours() -> None:
    seen: list[Any] = []

    def many(log: list[Any], values: list[int]) -> list[int]:
        seen.append(list(values))
        return list(values)

    @mergeable(many)
    def one(log: list[Any], value: int) -> int:
        return many(log, [value])[0]

    _, record = keyed()
    thd_batch([], [(one, (1,)), (one, (2,)), (record, (("a", 0),)), (one, (3,))])
    assert seen == [[1, 2], [3]]


def test_a_failing_merged_batch_falls_back_to_each_call_alone(fake) -> None:
    reactor, pool, gc = fake
    seen, record = keyed()
    _, other = keyed()
    boom = marked(write, lambda item: {item[0]})
    results = [collect(gc.run(record, ("a", 1))), collect(gc.run(other, ("b", 2))),
               collect(gc.run(boom, "boom")), collect(gc.run(record, ("c", 3)))]
    reactor.turn()
    pool.finish()  # the batch fails and is rolled back
    assert pool.transactions == []
    while pool.in_flight:
        pool.finish()
    assert pool.transactions == [[("a", 1)], [("b", 2)], [("c", 3)]]
    assert [results[i] for i in (0, 1, 3)] == [[10], [20], [30]]
    results[2][0].trap(ValueError)


# --- pipelining: several batches in flight ----------------------------------------------------


@pytest.fixture
def piped() -> tuple[TurnReactor, FakePool, GroupCommit]:
    """Two batches in flight, a batch of any size starting beside another."""
    reactor, pool = TurnReactor(), FakePool()
    return reactor, pool, GroupCommit(pool, reactor, in_flight=2, beside=1)


def test_in_flight_and_beside_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        GroupCommit(FakePool(), TurnReactor(), in_flight=0)
    with pytest.raises(ValueError):
        GroupCommit(FakePool(), TurnReactor(), in_flight=2, beside=0)


@pytest.fixture
def beside3() -> tuple[TurnReactor, FakePool, GroupCommit, Callable[..., Any]]:
    """Two batches in flight, the second only beside a batch of 3 calls or with 3 waiting."""
    reactor, pool = TurnReactor(), FakePool()
    _, record = keyed()
    return reactor, pool, GroupCommit(pool, reactor, in_flight=2, beside=3), record


def test_a_few_calls_wait_for_a_small_batch_in_flight_and_then_go_as_one(beside3) -> None:
    reactor, pool, gc, record = beside3
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(record, ("b", 2))
    reactor.turn()
    gc.run(record, ("c", 3))
    reactor.turn()
    assert pool.in_flight == 1  # two calls wait on other rows, fewer than `beside`
    pool.finish()
    assert pool.in_flight == 1  # both, as one batch
    pool.finish()
    assert pool.transactions == [[("a", 1)], [("b", 2), ("c", 3)]]
    assert (gc.commits, gc.calls) == (2, 3) and gc.idle


def test_enough_calls_waiting_start_beside_a_small_batch(beside3) -> None:
    reactor, pool, gc, record = beside3
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(record, ("b", 2))
    gc.run(record, ("c", 3))
    reactor.turn()
    assert pool.in_flight == 1
    gc.run(record, ("d", 4))  # the third waiting: as many as `beside`
    reactor.turn()
    assert pool.in_flight == 2
    pool.finish(1)
    pool.finish()
    assert pool.transactions == [[("b", 2), ("c", 3), ("d", 4)], [("a", 1)]]


def test_one_call_starts_beside_a_large_batch(beside3) -> None:
    reactor, pool, gc, record = beside3
    for item in (("a", 1), ("b", 2), ("c", 3)):
        gc.run(record, item)
    reactor.turn()
    gc.run(record, ("d", 4))
    reactor.turn()
    assert pool.in_flight == 2  # the batch in flight has `beside` calls: a long one to wait for
    pool.finish(1)
    pool.finish()
    assert pool.transactions == [[("d", 4)], [("a", 1), ("b", 2), ("c", 3)]]


def test_two_batches_on_other_rows_are_in_flight_at_once(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    first = collect(gc.run(record, ("a", 1)))
    reactor.turn()
    second = collect(gc.run(record, ("b", 2)))
    reactor.turn()
    assert pool.in_flight == 2 and gc.in_flight == 2
    third = collect(gc.run(record, ("c", 3)))
    reactor.turn()
    assert pool.in_flight == 2  # the limit: ("c", 3) waits for a free place
    pool.finish()
    assert first == [10] and pool.in_flight == 2  # ("c", 3) starts as soon as one commits
    pool.finish()
    pool.finish()
    assert pool.transactions == [[("a", 1)], [("b", 2)], [("c", 3)]]
    assert second == [20] and third == [30] and gc.idle
    assert (gc.commits, gc.calls) == (3, 3)


def test_the_keys_of_a_call_are_computed_once_and_left_as_they_were(piped) -> None:
    """A call's keys found in the reactor's thread (to start it beside a batch in flight) go
    with its batch: the database thread's merge neither computes them again nor changes the
    set the call gave."""
    reactor, pool, gc = piped
    asked: list[Any] = []
    given: list[set[Any]] = []

    def many(log: list[Any], items: list[tuple[str, int]]) -> list[int]:
        log.extend(items)
        return [value for _, value in items]

    def keys(item: tuple[str, int]) -> set[Any]:
        asked.append(item)
        given.append({item[0]})
        return given[-1]

    @mergeable(many, keys)
    def record(log: list[Any], item: tuple[str, int]) -> int:
        return many(log, [item])[0]

    gc.run(record, ("a", 1))
    reactor.turn()  # alone: its keys are not needed yet
    for item in (("b", 2), ("c", 3), ("d", 4)):  # started beside ("a", 1): keys needed
        gc.run(record, item)
    reactor.turn()
    pool.finish(1)  # b, c, d: merged into one run
    pool.finish()
    assert pool.transactions == [[("b", 2), ("c", 3), ("d", 4)], [("a", 1)]]
    # ("a", 1) started before its keys were needed: the database thread found them too.
    assert [asked.count(item) for item in (("b", 2), ("c", 3), ("d", 4))] == [1, 1, 1]
    assert all(len(k) == 1 for k in given)  # the merge of b, c, d changed none of them


def test_one_in_flight_by_default_even_on_other_rows(fake) -> None:
    reactor, pool, gc = fake
    _, record = keyed()
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(record, ("b", 2))
    reactor.turn()
    assert pool.in_flight == 1


def test_a_call_sharing_a_key_with_a_batch_in_flight_waits_for_it(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    gc.run(record, ("a", 1))
    reactor.turn()
    again = collect(gc.run(record, ("a", 2)))
    after = collect(gc.run(record, ("b", 3)))  # after ("a", 2), on another row: goes now
    behind = collect(gc.run(record, ("a", 4)))  # behind the held ("a", 2): waits too
    reactor.turn()
    assert pool.in_flight == 2
    pool.finish(1)
    assert after == [30] and again == [] and behind == []
    assert pool.in_flight == 1  # ("a", 2) still waits for ("a", 1)
    pool.finish()
    assert pool.in_flight == 1
    pool.finish()
    assert pool.transactions == [[("b", 3)], [("a", 1)], [("a", 2), ("a", 4)]]
    assert again == [20] and behind == [40]


def test_a_held_call_holds_back_later_calls_on_its_rows(piped) -> None:
    """("a", 2) waits for the batch in flight; ("x", 3) shares no key with what flies, but a
    call on "a" and "x" together waits behind ("a", 2), and so does a later call on "x"."""
    reactor, pool, gc = piped
    seen, record = keyed()
    both = marked(touch, lambda item: {"a", "x"})
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(record, ("a", 2))
    gc.run(both, ("ax", 3))
    gc.run(record, ("x", 4))
    gc.run(record, ("y", 5))
    reactor.turn()
    pool.finish(1)
    assert pool.transactions == [[("y", 5)]]
    while pool.in_flight:
        pool.finish()
    assert pool.transactions == [[("y", 5)], [("a", 1)], [("a", 2), ("ax", 3), ("x", 4)]]


def test_a_call_without_keys_is_a_barrier(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(write, 5)  # no keys: waits until nothing is in flight
    gc.run(record, ("b", 2))  # behind the barrier
    reactor.turn()
    assert pool.in_flight == 1
    pool.finish()
    assert pool.in_flight == 1  # the barrier's batch, with everything behind it
    gc.run(record, ("c", 3))
    reactor.turn()
    assert pool.in_flight == 1  # nothing starts beside a barrier
    pool.finish()
    pool.finish()
    assert pool.transactions == [[("a", 1)], [5, ("b", 2)], [("c", 3)]]


def test_callbacks_per_key_keep_their_order_when_a_later_batch_commits_first(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    fired: list[Any] = []

    def call(item: tuple[str, int]) -> None:
        gc.run(record, item).addCallback(lambda _: fired.append(item))

    call(("a", 1))
    reactor.turn()
    call(("b", 2))
    call(("a", 3))
    reactor.turn()
    pool.finish(1)  # the later batch, ("b", 2), commits first
    assert fired == [("b", 2)]
    pool.finish()
    assert fired == [("b", 2), ("a", 1)]
    pool.finish()
    assert fired == [("b", 2), ("a", 1), ("a", 3)]


def test_a_failed_batch_keeps_its_keys_while_each_call_is_re_run(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    boom = marked(write, lambda item: {item})
    results = [collect(gc.run(record, ("a", 1))), collect(gc.run(boom, "boom")),
               collect(gc.run(record, ("c", 3)))]
    reactor.turn()
    pool.finish()  # the batch fails: each call is re-run alone, in order
    same = collect(gc.run(record, ("a", 4)))
    other = collect(gc.run(record, ("z", 5)))
    reactor.turn()
    assert pool.in_flight == 2  # the first re-run, and ("z", 5) beside it
    pool.finish(1)
    assert other == [50]
    while pool.in_flight:
        pool.finish()
    assert pool.transactions == [[("z", 5)], [("a", 1)], [("c", 3)], [("a", 4)]]
    assert results[0] == [10] and results[2] == [30] and same == [40]
    results[1][0].trap(ValueError)
    assert (gc.commits, gc.calls) == (4, 4)


def test_drain_waits_for_every_batch_in_flight(piped) -> None:
    reactor, pool, gc = piped
    _, record = keyed()
    gc.run(record, ("a", 1))
    reactor.turn()
    gc.run(record, ("b", 2))
    reactor.turn()
    drained = collect(gc.drain())
    pool.finish(1)
    assert drained == [] and not gc.idle
    pool.finish()
    assert drained == [None] and gc.idle


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


def count_statements(engine: sa.Engine) -> list[int]:
    statements = [0]

    def on_execute(*_: Any) -> None:
        statements[0] += 1

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    return statements


def test_interleaved_intakes_and_changes_merge_and_last_write_wins(wiring: Wiring) -> None:
    """create t0, record t0, create t1, record t1, ...: one run of each function, so the
    statements do not grow with the calls; each task ends with its last snapshot."""
    statements = count_statements(wiring.engine)
    ds = []
    for i in range(40):
        task = make_task(f"t{i}")
        ds.append(wiring.store.create_task(task, None, "", []))
        for priority in (1, 2):
            ds.append(wiring.store.record(Changes(tasks=[replace(task, priority=priority + i)])))
    for d in ds:
        wiring.wait(d)
    assert (wiring.commit.commits, wiring.commit.calls) == (1, 120)
    assert statements[0] <= 12  # begin, duplicate check, inserts, one upsert, commit
    with wiring.engine.connect() as conn:
        rows = conn.execute(sa.select(t.tasks.c.id, t.tasks.c.priority)).all()
    assert sorted(rows) == sorted((f"t{i}", i + 2) for i in range(40))


MEET_SECONDS = 10.0  # how long a transaction waits for the other one to be open beside it


@pytest.mark.postgres
def test_on_postgresql_two_batches_are_open_at_once_and_both_commit(pg_url: str) -> None:
    """Each batch writes a task and then waits, inside its transaction, for the other batch
    to be at the same point: with one batch in flight at a time the first one times out."""
    schema.upgrade(pg_url)
    w = wire(pg_url)
    try:
        gc = GroupCommit(w.pool, w.reactor, in_flight=2, beside=1)
        store = SqlStore(w.pool, gc)
        tasks = [make_task(f"t{i}") for i in range(4)]
        for task in tasks:
            w.wait(store.create_task(task, None, "", []))
        meeting = threading.Barrier(2, timeout=MEET_SECONDS)

        def thd_meet(conn: sa.Connection, task_id: str) -> int:
            meeting.wait()  # both transactions are open, and stay open until both counted
            open_now = conn.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND xact_start IS NOT NULL"))
            meeting.wait()
            return int(open_now)

        meet = marked(thd_meet, lambda task_id: {("task", task_id)})
        ds = [store.record(Changes(tasks=[replace(tasks[0], priority=5)])), gc.run(meet, "t0")]
        w.reactor.turn()  # the first batch starts, and waits in its transaction
        ds += [store.record(Changes(tasks=[replace(tasks[1], priority=6)])), gc.run(meet, "t1"),
               store.record(Changes(tasks=[replace(tasks[0], priority=7)]))]  # waits for t0's
        w.reactor.turn()
        assert gc.in_flight == 2
        results = [w.wait(d) for d in ds]
        assert results[1] >= 2 and results[3] >= 2  # each saw the other's transaction open
        with w.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(t.tasks.c.id, t.tasks.c.priority)).all())
        assert (rows["t0"], rows["t1"]) == (7, 6)
        assert (gc.commits, gc.calls) == (4 + 3, 4 + 5)  # the intakes, then three batches
    finally:
        w.close()


def test_keys_name_the_tasks_and_agents_a_change_touches() -> None:
    changes = ChangeRows(
        tasks=[{"id": "t1", "agent_id": "a1"}],
        events=[{"task_id": None, "agent_id": "a2"}, {"task_id": None, "agent_id": None}],
        declines=[{"task_id": "t3", "agent_id": "a3"}],
        outbox=[{"task_id": None}],
    )
    assert change_keys(changes) == {("task", "t1"), ("agent", "a1"), ("agent", "a2"),
                                    ("task", "t3"), ("agent", "a3"), UNKEYED}


# --- behind the router's lease fence (SQLite, the real Pool) ---------------------------------


@pytest.fixture
def fenced(sqlite_url: str):
    """A wiring on SQLite whose router lease is at epoch 2 (node a, then node b)."""
    schema.upgrade(sqlite_url)
    w = wire(sqlite_url)
    with w.engine.begin() as conn:
        thd_claim(conn, ROUTER, "a", 10.0, T0)
        thd_claim(conn, ROUTER, "b", 10.0, T0 + 20.0)
    yield w
    w.close()


def thd_add_customer(conn: sa.Connection, customer_id: str) -> str:
    if customer_id == "boom":
        raise ValueError("boom")
    conn.execute(sa.insert(t.customers).values(id=customer_id, name=customer_id, created_at=T0))
    return customer_id


def customers_of(w: Wiring) -> list[str]:
    with w.engine.connect() as conn:
        return sorted(conn.scalars(sa.select(t.customers.c.id)))


def counted(behind: Fence, runs: list[str]) -> Fence:
    @contextmanager
    def thd_behind(conn: sa.Connection) -> Iterator[None]:
        runs.append("fence")
        with behind(conn):
            yield

    return thd_behind


def test_a_deposed_fence_fails_the_whole_batch_and_re_runs_nothing(fenced: Wiring) -> None:
    runs: list[str] = []
    heard: list[Any] = []
    gc = fenced.commit
    gc.fence_with(counted(fence(ROUTER, 1), runs), heard.append)  # epoch 1: a, deposed
    outcomes = [collect(gc.run(thd_add_customer, c)) for c in ("c1", "c2", "c3")]
    fenced.wait(gc.drain())
    for outcome in outcomes:
        outcome[0].trap(Deposed)
    assert runs == ["fence"]  # one batch, no call re-run alone behind the fence
    assert customers_of(fenced) == [] and (gc.commits, gc.calls) == (0, 0)
    assert len(heard) == 1 and heard[0].check(Deposed)


def test_a_passing_fence_runs_first_and_lets_the_batch_commit(fenced: Wiring) -> None:
    runs: list[str] = []
    gc = fenced.commit

    def thd_add(conn: sa.Connection, customer_id: str) -> str:
        runs.append(customer_id)
        return thd_add_customer(conn, customer_id)

    gc.fence_with(counted(fence(ROUTER, 2), runs), lambda failure: runs.append("deposed"))
    outcomes = [collect(gc.run(thd_add, c)) for c in ("c1", "c2")]
    fenced.wait(gc.drain())
    assert outcomes == [["c1"], ["c2"]]
    assert runs == ["fence", "c1", "c2"]
    assert customers_of(fenced) == ["c1", "c2"] and (gc.commits, gc.calls) == (1, 2)


def test_calls_re_run_alone_are_fenced_too(fenced: Wiring) -> None:
    """The batch fails on its faulty call; by the time each call is re-run alone, another node
    claimed the lease: every re-run, the faulty one included, errbacks with Deposed."""
    runs: list[str] = []
    heard: list[Any] = []
    gc = fenced.commit
    current = fence(ROUTER, 2)

    @contextmanager
    def thd_behind(conn: sa.Connection) -> Iterator[None]:
        runs.append("fence")
        if len(runs) > 1:  # after the batch: the lease moved on
            raise Deposed("lease 'router' is at epoch 3")
        with current(conn):
            yield

    gc.fence_with(thd_behind, heard.append)
    outcomes = [collect(gc.run(thd_add_customer, c)) for c in ("c1", "boom", "c2")]
    fenced.wait(gc.drain())
    for outcome in outcomes:
        outcome[0].trap(Deposed)
    assert runs == ["fence"] * 4  # the batch, then each of its three calls alone
    assert customers_of(fenced) == [] and (gc.commits, gc.calls) == (0, 0)
    assert len(heard) == 3 and all(f.check(Deposed) for f in heard)
