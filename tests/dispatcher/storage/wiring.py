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

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def url_for(backend: str, request: pytest.FixtureRequest) -> str:
    """An empty database: a temporary SQLite file, or a fresh PostgreSQL database (the
    `pg_url` fixture skips, or fails under SWITCHBOARD_STRICT=1, when the server is absent)."""
    if backend == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


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
