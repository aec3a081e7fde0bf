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


def test_head_is_the_first_revision() -> None:
    assert schema.head() == "0001"
    assert schema.STALE_SCHEMA_HINT == "run: switchboard db upgrade"


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
