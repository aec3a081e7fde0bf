"""dispatcher.service.accounts: accounts of agents and supervisors, their argon2 passwords
(checked through `offload`, rehashed when the parameters changed), the sign-in's refusals (an
unknown id and a wrong password alike, after a hash check in both cases), disabled accounts,
the rule for a token's holder, and the audit of every change."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import InvalidValue, UnknownAgent
from dispatcher.service.accounts import (
    AccountDisabled,
    Accounts,
    SignInRefused,
    UnknownAccount,
)
from dispatcher.storage.accounts import MemoryAccounts
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage.test_store_contract import fired

T0 = 1_700_000_000.0
PASSWORD = "correct horse battery"
# Cheap parameters for the tests (the service's default is argon2-cffi's RFC 9106 profile).
CHEAP = dict(time_cost=1, memory_cost=1024, parallelism=1)


class Offload:
    """Records what the service runs off the reactor thread (and runs it inline)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, fn, *args):
        self.calls.append(fn.__name__)
        return maybeDeferred(fn, *args)


@pytest.fixture
def world():
    store, accounts = MemoryStore(), MemoryAccounts()
    fired(store.put_agent(Agent("a1", name="Alex Martin")))
    clock = Clock()
    clock.advance(T0)
    offload = Offload()
    service = Accounts(accounts, store, clock, offload=offload,
                       hasher=PasswordHasher(**CHEAP))
    return service, accounts, offload, clock


def refused(d) -> Exception:
    with pytest.raises(Exception) as err:
        fired(d)
    return err.value


def test_an_agent_signs_in_with_the_right_password_only(world):
    service, accounts, offload, _ = world
    account = fired(service.set("a1", "agent", password=PASSWORD))
    assert (account.id, account.role, account.name) == ("a1", "agent", "Alex Martin")
    assert account.password_hash.startswith("$argon2id$") and PASSWORD not in account.password_hash
    assert "hash" in offload.calls  # hashed off the reactor thread
    assert fired(service.sign_in("a1", PASSWORD)).id == "a1"
    assert "_matches" in offload.calls  # and checked there too
    wrong = refused(service.sign_in("a1", "wrong password"))
    unknown = refused(service.sign_in("nobody", PASSWORD))
    assert isinstance(wrong, SignInRefused) and isinstance(unknown, SignInRefused)
    assert str(wrong) == str(unknown) == "wrong id or password"


def test_an_unknown_id_and_an_account_without_password_still_check_a_hash(world):
    service, _, offload, _ = world
    fired(service.set("a1", "agent"))  # no password: tokens only
    offload.calls.clear()
    assert isinstance(refused(service.sign_in("nobody", PASSWORD)), SignInRefused)
    assert isinstance(refused(service.sign_in("a1", PASSWORD)), SignInRefused)
    assert offload.calls.count("_matches") == 2


def test_an_agent_account_needs_an_existing_agent(world):
    service, accounts, _, _ = world
    assert isinstance(refused(service.set("ghost", "agent", password=PASSWORD)), UnknownAgent)
    assert fired(accounts.list_accounts()) == []
    sup = fired(service.set("sue", "supervisor", "Sue Visor", PASSWORD))  # a person: any id
    assert (sup.role, sup.name) == ("supervisor", "Sue Visor")
    assert isinstance(refused(service.set("a1", "root")), InvalidValue)
    assert isinstance(refused(service.set("a1", "agent", password="short")), InvalidValue)
    assert isinstance(refused(service.set(" a1", "agent")), InvalidValue)


def test_a_disabled_account_is_told_apart_only_with_the_right_password(world):
    service, _, _, _ = world
    fired(service.set("a1", "agent", password=PASSWORD))
    fired(service.disable("a1"))
    assert isinstance(refused(service.sign_in("a1", PASSWORD)), AccountDisabled)
    assert isinstance(refused(service.sign_in("a1", "wrong password")), SignInRefused)
    assert isinstance(refused(service.admit("a1", "agent")), AccountDisabled)
    assert isinstance(refused(service.disable("nobody")), UnknownAccount)
    fired(service.set("a1", "agent"))  # set again: enabled, the password kept
    assert fired(service.sign_in("a1", PASSWORD)).disabled is False


