"""Bulk writes (dispatcher/storage/bulk.py) store what the SQLAlchemy statements store, on both
databases: the same columns and JSON, text made storable, defaults for columns a row does not
name, every task row written whether it was stored before or not."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from dispatcher.storage import bulk, schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from dispatcher.storage.statements import insert_rows, storable
from tests.dispatcher.storage.wiring import every_driver_url  # noqa: F401 - both drivers
from tests.support import missing


def task(task_id: str, **changes) -> dict:
    row = {
        "id": task_id, "channel": "email", "queue": "support", "customer_id": None,
        "created_at": 100.0, "base_skills": {"french": 3}, "priority": 0, "deadline": None,
        "attributes": {"subject": "Bonjour", "tags": ["a", "b"]}, "state": "queued", "step": 0,
        "required_skills": {"french": 3}, "agent_id": None, "offer_id": None,
        "offer_expires_at": None, "step_started_at": 100.0, "updated_at": 100.0,
    }
    return {**row, **changes}


def event(task_id: str | None, agent_id: str | None, kind: str, data: dict) -> dict:
    return {"task_id": task_id, "agent_id": agent_id, "kind": kind, "at": 101.5,
            "actor": "system", "data": data}


@pytest.fixture
def engine(sql_url: str):
    engine = make_engine(sql_url)
    yield engine
    engine.dispose()


def table_rows(engine: sa.Engine, table: sa.Table, order: sa.Column) -> list[dict]:
    """The rows of `table`; of `tasks`, the columns a change writes (not the preview, which only
    a task's first row writes: test_a_change_never_writes_the_preview)."""
    columns = [c for c in table.columns if table is not t.tasks or c.name not in bulk.WRITE_ONCE]
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(*columns).order_by(order))]


