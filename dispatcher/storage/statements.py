"""Statements and row writing shared by the SQL store modules (buildbot's `db/base.py`).

Sits under `dispatcher.storage`: every `thd_*` function of tasks.py, queues.py, agents.py,
customers.py and mail.py inserts through `insert_rows` (text made storable, so that no message
or name a client sent can make a commit fail for ever) and upserts through `upsert` (built once
per dialect: SQLite and PostgreSQL); the logs and the task rows of the routing hot path go
through bulk.py instead, on the same rules. Runs on the database thread only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from . import rows as r

# Values per `IN (...)` lookup: well under SQLite's bound-parameter limit.
IN_CHUNK = 500


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _dialect_insert(dialect: str) -> Callable[[sa.Table], Any]:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"SqlStore supports SQLite and PostgreSQL, not {dialect}")
    return insert


@functools.cache
def upsert(dialect: str, table: sa.Table, keep: tuple[str, ...] = ()) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column except `keep`."""
    stmt = _dialect_insert(dialect)(table)
    keys = [c.name for c in table.primary_key.columns]
    update = {
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys + list(keep)
    }
    return stmt.on_conflict_do_update(index_elements=keys, set_=update)


@functools.cache
def insert_ignore(dialect: str, table: sa.Table) -> Any:
    return _dialect_insert(dialect)(table).on_conflict_do_nothing()


@functools.cache
def _plain_insert(table: sa.Table) -> sa.Insert:
    return table.insert()


def storable(value: Any) -> Any:
    """`value` as both databases take it: NUL removed from text (PostgreSQL refuses it, in
    text and in JSON), lone surrogates (bytes an edge kept undecoded) replaced by U+FFFD
    (neither driver encodes them); inside lists and dicts too (JSON columns). Anything else
    as it is."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def storable_rows(rows: list[r.Row]) -> list[r.Row]:
    return [{k: storable(v) for k, v in row.items()} for row in rows]


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[r.Row]) -> None:
    """Every insert goes through here: text is made storable, so that no message or name a
    client sent can make a commit fail for ever."""
    if rows:
        conn.execute(_plain_insert(table), storable_rows(rows))
