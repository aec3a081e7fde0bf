"""The router's lease on the database (`dispatcher.storage.lease`).

The row's rules (claim, renew, release, fence) run on SQLite and PostgreSQL on a virtual clock;
a property test drives nodes through random claims, renewals, releases and fences on SQLite and
checks that two nodes never both believe they route. On PostgreSQL only: the fence's share lock
orders a claim after the routing transactions in flight, and the advisory `SessionLock` frees
the lease of a holder whose session died without waiting out the lease.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from dispatcher.storage.lease import (
    ROUTER,
    Deposed,
    SqlLeases,
    fence,
    thd_claim,
    thd_fence,
    thd_now,
    thd_release,
    thd_renew,
)
from tests.dispatcher.storage.wiring import (
    Wiring,
    every_driver_url,  # noqa: F401 - both drivers
    every_pg_driver_url,  # noqa: F401 - both drivers
    wire,
)

TTL = 10.0
T0 = 1_000.0
WAIT_SECONDS = 10.0  # how long a PostgreSQL test waits for another session to reach a point


@pytest.fixture
def engine(sql_url: str) -> Iterator[sa.Engine]:
    e = make_engine(sql_url)
    yield e
    e.dispose()


def tx(engine: sa.Engine, thd_fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """`thd_fn(conn, *args)` in a transaction of its own (as the Pool runs it)."""
    with engine.begin() as conn:
        return thd_fn(conn, *args, **kw)


def lease_row(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(t.router_leases)).one()


# --- the row's rules, on both backends -------------------------------------------------------


def test_the_first_claim_wins_at_epoch_one(engine: sa.Engine) -> None:
    claim = tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    assert claim.won and claim.lease.epoch == 1 and claim.lease.holder == "a"
    assert (claim.lease.expires_at, claim.lease.claimed_at) == (T0 + TTL, T0)
    row = lease_row(engine)
    assert (row.epoch, row.holder, row.expires_at, row.holder_watched) == (1, "a", T0 + TTL, False)


def test_a_gone_holder_is_replaced_only_once_it_has_missed_a_renewal(engine: sa.Engine) -> None:
    grace = 4.0
    tx(engine, thd_claim, ROUTER, "a", TTL, T0, watched=True)
    tx(engine, thd_renew, ROUTER, "a", 1, TTL, T0 + 3.0, watched=True)
    early = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + 3.0 + grace - 0.001,
               holder_gone=True, watched=True, grace=grace)
    assert not early.won and early.lease.renewed_at == T0 + 3.0
    late = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + 3.0 + grace, holder_gone=True,
              watched=True, grace=grace)
    assert late.won and late.lease.epoch == 2  # long before a's lease (T0 + 13) ends


def test_a_node_started_again_under_its_name_takes_its_gone_lease_back_at_once(
        engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0, watched=True)
    again = tx(engine, thd_claim, ROUTER, "a", TTL, T0 + 0.5, holder_gone=True, watched=True,
               grace=4.0)
    assert again.won and again.lease.epoch == 2
    other = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + 1.0, holder_gone=True, watched=True,
               grace=4.0)
    assert not other.won  # another name still waits for the grace


def test_a_live_lease_is_refused_to_another_node_and_names_its_holder(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    claim = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + TTL - 0.001)
    assert not claim.won
    assert (claim.lease.holder, claim.lease.epoch, claim.lease.expires_at) == ("a", 1, T0 + TTL)
    assert lease_row(engine).holder == "a"


def test_expiry_on_the_given_clock_frees_the_lease_and_raises_the_epoch(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    claim = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + TTL)  # expires_at <= now: free
    assert claim.won and claim.lease.epoch == 2 and claim.lease.holder == "b"
    again = tx(engine, thd_claim, ROUTER, "a", TTL, T0 + 3 * TTL)
    assert again.won and again.lease.epoch == 3
    assert (lease_row(engine).epoch, lease_row(engine).holder) == (3, "a")


def test_renewal_by_the_holder_moves_the_expiry(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    assert tx(engine, thd_renew, ROUTER, "a", 1, TTL, T0 + 5) == T0 + 5 + TTL
    assert lease_row(engine).expires_at == T0 + 5 + TTL
    refused = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + TTL + 1)  # past the first expiry
    assert not refused.won and refused.lease.holder == "a"


def test_renewal_with_an_old_epoch_or_by_another_node_returns_none(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    tx(engine, thd_claim, ROUTER, "b", TTL, T0 + TTL)  # epoch 2, b's
    assert tx(engine, thd_renew, ROUTER, "a", 1, TTL, T0 + TTL + 1) is None
    assert tx(engine, thd_renew, ROUTER, "a", 2, TTL, T0 + TTL + 1) is None  # not a's epoch
    row = lease_row(engine)
    assert (row.epoch, row.holder, row.expires_at) == (2, "b", T0 + 2 * TTL)


def test_a_node_that_claimed_again_cannot_renew_its_old_epoch(engine: sa.Engine) -> None:
    """A restarted node holds epoch 2; its previous life, still renewing epoch 1, is deposed."""
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    tx(engine, thd_claim, ROUTER, "a", TTL, T0 + TTL)
    assert tx(engine, thd_renew, ROUTER, "a", 1, TTL, T0 + TTL + 1) is None
    assert tx(engine, thd_release, ROUTER, "a", 1, T0 + TTL + 1) is False
    assert lease_row(engine).expires_at == T0 + 2 * TTL


def test_release_lets_the_next_claim_win_at_once(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    assert tx(engine, thd_release, ROUTER, "a", 1, T0 + 1) is True
    claim = tx(engine, thd_claim, ROUTER, "b", TTL, T0 + 1)
    assert claim.won and claim.lease.epoch == 2
    assert tx(engine, thd_release, ROUTER, "a", 1, T0 + 2) is False  # no longer a's
    assert lease_row(engine).expires_at == T0 + 1 + TTL  # and b's lease untouched


def test_the_fence_passes_at_the_current_epoch_only(engine: sa.Engine) -> None:
    tx(engine, thd_claim, ROUTER, "a", TTL, T0)
    tx(engine, thd_fence, ROUTER, 1)
    tx(engine, thd_claim, ROUTER, "b", TTL, T0 + TTL)
    tx(engine, thd_fence, ROUTER, 2)
    with pytest.raises(Deposed, match="epoch 2"):
        tx(engine, thd_fence, ROUTER, 1)


def test_the_fence_refuses_when_no_lease_was_ever_claimed(engine: sa.Engine) -> None:
    with pytest.raises(Deposed):
        tx(engine, thd_fence, ROUTER, 1)


def test_now_is_the_database_clock_in_unix_seconds(engine: sa.Engine) -> None:
    before = time.time()
    now = tx(engine, thd_now)
    assert before - 1.0 <= now <= time.time() + 1.0


# --- property: never two routers, on a virtual clock (SQLite) --------------------------------


@dataclass
class Node:
    name: str
    epoch: int | None = None  # of its last won claim
    believes: bool = False  # it routes, by its own view
    deadline: float = 0.0  # its local deadline: sent + ttl of its last confirmed claim/renewal

    def leads(self, now: float) -> bool:
        return self.believes and now < self.deadline


@dataclass
class Model:
    """What the lease should be, from the claims that won."""

    epoch: int = 0
    holder: str | None = None
    expires_at: float = float("-inf")


advance = st.one_of(st.integers(0, int(TTL * 1.5)).map(float), st.floats(0.0, TTL * 1.5))
step = st.one_of(
    st.tuples(st.just("advance"), advance),
    st.tuples(st.sampled_from(["claim", "renew", "fence", "release"]), st.integers(0, 2)),
)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lease') / 'lease.db'}"
    schema.upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


class Run:
    """Steps on one database: each node acts as `Leadership` would, and the model checks it."""

    def __init__(self, engine: sa.Engine, nodes: list[Node]) -> None:
        self.engine, self.nodes, self.model, self.now = engine, nodes, Model(), T0

    def claim(self, node: Node) -> None:
        claim = tx(self.engine, thd_claim, ROUTER, node.name, TTL, self.now)
        assert claim.won == (self.model.expires_at <= self.now)
        if not claim.won:
            assert (claim.lease.epoch, claim.lease.holder) == (self.model.epoch, self.model.holder)
            return
        assert claim.lease.epoch == self.model.epoch + 1  # epochs only grow, one by one
        self.model = Model(claim.lease.epoch, node.name, self.now + TTL)
        node.epoch, node.believes, node.deadline = claim.lease.epoch, True, self.now + TTL

    def renew(self, node: Node) -> None:  # a stale node's renewal too
        expiry = tx(self.engine, thd_renew, ROUTER, node.name, node.epoch, TTL, self.now)
        assert (expiry is not None) == (node.epoch == self.model.epoch)
        if expiry is not None:
            self.model.expires_at = expiry
        if node.leads(self.now):
            node.believes, node.deadline = expiry is not None, expiry or 0.0

    def release(self, node: Node) -> None:
        released = tx(self.engine, thd_release, ROUTER, node.name, node.epoch, self.now)
        assert released == (node.epoch == self.model.epoch)
        if released:
            self.model.expires_at = self.now
        node.believes = False

    def fence(self, node: Node) -> None:
        try:
            tx(self.engine, thd_fence, ROUTER, node.epoch)
            passed = True
        except Deposed:
            passed = False
        assert passed == (node.epoch == self.model.epoch)
        if passed:
            assert self.model.holder == node.name  # the fence passes for the latest claimer
        if node.leads(self.now):
            assert passed  # a node that believes it routes is not refused

    def step(self, kind: str, arg: Any) -> None:
        if kind == "advance":
            self.now += arg
            return
        node = self.nodes[arg % len(self.nodes)]
        if kind == "claim" or node.epoch is not None:
            getattr(self, kind)(node)
        assert sum(n.leads(self.now) for n in self.nodes) <= 1
        epoch = tx(self.engine, lambda conn: conn.scalar(sa.select(t.router_leases.c.epoch)))
        assert epoch == (self.model.epoch or None)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(2, 3), steps=st.lists(step, max_size=40))
def test_never_two_nodes_believe_they_route(sqlite_engine: sa.Engine, count: int,
                                            steps: list[tuple[str, Any]]) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(sa.delete(t.router_leases))
    run = Run(sqlite_engine, [Node(f"n{i}") for i in range(count)])
    for kind, arg in steps:
        run.step(kind, arg)


# --- PostgreSQL only: the fence's share lock -------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def waits_on_a_lock(engine: sa.Engine, pid: int) -> bool:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"),
                           {"p": pid}) == "Lock"


@pytest.fixture
def pg_engine(pg_driver_url: str) -> Iterator[sa.Engine]:
    schema.upgrade(pg_driver_url)
    e = make_engine(pg_driver_url)
    yield e
    e.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("carried", [False, True], ids=["alone", "carried"])
def test_a_claim_waits_for_the_fenced_transaction_to_commit(pg_engine: sa.Engine,
                                                            carried: bool) -> None:
    """Node a routes at epoch 1 and its transaction passed the fence (run alone, or carried by
    the transaction's first write as group commit runs it: `fence`); b claims the (expired)
    lease meanwhile: the claim returns only after a's transaction committed, and a fence
    started after the claim committed refuses a's next transaction."""
    tx(pg_engine, thd_claim, ROUTER, "a", TTL, T0)
    order: list[str] = []
    pids: queue.SimpleQueue[int] = queue.SimpleQueue()
    claims: list[Any] = []

    def claim_b() -> None:
        with pg_engine.begin() as conn:
            pids.put(conn.scalar(sa.text("SELECT pg_backend_pid()")))
            claims.append(thd_claim(conn, ROUTER, "b", TTL, T0 + 2 * TTL))
        order.append("claim committed")

    routed = sa.insert(t.customers).values(id="c1", name="routed", created_at=T0)
    with pg_engine.begin() as fenced, fence(ROUTER, 1)(fenced) if carried else nullcontext():
        if carried:
            fenced.execute(routed)  # its statement carries the fence
        else:
            thd_fence(fenced, ROUTER, 1)
        thread = threading.Thread(target=claim_b)
        thread.start()
        pid = pids.get(timeout=WAIT_SECONDS)
        wait_until(lambda: waits_on_a_lock(pg_engine, pid), "the claim waits on the fence")
        assert thread.is_alive() and order == []
        if not carried:
            fenced.execute(routed)
        order.append("fenced committing")
    thread.join(WAIT_SECONDS)
    assert order == ["fenced committing", "claim committed"]
    assert claims[0].won and claims[0].lease.epoch == 2
    with pytest.raises(Deposed):
        tx(pg_engine, thd_fence, ROUTER, 1)
    with pg_engine.connect() as conn:  # the routed write committed before the takeover
        assert conn.scalar(sa.select(t.customers.c.name)) == "routed"


@pytest.mark.postgres
def test_a_fence_that_waited_on_a_claim_reads_the_new_epoch(pg_engine: sa.Engine) -> None:
    tx(pg_engine, thd_claim, ROUTER, "a", TTL, T0)
    pids: queue.SimpleQueue[int] = queue.SimpleQueue()
    outcome: list[Any] = []

    def fence_a() -> None:
        with pg_engine.connect() as conn:
            pids.put(conn.scalar(sa.text("SELECT pg_backend_pid()")))
            conn.commit()
            try:
                with conn.begin():
                    thd_fence(conn, ROUTER, 1)
                outcome.append("passed")
            except Deposed as exc:
                outcome.append(exc)

    with pg_engine.begin() as claiming:
        assert thd_claim(claiming, ROUTER, "b", TTL, T0 + 2 * TTL).won
        thread = threading.Thread(target=fence_a)
        thread.start()
        pid = pids.get(timeout=WAIT_SECONDS)
        wait_until(lambda: waits_on_a_lock(pg_engine, pid), "the fence waits on the claim")
        assert outcome == []
    thread.join(WAIT_SECONDS)
    assert len(outcome) == 1 and isinstance(outcome[0], Deposed)


# --- PostgreSQL only: the holder's session lock ----------------------------------------------


@pytest.fixture
def two_nodes(pg_driver_url: str) -> Iterator[tuple[Wiring, Wiring]]:
    schema.upgrade(pg_driver_url)
    a, b = wire(pg_driver_url), wire(pg_driver_url)
    yield a, b
    a.close()
    b.close()


def advisory_holders(engine: sa.Engine) -> list[int]:
    """The sessions holding an advisory lock in this database."""
    with engine.connect() as conn:
        return list(conn.scalars(sa.text(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()")))


@pytest.mark.postgres
def test_a_holder_whose_session_died_is_replaced_at_once(two_nodes) -> None:
    a, b = two_nodes
    leases_a, leases_b = SqlLeases(a.pool), SqlLeases(b.pool)
    try:
        won = a.wait(leases_a.claim("a", 60.0))
        assert won.won and won.lease.holder_watched
        lock_pids = advisory_holders(a.engine)
        assert len(lock_pids) == 1
        refused = b.wait(leases_b.claim("b", 60.0))
        assert not refused.won and refused.lease.holder == "a"
        assert advisory_holders(a.engine) == lock_pids  # b could not take a's lock
        with a.engine.connect() as conn:  # a's process is killed: its lock session ends
            assert conn.scalar(sa.text("SELECT pg_terminate_backend(:p)"), {"p": lock_pids[0]})
        wait_until(lambda: advisory_holders(a.engine) == [], "the server frees a's lock")
        taken = b.wait(leases_b.claim("b", 60.0))  # a's lease has ~60 s left
        assert taken.won and taken.lease.epoch == 2 and taken.lease.holder_watched
        assert a.wait(leases_a.renew("a", 1, 60.0)) is None  # a, if it lived, is deposed
        with pytest.raises(Deposed):
            tx(a.engine, thd_fence, ROUTER, 1)
    finally:
        leases_a.close()
        leases_b.close()


@pytest.mark.postgres
def test_taking_the_lock_does_not_free_a_lease_whose_holder_did_not_keep_it(two_nodes) -> None:
    a, b = two_nodes
    with a.engine.begin() as conn:  # a holds the lease without the lock (holder_watched false)
        assert thd_claim(conn, ROUTER, "a", 60.0, thd_now(conn)).won
    leases_b = SqlLeases(b.pool)
    try:
        refused = b.wait(leases_b.claim("b", 60.0))
        assert not refused.won and refused.lease.holder == "a" and refused.lease.epoch == 1
        assert advisory_holders(b.engine) == []  # b gave the lock back
    finally:
        leases_b.close()
