"""The customers part of the `Store` port (`search_customers`, `edit_customer`: the supervisors'
search and corrections), run on every implementation like test_store_contract.py: MemoryStore,
SQLite, PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.domain.events import Event
from dispatcher.service.ports import Identity, IdentityTaken
from dispatcher.storage import tables as t
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage import test_store_contract as contract
from tests.dispatcher.storage.test_store_contract import ALICE, BOB, T0, create, make_task

h = contract.h  # the same parametrised fixture: memory, SQLite, PostgreSQL

CAROL = Identity("email", "carol_100%@example.net")


def agent_log(h) -> list[tuple]:
    """(kind, agent_id, actor, data) of the agent log, oldest first."""
    if isinstance(h.store, MemoryStore):
        return [(e.kind, e.agent_id, e.actor, e.data) for e in h.store.agent_events]
    e = t.agent_events

    def thd(conn):
        return [tuple(row) for row in conn.execute(
            sa.select(e.c.kind, e.c.agent_id, e.c.actor, e.c.data).order_by(e.c.id))]
    return h.wait(h.store._pool.run(thd))  # the SQL store's own pool: a read-only peek


def three(h) -> tuple[str, str, str]:
    alice = create(h, make_task("t1", T0), ALICE, "Alice Martin")
    bob = create(h, make_task("t2", T0 + 10), BOB, "Bob Dupont")
    carol = create(h, make_task("t3", T0 + 20), CAROL, "Carol ALICEA")
    return alice, bob, carol


def ids(found) -> list[str]:
    return [c.id for c in found]


def test_search_by_name_any_case_newest_first_with_identities(h) -> None:
    alice, bob, carol = three(h)
    found = h.wait(h.store.search_customers(["alice"]))
    assert ids(found) == [carol, alice]  # "Carol ALICEA" is newer; the name in any case
    assert found[1].name == "Alice Martin" and found[1].identities == (ALICE,)
    assert found[1].created_at == T0
    assert ids(h.wait(h.store.search_customers(["dupont"]))) == [bob]
    assert h.wait(h.store.search_customers(["nobody"])) == []


def test_search_by_address_or_number_and_several_needles(h) -> None:
    alice, bob, carol = three(h)
    assert ids(h.wait(h.store.search_customers(["example.org"]))) == [alice]
    assert ids(h.wait(h.store.search_customers(["5550100"]))) == [bob]
    assert ids(h.wait(h.store.search_customers(["zzz", "+3225550100"]))) == [bob]
    assert ids(h.wait(h.store.search_customers(["example"]))) == [carol, alice]
    assert ids(h.wait(h.store.search_customers(["example"], limit=1))) == [carol]


def test_search_takes_wildcards_literally(h) -> None:
    alice, bob, carol = three(h)
    assert ids(h.wait(h.store.search_customers(["_100%"]))) == [carol]
    assert ids(h.wait(h.store.search_customers(["%"]))) == [carol]  # the one with a %
    assert h.wait(h.store.search_customers(["a_i"])) == []  # `_` is not any character
    assert h.wait(h.store.search_customers([])) == []


def test_edit_sets_the_name_replaces_identities_and_appends_events(h) -> None:
    alice, bob, _ = three(h)
    work = Identity("email", "alice@work.example")
    audit = [Event("customer.changed", T0 + 50, None, "boss", "supervisor:boss",
                   {"customer_id": alice, "name": "Alice Martin-Roux"})]
    changed = h.wait(h.store.edit_customer(alice, "Alice Martin-Roux", [work], audit))
    assert (changed.id, changed.name, changed.identities) == (alice, "Alice Martin-Roux",
                                                               (work,))
    assert h.wait(h.store.get_customer(alice)) == changed
    assert h.wait(h.store.find_customer(work)).id == alice
    assert h.wait(h.store.find_customer(ALICE)) is None
    assert agent_log(h)[-1] == ("customer.changed", "boss", "supervisor:boss",
                                {"customer_id": alice, "name": "Alice Martin-Roux"})
    # Intake follows: the new address lands on Alice, the removed one makes a new customer.
    assert create(h, make_task("t4", T0 + 60), work) == alice
    assert create(h, make_task("t5", T0 + 61), ALICE) not in (alice, bob)
    # Identities kept are kept; adding a phone too.
    phone = Identity("phone", "+3226660000")
    again = h.wait(h.store.edit_customer(alice, "Alice Martin-Roux", [work, phone], []))
    assert set(again.identities) == {work, phone}


def test_an_identity_of_another_customer_is_refused_and_nothing_is_written(h) -> None:
    alice, bob, _ = three(h)
    before = len(agent_log(h))
    audit = [Event("customer.changed", T0 + 50, None, "boss", "supervisor:boss", {})]
    with pytest.raises(IdentityTaken) as refused:
        h.wait(h.store.edit_customer(alice, "Renamed", [ALICE, BOB], audit))
    assert refused.value.owner_id == bob and refused.value.code == "invalid_value"
    assert h.wait(h.store.get_customer(alice)).name == "Alice Martin"
    assert h.wait(h.store.get_customer(alice)).identities == (ALICE,)
    assert h.wait(h.store.find_customer(BOB)).id == bob
    assert len(agent_log(h)) == before


def test_editing_an_unknown_customer_writes_nothing(h) -> None:
    three(h)
    before = len(agent_log(h))
    audit = [Event("customer.changed", T0 + 50, None, "boss", "supervisor:boss", {})]
    assert h.wait(h.store.edit_customer("nobody", "X", [], audit)) is None
    assert len(agent_log(h)) == before
