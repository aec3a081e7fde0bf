"""Revoked bearer tokens: the `RevocationStore` port (dispatcher/service/ports.py) on SQL
(`SqlRevocations`) and in memory (`MemoryRevocations`; the same contract suite runs on both).

Sits under `dispatcher.storage`. Two kinds of revocation: one token by its `jti` (kept until the
token would have expired anyway), and every token of a subject issued before a time
(`not_before`; a later revocation of the same subject moves it forward, never back). Each call
is one transaction on the pool's thread; `thd_*` functions return plain values, never rows.
Token values themselves are never stored, only their `jti`.
"""

from __future__ import annotations

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.service.ports import Revocations

from . import tables as t
from .pool import Pool


def thd_revoke_token(conn: sa.Connection, jti: str, expires_at: float, now: float,
                     actor: str) -> None:
    table = t.revoked_tokens
    if conn.execute(sa.select(table.c.jti).where(table.c.jti == jti)).first() is None:
        conn.execute(table.insert().values(jti=jti, expires_at=expires_at, revoked_at=now,
                                           actor=actor))


def thd_revoke_subject(conn: sa.Connection, subject: str, not_before: float, now: float,
                       actor: str) -> None:
    table = t.revoked_subjects
    old = conn.execute(sa.select(table.c.not_before).where(table.c.subject == subject)).first()
    if old is None:
        conn.execute(table.insert().values(subject=subject, not_before=not_before,
                                           revoked_at=now, actor=actor))
    elif old[0] < not_before:
        conn.execute(table.update().where(table.c.subject == subject).values(
            not_before=not_before, revoked_at=now, actor=actor))


def thd_revocations(conn: sa.Connection, now: float) -> Revocations:
    """Everything revoked that still matters at `now` (expired jtis are forgotten)."""
    jtis = conn.execute(sa.select(t.revoked_tokens.c.jti)
                        .where(t.revoked_tokens.c.expires_at >= now)).scalars().all()
    subjects = conn.execute(sa.select(t.revoked_subjects.c.subject,
                                      t.revoked_subjects.c.not_before)).all()
    return Revocations(frozenset(jtis), {s: float(nb) for s, nb in subjects})


class SqlRevocations:
    """`RevocationStore` on SQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def revoke_token(self, jti: str, expires_at: float, now: float,
                     actor: str) -> Deferred[None]:
        return self._pool.run(thd_revoke_token, jti, expires_at, now, actor)

    def revoke_subject(self, subject: str, not_before: float, now: float,
                       actor: str) -> Deferred[None]:
        return self._pool.run(thd_revoke_subject, subject, not_before, now, actor)

    def revocations(self, now: float) -> Deferred[Revocations]:
        return self._pool.run(thd_revocations, now)


class MemoryRevocations:
    """`RevocationStore` in process memory; every Deferred has already fired."""

    def __init__(self) -> None:
        self._jtis: dict[str, float] = {}
        self._subjects: dict[str, float] = {}

    def revoke_token(self, jti: str, expires_at: float, now: float,
                     actor: str) -> Deferred[None]:
        self._jtis.setdefault(jti, expires_at)
        return succeed(None)

    def revoke_subject(self, subject: str, not_before: float, now: float,
                       actor: str) -> Deferred[None]:
        self._subjects[subject] = max(not_before, self._subjects.get(subject, not_before))
        return succeed(None)

    def revocations(self, now: float) -> Deferred[Revocations]:
        return succeed(Revocations(frozenset(j for j, exp in self._jtis.items() if exp >= now),
                                   dict(self._subjects)))
