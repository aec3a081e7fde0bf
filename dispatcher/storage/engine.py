"""Engines for the store: `make_engine(url)` for SQLite (the embedded default) or PostgreSQL.

Sits under `dispatcher.storage`; the runtime, the schema commands and the benchmarks call it, and
nothing connects until the engine is first used. What it promises for SQLite, set on every new
connection: write-ahead logging, `synchronous=FULL` (the service acknowledges the outside world
after a commit, so a commit must survive a power cut), foreign keys enforced, a busy timeout for
other processes holding the file, the file readable by its owner only (a database file
created here is made 0600 before SQLite opens it, and SQLite gives its -wal and -shm files the
same mode), and real transactions: SQLAlchemy emits `BEGIN IMMEDIATE`
itself instead of Python's sqlite3 module deferring it, so a transaction that reads then writes
cannot fail half-way on a lock upgrade, and DDL in migrations is transactional. For PostgreSQL
(psycopg2, the default driver, or psycopg 3: `postgresql+psycopg://`): a connection pool sized
for the thread pool, a connection idle for over a second pinged before use
(`PING_AFTER_IDLE_SECONDS`), positional parameters (psycopg2), and on request a limit to how
long a session may sit idle inside a transaction. For
both: `hide_parameters`, so an error's text (which reaches logs) never shows a statement's values,
and JSON columns written compact (`compact_json`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import sqlalchemy as sa

from . import fence

DEFAULT_URL = "sqlite:///switchboard.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Connections kept open to PostgreSQL; the thread pool never runs more threads than this.
POSTGRES_POOL_SIZE = 5
# Mode of a database file created here (customers' mail, password hashes, the token secret).
SQLITE_FILE_MODE = 0o600


def compact_json(value: Any) -> str:
    """`json.dumps` as JSON columns store it: no spaces between items."""
    return json.dumps(value, separators=(",", ":"))


def is_sqlite(engine_or_url: sa.Engine | str | sa.URL) -> bool:
    if isinstance(engine_or_url, sa.Engine):
        return engine_or_url.dialect.name == "sqlite"
    return sa.make_url(engine_or_url).get_backend_name() == "sqlite"


# What to install for a driver a URL names, when it is missing (pyproject's extras).
DRIVER_EXTRAS = {"psycopg": "psycopg3"}


def driver_problem(url: str | sa.URL) -> str | None:
    """Why this install cannot reach the database of `url`: its database or driver unknown to
    SQLAlchemy, or the driver not installed (what to install, for ours); else None. A URL that
    does not parse is None too (the command reports it in SQLAlchemy's words). Never names the
    URL itself, which may hold a password."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    try:
        dialect = parsed.get_dialect()
    except sa.exc.NoSuchModuleError:
        return (f"unknown database or driver {parsed.drivername!r} (sqlite:///file.db, "
                "postgresql+psycopg2://... or postgresql+psycopg://...)")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = DRIVER_EXTRAS.get(parsed.get_driver_name())
        hint = f": install the {extra!r} extra (pip install \".[{extra}]\")" if extra else ""
        return (f"the driver of {parsed.drivername!r} ({exc.name or parsed.get_driver_name()}) "
                f"is not installed{hint}")
    return None


def make_engine(url: str | sa.URL = DEFAULT_URL, **kwargs: Any) -> sa.Engine:
    """An engine for `url`; extra keyword arguments go to `sqlalchemy.create_engine`, but
    `idle_in_transaction_seconds` (PostgreSQL): how long the server lets one of its sessions sit
    idle inside a transaction before it ends it (the router's: leadership.py; ignored on
    SQLite, whose transactions no other process waits on for long)."""
    # SQL errors and the engine's log name the statement but not its parameters: these carry
    # webhook secrets, password hashes and customers' mail, and error texts reach logs.
    kwargs.setdefault("hide_parameters", True)
    # JSON columns without the spaces json.dumps puts after `,` and `:` (bulk.py writes the
    # same): about 8 % of a task's row, and of every open task the router loads.
    kwargs.setdefault("json_serializer", compact_json)
    idle_limit = kwargs.pop("idle_in_transaction_seconds", None)
    if is_sqlite(url):
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "do_connect", _sqlite_private_file)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    ping_idle = "pool_pre_ping" not in kwargs
    if sa.make_url(url).get_driver_name() == "psycopg2":
        # Positional parameters: psycopg2 interpolates a batch of thousands of them about three
        # times faster than named ones, which is a quarter of a group commit's insert time.
        kwargs.setdefault("paramstyle", "format")
    engine = sa.create_engine(url, **kwargs)
    fence.listen(engine)  # a routing transaction's first statement carries the lease's fence
    if ping_idle:
        sa.event.listen(engine.pool, "checkin", _note_checkin)
        sa.event.listen(engine.pool, "checkout", _ping_if_idle)
    if idle_limit is not None:
        sa.event.listen(engine, "connect", _idle_in_transaction_limit(idle_limit))
    return engine


# A pooled PostgreSQL connection idle longer than this is pinged before use (a dead one is
# replaced: the server restarted, a proxy dropped it). One used more recently is not: a ping
# is a round trip, and a round trip on the database thread waits for the GIL behind a busy
# reactor (up to the interpreter's switch interval, 5 ms), once per group commit.
PING_AFTER_IDLE_SECONDS = 1.0


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    if record is not None:
        record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's pessimistic ping, for idle connections only. A connection that died within
    the last second fails its transaction once: the engine then replaces every pooled
    connection (a disconnect invalidates the pool), and the group commit re-runs each call."""
    since = record.info.get("idle_since")
    if since is not None and time.monotonic() - since <= PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as exc:  # any failure: the pool tries a new connection
        raise sa.exc.DisconnectionError(f"idle connection is gone: {type(exc).__name__}") from exc


def _idle_in_transaction_limit(seconds: float) -> Any:
    """Each new connection's `idle_in_transaction_session_timeout`: the server ends a session
    left inside a transaction that long (its client paused or gone), freeing its locks."""
    milliseconds = max(1, int(seconds * 1000))

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
        finally:
            cursor.close()
        dbapi_conn.commit()

    return on_connect


def _sqlite_private_file(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
    """Create the database file with SQLITE_FILE_MODE when it does not exist yet (sqlite3
    would create it with the umask's mode, usually world-readable); returns None so that the
    dialect connects as usual."""
    path = cargs[0] if cargs else cparams.get("database")
    if not isinstance(path, str) or not path or path == ":memory:" or path.startswith("file:") \
            or cparams.get("uri"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        return
    except OSError:  # a missing folder...: sqlite3 reports it in its own words
        return
    os.close(fd)


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
