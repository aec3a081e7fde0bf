"""The `RevocationStore` (dispatcher/storage/revocations.py), the same contract on
`MemoryRevocations`, `SqlRevocations` on SQLite and on PostgreSQL; and migration 0010, which
adds its tables, upgrading and downgrading."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.storage import schema
from dispatcher.storage.engine import make_engine
from dispatcher.storage.revocations import MemoryRevocations, SqlRevocations
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class H:
    store: Any
    wait: Callable[[Any], Any]


@pytest.fixture(params=BACKENDS)
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        yield H(MemoryRevocations(), fired)
        return
    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlRevocations(w.pool), w.wait)
    w.close()


def test_nothing_is_revoked_at_first(h: H) -> None:
    got = h.wait(h.store.revocations(T0))
    assert (got.jtis, dict(got.subjects)) == (frozenset(), {})


def test_a_jti_is_revoked_until_its_token_would_expire(h: H) -> None:
    h.wait(h.store.revoke_token("j1", T0 + 60, T0, "operator"))
    h.wait(h.store.revoke_token("j1", T0 + 999, T0 + 1, "operator"))  # twice: no error
    h.wait(h.store.revoke_token("j2", T0 + 10, T0, "operator"))
    assert h.wait(h.store.revocations(T0 + 5)).jtis == {"j1", "j2"}
    assert h.wait(h.store.revocations(T0 + 30)).jtis == {"j1"}  # j2's token expired anyway


def test_a_subject_is_revoked_from_the_latest_time_only(h: H) -> None:
    h.wait(h.store.revoke_subject("a1", T0 + 10, T0 + 10, "operator"))
    h.wait(h.store.revoke_subject("a1", T0 + 5, T0 + 11, "operator"))  # never moves back
    h.wait(h.store.revoke_subject("b2", T0, T0, "operator"))
    assert dict(h.wait(h.store.revocations(T0 + 20)).subjects) == {"a1": T0 + 10, "b2": T0}
    h.wait(h.store.revoke_subject("a1", T0 + 30, T0 + 30, "operator"))
    assert h.wait(h.store.revocations(T0 + 40)).subjects["a1"] == T0 + 30


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0010_adds_the_revocation_tables_and_drops_them_again(empty_url: str) -> None:
    schema.upgrade(empty_url, "0009")
    assert not {"revoked_tokens", "revoked_subjects"} & tables(empty_url)
    schema.upgrade(empty_url)
    assert schema.current(empty_url) == schema.head()
    assert {"revoked_tokens", "revoked_subjects"} <= tables(empty_url)
    schema.downgrade(empty_url, "0009")
    assert not {"revoked_tokens", "revoked_subjects"} & tables(empty_url)
