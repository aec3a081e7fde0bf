"""Fixtures shared by every suite."""

from __future__ import annotations

import sys
import uuid

import pytest

from tests.support import PG_URL, missing


@pytest.fixture(autouse=True)
def switch_interval():
    """The interpreter's switch interval as it was before each test: starting serve's Storage in
    process sets it for the whole process (storage/pool.py `hand_over_sooner`), and the tests
    after it would run with it."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        import sqlalchemy as sa

        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"sb_test_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable
        missing(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    url = sa.engine.make_url(PG_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
