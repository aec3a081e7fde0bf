"""The e-mail test server (server.py) commits as the runtime does: bench/smtp.py measures it as
what `serve` runs (runtime/app.py: 2 batches in flight on PostgreSQL, 1 on SQLite)."""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.storage.commit import BESIDE_CALLS
from tests.channels.email.server import group_commit
from tests.dispatcher.storage.test_commit import FakePool, keyed
from tests.dispatcher.storage.turns import TurnReactor


def batches_in_flight(url: str) -> int:
    """Batches on other rows in flight at once with the server's group commit on `url`: a
    large one (as many calls as a batch needs to have another start beside it), then two
    calls, each in a turn of its own."""
    reactor, pool = TurnReactor(), FakePool()
    engine = sa.create_engine(url)  # never connects: only its dialect is read
    gc = group_commit(pool, reactor, engine)
    _, record = keyed()
    for n in range(BESIDE_CALLS):
        gc.run(record, (f"a{n}", 1))
    reactor.turn()
    for key in ("b", "c"):
        gc.run(record, (key, 1))
        reactor.turn()
    return pool.in_flight


def test_on_postgresql_two_batches_are_in_flight_as_in_the_runtime() -> None:
    assert batches_in_flight("postgresql+psycopg2://nobody@127.0.0.1:1/none") == 2


def test_on_sqlite_one_batch_is_in_flight() -> None:
    assert batches_in_flight("sqlite://") == 1
