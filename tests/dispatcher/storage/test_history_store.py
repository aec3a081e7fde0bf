"""The customer-history part of the `Store` port (`customer_records`, `merge_customers`), run on
every implementation like test_store_contract.py: MemoryStore, SQLite, PostgreSQL."""

from __future__ import annotations

from dispatcher.domain import events as ev
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.ports import Changes, Identity
from tests.dispatcher.storage import test_store_contract as contract
from tests.dispatcher.storage.test_store_contract import ALICE, BOB, T0, create, make_task

h = contract.h  # the same parametrised fixture: memory, SQLite, PostgreSQL


def test_records_are_newest_first_with_attributes_and_events(h):
    first = make_task("t1", T0, attributes={"subject": "Invoice", "preview": "Hello"})
    cid = create(h, first)
    second = make_task("t2", T0 + 60, channel=Channel.PHONE)
    assert create(h, second) == cid
    second.state, second.customer_id = TaskState.COMPLETED, cid
    h.wait(h.store.record(Changes(
        tasks=[second],
        events=[Event(ev.TASK_ASSIGNED, T0 + 70, "t2", "a1", "agent:a1", {"via": "offer"}),
                Event(ev.TASK_COMPLETED, T0 + 190, "t2", "a1", "agent:a1",
                      {"disposition": "solved"})],
    )))
    records = h.wait(h.store.customer_records(cid, 10))
    assert [r.summary.id for r in records] == ["t2", "t1"]
    assert records[1].attributes == {"subject": "Invoice", "preview": "Hello"}
    assert [e.kind for e in records[0].events] == [
        ev.TASK_CREATED, ev.TASK_QUEUED, ev.TASK_ASSIGNED, ev.TASK_COMPLETED]
    assert records[0].events[-1].data == {"disposition": "solved"}
    assert records[0].summary.state == "completed"


def test_records_are_bounded_and_unknown_customers_have_none(h):
    cid = create(h, make_task("t1", T0))
    for i in range(2, 5):
        create(h, make_task(f"t{i}", T0 + i))
    assert [r.summary.id for r in h.wait(h.store.customer_records(cid, 2))] == ["t4", "t3"]
    assert h.wait(h.store.customer_records("nobody", 5)) == []


def test_merge_moves_identities_and_tasks_and_appends_events(h):
    alice = create(h, make_task("t1", T0), ALICE, "Alice")
    bob = create(h, make_task("t2", T0 + 1), BOB, "Bob")
    create(h, make_task("t3", T0 + 2), BOB)
    audit = [Event("customer.merged", T0 + 5, "t2", None, "supervisor:s1", {"merged_id": bob}),
             Event("customer.merged", T0 + 5, None, "s1", "supervisor:s1", {"merged_id": bob})]
    merged = h.wait(h.store.merge_customers(alice, bob, audit))
    assert merged.identities == (BOB,)
    assert merged.task_ids == ("t2", "t3")
    survivor = h.wait(h.store.get_customer(alice))
    assert set(survivor.identities) == {ALICE, BOB}
    assert h.wait(h.store.find_customer(BOB)).id == alice
    assert [r.summary.id for r in h.wait(h.store.customer_records(alice, 10))] == [
        "t3", "t2", "t1"]
    assert h.wait(h.store.customer_records(bob, 10)) == []
    assert h.wait(h.store.get_customer(bob)).identities == ()
    assert h.wait(h.store.task_events("t2"))[-1].kind == "customer.merged"
    # A new task from Bob's number now lands on the survivor.
    assert create(h, make_task("t4", T0 + 9), Identity("phone", BOB.value)) == alice
