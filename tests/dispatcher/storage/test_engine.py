"""`make_engine`: SQLite connections get WAL, synchronous=FULL, foreign keys, a busy timeout and
real transactions (BEGIN IMMEDIATE, so a read-then-write transaction holds the lock throughout)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.storage import engine as engine_module
from dispatcher.storage.engine import DEFAULT_URL, SQLITE_BUSY_TIMEOUT_MS, is_sqlite, make_engine

SYNCHRONOUS_FULL = 2


def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == SYNCHRONOUS_FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    engine.dispose()


def test_sqlite_transactions_roll_back_ddl_and_dml(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("roll back")
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_default_url_is_an_sqlite_file() -> None:
    assert is_sqlite(DEFAULT_URL) and DEFAULT_URL == "sqlite:///switchboard.db"
    assert not is_sqlite("postgresql+psycopg2://postgres@127.0.0.1/test")


def test_a_fresh_sqlite_file_and_its_wal_are_readable_by_their_owner_only(tmp_path) -> None:
    import os
    import stat

    old = os.umask(0o022)  # the usual umask: files would be 0644
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        with engine.begin() as conn:
            conn.exec_driver_sql("create table t (a)")
            conn.exec_driver_sql("insert into t values (1)")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes["fresh.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
    assert {"fresh.db-wal", "fresh.db-shm"} <= set(modes)


@pytest.mark.postgres
def test_a_postgresql_engine_can_limit_idle_transactions_and_sqlite_ignores_it(
        pg_url: str, sqlite_url: str) -> None:
    limited = make_engine(pg_url, idle_in_transaction_seconds=2.5)
    plain = make_engine(pg_url)
    lite = make_engine(sqlite_url, idle_in_transaction_seconds=2.5)
    try:
        with limited.connect() as conn:
            assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar() \
                == "2500ms"
        with plain.connect() as conn:
            assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar() \
                == "0"
        with lite.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        for e in (limited, plain, lite):
            e.dispose()


def _kill_pooled(engine: sa.Engine, admin: sa.Engine) -> None:
    """The server ends the engine's pooled session (as a restart or a dropped proxy would)."""
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()


@pytest.mark.postgres
def test_an_idle_postgresql_connection_is_pinged_and_replaced_when_dead(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every one is idle
    engine, admin = make_engine(pg_url, pool_size=1), make_engine(pg_url)
    try:
        _kill_pooled(engine, admin)
        with engine.connect() as conn:  # pinged: the dead one replaced, nothing fails
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_a_postgresql_connection_used_within_the_second_is_not_pinged(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No round trip for a ping on a hot connection (a group commit's every transaction); when
    it died meanwhile, one transaction fails and the pool is replaced for the next."""
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine, admin = make_engine(pg_url, pool_size=1), make_engine(pg_url)
    try:
        _kill_pooled(engine, admin)
        with pytest.raises(sa.exc.OperationalError) as failed, engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert failed.value.connection_invalidated
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        admin.dispose()
