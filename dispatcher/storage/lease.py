"""The router's lease on the database: at most one node routes, and a deposed one's writes fail.

Sits under `dispatcher.storage`; the service `Leadership` (dispatcher/service/leadership.py)
drives `SqlLeases`, and the composition root hands `fence(epoch)` to group commit, which runs
every routing transaction inside it. What it promises:

- `thd_claim` gives the lease to a node, its epoch raised by one, when the lease is free, expired
  on the database's clock, or its holder's session is gone; otherwise it says who holds it. The
  claim locks the row (FOR UPDATE): two claims serialise, one wins.
- A holder's session is "gone" when the claimer could take the PostgreSQL advisory lock that a
  holder keeps on a connection of its own (`SessionLock`, `holder_watched` in the row): the
  server frees that lock the moment the holder's process dies or its connection drops, so a
  killed leader is replaced as soon as it has missed one renewal (`grace`) instead of after a
  whole lease; the grace lets a leader whose lock connection dropped with a database restart
  take its lock back at its next renewal instead of being replaced. A paused leader keeps its
  session: it is replaced when its lease expires.
- `thd_renew` moves `expires_at` forward only for the holder of that epoch; None once the epoch
  moved on (the holder has been deposed and must stop routing).
- `thd_fence` raises `Deposed` when a claim raised the epoch. On PostgreSQL it holds the
  lease's fence lock (a transaction-scoped advisory lock) shared, and a claim takes it
  exclusive: a claim waits until the transactions in flight under the old epoch have ended,
  and a fence that waited on a claim reads the new epoch (it reads in a statement of its own,
  after the lock, so on a fresh snapshot). A routing write either commits before the takeover
  (the new leader's load then sees it) or fails. (A row lock FOR SHARE would do the same but
  writes to the row on every commit: 255 us a commit against 155 us, measured.) Both steps
  are one statement, `switchboard_fence` (a function of the database, migration 0022), which
  raises its own SQLSTATE.
- `fence(name, epoch)` is what group commit runs each transaction inside: on PostgreSQL the
  fence's statement travels with the transaction's first statement (fence.py: no round trip
  of its own) and is checked before the commit; a refusal is raised as `Deposed`.
- Times are float seconds on the database's clock (`thd_now`), so nodes' clocks need not agree;
  tests pass a virtual clock instead.

SQLite stays single-node: the runtime takes no lease there (one process owns the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from twisted.internet.defer import Deferred

from . import fence as fencing
from . import tables as t
from .engine import is_sqlite

log = logging.getLogger(__name__)

ROUTER = "router"  # the lease of the one router per database
# A transaction of the lease's holder runs inside `fence(conn)` (group commit's `fence_with`).
Fence = Callable[[sa.Connection], AbstractContextManager[None]]


class Deposed(Exception):
    """Another node claimed the lease: this node's routing writes are refused."""


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    epoch: int
    holder: str
    holder_watched: bool
    expires_at: float
    claimed_at: float
    renewed_at: float


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim found: `won` (the lease is the claimer's, at `lease.epoch`) or who holds it."""

    won: bool
    lease: Lease


def _lease(row: Any) -> Lease:
    return Lease(row.name, int(row.epoch), row.holder, bool(row.holder_watched),
                 float(row.expires_at), float(row.claimed_at), float(row.renewed_at))


def thd_now(conn: sa.Connection) -> float:
    """The database's clock, in float seconds since the epoch (the leases' one clock)."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())"))
                     .scalar_one())
    return float(conn.execute(sa.text("SELECT (julianday('now') - 2440587.5) * 86400.0"))
                 .scalar_one())


def thd_claim(conn: sa.Connection, name: str, node: str, ttl: float, now: float, *,
              holder_gone: bool = False, watched: bool = False, grace: float = 0.0) -> Claim:
    """Claim lease `name` for `node` until `now + ttl` (module doc). `holder_gone`: the claimer
    took the advisory lock; it counts only if the holder kept it and has not renewed for
    `grace` seconds (a holder whose lock connection dropped with a database restart takes it
    back at its next renewal), or if the holder had the claimer's own name (this node started
    again after its process died: no two live processes share a name); `watched`: the claimer
    now keeps that lock itself."""
    leases = t.router_leases
    row = conn.execute(sa.select(leases).where(leases.c.name == name).with_for_update()).first()
    values = {"holder": node, "holder_watched": watched, "expires_at": now + ttl,
              "claimed_at": now, "renewed_at": now}
    if row is None:
        conn.execute(sa.insert(leases).values(name=name, epoch=1, **values))
        return Claim(True, Lease(name, 1, node, watched, now + ttl, now, now))
    current = _lease(row)
    gone = holder_gone and current.holder_watched and (
        current.holder == node or now - current.renewed_at >= grace)
    if not (current.expires_at <= now or gone):
        return Claim(False, current)
    if conn.dialect.name == "postgresql":  # wait out the transactions fenced at the old epoch
        high, low = fence_key(name)
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({high}, {low})")
    epoch = current.epoch + 1
    conn.execute(sa.update(leases).where(leases.c.name == name).values(epoch=epoch, **values))
    return Claim(True, Lease(name, epoch, node, watched, now + ttl, now, now))


def thd_renew(conn: sa.Connection, name: str, node: str, epoch: int, ttl: float, now: float,
              *, watched: bool = False) -> float | None:
    """Move the lease's expiry to `now + ttl` if `node` still holds it at `epoch`; the new
    expiry, or None when it has been deposed."""
    leases = t.router_leases
    done = conn.execute(
        sa.update(leases)
        .where(leases.c.name == name, leases.c.epoch == epoch, leases.c.holder == node)
        .values(expires_at=now + ttl, renewed_at=now, holder_watched=watched))
    return now + ttl if done.rowcount == 1 else None


def thd_release(conn: sa.Connection, name: str, node: str, epoch: int, now: float) -> bool:
    """Give the lease up at once (a clean stop): it expires now, so a standby claims it on its
    next poll. False if it was no longer ours."""
    leases = t.router_leases
    done = conn.execute(
        sa.update(leases)
        .where(leases.c.name == name, leases.c.epoch == epoch, leases.c.holder == node)
        .values(expires_at=now, holder_watched=False))
    return done.rowcount == 1


def thd_fence(conn: sa.Connection, name: str, epoch: int) -> None:
    """Refuse this transaction (`Deposed`) unless lease `name` is still at `epoch` (module doc),
    in a statement of its own. On PostgreSQL, `switchboard_fence` (migration 0022) takes the
    lease's fence lock shared until the transaction ends (a claim takes it exclusive), then
    reads the epoch in a statement of its own, so on a fresh snapshot, and raises `REFUSED`:
    one round trip, and no row lock (which would write to the row)."""
    if conn.dialect.name == "postgresql":
        with _refusals(name, epoch):
            conn.exec_driver_sql(_fence_statement(name, epoch))
        return
    # SQLite: one writer at a time, the transaction is the fence
    leases = t.router_leases
    found = conn.execute(sa.select(leases.c.epoch).where(leases.c.name == name)).scalar()
    if found != epoch:
        raise Deposed(f"lease {name!r} is at epoch {found}, this node routed at {epoch}")


def fence(name: str, epoch: int) -> Fence:
    """What group commit runs each transaction of the holder of `epoch` inside: on PostgreSQL
    the transaction owes the fence, paid in the round trip of its first statement and checked
    before the commit (fence.py); on SQLite the check runs first, as `thd_fence`. A refusal
    is raised as `Deposed`."""
    sql = _fence_statement(name, epoch)

    @contextlib.contextmanager
    def thd_behind(conn: sa.Connection) -> Iterator[None]:
        if conn.dialect.name != "postgresql":
            thd_fence(conn, name, epoch)
            yield
            return
        debt = fencing.owe(conn, sql)
        try:
            with _refusals(name, epoch):
                yield
                fencing.settle(conn, debt)
        finally:
            fencing.forget(debt)

    return thd_behind


def _fence_statement(name: str, epoch: int) -> str:
    high, low = fence_key(name)
    return fencing.statement(name, high, low, epoch)


@contextlib.contextmanager
def _refusals(name: str, epoch: int) -> Iterator[None]:
    """The fence's refusal (its SQLSTATE), raised as `Deposed`."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if fencing.refused(exc):
            raise Deposed(fencing.reason(exc)) from exc
        raise