def _count_executes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The round trips of the driver cursors bulk.py uses, each as its SQL: an execute, or
    (psycopg) a pipeline of executes, sent together (their SQL joined by `;`)."""
    trips: list[str] = []
    pending: list[list[str]] = []  # the executes of the pipeline open, if any
    real_errors = bulk._driver_errors

    @contextmanager
    def counted(conn, statement):
        with real_errors(conn, statement) as cursor:
            yield _Counted(cursor, trips, pending)

    monkeypatch.setattr(bulk, "_driver_errors", counted)
    try:
        import psycopg
    except ImportError:
        return trips
    real_pipeline = psycopg.Connection.pipeline

    @contextmanager
    def pipeline(self):
        pending.append([])
        with real_pipeline(self) as p:
            yield p
        trips.append(";\n".join(pending.pop()))

    monkeypatch.setattr(psycopg.Connection, "pipeline", pipeline)
    return trips


def test_appended_events_equal_what_sqlalchemy_stores(engine: sa.Engine) -> None:
    events = [
        event("t1", None, "task.queued", {"reason": "new", "n": 1, "x": 1.5, "none": None}),
        event("t1", "a1", "task.offered", {"explanation": {"skipped": {}, "rule": "r"}}),
        event(None, "a1", "agent.status", {"status": "available"}),
        event("t2", None, "task.queued", {"subject": "Grüße \U0001f600", "list": [1, "b"]}),
    ]
    with engine.begin() as conn:
        bulk.append_events(conn, events)
    with engine.begin() as conn:  # the same events through SQLAlchemy, after them
        insert_rows(conn, t.task_events, [e for e in events if e["task_id"] is not None])
        insert_rows(conn, t.agent_events, [e for e in events if e["task_id"] is None])
    stored = table_rows(engine, t.task_events, t.task_events.c.id)
    ours, theirs = stored[:3], stored[3:]
    assert [{k: v for k, v in row.items() if k != "id"} for row in ours] == [
        {k: v for k, v in row.items() if k != "id"} for row in theirs]
    assert [row["data"] for row in ours] == [e["data"] for e in events if e["task_id"]]
    agents = table_rows(engine, t.agent_events, t.agent_events.c.id)
    assert [row["data"] for row in agents] == [{"status": "available"}] * 2


def test_text_is_made_storable_in_columns_and_json(engine: sa.Engine) -> None:
    bad = "nul\x00 and lone \udc80 surrogate"
    with engine.begin() as conn:
        bulk.append_events(conn, [event("t1", None, bad, {"subject": bad, "k": [bad]})])
        bulk.update_tasks(conn, [task("t1", attributes={"subject": bad}, queue=bad)])
    (row,) = table_rows(engine, t.task_events, t.task_events.c.id)
    clean = storable(bad)
    assert "\x00" not in clean and clean.encode("utf-8")
    assert row["kind"] == clean
    assert row["data"] == {"subject": clean, "k": [clean]}
    (stored,) = table_rows(engine, t.tasks, t.tasks.c.id)
    assert stored["attributes"] == {"subject": clean}
    assert stored["queue"] == clean


def test_a_row_takes_the_defaults_of_the_columns_it_does_not_name(engine: sa.Engine) -> None:
    item = {"kind": "mail.send", "task_id": "t1", "payload": {"to": "x@example.org"},
            "created_at": 5.0}
    with engine.begin() as conn:
        bulk.append(conn, t.outbox, [item, {**item, "task_id": None}])
    rows = table_rows(engine, t.outbox, t.outbox.c.id)
    assert [(r["state"], r["attempts"], r["task_id"]) for r in rows] == [
        (t.OUTBOX_PENDING, 0, "t1"), (t.OUTBOX_PENDING, 0, None)]


def test_update_tasks_writes_stored_rows_and_inserts_new_ones(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1"), task("t2")])
    changed = [
        task("t1", state="offered", agent_id="a1", offer_id="o1", offer_expires_at=1796426256.4240115,
             attributes={"subject": "Bonjour", "category": "billing"}, updated_at=101.0),
        task("t3", state="queued", priority=5, deadline=500.0),  # not stored yet
    ]
    with engine.begin() as conn:
        bulk.update_tasks(conn, changed)
    rows = {row["id"]: row for row in table_rows(engine, t.tasks, t.tasks.c.id)}
    assert sorted(rows) == ["t1", "t2", "t3"]
    assert rows["t1"] == changed[0]
    assert rows["t2"] == task("t2")
    assert rows["t3"] == changed[1]


def test_update_tasks_clears_columns_set_to_none(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1", agent_id="a1", offer_id="o1", deadline=9.0)])
    with engine.begin() as conn:
        bulk.update_tasks(conn, [task("t1", agent_id=None, offer_id=None, deadline=None)])
    (row,) = table_rows(engine, t.tasks, t.tasks.c.id)
    assert (row["agent_id"], row["offer_id"], row["deadline"]) == (None, None, None)


def test_a_failed_bulk_write_rolls_back_with_its_transaction(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1")])
        bulk.append(conn, t.tasks, [task("t1")])  # the same id again
    assert table_rows(engine, t.tasks, t.tasks.c.id) == []


def test_values_come_back_exactly(engine: sa.Engine) -> None:
    """Floats to the last bit, text with the characters of every escaping scheme, JSON of
    every kind of value."""
    odd = 'tab\t nl\n cr\r back\\slash "quote" \'single\' %s %(x)s {} \u00e9\u4e2d\U0001f600'
    attributes = {"subject": odd, "n": 12345678901234567, "f": 0.1 + 0.2, "t": True,
                  "none": None, "list": [odd, 1, 2.5, [], {}], "": "empty key"}
    row = task("t1", created_at=0.1 + 0.2, deadline=1e300, priority=-3, queue=odd,
               attributes=attributes, base_skills={odd: 7})
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1")])
        bulk.update_tasks(conn, [row])
        bulk.append_events(conn, [event("t1", odd, odd, {"x": odd, "nested": attributes})])
    (stored,) = table_rows(engine, t.tasks, t.tasks.c.id)
    assert stored == row
    (logged,) = table_rows(engine, t.task_events, t.task_events.c.id)
    assert (logged["agent_id"], logged["kind"], logged["data"]) == (
        odd, odd, {"x": odd, "nested": attributes})


def test_bytes_are_stored_as_given(engine: sa.Engine) -> None:
    """A table with a binary column (raw messages, attachments) takes the rows as they are."""
    raw = bytes(range(256)) + b"\x00 end"
    with engine.begin() as conn:
        bulk.append(conn, t.secrets, [{"name": "k", "value": raw, "created_at": 1.5}])
    assert table_rows(engine, t.secrets, t.secrets.c.name) == [
        {"name": "k", "value": raw, "created_at": 1.5}]


def test_bytes_go_with_other_tables_in_one_round_trip(engine: sa.Engine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Binary columns take the JSON path too on PostgreSQL (bytea's hex text): raw messages
    go in the round trip of the intake's other rows. Any bytes-like value, stored as given."""
    raws = [bytes(range(256)) + b"\x00\\x41", bytearray(b"\xff\x00"), memoryview(b"")]
    customers = [{"id": "c1", "name": "Zoë", "created_at": 100.0}]
    secrets = [{"name": f"k{n}", "value": raw, "created_at": 1.5} for n, raw in enumerate(raws)]
    executes = _count_executes(monkeypatch)
    with engine.begin() as conn:
        bulk.append_all(conn, [(t.customers, customers), (t.secrets, secrets)])
    if engine.dialect.driver in bulk.PG_DRIVERS:
        assert len(executes) == 1 and "INTO secrets" in executes[0], executes
    assert [r["value"] for r in table_rows(engine, t.secrets, t.secrets.c.name)] == [
        bytes(raw) for raw in raws]


