"""The `AccountStore` contract, run on `MemoryAccounts`, and `SqlAccounts` on SQLite and
PostgreSQL: accounts replace by id (keeping `created_at`), audit events go with the change, a
rehash never undoes a change made meanwhile; and the `SecretStore` (`SqlSecrets`): a secret is
stored once, whoever comes first, and everyone reads that one, even when they race."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.service.ports import Account
from dispatcher.storage import tables as t
from dispatcher.storage.accounts import MemoryAccounts, SqlAccounts
from dispatcher.storage.engine import make_engine
from dispatcher.storage.secrets import MemorySecrets, SqlSecrets, thd_shared_secret
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
RACERS = 6


@dataclass
class H:
    accounts: Any
    secrets: Any
    wait: Any
    url: str | None = None

    def __call__(self, d):
        return self.wait(d)

    def logged(self) -> list[tuple[str, str, str, dict]]:
        """The agent log as (kind, agent_id, actor, data)."""
        if self.url is None:
            return [(e.kind, e.agent_id, e.actor, dict(e.data)) for e in self.accounts.events]
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(t.agent_events.c.kind, t.agent_events.c.agent_id,
                                              t.agent_events.c.actor, t.agent_events.c.data)
                                    .order_by(t.agent_events.c.id)).all()
        finally:
            engine.dispose()
        return [(r.kind, r.agent_id, r.actor, dict(r.data)) for r in rows]


@pytest.fixture(params=BACKENDS)
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        yield H(MemoryAccounts(), MemorySecrets(), fired)
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlAccounts(w.pool), SqlSecrets(w.pool), w.wait, url)
    w.close()


def account(account_id: str, role: str = "agent", at: float = T0, **kw: Any) -> Account:
    values = {"name": account_id.title(), "password_hash": "$argon2id$v=19$fake",
              "disabled": False, "created_at": at, "updated_at": at, **kw}
    return Account(account_id, role, **values)


def changed(a: Account) -> ev.Event:
    return ev.Event(ev.ACCOUNT_CHANGED, a.updated_at, agent_id=a.id, actor=ev.OPERATOR,
                    data={"role": a.role, "name": a.name, "disabled": a.disabled,
                          "password": "set"})


def test_accounts_are_stored_listed_and_replaced_keeping_their_creation(h: H) -> None:
    assert h(h.accounts.get_account("a1")) is None
    h(h.accounts.put_account(account("sue", "supervisor"), [changed(account("sue"))]))
    h(h.accounts.put_account(account("a1", password_hash=None)))
    assert h(h.accounts.get_account("a1")) == account("a1", password_hash=None)
    later = account("a1", at=T0 + 60, name="Alex", disabled=True)
    h(h.accounts.put_account(later))
    assert h(h.accounts.get_account("a1")) == replace(later, created_at=T0)
    assert [a.id for a in h(h.accounts.list_accounts())] == ["a1", "sue"]
    assert h(h.accounts.get_account("sue")).role == "supervisor"


def test_changes_are_audited_with_the_write(h: H) -> None:
    a = account("a1")
    h(h.accounts.put_account(a, [changed(a)]))
    gone = ev.Event(ev.ACCOUNT_REMOVED, T0 + 1, agent_id="a1", actor=ev.OPERATOR,
                    data={"role": "agent"})
    assert h(h.accounts.remove_account("a1", [gone])) is True
    assert h(h.accounts.remove_account("a1", [gone])) is False  # nothing: nothing logged
    assert h(h.accounts.get_account("a1")) is None
    log = h.logged()
    assert [(k, who, actor) for k, who, actor, _ in log] == [
        (ev.ACCOUNT_CHANGED, "a1", "operator"), (ev.ACCOUNT_REMOVED, "a1", "operator")]
    assert "$argon2" not in repr(log)  # the audit never holds a hash


def test_a_rehash_applies_only_over_the_hash_it_replaces(h: H) -> None:
    h(h.accounts.put_account(account("a1", password_hash="old")))
    assert h(h.accounts.replace_hash("a1", "old", "new", T0 + 5)) is True
    got = h(h.accounts.get_account("a1"))
    assert (got.password_hash, got.updated_at) == ("new", T0 + 5)
    # Meanwhile the password changed: the stale rehash must not bring the old one back.
    assert h(h.accounts.replace_hash("a1", "old", "newer", T0 + 6)) is False
    assert h(h.accounts.get_account("a1")).password_hash == "new"
    assert h(h.accounts.replace_hash("nobody", "x", "y", T0)) is False


def test_a_secret_is_stored_once_and_shared(h: H) -> None:
    first = h(h.secrets.shared_secret("tokens.hs256", b"\x00\xff" * 32, T0))
    assert first == b"\x00\xff" * 32 and isinstance(first, bytes)
    assert h(h.secrets.shared_secret("tokens.hs256", b"other" * 13, T0 + 1)) == first
    assert h(h.secrets.shared_secret("another", b"x" * 40, T0)) == b"x" * 40


@pytest.mark.parametrize("backend", ["sqlite",
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
def test_racing_processes_all_get_the_first_stored_secret(backend, request) -> None:
    from dispatcher.storage import schema

    url = url_for(backend, request)
    schema.upgrade(url)
    engines = [make_engine(url) for _ in range(RACERS)]  # one per "process"
    barrier = threading.Barrier(RACERS)
    got: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def race(i: int) -> None:
        try:
            barrier.wait()
            with engines[i].begin() as conn:
                got[i] = thd_shared_secret(conn, "tokens.hs256", bytes([i]) * 64, T0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for e in engines:
        e.dispose()
    assert errors == []
    values = set(got.values())
    assert len(got) == RACERS and len(values) == 1
    assert values.pop() in {bytes([i]) * 64 for i in range(RACERS)}
