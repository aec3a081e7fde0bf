"""Queues and business calendars on SQL: put, remove, list (configuration: each write in a
transaction of its own on the pool, with its audit events).

Sits under `dispatcher.storage`; `SqlQueues` is a mixin of `SqlStore` (sql.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.service.ports import (
    Calendar,
)

from . import rows as r
from . import tables as t
from .bulk import append_events
from .commit import GroupCommit
from .pool import Pool
from .statements import upsert


def thd_put_queue(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None) -> None:
    conn.execute(upsert(conn.dialect.name, t.queues), [row])
    append_events(conn, events or [])


def thd_put_calendar(conn: sa.Connection, row: r.Row, events: list[r.Row] | None = None) -> None:
    conn.execute(upsert(conn.dialect.name, t.calendars), [row])
    append_events(conn, events or [])


def thd_remove_queue(conn: sa.Connection, name: str, events: list[r.Row]) -> bool:
    if conn.execute(sa.select(t.queues.c.name).where(t.queues.c.name == name)).first() is None:
        return False
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.queue == name))
    conn.execute(t.queues.delete().where(t.queues.c.name == name))
    append_events(conn, events)
    return True


def thd_list_queues(conn: sa.Connection) -> list[Queue]:
    result = conn.execute(sa.select(t.queues).order_by(t.queues.c.name))
    return [r.queue_from_row(row) for row in result]


def thd_list_calendars(conn: sa.Connection) -> list[Calendar]:
    result = conn.execute(sa.select(t.calendars).order_by(t.calendars.c.name))
    return [r.calendar_from_row(row) for row in result]


class SqlQueues:
    """Queues and calendars: part of the `Store` port. A mixin of `SqlStore` (dispatcher/storage/sql.py): it uses the store's `_pool`, `_commit`
    and `_clock`."""

    _pool: Pool
    _commit: GroupCommit
    _clock: Callable[[], float]

    def put_queue(self, queue: Queue, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_queue, r.queue_row(queue), [r.event_row(e) for e in events])

    def put_calendar(self, calendar: Calendar, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_calendar, r.calendar_row(calendar),
                              [r.event_row(e) for e in events])

    def remove_queue(self, name: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_queue, name, [r.event_row(e) for e in events])

    def list_queues(self) -> Deferred[list[Queue]]:
        return self._pool.run(thd_list_queues)

    def list_calendars(self) -> Deferred[list[Calendar]]:
        return self._pool.run(thd_list_calendars)