def fence_key(name: str) -> tuple[int, int]:
    """The fence lock's key for lease `name`: two 32-bit halves (PostgreSQL keeps that key
    space apart from the 64-bit one of `advisory_key`)."""
    digest = hashlib.sha256(f"switchboard:fence:{name}".encode()).digest()
    return (int.from_bytes(digest[:4], "big", signed=True),
            int.from_bytes(digest[4:8], "big", signed=True))


def advisory_key(name: str) -> int:
    """The advisory lock's 64-bit key for lease `name` (signed, as PostgreSQL takes it)."""
    digest = hashlib.sha256(f"switchboard:lease:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SessionLock:
    """A PostgreSQL session advisory lock on a connection of its own, held as long as this
    process's session lives: the server frees it when the process dies or the connection
    drops. The connection is kept between attempts (a standby tries every poll: a new session
    each time would start a server process each time). Blocking: call from a pool thread."""

    def __init__(self, url: sa.URL, key: int) -> None:
        self._engine = sa.create_engine(url, poolclass=NullPool, hide_parameters=True)
        self._key = key
        self._conn: sa.Connection | None = None
        self._held = False
        self._mutex = threading.Lock()

    def thd_take(self) -> bool:
        """Hold the lock if we can (a held one: checking that its connection still lives)."""
        with self._mutex:
            try:
                if self._conn is None:
                    self._conn = self._engine.connect()
                if self._held:
                    self._conn.execute(sa.text("SELECT 1")).scalar()
                else:
                    self._held = bool(self._conn.execute(
                        sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
                self._conn.commit()
            except sa.exc.DBAPIError:
                if self._held:
                    log.warning("the lease's session lock was lost with its connection")
                self._drop()
            return self._held

    def thd_release(self) -> None:
        """Let the lock go (the connection stays for the next attempt)."""
        with self._mutex:
            if not self._held or self._conn is None:
                return
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
                self._held = False
            except sa.exc.DBAPIError:
                self._drop()  # the session ends: the server frees its advisory locks

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.close()

    def close(self) -> None:
        with self._mutex:
            self._drop()
        self._engine.dispose()


class SqlLeases:
    """One lease on the database, for the `Leadership` service: every call runs on the pool's
    threads in its own transaction, on the database's clock. On PostgreSQL the holder also keeps
    the `SessionLock` so that its death is seen at once."""

    def __init__(self, pool: Any, name: str = ROUTER) -> None:
        self._pool = pool
        self.name = name
        engine: sa.Engine = pool.engine
        self._lock = None if is_sqlite(engine) else SessionLock(engine.url, advisory_key(name))

    def claim(self, node: str, ttl: float, grace: float = 0.0) -> Deferred[Claim]:
        return self._pool.run(self._thd_claim, node, ttl, grace)

    def renew(self, node: str, epoch: int, ttl: float) -> Deferred[float | None]:
        return self._pool.run(self._thd_renew, node, epoch, ttl)

    def release(self, node: str, epoch: int) -> Deferred[bool]:
        return self._pool.run(self._thd_release, node, epoch)

    def fence(self, epoch: int) -> Fence:
        return fence(self.name, epoch)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()

    def _thd_claim(self, conn: sa.Connection, node: str, ttl: float, grace: float) -> Claim:
        took = self._lock.thd_take() if self._lock is not None else False
        claim = thd_claim(conn, self.name, node, ttl, thd_now(conn), holder_gone=took,
                          watched=took, grace=grace)
        if took and not claim.won:  # let the holder take it back (it may not keep it yet)
            self._lock.thd_release()  # type: ignore[union-attr]
        return claim

    def _thd_renew(self, conn: sa.Connection, node: str, epoch: int,
                   ttl: float) -> float | None:
        watched = self._lock.thd_take() if self._lock is not None else False
        return thd_renew(conn, self.name, node, epoch, ttl, thd_now(conn), watched=watched)

    def _thd_release(self, conn: sa.Connection, node: str, epoch: int) -> bool:
        released = thd_release(conn, self.name, node, epoch, thd_now(conn))
        if self._lock is not None:
            self._lock.thd_release()
        return released
