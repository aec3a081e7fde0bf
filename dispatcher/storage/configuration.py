"""The configuration events of the agent log, read by id: `ConfigurationLog` (dispatcher.service.
configuration) on SQL (`SqlConfigurationLog`) and on the memory store (`MemoryConfigurationLog`).

Sits under `dispatcher.storage`. A server's `ConfigurationWatch` reads the changes another
process (the command line) committed after the last one it saw. Read-only; the `thd_*`
functions run on the database thread and return plain tuples, never rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from . import tables as t
from .pool import Pool

Change = tuple[int, str, str | None, dict[str, Any]]  # id, kind, agent_id, data


def thd_last_id(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.max(t.agent_events.c.id))).scalar() or 0


def thd_changes_after(conn: sa.Connection, after_id: int, kinds: Sequence[str],
                      limit: int) -> list[Change]:
    table = t.agent_events
    rows = conn.execute(
        sa.select(table.c.id, table.c.kind, table.c.agent_id, table.c.data)
        .where(table.c.id > after_id, table.c.kind.in_(list(kinds)))
        .order_by(table.c.id).limit(limit)).all()
    return [(int(i), kind, agent_id, dict(data or {})) for i, kind, agent_id, data in rows]


class SqlConfigurationLog:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def last_id(self) -> Deferred[int]:
        return self._pool.run(thd_last_id)

    def changes_after(self, after_id: int, kinds: Sequence[str], limit: int
                      ) -> Deferred[list[Change]]:
        return self._pool.run(thd_changes_after, after_id, tuple(kinds), limit)


class MemoryConfigurationLog:
    """The same over a `MemoryStore`'s agent log (unit tests)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def last_id(self) -> Deferred[int]:
        return succeed(max((e.id for e in self._store.agent_events), default=0))

    def changes_after(self, after_id: int, kinds: Sequence[str], limit: int
                      ) -> Deferred[list[Change]]:
        found = [(e.id, e.kind, e.agent_id, dict(e.data)) for e in self._store.agent_events
                 if e.id > after_id and e.kind in kinds]
        return succeed(found[:limit])