def test_a_hash_made_with_older_parameters_is_replaced_at_sign_in(world):
    service, accounts, _, clock = world
    fired(service.set("a1", "agent", password=PASSWORD))
    old = fired(accounts.get_account("a1")).password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    upgraded = Accounts(accounts, service.agents, clock, hasher=stronger)
    assert stronger.check_needs_rehash(old)
    clock.advance(10)
    fired(upgraded.sign_in("a1", PASSWORD))
    new = fired(accounts.get_account("a1"))
    assert new.password_hash != old and not stronger.check_needs_rehash(new.password_hash)
    assert new.updated_at == T0 + 10
    assert fired(upgraded.sign_in("a1", PASSWORD)).password_hash == new.password_hash
    assert isinstance(refused(upgraded.sign_in("a1", "wrong password")), SignInRefused)


def test_the_rule_for_a_token_holder(world):
    service, _, _, _ = world
    assert fired(service.admit("a1", "agent")) is None  # an agent without account: the token
    assert fired(service.admit("pbx1", "integration")) is None
    assert isinstance(refused(service.admit("boss", "supervisor")), UnknownAccount)
    fired(service.set("boss", "supervisor", password=PASSWORD))
    assert fired(service.admit("boss", "supervisor")).id == "boss"
    assert isinstance(refused(service.admit("boss", "agent")), UnknownAccount)  # wrong role
    fired(service.disable("boss"))
    assert isinstance(refused(service.admit("boss", "supervisor")), AccountDisabled)
    # Issuing (`switchboard token`): an agent token needs an existing agent.
    assert isinstance(refused(service.check_issue("nobody", "agent")), UnknownAgent)
    assert fired(service.check_issue("a1", "agent")) is None
    assert fired(service.check_issue("pbx1", "integration")) is None
    assert isinstance(refused(service.check_issue("boss", "supervisor")), AccountDisabled)


def test_every_change_is_audited_without_password_or_hash(world):
    service, accounts, _, _ = world
    fired(service.set("a1", "agent", password=PASSWORD))
    fired(service.set("a1", "agent", name="Alex M."))
    fired(service.disable("a1", actor=ev.supervisor_actor("sue")))
    fired(service.remove("a1"))
    assert isinstance(refused(service.remove("a1")), UnknownAccount)
    log = [(e.kind, e.agent_id, e.actor, dict(e.data)) for e in accounts.events]
    assert log == [
        ("account.changed", "a1", "operator",
         {"role": "agent", "name": "Alex Martin", "disabled": False, "password": "set"}),
        ("account.changed", "a1", "operator",
         {"role": "agent", "name": "Alex M.", "disabled": False, "password": "kept"}),
        ("account.changed", "a1", "supervisor:sue",
         {"role": "agent", "name": "Alex M.", "disabled": True, "password": "kept"}),
        ("account.removed", "a1", "operator", {"role": "agent"}),
    ]
    assert PASSWORD not in repr(log) and "argon2" not in repr(log)


def test_disabling_removing_or_a_new_password_revokes_the_older_tokens():
    from dispatcher.service import tokens
    from dispatcher.storage.revocations import MemoryRevocations

    store, accounts, revocations = MemoryStore(), MemoryAccounts(), MemoryRevocations()
    fired(store.put_agent(Agent("a1", name="Alex Martin")))
    clock, revoked = Clock(), tokens.RevocationList()
    clock.advance(T0)
    service = Accounts(accounts, store, clock, hasher=PasswordHasher(**CHEAP),
                       revocations=revocations, revoked=revoked)

    def token(at: float) -> tokens.Claims:
        return tokens.Claims("a1", "agent", at + 60, at)

    fired(service.set("a1", "agent", password=PASSWORD))  # a new account: nothing to revoke
    assert not revoked.revoked(token(T0 - 1))
    clock.advance(10)
    fired(service.set("a1", "agent", name="Alex"))  # no new password: tokens kept
    assert not revoked.revoked(token(T0))
    fired(service.set("a1", "agent", password="another password"))
    assert revoked.revoked(token(T0 + 9.999)) and not revoked.revoked(token(T0 + 10))
    clock.advance(10)
    fired(service.disable("a1"))
    assert revoked.revoked(token(T0 + 19)) and not revoked.revoked(token(T0 + 20))
    clock.advance(10)
    fired(service.remove("a1"))
    assert revoked.revoked(token(T0 + 29))
    # stored, for every other process (the watch reads it)
    assert fired(revocations.revocations(clock.seconds())).subjects == {"a1": T0 + 30}
