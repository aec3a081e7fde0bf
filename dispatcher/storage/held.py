"""Held mail on the database (the `held_mail` table, migration 0016): the `HeldStore` port of
dispatcher/service/held.py. Every call is its own transaction on the pool's threads, outside
group commit: a node that does not route holds mail without the router's lease, and a held
row is never written by anything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.service.ports import HeldMail

from . import tables as t

H = t.held_mail


def thd_hold(conn: sa.Connection, mail: HeldMail) -> None:
    conn.execute(sa.insert(H).values(
        id=mail.id, received_at=mail.received_at, node=mail.node, queue=mail.queue,
        envelope_from=mail.envelope_from, recipients=list(mail.recipients),
        verdict=mail.verdict, raw=mail.raw, attempts=mail.attempts,
        next_attempt_at=mail.next_attempt_at, error=mail.error))


def thd_waiting(conn: sa.Connection, now: float, limit: int) -> list[HeldMail]:
    rows = conn.execute(sa.select(H).where(H.c.next_attempt_at <= now)
                        .order_by(H.c.next_attempt_at, H.c.received_at).limit(limit))
    return [HeldMail(r.id, r.received_at, r.node, r.queue, r.envelope_from,
                     tuple(r.recipients), bytes(r.raw), r.verdict, r.attempts,
                     r.next_attempt_at, r.error) for r in rows]


def thd_taken(conn: sa.Connection, ids: Sequence[str]) -> None:
    if ids:
        conn.execute(sa.delete(H).where(H.c.id.in_(list(ids))))


def thd_retry_later(conn: sa.Connection, id: str, attempts: int, next_attempt_at: float,
                    error: str) -> None:
    conn.execute(sa.update(H).where(H.c.id == id).values(
        attempts=attempts, next_attempt_at=next_attempt_at, error=error))


def thd_oldest(conn: sa.Connection) -> tuple[int, float | None]:
    count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(H.c.received_at))).one()
    return int(count), None if oldest is None else float(oldest)


class SqlHeldMail:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def hold(self, mail: HeldMail) -> Deferred[None]:
        return self._pool.run(thd_hold, mail)

    def waiting(self, now: float, limit: int) -> Deferred[list[HeldMail]]:
        return self._pool.run(thd_waiting, now, limit)

    def taken(self, ids: Sequence[str]) -> Deferred[None]:
        return self._pool.run(thd_taken, list(ids))

    def retry_later(self, id: str, attempts: int, next_attempt_at: float,
                    error: str) -> Deferred[None]:
        return self._pool.run(thd_retry_later, id, attempts, next_attempt_at, error)

    def oldest(self) -> Deferred[tuple[int, float | None]]:
        return self._pool.run(thd_oldest)
