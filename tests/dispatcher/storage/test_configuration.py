"""dispatcher.storage.configuration on PostgreSQL: the configuration watch reads the agent log
under the gap rule (dispatcher/storage/cursor.py), so a transaction that commits a lower id after
a higher one was read is applied, not skipped; an id rolled back holds the reader only a few
seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet.defer import ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.queues import Queue
from dispatcher.service.configuration import CONFIG_KINDS, Configuration, ConfigurationWatch
from dispatcher.storage import rows as r
from dispatcher.storage.configuration import SqlConfigurationLog
from dispatcher.storage.cursor import SETTLE_SECONDS
from dispatcher.storage.queues import thd_put_queue
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.storage.wiring import Wiring

pytestmark = pytest.mark.postgres
T0 = 1_700_000_000.0


def changed(name: str, at: float = T0) -> ev.Event:
    return ev.Event(ev.QUEUE_CHANGED, at, None, "operator", "operator",
                    {"queue": name, "added": True})


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[str, Wiring, Any, sa.Engine]]:
    from dispatcher.storage import schema

    schema.upgrade(pg_url)
    wiring, stack = sql_stack(pg_url, start=T0)
    engine = sa.create_engine(pg_url)
    try:
        yield pg_url, wiring, stack, engine
    finally:
        stack.assignment.stop()
        engine.dispose()
        wiring.close()


def test_a_lower_id_committing_late_is_read_not_skipped(pg) -> None:
    _, w, _, engine = pg
    log = SqlConfigurationLog(w.pool)
    with engine.connect() as slow:
        tx = slow.begin()
        thd_put_queue(slow, r.queue_row(Queue("sales")), [r.event_row(changed("sales"))])
        w.wait(w.store.put_queue(Queue("billing"), [changed("billing")]))  # a higher id, first
        first = w.wait(log.changes_after(0, CONFIG_KINDS, 100, T0 + 1))
        assert (first.changes, first.cursor) == ([], 0)  # held at the missing id
        tx.commit()
    then = w.wait(log.changes_after(first.cursor, CONFIG_KINDS, 100, T0 + 2))
    assert [data["queue"] for _, _, _, data in then.changes] == ["sales", "billing"]
    # a rolled-back id holds the reader until the event after it is SETTLE_SECONDS old
    with engine.connect() as lost:
        tx = lost.begin()
        thd_put_queue(lost, r.queue_row(Queue("lost")), [r.event_row(changed("lost"))])
        tx.rollback()
    w.wait(w.store.put_queue(Queue("vip"), [changed("vip", T0 + 10)]))
    held = w.wait(log.changes_after(then.cursor, CONFIG_KINDS, 100, T0 + 11))
    assert (held.changes, held.cursor) == ([], then.cursor)
    late = w.wait(log.changes_after(then.cursor, CONFIG_KINDS, 100,
                                    T0 + 10 + SETTLE_SECONDS + 1))
    assert [data["queue"] for _, _, _, data in late.changes] == ["vip"]


def test_the_watch_applies_a_change_whose_lower_id_committed_after_a_higher_one(pg) -> None:
    """Two command-line changes: `sales` takes its id first but commits last. The running
    server's router gets both queues."""
    _, w, stack, engine = pg
    server = Configuration(stack.store, stack.clock, assignment=stack.assignment,
                           intake=stack.intake)
    watch = ConfigurationWatch(SqlConfigurationLog(w.pool), server, stack.clock, interval=3)
    w.wait(watch.mark())
    with engine.connect() as slow:
        tx = slow.begin()
        thd_put_queue(slow, r.queue_row(Queue("sales")), [r.event_row(changed("sales"))])
        w.wait(w.store.put_queue(Queue("billing"), [changed("billing")]))
        stack.clock.advance(1)
        w.wait(watch.poll())
        assert "billing" not in stack.router.queues  # held at the gap: nothing is skipped
        tx.commit()
    stack.clock.advance(1)
    w.wait(watch.poll())
    assert {"sales", "billing"} <= set(stack.router.queues)
    w.wait(ensureDeferred(server.put_queue(Queue("sales", priority=3), "operator")))
    w.wait(watch.poll())  # its own change, seen again: nothing changes
    assert stack.router.queues["sales"].priority == 3
