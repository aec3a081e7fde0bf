"""Helpers of the storage suites: a URL for each SQL backend, and a real `Pool` + `GroupCommit` +
`SqlStore` wired to a `TurnReactor` (see turns.py) so a test can wait on their Deferreds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.storage.commit import GroupCommit
from dispatcher.storage.engine import make_engine
from dispatcher.storage.pool import Pool
from dispatcher.storage.sql import SqlStore
from tests.dispatcher.storage.turns import TurnReactor
from tests.support import missing

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# The suites of the code that talks to the PostgreSQL driver itself (bulk.py, the lease's fence,
# the store's writes) run on PostgreSQL through psycopg (3) as well: `postgres-psycopg`.
SQL_BACKENDS_AND_DRIVERS = [*SQL_BACKENDS,
                            pytest.param("postgres-psycopg", marks=pytest.mark.postgres)]


def url_for(backend: str, request: pytest.FixtureRequest) -> str:
    """An empty database: a temporary SQLite file, or a fresh PostgreSQL database (the
    `pg_url` fixture skips, or fails under SWITCHBOARD_STRICT=1, when the server is absent),
    reached through the driver of SWITCHBOARD_TEST_PG_URL (psycopg2 unless told), or through
    psycopg (3) for `postgres-psycopg`."""
    if backend == "sqlite":
        return request.getfixturevalue("sqlite_url")
    url = request.getfixturevalue("pg_url")
    return psycopg_url(url) if backend == "postgres-psycopg" else url


@pytest.fixture(params=SQL_BACKENDS_AND_DRIVERS, name="empty_url")
def every_driver_url(request: pytest.FixtureRequest) -> str:
    """`empty_url` (conftest.py) on each backend and PostgreSQL driver: a suite imports it to
    run on PostgreSQL through psycopg (3) as well."""
    return url_for(request.param, request)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres-psycopg", marks=pytest.mark.postgres)],
                name="pg_driver_url")
def every_pg_driver_url(request: pytest.FixtureRequest) -> str:
    """`pg_driver_url`: a fresh PostgreSQL database, through each driver (for the code that
    talks to the driver: the lease's fence); a suite imports it."""
    return url_for(request.param, request)


def need_psycopg() -> None:
    """psycopg (3) is installed, or the test is missing a peer (skips; fails in strict mode)."""
    try:
        import psycopg  # noqa: F401 - only whether it is there
    except ImportError:
        missing("psycopg (3) is not installed (pyproject's `psycopg3` extra)")


def psycopg_url(url: str) -> str:
    """`url` through psycopg (3): `postgresql+psycopg://...` (missing when not installed)."""
    need_psycopg()
    return sa.make_url(url).set(drivername="postgresql+psycopg").render_as_string(
        hide_password=False)


@dataclass
class Wiring:
    reactor: TurnReactor
    engine: sa.Engine
    pool: Pool
    commit: GroupCommit
    store: SqlStore

    def wait(self, d: Deferred[Any]) -> Any:
        return self.reactor.drive(d)

    def close(self) -> None:
        self.pool.stop()
        self.engine.dispose()


def wire(url: str) -> Wiring:
    reactor = TurnReactor()
    engine = make_engine(url)
    pool = Pool(engine, reactor)
    pool.start()
    commit = GroupCommit(pool, reactor)
    return Wiring(reactor, engine, pool, commit, SqlStore(pool, commit))
