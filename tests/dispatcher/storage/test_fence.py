"""The lease's fence paid with a transaction's first statement (`dispatcher.storage.fence`, used
by `lease.fence`): whatever the transaction runs first (a statement, an executemany, a bulk
write, nothing at all), a refused fence stores nothing and raises `Deposed`, and through
psycopg2 it costs no round trip of its own (that a passing one holds the fence lock from the
first statement to the commit: test_lease.py). On PostgreSQL through both drivers; SQLite has
no lease to fence."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.storage import bulk, schema
from dispatcher.storage import fence as fencing
from dispatcher.storage import tables as t
from dispatcher.storage.bulk import round_trip
from dispatcher.storage.engine import make_engine
from dispatcher.storage.lease import ROUTER, Deposed, fence, thd_claim
from tests.dispatcher.storage.test_lease import (
    T0,
    TTL,
    tx,
)
from tests.dispatcher.storage.wiring import (
    every_pg_driver_url,  # noqa: F401 - both drivers
    url_for,
)


@pytest.fixture
def deposed_a(pg_driver_url: str) -> Iterator[sa.Engine]:
    """A fresh PostgreSQL database (through each driver) whose lease went from node a (epoch 1)
    to node b (epoch 2)."""
    yield from deposed(pg_driver_url)


def deposed(url: str) -> Iterator[sa.Engine]:
    schema.upgrade(url)
    engine = make_engine(url)
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    tx(engine, thd_claim, ROUTER, "b", TTL, T0 + 2 * TTL)
    yield engine
    engine.dispose()


def customer(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "name": customer_id, "created_at": T0}


def insert_one(conn: sa.Connection) -> None:
    conn.execute(sa.insert(t.customers).values(**customer("c1")))


def insert_many(conn: sa.Connection) -> None:
    conn.execute(sa.insert(t.customers), [customer("c1"), customer("c2")])


def insert_in_a_round_trip(conn: sa.Connection) -> None:
    round_trip(conn, [("INSERT INTO customers (id, name, created_at) VALUES (%s, %s, %s)",
                       ("c1", "c1", T0))])


def append_one(conn: sa.Connection) -> None:
    bulk.append(conn, t.customers, [customer("c1")])


def nothing(conn: sa.Connection) -> None:
    pass


FIRST_STATEMENTS: dict[str, Callable[[sa.Connection], None]] = {
    "statement": insert_one, "executemany": insert_many, "round trip": insert_in_a_round_trip,
    "bulk append": append_one, "no statement": nothing}


def customers_in(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.scalars(sa.select(t.customers.c.id)))


def fenced(engine: sa.Engine, epoch: int, work: Callable[[sa.Connection], None]) -> None:
    """`work` in a transaction of its own behind the fence at `epoch`, as group commit runs it."""
    with engine.begin() as conn, fence(ROUTER, epoch)(conn):
        work(conn)


@pytest.mark.parametrize("first", FIRST_STATEMENTS)
def test_a_refused_fence_stores_nothing_whatever_runs_first(deposed_a: sa.Engine,
                                                            first: str) -> None:
    with pytest.raises(Deposed, match="is at epoch 2, this node routed at 1"):
        fenced(deposed_a, 1, FIRST_STATEMENTS[first])
    assert customers_in(deposed_a) == []
    fenced(deposed_a, 2, FIRST_STATEMENTS[first])  # the holder's commits
    assert customers_in(deposed_a) == ([] if first == "no statement" else
                                       ["c1", "c2"] if first == "executemany" else ["c1"])


def test_a_refusal_the_caller_caught_still_lets_nothing_commit(deposed_a: sa.Engine) -> None:
    """The refusal came with the first statement and the caller swallowed it: the fence is still
    owed at the end, and the aborted transaction cannot pay it."""

    def refusal_caught(conn: sa.Connection) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):
            insert_one(conn)

    with pytest.raises(sa.exc.DBAPIError):
        fenced(deposed_a, 1, refusal_caught)
    assert customers_in(deposed_a) == []


@pytest.fixture
def counted(request: pytest.FixtureRequest) -> Iterator[tuple[sa.Engine, list[str]]]:
    """`deposed_a` through psycopg2 (the one driver that sends several statements in one
    execute), and the SQL of every execute its cursors are asked for (BEGIN and COMMIT are the
    connection's own, not executes; the pool's ping of an idle connection is left out)."""
    seen: list[str] = []
    for engine in deposed(url_for("postgres", request)):
        raw = engine.raw_connection()
        cursor_class = type(raw.driver_connection.cursor())
        raw.close()

        class Counted(cursor_class):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, vars: Any = None) -> Any:
                if query != "SELECT 1":
                    seen.append(query if isinstance(query, str) else query.decode())
                return super().execute(query, vars)

        engine.dispose()
        sa.event.listen(engine, "connect",
                        lambda dbapi_conn, _record: setattr(dbapi_conn, "cursor_factory", Counted))
        yield engine, seen


@pytest.mark.parametrize("first", ["statement", "round trip", "bulk append"])
@pytest.mark.postgres
def test_through_psycopg2_the_fence_takes_no_round_trip_of_its_own(
        counted: tuple[sa.Engine, list[str]], first: str) -> None:
    engine, executes = counted

    def two_writes(conn: sa.Connection) -> None:
        FIRST_STATEMENTS[first](conn)
        conn.execute(sa.insert(t.customers).values(**customer("c2")))

    executes.clear()
    fenced(engine, 2, two_writes)
    fences = [sql for sql in executes if fencing.FUNCTION in sql]
    assert len(executes) == 2 and len(fences) == 1
    assert executes[0].startswith(f"SELECT {fencing.FUNCTION}('router', ")
    assert "INSERT INTO customers" in executes[0]  # the same execute: one round trip
    assert customers_in(engine) == ["c1", "c2"]


def test_the_fence_statement_quotes_the_lease_name_and_writes_integers() -> None:
    assert fencing.statement("it's", -5, 7, 3) == (
        f"SELECT {fencing.FUNCTION}('it''s', -5, 7, 3)")