HOT = ("id", "state", "step", "required_skills", "agent_id", "offer_id", "offer_expires_at",
       "step_started_at", "updated_at")


def test_a_row_of_hot_columns_updates_only_those(engine: sa.Engine) -> None:
    """A slim row (rows.HOT_TASK_COLUMNS, from SqlTasks.record) leaves the other columns as
    stored, beside whole rows in the same call."""
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1"), task("t2")])
    offered = task("t1", state="offered", step=1, required_skills={"french": 2}, agent_id="a1",
                   offer_id="o1", offer_expires_at=160.5, step_started_at=101.0,
                   updated_at=101.0, attributes={"not": "sent"}, priority=9, queue="other")
    whole = task("t2", attributes={"category": "billing"}, priority=3)
    with engine.begin() as conn:
        bulk.update_tasks(conn, [{k: offered[k] for k in HOT}, whole])
    rows = {row["id"]: row for row in table_rows(engine, t.tasks, t.tasks.c.id)}
    assert rows["t1"] == {**task("t1"), **{k: offered[k] for k in HOT}}
    assert rows["t1"]["state"] == "offered" and rows["t1"]["attributes"] == task("t1")["attributes"]
    assert rows["t2"] == whole


def test_a_row_of_hot_columns_of_a_task_not_stored_is_an_error(engine: sa.Engine) -> None:
    """It cannot be inserted (its other columns are not in it): the write fails, and its
    transaction rolls back."""
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1")])
    with pytest.raises(bulk.TaskNotStored, match="t9"), engine.begin() as conn:
        bulk.update_tasks(conn, [{k: task("t1", state="offered")[k] for k in HOT},
                                 {k: task("t9", state="offered")[k] for k in HOT}])
    assert table_rows(engine, t.tasks, t.tasks.c.id) == [task("t1")]


