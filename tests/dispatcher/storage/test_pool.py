"""`Pool`: one transaction per call, in a thread, plain values back; sized and started as the
module promises. Driven by a `TurnReactor` (see turns.py)."""

from __future__ import annotations

import sys
import threading

import pytest
import sqlalchemy as sa

from dispatcher.storage.engine import make_engine
from dispatcher.storage.pool import (
    POSTGRES_THREADS,
    SQLITE_THREADS,
    SWITCH_INTERVAL,
    Pool,
    hand_over_sooner,
)
from tests.dispatcher.storage.turns import TurnReactor

SCRATCH = sa.table("scratch", sa.column("n", sa.Integer))


@pytest.fixture
def setup(empty_url: str):
    reactor = TurnReactor()
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (n INTEGER)")
    pool = Pool(engine, reactor)
    pool.start()
    yield reactor, pool, engine
    pool.stop()
    engine.dispose()


def count(conn: sa.Connection) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(SCRATCH))


def test_run_happens_in_a_pool_thread_and_returns_plain_values(setup) -> None:
    reactor, pool, _ = setup

    def thd_where(conn: sa.Connection, a: int, b: int) -> tuple[str, int]:
        return threading.current_thread().name, conn.scalar(sa.select(sa.literal(a + b)))

    name, value = reactor.drive(pool.run(thd_where, 2, 3))
    assert value == 5 and name != threading.current_thread().name


def test_one_call_is_one_transaction(setup) -> None:
    reactor, pool, _ = setup

    def thd_insert_then_fail(conn: sa.Connection) -> None:
        conn.execute(SCRATCH.insert(), [{"n": 1}, {"n": 2}])
        raise RuntimeError("after the inserts")

    with pytest.raises(RuntimeError):
        reactor.drive(pool.run(thd_insert_then_fail))

    def thd_insert(conn: sa.Connection) -> None:
        conn.execute(SCRATCH.insert(), [{"n": 3}])

    reactor.drive(pool.run(thd_insert))
    assert reactor.drive(pool.run(count)) == 1


def test_returning_a_row_or_a_result_is_refused_and_rolled_back(setup) -> None:
    reactor, pool, _ = setup

    def thd_leaky(conn: sa.Connection) -> sa.Result:
        conn.execute(SCRATCH.insert(), [{"n": 1}])
        return conn.execute(sa.select(SCRATCH))

    with pytest.raises(TypeError, match="Result"):
        reactor.drive(pool.run(thd_leaky))
    assert reactor.drive(pool.run(count)) == 0


def test_thread_count_follows_the_database(setup) -> None:
    _, pool, engine = setup
    expected = SQLITE_THREADS if engine.dialect.name == "sqlite" else POSTGRES_THREADS
    assert pool._threads.max == expected
    assert SQLITE_THREADS == 1 and POSTGRES_THREADS > 1


def test_the_pool_starts_with_the_reactor_and_stops_at_its_shutdown(sqlite_url: str) -> None:
    reactor = TurnReactor()
    engine = make_engine(sqlite_url)
    pool = Pool(engine, reactor)
    assert not pool.running
    for fn in reactor.when_running:
        fn()
    assert pool.running
    pool.start()  # idempotent
    assert reactor.drive(pool.run(lambda conn: conn.scalar(sa.select(sa.literal(7))))) == 7
    reactor.shutdown()
    assert not pool.running
    pool.stop()  # idempotent
    engine.dispose()


def test_hand_over_sooner_shortens_the_interpreter_switch_interval_never_lengthens_it() -> None:
    """A pool thread back from the database waits for the lock at most SWITCH_INTERVAL behind a
    busy reactor, not CPython's 5 ms; an interval already shorter is kept. (Each test's interval
    is put back afterwards: tests/conftest.py.)"""
    sys.setswitchinterval(0.005)
    hand_over_sooner()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    assert SWITCH_INTERVAL < 0.005
    sys.setswitchinterval(SWITCH_INTERVAL / 5)
    hand_over_sooner()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL / 5)


def test_a_pool_alone_leaves_the_interval_to_the_process(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    sys.setswitchinterval(0.005)
    pool = Pool(engine, TurnReactor())
    pool.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:  # the pool's threads would keep the process alive
        pool.stop()
        engine.dispose()
