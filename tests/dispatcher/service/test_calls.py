"""Tests of dispatcher.service.calls: one task per call, the phone's answer as the accept, the
end of a call as wrap-up, abandonment, registrations that expire on the clock and survive a
restart, and phone reachability once devices are required. MemoryStore and a Clock."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import InvalidValue, OfferNotCurrent
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.calls import Calls, call_task_id, digest_ha1, make_account
from dispatcher.service.intake import phone_identity
from dispatcher.storage.phones import MemoryPhones
from tests.dispatcher.service.stacks import (
    WRAP_UP_SECONDS,
    HeldStore,
    Stack,
    build_stack,
    calls_for,
    failure_of,
    support_queue,
    support_stack,
)

CALLER = "+3225550100"


@pytest.fixture
def s() -> Stack:
    return support_stack()


def with_phone(s: Stack, calls: Calls, agent_id: str, user: str | None = None,
               extension: str | None = None) -> None:
    account = make_account(agent_id, user, "secret" if user else None, extension=extension)
    s.wait(calls.phones.put_phone_account(account))
    calls._remember(account)


def test_digest_ha1_matches_rfc_2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life
    assert digest_ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == \
        "939e7578ed9e3c518a452acee763bce9"
    assert len(digest_ha1("a", "r", "p", "SHA-256")) == 64
    with pytest.raises(InvalidValue):
        digest_ha1("a", "r", "p", "SHA-512-256")


def test_a_call_is_one_task_however_often_it_arrives(s: Stack) -> None:
    calls = calls_for(s)
    first = s.wait(calls.arrived("c1@host", CALLER, "support", source="sip"))
    again = s.wait(calls.arrived("c1@host", CALLER, "support", source="sip"))
    assert first.id == again.id == call_task_id("c1@host")
    assert first.channel is Channel.PHONE
    assert first.attributes["caller"] == CALLER and first.attributes["source"] == "sip"
    assert calls.task_id("c1@host") == first.id and calls.call_id(first.id) == "c1@host"
    customer = s.wait(s.store.find_customer(phone_identity(CALLER)))
    assert customer is not None and customer.id == first.customer_id


def test_a_call_arriving_again_before_its_commit_is_answered_after_it() -> None:
    store = HeldStore(hold_intake=True)
    s = build_stack(store)
    s.put_queue(support_queue())
    calls = calls_for(s)
    store.release()
    first = calls.arrived("c1@host", CALLER, "support", source="cti")
    again = calls.arrived("c1@host", CALLER, "support", source="cti")  # the PBX retries
    assert call_task_id("c1@host") in s.router.tasks  # routed, not yet committed
    assert not first.called and not again.called, "acknowledged before the commit"
    store.release()
    assert s.wait(first).id == s.wait(again).id == call_task_id("c1@host")


def test_bad_calls_are_refused(s: Stack) -> None:
    calls = calls_for(s)
    assert failure_of(calls.arrived("", CALLER, "support", source="sip")).check(InvalidValue)
    assert failure_of(calls.arrived("c", CALLER, "support", source="fax")).check(InvalidValue)
    assert failure_of(calls.arrived("c", CALLER, "nowhere", source="sip")).value


def test_answer_is_the_accept_and_the_end_is_wrap_up(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert s.router.tasks[task.id].state is TaskState.OFFERED
    s.advance(3)
    s.wait(calls.answered("c1", "ann"))
    assert s.router.tasks[task.id].state is TaskState.ASSIGNED
    s.advance(42)
    s.wait(calls.ended("c1", by="caller"))
    assert s.router.tasks[task.id].state is TaskState.WRAP_UP
    ended = [e for e in s.events(task.id) if e.kind == ev.CALL_ENDED]
    assert [e.data for e in ended] == [{"by": "caller", "talk_seconds": 42.0}]
    assert ev.CALL_ANSWERED in s.kinds(task.id)
    s.advance(WRAP_UP_SECONDS)
    assert task.id not in s.router.tasks  # completed after the queue's wrap-up time
    assert s.wait(calls.ended("c1", by="caller")).events == []  # a repeated BYE: nothing


def test_an_answer_from_the_wrong_agent_or_too_late_fails(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.put_agent("bob", 7)
    s.login("ann")
    s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert failure_of(calls.answered("c1", "bob")).check(OfferNotCurrent)
    assert failure_of(calls.answered("nope", "ann")).check(OfferNotCurrent)


def test_refusal_offers_the_call_to_the_next_agent(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    s.put_agent("bob", 6)
    s.login("bob")
    s.wait(calls.refused("c1", "ann", "486 Busy Here"))
    assert s.last_offer("bob").task_id == task.id


def test_caller_hangs_up_while_waiting(s: Stack) -> None:
    calls = calls_for(s)
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    s.advance(12.5)
    s.wait(calls.abandoned("c1"))
    abandoned = [e for e in s.events(task.id) if e.kind == ev.TASK_ABANDONED]
    assert abandoned[0].data["waited"] == 12.5
    assert abandoned[0].data["reason"] == "caller_cancel"
    # The same call id again: the call has ended, it is not a new call.
    assert failure_of(calls.arrived("c1", CALLER, "support", source="sip")).check(InvalidValue)


def test_ended_while_offered_is_abandoned_and_withdraws_the_offer(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="cti"))
    out = s.wait(calls.ended("c1", by="pbx"))
    assert [e.kind for e in out.events if e.kind == ev.OFFER_WITHDRAWN]
    assert ev.TASK_ABANDONED in s.kinds(task.id)


def test_registration_makes_an_agent_reachable_until_it_expires(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    with_phone(s, calls, "ann", user="ann")
    s.login("ann")
    s.wait(calls.require_devices())
    assert Channel.PHONE in s.router.agents["ann"].unreachable
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert s.router.tasks[task.id].state is TaskState.QUEUED  # no phone: no offer
    s.wait(calls.register("ann", "sip:ann@127.0.0.1:5071", 60, "udp:127.0.0.1:5071", "r1", 1))
    assert s.router.tasks[task.id].state is TaskState.OFFERED
    assert calls.binding("ann").contact == "sip:ann@127.0.0.1:5071"
    assert s.wait(calls.phones.list_bindings())[0].agent_id == "ann"
    s.advance(61)
    assert calls.binding("ann") is None
    assert Channel.PHONE in s.router.agents["ann"].unreachable
    assert s.router.tasks[task.id].state is TaskState.QUEUED  # the ringing offer withdrawn
    assert s.wait(calls.phones.list_bindings()) == []


def test_an_agent_added_after_devices_are_required_needs_a_phone_too(s: Stack) -> None:
    calls = calls_for(s)
    s.wait(calls.require_devices())
    s.put_agent("carl", 7)  # live, e.g. by a supervisor
    with_phone(s, calls, "carl", user="carl")
    s.login("carl")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert s.router.tasks[task.id].state is TaskState.QUEUED
    s.wait(calls.register("carl", "sip:carl@h:1", 60, "udp:h:1", "r1", 1))
    assert s.last_offer("carl").task_id == task.id
    s.put_agent("dora", 7)  # a PBX agent: reachable once the PBX reports her extension
    with_phone(s, calls, "dora", extension="1004")
    assert Channel.PHONE in s.router.agents["dora"].unreachable
    s.wait(calls.device("dora", engaged=False))
    assert Channel.PHONE not in s.router.agents["dora"].unreachable


def test_agents_without_a_phone_account_take_no_calls_once_devices_are_required(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("robot", 7)
    s.login("robot")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert s.router.tasks[task.id].state is TaskState.OFFERED  # not required yet
    out = s.wait(calls.require_devices())
    assert [e.data["reason"] for e in out.events if e.kind == ev.OFFER_WITHDRAWN] == \
        ["device_unreachable"]
    assert failure_of(calls.register("robot", "sip:x@h", 60, "udp:h:1", "r", 1)).check(
        InvalidValue)


def test_bindings_survive_a_restart_and_expired_ones_are_dropped(s: Stack) -> None:
    phones = MemoryPhones()
    calls = calls_for(s, phones)
    for agent in ("ann", "bob"):
        s.put_agent(agent, 7)
        with_phone(s, calls, agent, user=agent)
    s.wait(calls.register("ann", "sip:ann@h:1", 3600, "udp:h:1", "r1", 1))
    s.wait(calls.register("bob", "sip:bob@h:2", 10, "udp:h:2", "r2", 1))
    calls.stop()
    s.clock.advance(20)  # "down" for 20 s: bob's registration ran out meanwhile
    again = calls_for(s, phones)
    assert [b.agent_id for b in again.bindings()] == ["ann"]
    assert [b.agent_id for b in s.wait(phones.list_bindings())] == ["ann"]
    assert again.account("bob").agent_id == "bob"


def test_pbx_device_state_busy_and_unreachable(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    with_phone(s, calls, "ann", extension="1001")
    assert calls.agent_by_extension("1001") == "ann"
    s.login("ann")
    s.wait(calls.require_devices())
    assert Channel.PHONE not in s.router.agents["ann"].unreachable  # CTI-only: reachable
    s.wait(calls.device("ann", engaged=True))
    assert s.router.agents["ann"].presence() is Presence.BUSY
    task = s.wait(calls.arrived("c1", CALLER, "support", source="cti"))
    assert s.router.tasks[task.id].state is TaskState.QUEUED
    s.wait(calls.device("ann", engaged=False))
    assert s.router.tasks[task.id].state is TaskState.OFFERED
    s.wait(calls.device("ann", reachable=False))
    assert s.router.tasks[task.id].state is TaskState.QUEUED
    assert failure_of(calls.device("nobody", engaged=True)).check(InvalidValue)
