"""Customers (dispatcher.service.customers): the supervisors' search by name, e-mail address or
phone number as typed, and the audited correction of a customer's name and identities, through
the real service layer (customers made by intake) on the MemoryStore, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.tasks import Channel
from dispatcher.service.customers import (
    CUSTOMER_CHANGED,
    MAX_NAME_CHARS,
    Customers,
    needles_for,
)
from dispatcher.service.history import UnknownCustomer
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.service.ports import Identity, IdentityTaken
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import Stack, build_stack, support_queue

ANN = email_identity("ann.example@customer.org")
ANN_PHONE = phone_identity("+32 2 555 01 00")
BEN = email_identity("ben@other.net")


@dataclass
class World:
    stack: Stack
    customers: Customers
    audit: Any  # () -> [(kind, agent_id, actor, data)] of the agent log

    def wait(self, d):
        return self.stack.wait(d)

    def fails(self, d) -> Exception:
        with pytest.raises(Exception) as caught:
            self.wait(d)
        return caught.value


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path) -> Iterator[World]:
    if request.param == "memory":
        stack = build_stack()
        stack.put_queue(support_queue())
        yield World(stack, Customers(stack.store, stack.clock), lambda: [
            (e.kind, e.agent_id, e.actor, e.data) for e in stack.store.agent_events])
        return
    url = (f"sqlite:///{tmp_path / 'customers.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    schema.upgrade(url)
    w, stack = sql_stack(url)
    e = t.agent_events

    def audit():
        with w.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                sa.select(e.c.kind, e.c.agent_id, e.c.actor, e.c.data).order_by(e.c.id))]
    try:
        stack.put_queue(support_queue())
        yield World(stack, Customers(stack.store, stack.clock), audit)
        stack.assignment.stop()
    finally:
        w.close()


def mail(world: World, identity: Identity, name: str, **attributes: Any):
    task = world.wait(world.stack.intake.submit(Channel.EMAIL, "support", identity=identity,
                                                customer_name=name, attributes=attributes))
    world.stack.settle()
    return task


def call(world: World, identity: Identity, name: str = ""):
    return world.stack.call(identity=identity, customer_name=name)


# --- what a typed query is looked for as ------------------------------------------------------


def test_a_query_is_its_text_lower_cased_and_a_number_its_digits() -> None:
    assert needles_for("  Ann   EXAMPLE ") == ("ann example",)
    assert needles_for("+32 2 555 01 00") == ("+32 2 555 01 00", "+3225550100")
    assert needles_for("02/555.01-00") == ("02/555.01-00", "025550100", "25550100")
    assert needles_for("0032 2 555 01 00")[1] == "+3225550100"
    assert needles_for("@customer.org") == ("@customer.org",)
    assert needles_for("12") == ("12",)  # too few digits to be a number: text only
    for bad in ("", " a ", "x" * 201, None):
        with pytest.raises(InvalidValue):
            needles_for(bad)


# --- search -----------------------------------------------------------------------------------


def test_found_by_name_address_or_number_as_typed_newest_first(world: World) -> None:
    ann = mail(world, ANN, "Ann Example", subject="Parcel")
    world.stack.advance(60)
    ben = mail(world, BEN, "Ben Annan")
    world.stack.advance(60)
    caller = call(world, ANN_PHONE)
    search = lambda q: [c.id for c in world.wait(world.customers.search(q))]  # noqa: E731
    assert search("ANN") == [ben.customer_id, ann.customer_id]  # both names, newest first
    assert search("customer.org") == [ann.customer_id]
    assert search("Ben@Other") == [ben.customer_id]
    assert search("+32 2 555 01 00") == [caller.customer_id]
    assert search("02 555 01 00") == [caller.customer_id]  # national format: without the 0
    assert search("555 0100") == [caller.customer_id]
    assert search("nobody") == []
    found = world.wait(world.customers.search("example"))
    assert found[0].name == "Ann Example" and found[0].identities == (ANN,)
    assert isinstance(world.fails(world.customers.search("a")), InvalidValue)


# --- edit -------------------------------------------------------------------------------------


def test_a_rename_and_new_identities_are_stored_normalised_and_audited(world: World) -> None:
    ann = mail(world, ANN, "Ann Exmaple")
    world.stack.advance(30)
    changed = world.wait(world.customers.edit(
        ann.customer_id, "  Ann   Example ",
        [("email", " Ann.Example@Customer.ORG "), ("phone", "+32 (2) 555-01-00"),
         ("email", "ann@home.example")], "boss"))
    home = Identity("email", "ann@home.example")
    assert changed.name == "Ann Example"
    assert set(changed.identities) == {ANN, ANN_PHONE, home}
    kind, agent_id, actor, data = world.audit()[-1]
    assert (kind, agent_id, actor) == (CUSTOMER_CHANGED, "boss", "supervisor:boss")
    assert data == {"customer_id": ann.customer_id, "name": "Ann Example", "was": "Ann Exmaple",
                    "added": [{"kind": "email", "value": "ann@home.example"},
                              {"kind": "phone", "value": "+3225550100"}],
                    "removed": []}
    # Intake follows the card: a call from the new number is Ann's.
    assert call(world, ANN_PHONE).customer_id == ann.customer_id
    # Removing an address: it is no longer hers; the event says so.
    world.wait(world.customers.edit(ann.customer_id, "Ann Example",
                                    [("phone", "+3225550100"), ("email", "ann@home.example")],
                                    "boss"))
    assert world.audit()[-1][3]["removed"] == [{"kind": "email",
                                                "value": "ann.example@customer.org"}]
    assert world.wait(world.stack.store.find_customer(ANN)) is None


def test_an_edit_that_changes_nothing_writes_nothing(world: World) -> None:
    ann = mail(world, ANN, "Ann Example")
    before = len(world.audit())
    same = world.wait(world.customers.edit(ann.customer_id, "Ann Example",
                                           [("email", "ANN.EXAMPLE@customer.org")], "boss"))
    assert same.identities == (ANN,) and len(world.audit()) == before


def test_refusals_name_why_and_change_nothing(world: World) -> None:
    ann = mail(world, ANN, "Ann Example")
    ben = mail(world, BEN, "Ben")
    before = len(world.audit())
    taken = world.fails(world.customers.edit(ann.customer_id, "Ann", [("email", BEN.value)],
                                             "boss"))
    assert isinstance(taken, IdentityTaken) and taken.owner_id == ben.customer_id
    assert "merge" in str(taken)
    for name, identities in (("Ann", [("fax", "123")]), ("Ann", [("email", "no-at-sign")]),
                             ("Ann", [("phone", "call me")]), ("x" * (MAX_NAME_CHARS + 1), []),
                             (None, []), ("Ann", [("phone", str(n)) for n in range(21)])):
        assert isinstance(world.fails(world.customers.edit(ann.customer_id, name, identities,
                                                           "boss")), InvalidValue)
    assert isinstance(world.fails(world.customers.edit("nobody", "X", [], "boss")),
                      UnknownCustomer)
    assert isinstance(world.fails(world.customers.edit(ann.customer_id, "X", [], "")),
                      InvalidValue)
    card = world.wait(world.stack.store.get_customer(ann.customer_id))
    assert (card.name, card.identities) == ("Ann Example", (ANN,))
    assert len(world.audit()) == before
