"""Group commit hands a committed batch's results back in slices (`dispatcher.storage.commit`,
`SLICE`): the calls the first results cause start as the next batch while the reactor still
works on the rest, and the promises hold: a Deferred fires only after its commit, Deferreds on
one key fire and commit in the order the calls were made, a refused batch acknowledges nothing.

The rules are tested with test_commit.py's `FakePool` (transactions completed by hand) and with
a runner that commits at once; the real thing on SQLite and PostgreSQL through `SqlStore`, with
chains of changes as the console makes them (each change made when the one before it committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import Changes
from dispatcher.storage import tables as t
from dispatcher.storage.commit import SLICE, GroupCommit
from dispatcher.storage.lease import Deposed
from tests.dispatcher.storage.test_commit import FakePool, collect, keyed
from tests.dispatcher.storage.turns import TurnReactor
from tests.dispatcher.storage.wiring import Wiring

T0 = 1_700_000_000.0


def open_items(pool: FakePool, index: int = 0) -> list[Any]:
    """The arguments of the calls of the `index`-th transaction not completed yet."""
    _, (calls, *_fence_and_keys), _ = pool._open[index]
    return [args[0] for _, args in calls]


def chained(gc: GroupCommit, record: Any, fired: list[Any], item: tuple[str, int],
            then: tuple[str, int] | None) -> Deferred[Any]:
    """`record(item)`; once it committed, note it in `fired` and make the call `then`."""
    d = gc.run(record, item)

    def done(result: Any) -> Any:
        fired.append(item)
        if then is not None:
            chained(gc, record, fired, then, None)
        return result

    return d.addCallback(done)


def test_the_calls_of_the_first_slice_start_before_the_rest_is_handed_back() -> None:
    reactor, pool = TurnReactor(), FakePool()
    gc = GroupCommit(pool, reactor)
    _, record = keyed()
    fired: list[Any] = []
    n = 2 * SLICE + 5
    for i in range(n):
        chained(gc, record, fired, (f"k{i}", 1), (f"k{i}", 2))
    reactor.turn()
    pool.finish()
    # The follow-ups of the first SLICE results formed a batch while the others were handed
    # back; the rest wait for it (one batch in flight at a time here).
    assert pool.in_flight == 1
    assert open_items(pool) == [(f"k{i}", 2) for i in range(SLICE)]
    assert fired == [(f"k{i}", 1) for i in range(n)]  # every result of the first batch
    pool.finish()
    assert open_items(pool) == [(f"k{i}", 2) for i in range(SLICE, n)]
    pool.finish()
    assert fired[n:] == [(f"k{i}", 2) for i in range(n)]
    assert gc.idle and (gc.commits, gc.calls) == (3, 2 * n)
    assert pool.transactions[0] == [(f"k{i}", 1) for i in range(n)]


def test_a_call_held_back_commits_and_fires_after_the_earlier_call_on_its_key() -> None:
    """`z` is the last call of the first batch; a second call on `z`, made while that batch was
    in flight, starts with the first slice's follow-ups, before `z`'s first result is handed
    back: it still fires after it (Deferreds fire in the reactor thread, in commit order)."""
    reactor, pool = TurnReactor(), FakePool()
    gc = GroupCommit(pool, reactor)
    _, record = keyed()
    fired: list[Any] = []
    for i in range(SLICE):
        chained(gc, record, fired, (f"k{i}", 1), (f"k{i}", 2))
    chained(gc, record, fired, ("z", 1), None)
    reactor.turn()
    chained(gc, record, fired, ("z", 2), None)  # in flight: ("z", 1)
    pool.finish()
    assert open_items(pool)[0] == ("z", 2)  # started beside the first slice's follow-ups
    assert fired[-1] == ("z", 1)
    while pool.in_flight:
        pool.finish()
    assert fired.index(("z", 1)) < fired.index(("z", 2))
    writes = [item for transaction in pool.transactions for item in transaction]
    assert writes.index(("z", 1)) < writes.index(("z", 2))
    assert gc.idle


class AtOncePool:
    """Commits each transaction as soon as it is started (in the caller's stack)."""

    def __init__(self) -> None:
        self.transactions: list[list[Any]] = []

    def run(self, thd_fn: Any, *args: Any) -> Deferred[Any]:
        work: list[Any] = []
        result = thd_fn(work, *args)
        self.transactions.append(work)
        return succeed(result)


def test_with_a_runner_that_commits_at_once_results_fire_batch_after_batch() -> None:
    reactor, pool = TurnReactor(), AtOncePool()
    gc = GroupCommit(pool, reactor)
    _, record = keyed()
    fired: list[Any] = []
    n = 3 * SLICE
    for i in range(n):
        chained(gc, record, fired, (f"k{i}", 1), (f"k{i}", 2))
    reactor.turn()
    # The follow-ups committed while the first results were handed back, but fired after all
    # of them: per key, first then second.
    assert fired == [(f"k{i}", 1) for i in range(n)] + [(f"k{i}", 2) for i in range(n)]
    assert len(pool.transactions) > 2 and gc.idle


def test_a_batch_started_from_a_slice_and_refused_by_the_fence_acknowledges_nothing() -> None:
    reactor, pool = TurnReactor(), FakePool()
    gc = GroupCommit(pool, reactor)
    _, record = keyed()
    deposed = [False]
    heard: list[Any] = []

    @contextmanager
    def thd_fence(log: Any) -> Iterator[None]:
        if deposed[0]:
            raise Deposed("lease 'router' is at epoch 3")
        yield

    gc.fence_with(thd_fence, heard.append)
    follow_ups: list[list[Any]] = []

    def follow(result: Any, key: str) -> Any:
        follow_ups.append(collect(gc.run(record, (key, 2))))
        return result

    n = SLICE + 3
    firsts = [collect(gc.run(record, (f"k{i}", 1)).addCallback(follow, f"k{i}"))
              for i in range(n)]
    reactor.turn()
    pool.finish()
    assert firsts == [[10]] * n and pool.in_flight == 1
    deposed[0] = True  # another node claimed the lease: the batch from the slice is refused
    while pool.in_flight:
        pool.finish()
    assert len(follow_ups) == n
    for outcome in follow_ups:
        outcome[0].trap(Deposed)  # every call of it errbacked, none acknowledged
    assert pool.transactions == [[(f"k{i}", 1) for i in range(n)]]
    assert (gc.commits, gc.calls) == (1, n) and gc.idle
    assert heard and all(f.check(Deposed) for f in heard)


# --- on real databases ---------------------------------------------------------------------


def make_task(task_id: str) -> Task:
    return Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None,
                created_at=T0)