def test_rows_of_hot_columns_through_sqlalchemy_as_through_the_driver(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path of a driver bulk.py does not know: SQLAlchemy's UPDATE, the same effect."""
    monkeypatch.setattr(bulk, "_driver", lambda conn: "sqlalchemy")
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1")])
    offered = task("t1", state="offered", agent_id="a1", required_skills={"german": 1})
    with engine.begin() as conn:
        bulk.update_tasks(conn, [{k: offered[k] for k in HOT}])
    assert table_rows(engine, t.tasks, t.tasks.c.id) == [{**task("t1"), **{
        k: offered[k] for k in HOT}}]
    with pytest.raises(bulk.TaskNotStored, match="t9"), engine.begin() as conn:
        bulk.update_tasks(conn, [{k: task("t9")[k] for k in HOT}])


def test_appends_to_several_tables_store_what_each_append_stores_in_one_round_trip(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    customers = [{"id": "c1", "name": "Zoë \x00", "created_at": 100.0}]
    identities = [{"kind": "email", "value": "zoe@example.org", "customer_id": "c1"}]
    tasks = [task("t1", customer_id="c1"), task("t2", customer_id="c1")]
    events = [event("t1", None, "task.created", {"n": 1}), event("t2", "a1", "task.offered", {})]
    executes = _count_executes(monkeypatch)
    with engine.begin() as conn:
        bulk.append_all(conn, [(t.customers, customers), (t.customer_identities, identities),
                               (t.tasks, tasks), (t.task_events, events),
                               (t.agent_events, [])])
    if engine.dialect.driver in bulk.PG_DRIVERS:
        assert len(executes) == 1, executes
    assert [r["name"] for r in table_rows(engine, t.customers, t.customers.c.id)] == [
        storable("Zoë \x00")]
    assert [r["customer_id"] for r in table_rows(engine, t.customer_identities,
                                                 t.customer_identities.c.value)] == ["c1"]
    assert [r["id"] for r in table_rows(engine, t.tasks, t.tasks.c.id)] == ["t1", "t2"]
    assert [r["kind"] for r in table_rows(engine, t.task_events, t.task_events.c.id)] == [
        "task.created", "task.offered"]


def test_a_failed_append_of_several_tables_rolls_back_them_all(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        bulk.append_all(conn, [(t.customers, [{"id": "c1", "name": "", "created_at": 1.0}]),
                               (t.tasks, [task("t1")]),
                               (t.tasks, [task("t1")])])  # the same id again
    assert table_rows(engine, t.customers, t.customers.c.id) == []
    assert table_rows(engine, t.tasks, t.tasks.c.id) == []


class _Counted:
    """A DB-API cursor that notes each execute: a round trip, or one statement of the pipeline
    open."""

    def __init__(self, cursor, trips: list[str], pending: list[list[str]]) -> None:
        self._cursor, self._trips, self._pending = cursor, trips, pending

    def execute(self, statement, parameters=None):
        (self._pending[-1] if self._pending else self._trips).append(statement)
        return self._cursor.execute(statement, parameters)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def test_a_change_writes_its_rows_declines_and_logs_in_one_round_trip(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """record_rows (SqlTasks.record's batch): hot rows and whole rows, a decline stored
    already and a new one, events to both logs: what each write alone stores."""
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1"), task("t2")])
        bulk.append(conn, t.task_declines, [{"task_id": "t1", "agent_id": "a0"}])
    offered = task("t1", state="offered", agent_id="a1", offer_id="o1", updated_at=101.0)
    whole = task("t2", attributes={"category": "billing"}, priority=3)
    executes = _count_executes(monkeypatch)
    with engine.begin() as conn:
        bulk.record_rows(
            conn, [{k: offered[k] for k in HOT}, whole],
            [{"task_id": "t1", "agent_id": "a0"}, {"task_id": "t1", "agent_id": "a2"}],
            [(t.task_events, [event("t1", "a1", "task.offered", {"offer_id": "o1"})]),
             (t.agent_events, [event(None, "a1", "agent.available", {})]),
             (t.outbox, [])])
    if engine.dialect.driver in bulk.PG_DRIVERS:
        assert len(executes) == 1, executes
    rows = {row["id"]: row for row in table_rows(engine, t.tasks, t.tasks.c.id)}
    assert rows == {"t1": {**task("t1"), **{k: offered[k] for k in HOT}}, "t2": whole}
    declines = table_rows(engine, t.task_declines, t.task_declines.c.agent_id)
    assert [(d["task_id"], d["agent_id"]) for d in declines] == [("t1", "a0"), ("t1", "a2")]
    assert [e["kind"] for e in table_rows(engine, t.task_events, t.task_events.c.id)] == [
        "task.offered"]
    assert [e["kind"] for e in table_rows(engine, t.agent_events, t.agent_events.c.id)] == [
        "agent.available"]


def test_a_change_inserts_a_whole_row_not_stored_and_refuses_a_hot_one(
        engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk.record_rows(conn, [task("t3")], [],
                         [(t.task_events, [event("t3", None, "task.queued", {})])])
    assert [r["id"] for r in table_rows(engine, t.tasks, t.tasks.c.id)] == ["t3"]
    with pytest.raises(bulk.TaskNotStored, match="t9"), engine.begin() as conn:
        bulk.record_rows(conn, [{k: task("t9", state="offered")[k] for k in HOT}, task("t4")],
                         [], [(t.task_events, [event("t9", "a1", "task.offered", {})])])
    assert [r["id"] for r in table_rows(engine, t.tasks, t.tasks.c.id)] == ["t3"]  # rolled back
    assert [e["kind"] for e in table_rows(engine, t.task_events, t.task_events.c.id)] == [
        "task.queued"]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 300, 1000])
def test_appends_of_any_size_store_every_row_in_order(engine: sa.Engine, count: int) -> None:
    """SQLite's appends go as runs of rows, one statement each (bulk._sqlite_runs)."""
    events = [event("t1", None, "task.test", {"n": n}) for n in range(count)]
    with engine.begin() as conn:
        bulk.append(conn, t.task_events, events)
    stored = table_rows(engine, t.task_events, t.task_events.c.id)
    assert [e["data"]["n"] for e in stored] == list(range(count))


def updates(count: int) -> tuple[list[dict], list[dict], list[dict]]:
    """`count` stored tasks; a change of each (every other one a row of hot columns only, the
    rest whole rows); the rows stored after it."""
    stored = [task(f"t{n:04d}") for n in range(count)]
    changed = [task(f"t{n:04d}", state="offered", agent_id=f"a{n}", offer_id=f"o{n}",
                    updated_at=101.0 + n, priority=n, attributes={"n": n}) for n in range(count)]
    rows = [{k: row[k] for k in HOT} if n % 2 == 0 else row for n, row in enumerate(changed)]
    after = [{**before, **row} for before, row in zip(stored, rows, strict=True)]
    return stored, rows, after


@pytest.mark.parametrize("count", [1, 3, 33, 100, 300])
def test_updates_of_any_size_write_every_row(engine: sa.Engine, count: int) -> None:
    """SQLite's updates go as runs of rows, one UPDATE ... FROM (VALUES ...) each."""
    stored, rows, after = updates(count)
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, stored)
    with engine.begin() as conn:
        bulk.update_tasks(conn, rows)
    assert table_rows(engine, t.tasks, t.tasks.c.id) == after


def test_sqlite_updates_a_run_of_rows_in_one_statement(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One step for a run of rows, where an executemany takes a step a row (each step lets the
    GIL go and waits for it again behind a busy reactor)."""
    if not bulk.SQLITE_UPDATE_FROM:
        missing(f"SQLite {sqlite3.sqlite_version} has no UPDATE ... FROM (3.33 and later)")
    schema.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    stored, rows, after = updates(40)
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, stored)
    executes = _count_executes(monkeypatch)
    with engine.begin() as conn:
        bulk.update_tasks(conn, rows)
    # 20 whole rows (17 columns: runs of 16 and 4), 20 hot ones (9 columns: 16 and 4)
    assert len(executes) == 4 and all("FROM (VALUES" in sql for sql in executes)
    assert table_rows(engine, t.tasks, t.tasks.c.id) == after
    engine.dispose()


def test_before_sqlite_3_33_updates_go_row_by_row_with_the_same_effect(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "SQLITE_UPDATE_FROM", False)
    schema.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    stored, rows, after = updates(40)
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, stored[:-2])  # the last two: a hot row and a whole one
    with pytest.raises(bulk.TaskNotStored, match="t0038"), engine.begin() as conn:
        bulk.update_tasks(conn, rows)
    with engine.begin() as conn:
        bulk.update_tasks(conn, rows[:-2] + rows[-1:])  # the whole row not stored: inserted
    assert table_rows(engine, t.tasks, t.tasks.c.id) == after[:-2] + [rows[-1]]
    engine.dispose()


def test_sqlite_runs_are_powers_of_two_within_the_variables_a_statement_takes() -> None:
    assert list(bulk._sqlite_runs(7, 7)) == [4, 2, 1]
    assert list(bulk._sqlite_runs(300, 3)) == [256, 32, 8, 4]
    assert list(bulk._sqlite_runs(300, 17)) == [32] * 9 + [8, 4]  # 32 x 17 <= 999
    assert sum(bulk._sqlite_runs(12345, 200)) == 12345


def test_a_change_never_writes_the_preview(engine: sa.Engine) -> None:
    """The preview is written with a task's first row (rows.py `intake_row`); whole rows and
    hot rows of later changes, in bulk or through the upsert, leave it as stored."""
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [{**task("t1"), "preview": "Hello, my parcel"},
                                    {**task("t2"), "preview": "Where is it?"},
                                    {**task("t3"), "preview": None}])
    with engine.begin() as conn:
        bulk.update_tasks(conn, [task("t1", state="offered", attributes={"category": "x"}),
                                 {k: task("t2", state="offered")[k] for k in HOT}])
    with engine.begin() as conn:
        bulk.record_rows(conn, [task("t2", state="assigned"), task("t4")], [], [])
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(t.tasks.c.id, t.tasks.c.preview)).all())
        states = dict(conn.execute(sa.select(t.tasks.c.id, t.tasks.c.state)).all())
    assert stored == {"t1": "Hello, my parcel", "t2": "Where is it?", "t3": None, "t4": None}
    assert states == {"t1": "offered", "t2": "assigned", "t3": "queued", "t4": "queued"}


def test_json_columns_are_written_compact_by_both_paths(engine: sa.Engine) -> None:
    """The bulk path and SQLAlchemy's JSON type (engine.py `compact_json`) write the same text,
    without the spaces json.dumps puts after `,` and `:` (the router loads that text)."""
    attributes = {"subject": "Bonjour", "tags": ["a", "b"], "n": 1, "text": "a, x: y"}
    with engine.begin() as conn:
        bulk.append(conn, t.tasks, [task("t1", attributes=attributes)])
        insert_rows(conn, t.tasks, [task("t2", attributes=attributes)])
        bulk.update_tasks(conn, [task("t3", attributes=attributes)])  # the upsert: not stored
    with engine.connect() as conn:
        texts = dict(conn.execute(sa.select(t.tasks.c.id, sa.cast(t.tasks.c.attributes,
                                                                   sa.Text))).all())
    assert texts["t1"] == texts["t2"] == texts["t3"]
    assert texts["t1"] == '{"subject":"Bonjour","tags":["a","b"],"n":1,"text":"a, x: y"}'
