"""The `PhoneStore` contract, run on `MemoryPhones`, and `SqlPhones` on SQLite and PostgreSQL:
accounts replace by agent, unique SIP users and extensions, bindings replace by agent and go
with their account; an account's audit events commit with it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dispatcher.domain import events as ev
from dispatcher.service.ports import Binding, PhoneAccount
from dispatcher.storage.configuration import MemoryConfigurationLog, SqlConfigurationLog
from dispatcher.storage.memory import MemoryStore
from dispatcher.storage.phones import MemoryPhones, SqlPhones
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0


@dataclass
class H:
    store: Any
    wait: Any
    log: Any = None  # the agent log (ConfigurationLog), where audit events land

    def __call__(self, d):
        return self.wait(d)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        memory = MemoryStore()
        yield H(MemoryPhones(memory), fired, MemoryConfigurationLog(memory))
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlPhones(w.pool, lambda: T0), w.wait, SqlConfigurationLog(w.pool))
    w.close()


def account(agent_id: str, user: str | None, ext: str | None = None) -> PhoneAccount:
    return PhoneAccount(agent_id, user, "switchboard", "a" * 32, "b" * 64, ext)


def binding(agent_id: str, contact: str, cseq: int = 1) -> Binding:
    return Binding(agent_id, contact, T0 + 3600, "udp:127.0.0.1:5071", "reg-1", cseq)


def test_accounts_replace_by_agent_and_list_in_order(h: H) -> None:
    h(h.store.put_phone_account(account("b", "bob", "1002")))
    h(h.store.put_phone_account(account("a", "ann")))
    h(h.store.put_phone_account(account("a", "ann2", "1001")))
    assert h(h.store.list_phone_accounts()) == [account("a", "ann2", "1001"),
                                                account("b", "bob", "1002")]
    h(h.store.put_phone_account(account("c", None, "1003")))  # CTI-only: no SIP user
    h(h.store.put_phone_account(account("d", None, None)))
    assert [a.agent_id for a in h(h.store.list_phone_accounts())] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("clash", [account("b", "ann"), account("b", "bob", "1001")])
def test_sip_users_and_extensions_are_unique(h: H, clash: PhoneAccount) -> None:
    h(h.store.put_phone_account(account("a", "ann", "1001")))
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError on SQL, ValueError in memory
        h(h.store.put_phone_account(clash))
    assert [a.agent_id for a in h(h.store.list_phone_accounts())] == ["a"]


def test_bindings_replace_by_agent_and_go_with_the_account(h: H) -> None:
    h(h.store.put_phone_account(account("a", "ann")))
    h(h.store.put_binding(binding("a", "sip:ann@127.0.0.1:5071")))
    h(h.store.put_binding(binding("a", "sip:ann@127.0.0.1:5072", cseq=2)))
    h(h.store.put_binding(binding("b", "sip:bob@127.0.0.1:5073")))
    assert h(h.store.list_bindings()) == [binding("a", "sip:ann@127.0.0.1:5072", cseq=2),
                                          binding("b", "sip:bob@127.0.0.1:5073")]
    h(h.store.remove_binding("b"))
    assert [b.agent_id for b in h(h.store.list_bindings())] == ["a"]
    assert h(h.store.remove_phone_account("a")) is True
    assert h(h.store.remove_phone_account("a")) is False
    assert h(h.store.list_bindings()) == []


def changed(what: str, action: str, agent_id: str) -> ev.Event:
    return ev.Event(ev.CONFIG_CHANGED, T0, None, agent_id, "operator",
                    {"what": what, "action": action})


def test_an_account_s_audit_event_commits_with_it_and_not_without_it(h: H) -> None:
    h(h.store.put_phone_account(account("a", "ann"), [changed("phone", "set", "a")]))
    assert not h(h.store.remove_phone_account("zed", [changed("phone", "removed", "zed")]))
    assert h(h.store.remove_phone_account("a", [changed("phone", "removed", "a")]))
    log = h(h.log.changes_after(0, (ev.CONFIG_CHANGED,), 10, T0 + 60)).changes
    assert [(agent_id, data["action"]) for _, _, agent_id, data in log] == [
        ("a", "set"), ("a", "removed")]  # nothing for the account that was not there
