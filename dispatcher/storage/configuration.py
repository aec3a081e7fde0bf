"""The configuration events of the agent log, read by id: `ConfigurationLog` (dispatcher.service.
configuration) on SQL (`SqlConfigurationLog`) and on the memory store (`MemoryConfigurationLog`).

Sits under `dispatcher.storage`. A server's `ConfigurationWatch` reads the changes another
process (the command line) committed after the last event it read, under the gap rule of
cursor.py (a lower id committing late is waited for, never skipped): every event after the
cursor is read, whatever its kind, and the configuration kinds are kept. Read-only; the `thd_*`
functions run on the database thread and return plain tuples, never rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from . import tables as t
from .cursor import SETTLE_SECONDS, readable
from .pool import Pool

Change = tuple[int, str, str | None, dict[str, Any]]  # id, kind, agent_id, data


class Read(NamedTuple):
    """One read of the log: the changes of the kinds asked for, the cursor to read after next
    time, and whether more events are waiting already (the batch was full)."""

    changes: list[Change]
    cursor: int
    more: bool


def thd_last_id(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.max(t.agent_events.c.id))).scalar() or 0


def _read(rows: Sequence[Any], after_id: int, kinds: Sequence[str], limit: int, now: float,
          settle: float) -> Read:
    taken, cursor = readable(rows, after_id, now, settle)
    changes = [(int(x.id), x.kind, x.agent_id, dict(x.data or {})) for x in taken
               if x.kind in kinds]
    return Read(changes, cursor, len(rows) == limit and len(taken) == len(rows))


def thd_changes_after(conn: sa.Connection, after_id: int, kinds: Sequence[str], limit: int,
                      now: float, settle: float = SETTLE_SECONDS) -> Read:
    table = t.agent_events
    rows = conn.execute(
        sa.select(table.c.id, table.c.at, table.c.kind, table.c.agent_id, table.c.data)
        .where(table.c.id > after_id).order_by(table.c.id).limit(limit)).all()
    return _read(rows, after_id, kinds, limit, now, settle)


class SqlConfigurationLog:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def last_id(self) -> Deferred[int]:
        return self._pool.run(thd_last_id)

    def changes_after(self, after_id: int, kinds: Sequence[str], limit: int, now: float
                      ) -> Deferred[Read]:
        return self._pool.run(thd_changes_after, after_id, tuple(kinds), limit, now)


class MemoryConfigurationLog:
    """The same over a `MemoryStore`'s agent log (unit tests; its ids have no gaps)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def last_id(self) -> Deferred[int]:
        return succeed(max((e.id for e in self._store.agent_events), default=0))

    def changes_after(self, after_id: int, kinds: Sequence[str], limit: int, now: float
                      ) -> Deferred[Read]:
        rows = [e for e in self._store.agent_events if e.id > after_id][:limit]
        return succeed(_read(rows, after_id, kinds, limit, now, SETTLE_SECONDS))
