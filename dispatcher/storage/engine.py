"""Engines for the store: `make_engine(url)` for SQLite (the embedded default) or PostgreSQL.

Sits under `dispatcher.storage`; the runtime, the schema commands and the benchmarks call it, and
nothing connects until the engine is first used. What it promises for SQLite, set on every new
connection: write-ahead logging, `synchronous=FULL` (the service acknowledges the outside world
after a commit, so a commit must survive a power cut), foreign keys enforced, a busy timeout for
other processes holding the file, and real transactions: SQLAlchemy emits `BEGIN IMMEDIATE`
itself instead of Python's sqlite3 module deferring it, so a transaction that reads then writes
cannot fail half-way on a lock upgrade, and DDL in migrations is transactional. For PostgreSQL
through psycopg2: a connection pool sized for the thread pool, and positional parameters.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

DEFAULT_URL = "sqlite:///switchboard.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Connections kept open to PostgreSQL; the thread pool never runs more threads than this.
POSTGRES_POOL_SIZE = 5


def is_sqlite(engine_or_url: sa.Engine | str | sa.URL) -> bool:
    if isinstance(engine_or_url, sa.Engine):
        return engine_or_url.dialect.name == "sqlite"
    return sa.make_url(engine_or_url).get_backend_name() == "sqlite"


def make_engine(url: str | sa.URL = DEFAULT_URL, **kwargs: Any) -> sa.Engine:
    """An engine for `url`; extra keyword arguments go to `sqlalchemy.create_engine`."""
    if is_sqlite(url):
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("pool_pre_ping", True)
    if sa.make_url(url).get_driver_name() == "psycopg2":
        # Positional parameters: psycopg2 interpolates a batch of thousands of them about three
        # times faster than named ones, which is a quarter of a group commit's insert time.
        kwargs.setdefault("paramstyle", "format")
    return sa.create_engine(url, **kwargs)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module; `_sqlite_begin` emits BEGIN.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
