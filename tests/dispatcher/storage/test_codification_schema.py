"""Migration 0005 (codification, spam, collaboration): it upgrades a 0004 database holding work
without touching it, and its downgrade removes exactly its tables."""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.storage import schema
from dispatcher.storage.engine import make_engine

TABLES = {"categories", "category_rules", "category_examples", "task_notes", "consults",
          "reminders"}


def test_0005_upgrades_a_0004_database_with_data_in_it(empty_url: str) -> None:
    schema.upgrade(empty_url, "0004")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO tasks (id, channel, queue, customer_id, created_at, base_skills,"
                " priority, attributes, state, step, required_skills) VALUES ('t1', 'email',"
                " 'support', NULL, 1.0, '{}', 0, '{\"category\": \"billing\"}', 'queued', 0,"
                " '{}')"))
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        schema.upgrade(empty_url, "0005")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT id, state FROM tasks")).all() == [("t1", "queued")]
            for table in TABLES:
                assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
            conn.execute(sa.text(
                "INSERT INTO task_notes (task_id, author, text, at) VALUES ('t1', 'agent:a',"
                " 'n', 2.0)"))
            conn.execute(sa.text(
                "INSERT INTO category_rules (position, category, field, pattern, match, enabled)"
                " VALUES (0, 'billing', 'subject', 'invoice', 'regex', true)"))
        schema.downgrade(empty_url, "0004")
        engine.dispose()
        names = set(sa.inspect(engine).get_table_names())
        assert not TABLES & names and "tasks" in names
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar() == 1
    finally:
        engine.dispose()
