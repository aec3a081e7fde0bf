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
from dispatcher.storage import tasks
from dispatcher.storage.sql import SqlStore
from tests.dispatcher.storage.wiring import (
    Wiring,
    every_driver_url,  # noqa: F401 - both drivers
)

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


def test_a_batch_of_intakes_costs_a_constant_number_of_statements(
        wiring: Wiring, monkeypatch) -> None:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement.split()[0].upper())

    def counted(name: str, write):  # bulk writes go to the driver, past SQLAlchemy's events
        def write_and_count(conn, *args):
            statements.append(name)
            return write(conn, *args)
        return write_and_count

    monkeypatch.setattr(tasks, "append_all", counted("BULK", tasks.append_all))
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
            # identity lookup; customers, identities, tasks and events in one bulk append
            # (+BEGIN; one round trip on PostgreSQL: test_bulk.py): a merged batch leaves
            # stored duplicates to the primary key
            assert statements.count("SELECT") == 1, statements
            assert statements.count("INSERT") == 0, statements
            assert statements.count("BULK") == 1, statements
    finally:
        sa.event.remove(wiring.engine, "before_cursor_execute", count)


def test_the_open_tasks_load_streamed_compact_and_as_stored(wiring: Wiring, monkeypatch) -> None:
    """`thd_load_state` reads the open tasks in chunks, JSON decoded by us: the same tasks as
    the store keeps them; kept compact for the router: the queue is one string for all, the
    attributes stay packed (their JSON text) until first read, and equal skills maps are one
    read-only map. Nothing two tasks share can be changed through one of them."""
    from dispatcher.domain.tasks import SharedSkills, TaskState, shared_skills
    from dispatcher.storage import sql
    from dispatcher.storage.tasks import thd_open_tasks

    monkeypatch.setattr(sql, "LOAD_CHUNK", 3)  # several fetches
    for i in range(8):
        task = make_task(f"t{i}")
        task.base_skills = task.required_skills = {"french": 3}
        task.attributes = {"subject": f"Order {i}", "request_number": i, "category": "billing",
                           "spam": {"scored": False, "error": "no spam scorer configured"},
                           "list": [1, "two"], "html": "<p>é</p>"}
        if i == 7:
            task.state, task.agent_id, task.updated_at = TaskState.ASSIGNED, "ann", T0 + 5
        w_task = [Event(ev.TASK_CREATED, T0, task.id)]
        wiring.wait(wiring.store.create_task(task, None, "", w_task))
    done = make_task("done")
    done.state = TaskState.COMPLETED
    wiring.wait(wiring.store.create_task(done, None, "", [Event(ev.TASK_CREATED, T0, "done")]))
    with wiring.engine.connect() as conn:
        loaded = sorted(sql.thd_load_state(conn).open_tasks, key=lambda x: x.id)
        plain = sorted(thd_open_tasks(conn), key=lambda x: x.id)
    assert [x.id for x in loaded] == [f"t{i}" for i in range(8)]
    assert all(x.packed for x in loaded)
    first, second = loaded[0], loaded[1]
    assert first.may_hold("spam") and not first.may_hold("preferred_agent")
    assert first.packed  # may_hold reads the text
    assert loaded == plain  # every field as stored, attributes and skills included
    assert not any(x.packed for x in loaded)  # read: decoded, and kept so
    assert type(first.attributes) is dict
    assert first.attributes["spam"] == {"scored": False, "error": "no spam scorer configured"}
    assert first.attributes["html"] == "<p>é</p>" and first.attributes["list"] == [1, "two"]
    assert first.queue is second.queue
    # Equal skills maps: one shared, read-only map (base and required alike).
    assert first.base_skills is second.base_skills is first.required_skills
    assert type(first.base_skills) is SharedSkills and first.base_skills == {"french": 3}
    assert first.base_skills is shared_skills({"french": 3})  # the one new tasks share too
    with pytest.raises(TypeError):
        first.required_skills["french"] = 5
    with pytest.raises(TypeError):
        first.base_skills.update(german=1)
    assert second.required_skills == {"french": 3}
    # Attributes are each task's own: changing one task's leaves the other's.
    first.attributes["spam"]["error"] = "changed"
    first.attributes["category"] = "sales"
    assert second.attributes["spam"]["error"] == "no spam scorer configured"
    assert second.attributes["category"] == "billing"
    assert loaded[7].agent_id == "ann" and loaded[7].updated_at == T0 + 5


def test_a_customers_open_tasks_share_one_customer_id_once_loaded(wiring: Wiring) -> None:
    """The router holds every open task: those of one customer, loaded at start-up, hold one
    customer id string between them, not a copy each (~80 bytes a task)."""
    from dispatcher.storage import sql

    stored = {}
    for i, who in enumerate(["ann@example.org", "bob@example.org", "ann@example.org",
                             "ann@example.org", "bob@example.org"]):
        task = make_task(f"t{i}")
        stored[task.id] = wiring.wait(wiring.store.create_task(
            task, Identity("email", who), "", [Event(ev.TASK_CREATED, T0, task.id)]))
    with wiring.engine.connect() as conn:
        loaded = {x.id: x for x in sql.thd_load_open_tasks(conn)}
    assert {k: x.customer_id for k, x in loaded.items()} == stored
    ann, bob = loaded["t0"].customer_id, loaded["t1"].customer_id
    assert ann != bob
    assert loaded["t2"].customer_id is ann and loaded["t3"].customer_id is ann
    assert loaded["t4"].customer_id is bob


def test_open_tasks_loaded_from_sqlite_keep_their_attributes_as_utf8_bytes(
        wiring: Wiring) -> None:
    """SQLite gives a text column's UTF-8 bytes as they are: the open tasks keep those packed
    (16 bytes less a task than a str), read as the same attributes (PostgreSQL: the text)."""
    from dispatcher.domain.tasks import _ATTRIBUTES
    from dispatcher.storage import sql

    task = make_task("t1")
    task.attributes = {"subject": "Où est mon colis ?", "preferred_agent": "ann", "n": 1}
    wiring.wait(wiring.store.create_task(task, None, "", [Event(ev.TASK_CREATED, T0, "t1")]))
    with wiring.engine.connect() as conn:
        [loaded] = sql.thd_load_open_tasks(conn)
    held = _ATTRIBUTES.__get__(loaded, Task)
    assert type(held) is (bytes if wiring.engine.dialect.name == "sqlite" else str)
    assert loaded.packed and loaded.may_hold("preferred_agent") and not loaded.may_hold("x")
    assert loaded.attributes == task.attributes


def test_a_utf16_sqlite_database_loads_its_attributes_as_text(tmp_path) -> None:
    """CAST AS BLOB gives a text in the database's encoding: a SQLite database that holds its
    text as UTF-16 keeps the loaded attributes packed as text, read and searched as ever."""
    from dispatcher.storage import rows, sql

    engine = sa.create_engine(f"sqlite:///{tmp_path}/utf16.db")
    task = make_task("t1")
    task.attributes = {"preferred_agent": "ann", "subject": "Où est mon colis ?"}
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql('PRAGMA encoding = "UTF-16le"')
            t.metadata.create_all(conn)
            conn.execute(t.tasks.insert(), [rows.task_row(task)])
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA encoding").scalar() == "UTF-16le"
            [loaded] = sql.thd_load_open_tasks(conn)
    finally:
        engine.dispose()
    assert loaded.packed and loaded.may_hold("preferred_agent") and not loaded.may_hold("x")
    assert loaded.attributes == task.attributes
