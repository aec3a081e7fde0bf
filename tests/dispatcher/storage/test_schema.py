"""Migrations and the schema check (`dispatcher.storage.schema`, `migrations/`): upgrading an
empty database to head gives exactly `tables.metadata`, on SQLite and PostgreSQL; `check` tells
a stale database from a current one; revisions are frozen (they never import the live tables).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dispatcher.storage import schema, tables
from dispatcher.storage.engine import make_engine


def differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, tables.metadata)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_matches_the_tables(empty_url: str) -> None:
    schema.upgrade(empty_url)
    assert differences(empty_url) == []


def test_check_reports_an_empty_database_as_stale(empty_url: str) -> None:
    status = schema.check(empty_url)
    assert (status.current, status.head, status.ok) == (None, schema.head(), False)
    schema.upgrade(empty_url)
    assert schema.check(empty_url) == schema.SchemaStatus(schema.head(), schema.head(), True)


def test_downgrade_to_base_removes_every_table(empty_url: str) -> None:
    schema.upgrade(empty_url)
    schema.downgrade(empty_url, "base")
    assert table_names(empty_url) <= {schema.VERSION_TABLE}
    assert schema.check(empty_url).ok is False
    schema.upgrade(empty_url)  # and back: the downgrade left nothing behind (triggers included)
    assert differences(empty_url) == []


VERSIONS = Path(__file__).resolve().parents[3] / "migrations" / "versions"


def test_revisions_are_numbered_in_one_line_and_head_is_the_last() -> None:
    numbers = sorted(p.name[:4] for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert numbers == [f"{i:04d}" for i in range(1, len(numbers) + 1)]
    assert schema.head() == numbers[-1]
    assert schema.STALE_SCHEMA_HINT == "run: switchboard db upgrade"


def test_0002_upgrades_a_0001_database_with_data_in_it(empty_url: str) -> None:
    """The e-mail tables arrive next to existing work, which stays as it was."""
    schema.upgrade(empty_url, "0001")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO tasks (id, channel, queue, customer_id, created_at, base_skills,"
                " priority, attributes, state, step, required_skills) VALUES ('t1', 'email',"
                " 'support', NULL, 1.0, '{}', 0, '{}', 'queued', 0, '{}')"))
        schema.upgrade(empty_url, "0002")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id, state FROM tasks")).all() == [("t1", "queued")]
            assert conn.execute(sa.text("SELECT count(*) FROM email_messages")).scalar() == 0
    finally:
        engine.dispose()
    assert schema.check(empty_url).ok is (schema.head() == "0002")


def test_0003_upgrades_a_0002_database_with_data_in_it(empty_url: str) -> None:
    """The phone tables arrive next to existing agents and mail, which stay as they were."""
    schema.upgrade(empty_url, "0002")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO agents (id, name, capacity_email, capacity_phone, channels,"
                " created_at) VALUES ('a1', 'Ann', 3, 1, '[\"email\", \"phone\"]', 1.0)"))
            conn.execute(sa.text("INSERT INTO email_requests (number, task_id) VALUES (7, 't1')"))
        schema.upgrade(empty_url, "0003")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM agents")).all() == [("a1",)]
            assert conn.execute(sa.text("SELECT number FROM email_requests")).all() == [(7,)]
            assert conn.execute(sa.text("SELECT count(*) FROM phone_accounts")).scalar() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM phone_bindings")).scalar() == 0
    finally:
        engine.dispose()
    assert schema.check(empty_url).ok is (schema.head() == "0003")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_revisions_are_frozen() -> None:
    revisions = sorted((schema.migrations_dir() / "versions").glob("*.py"))
    assert revisions
    for path in revisions:
        assert not any(m.startswith("dispatcher") for m in imported_modules(path)), path.name
