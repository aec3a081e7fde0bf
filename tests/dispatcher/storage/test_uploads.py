"""The `UploadStore` contract, run on `MemoryUploads`, and `SqlUploads` on SQLite and
PostgreSQL: an agent's files by id, never another agent's; dropped once used; pruned by age."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dispatcher.service.ports import Upload
from dispatcher.storage.uploads import MemoryUploads, SqlUploads
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0


@dataclass
class H:
    store: Any
    wait: Any

    def __call__(self, d):
        return self.wait(d)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        yield H(MemoryUploads(), fired)
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlUploads(w.pool), w.wait)
    w.close()


def upload(uid: str, owner: str = "ann", at: float = T0, content: bytes = b"\x00%PDF") -> Upload:
    return Upload(uid, owner, f"{uid}.pdf", "application/pdf", len(content), content, at)


def test_an_agent_takes_back_only_their_own_files_in_order(h: H) -> None:
    for u in (upload("u1"), upload("u2"), upload("u3", owner="bob")):
        h(h.store.put(u))
    assert h(h.store.take("ann", ["u2", "u1", "u3", "zz"])) == [upload("u2"), upload("u1")]
    assert h(h.store.take("bob", ["u1"])) == []


def test_used_files_are_dropped_and_old_ones_pruned(h: H) -> None:
    h(h.store.put(upload("old", at=T0 - 100)))
    h(h.store.put(upload("new", at=T0)))
    h(h.store.put(upload("used", at=T0)))
    h(h.store.drop(["used"]))
    assert h(h.store.prune(T0 - 50)) == 1
    assert h(h.store.take("ann", ["old", "new", "used"])) == [upload("new")]
