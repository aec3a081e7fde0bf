"""What `SqlStore` promises beyond the Store contract: the event logs are append-only in the
database itself, the outbox row is queued in the same transaction, configuration keeps its
creation time, and a batch of intakes costs a constant number of statements."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import Changes, Identity, OutboxItem
from dispatcher.storage import tables as t
from dispatcher.storage.sql import SqlStore
from tests.dispatcher.storage.wiring import Wiring

T0 = 1_700_000_000.0


def make_task(task_id: str) -> Task:
    return Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None, created_at=T0)


def seed_events(w: Wiring) -> None:
    task = make_task("t1")
    w.wait(w.store.create_task(task, None, "", [Event(ev.TASK_CREATED, T0, "t1")]))
    w.wait(w.store.record(Changes(events=[Event(ev.AGENT_STATUS, T0, None, "a1")])))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE task_events SET kind = 'forged'",
        "DELETE FROM task_events",
        "UPDATE agent_events SET actor = 'forged'",
        "DELETE FROM agent_events",
    ],
)
def test_event_logs_are_append_only(wiring: Wiring, statement: str) -> None:
    seed_events(wiring)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), wiring.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with wiring.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t.task_events)) == 1
        assert conn.scalar(sa.select(t.agent_events.c.actor)) == ev.SYSTEM


def test_outbox_items_are_queued_pending_and_due(wiring: Wiring) -> None:
    item = OutboxItem("email.ack", "t1", {"to": "alice@example.org", "lines": ("a", "b")}, T0)
    wiring.wait(wiring.store.record(Changes(outbox=[item])))
    with wiring.engine.connect() as conn:
        row = conn.execute(sa.select(t.outbox)).one()
    assert (row.kind, row.task_id, row.created_at) == ("email.ack", "t1", T0)
    assert row.payload == {"to": "alice@example.org", "lines": ["a", "b"]}
    assert (row.state, row.attempts, row.next_attempt_at, row.last_error) == (
        t.OUTBOX_PENDING,
        0,
        T0,
        None,
    )


def test_an_agent_keeps_its_creation_time_across_updates(wiring: Wiring) -> None:
    times = iter([100.0, 200.0])
    store = SqlStore(wiring.pool, wiring.commit, clock=lambda: next(times))
    wiring.wait(store.put_agent(Agent(id="a1", name="Ann")))
    wiring.wait(store.put_agent(Agent(id="a1", name="Anne")))
    with wiring.engine.connect() as conn:
        row = conn.execute(sa.select(t.agents)).one()
    assert (row.name, row.created_at) == ("Anne", 100.0)


def test_a_batch_of_intakes_costs_a_constant_number_of_statements(wiring: Wiring) -> None:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement.split()[0].upper())

    sa.event.listen(wiring.engine, "before_cursor_execute", count)
    try:
        for n in (10, 100):
            statements.clear()
            ds = [
                wiring.store.create_task(
                    make_task(f"n{n}-{i}"),
                    Identity("email", f"c{i % 7}@example.org"),
                    "",
                    [
                        Event(ev.TASK_CREATED, T0, f"n{n}-{i}"),
                        Event(ev.TASK_QUEUED, T0, f"n{n}-{i}"),
                    ],
                )
                for i in range(n)
            ]
            for d in ds:
                wiring.wait(d)
            # duplicate check, identity lookup, customers, identities, tasks, task_events (+BEGIN)
            assert statements.count("SELECT") == 2, statements
            assert statements.count("INSERT") <= 4, statements
    finally:
        sa.event.remove(wiring.engine, "before_cursor_execute", count)
