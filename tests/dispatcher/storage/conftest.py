"""Fixtures of the storage suites: empty databases and databases at the head schema on each SQL
backend (SQLite file, PostgreSQL), and a store wired to one (see wiring.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatcher.storage import schema
from tests.dispatcher.storage.wiring import SQL_BACKENDS, Wiring, url_for, wire


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.fixture(params=SQL_BACKENDS)
def empty_url(request: pytest.FixtureRequest) -> str:
    """An empty database (no schema) on each SQL backend."""
    return url_for(request.param, request)


@pytest.fixture
def sql_url(empty_url: str) -> str:
    """A database at the head schema on each SQL backend."""
    schema.upgrade(empty_url)
    return empty_url


@pytest.fixture
def wiring(sql_url: str) -> Iterator[Wiring]:
    w = wire(sql_url)
    yield w
    w.close()
