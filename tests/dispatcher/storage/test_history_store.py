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


def test_histories_asked_in_one_turn_equal_each_asked_alone_and_share_one_read(h):
    """Several `customer_history` calls made at once (a burst of first offers after a restart)
    answer each as its own read would: newest first (a tie on the creation time by id), bounded
    by each call's limit, with identities, attributes and events; an unknown customer has none.
    On SQL they are one database call (storage/reads.py)."""
    alice = create(h, make_task("a1", T0, attributes={"subject": "Invoice"}), ALICE, "Alice")
    for i, at in ((2, T0 + 5), (3, T0 + 5), (4, T0 + 9)):  # a2 and a3 created at once
        create(h, make_task(f"a{i}", at), ALICE)
    bob = create(h, make_task("b1", T0 + 1, channel=Channel.PHONE), BOB, "Bob")
    asks = [(alice, 10), (bob, 10), ("nobody", 5), (alice, 2), (alice, 10)]
    alone = [h.wait(h.store.customer_history(customer_id, limit)) for customer_id, limit in asks]
    assert [r.summary.id for r in alone[0].records] == ["a4", "a3", "a2", "a1"]
    assert [r.summary.id for r in alone[3].records] == ["a4", "a3"]
    assert alone[0].customer.identities == (ALICE,) and alone[1].customer.name == "Bob"
    assert alone[2].customer is None and alone[2].records == []
    histories = getattr(h.store, "_histories", None)
    calls = histories.calls if histories is not None else 0
    pending = [h.store.customer_history(customer_id, limit) for customer_id, limit in asks]
    together = [h.wait(d) for d in pending]
    assert together == alone
    assert together[0].records[-1].attributes == {"subject": "Invoice"}
    assert together[0].records[0].attributes is not together[3].records[0].attributes
    assert together[0].records[-1].attributes is not together[4].records[-1].attributes
    if histories is not None:
        assert histories.calls == calls + 1
