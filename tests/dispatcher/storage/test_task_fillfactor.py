"""Room for updates on the pages of `tasks` (migration 0014, PostgreSQL): a database upgraded to
head and one made from tables.py have the same fillfactor, a routed task's new row versions stay
on its page, and the revision upgrades and downgrades a database holding tasks. SQLite has no
such setting: the revision does nothing there."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.storage import bulk, schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine

pytestmark = pytest.mark.postgres

RELOPTIONS = sa.text("SELECT c.reloptions FROM pg_class c JOIN pg_namespace n"
                     " ON n.oid = c.relnamespace WHERE c.relname = 'tasks' AND n.nspname = :ns")
BLOCKS = sa.text("SELECT id, (ctid::text::point)[0] FROM tasks")


def task(i: int, **changes) -> dict:
    row = {"id": f"t{i:04d}", "channel": "email", "queue": "support", "customer_id": f"c{i}",
           "created_at": 100.0 + i, "base_skills": {"french": 3}, "priority": 0,
           "deadline": None, "attributes": {"subject": f"Question {i}", "preview": "x" * 200},
           "state": "queued", "step": 0, "required_skills": {"french": 3}, "agent_id": None,
           "offer_id": None, "offer_expires_at": None, "step_started_at": 100.0 + i,
           "updated_at": 100.0 + i}
    return {**row, **changes}


def reloptions(engine: sa.Engine, namespace: str = "public") -> list[str] | None:
    with engine.connect() as conn:
        return conn.execute(RELOPTIONS, {"ns": namespace}).scalar()


def test_head_and_tables_py_give_tasks_the_same_fillfactor(pg_url: str) -> None:
    schema.upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA from_tables"))
            t.tasks.create(conn.execution_options(schema_translate_map={None: "from_tables"}))
        assert reloptions(engine) == [f"fillfactor={t.TASKS_FILLFACTOR}"]
        assert reloptions(engine, "from_tables") == reloptions(engine)
    finally:
        engine.dispose()


def test_updated_task_rows_stay_on_their_pages(pg_url: str) -> None:
    """A quarter of the tasks offered in one transaction (as a group commit writes them): each
    new version on its row's page. Full pages (fillfactor 100) send each one to another page."""
    schema.upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            bulk.append(conn, t.tasks, [task(i) for i in range(100)])
        with engine.connect() as conn:
            before = dict(conn.execute(BLOCKS).all())
        assert len(set(before.values())) > 1  # the rows fill more than one page
        with engine.begin() as conn:
            bulk.update_tasks(conn, [task(i, state="offered", agent_id="a1", offer_id=f"o{i}",
                                          updated_at=200.0 + i) for i in range(0, 100, 4)])
        with engine.connect() as conn:
            assert dict(conn.execute(BLOCKS).all()) == before
    finally:
        engine.dispose()


def test_0014_upgrades_and_downgrades_a_database_holding_tasks(pg_url: str) -> None:
    schema.upgrade(pg_url, "0013")
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            bulk.append(conn, t.tasks, [task(i) for i in range(3)])
        assert reloptions(engine) is None
        schema.upgrade(pg_url, "0014")
        assert reloptions(engine) == [f"fillfactor={t.TASKS_FILLFACTOR}"]
        with engine.connect() as conn:
            assert [row.id for row in conn.execute(sa.select(t.tasks.c.id).order_by("id"))] == [
                "t0000", "t0001", "t0002"]
        schema.downgrade(pg_url, "0013")
        assert reloptions(engine) is None
    finally:
        engine.dispose()