STEPS = 3  # changes per task, each made once the one before it committed


def test_chains_of_changes_commit_in_order_per_task(wiring: Wiring) -> None:
    """More tasks than a slice, each changed STEPS times in a row as the console does (the next
    change made when the previous one committed): every change is stored, each task's events
    are in the order of its changes, and the chains took fewer commits than changes."""
    n = SLICE + 44
    tasks = [make_task(f"t{i:04d}") for i in range(n)]
    for d in [wiring.store.create_task(task, None, "", []) for task in tasks]:
        wiring.wait(d)
    commits_before = wiring.commit.commits
    fired: dict[str, list[int]] = {task.id: [] for task in tasks}

    def change(task: Task, step: int) -> Deferred[Any]:
        changed = replace(task, priority=step)
        event = Event("task.noted", T0 + step, task_id=task.id, data={"step": step})
        d = wiring.store.record(Changes(tasks=[changed], events=[event]))
        return d.addCallback(committed, changed, step)

    def committed(_: Any, task: Task, step: int) -> Any:
        fired[task.id].append(step)
        return change(task, step + 1) if step < STEPS else None

    for d in [change(task, 1) for task in tasks]:
        wiring.wait(d)
    assert all(steps == list(range(1, STEPS + 1)) for steps in fired.values())
    assert STEPS < wiring.commit.commits - commits_before < STEPS * n
    with wiring.engine.connect() as conn:
        priorities = dict(conn.execute(sa.select(t.tasks.c.id, t.tasks.c.priority)).all())
        trail = conn.execute(sa.select(t.task_events.c.task_id, t.task_events.c.data)
                             .order_by(t.task_events.c.id)).all()
    assert priorities == {task.id: STEPS for task in tasks}
    per_task: dict[str, list[int]] = {}
    for task_id, data in trail:
        per_task.setdefault(task_id, []).append(data["step"])
    assert per_task == {task.id: list(range(1, STEPS + 1)) for task in tasks}
