"""Sessions: what agents do. Refusals come back as failed Deferreds carrying the DomainError;
accepted actions fire with the committed outcome."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import (
    Forbidden,
    IllegalTransition,
    InvalidValue,
    NotEligible,
    OfferNotCurrent,
    UnknownAgent,
)
from dispatcher.domain.queues import Mode
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.calls import AnswerOnPhone
from dispatcher.service.sessions import GRACE_REQUEUE_REASON, Absences
from tests.dispatcher.service.stacks import (
    PHONE_OFFER_TIMEOUT,
    build_stack,
    failure_of,
    result,
    support_queue,
)


@pytest.fixture
def two(stack):
    """ann and bob logged in, one call offered to ann."""
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    stack.clock.advance(1)
    stack.login("bob")
    stack.task = stack.call()
    stack.offer = stack.last_offer("ann")
    return stack


def test_accept_assigns_the_task(two):
    outcome = result(two.sessions.accept("ann", two.offer.id))
    assert [e.kind for e in outcome.events][:2] == [ev.OFFER_ACCEPTED, ev.TASK_ASSIGNED]
    assert two.router.tasks[two.task.id].state is TaskState.ASSIGNED
    assert two.queries.agent_presence()["ann"] == "busy"


def test_a_late_accept_fails_with_offer_not_current(two):
    two.clock.advance(PHONE_OFFER_TIMEOUT)  # expired: now offered to bob
    f = failure_of(two.sessions.accept("ann", two.offer.id))
    assert f.check(OfferNotCurrent)
    assert f.value.code == "offer_not_current"
    t = two.router.tasks[two.task.id]
    assert (t.state, t.agent_id) == (TaskState.OFFERED, "bob")


def test_accepting_someone_elses_offer_is_forbidden(two):
    f = failure_of(two.sessions.accept("bob", two.offer.id))
    assert f.check(Forbidden)
    assert two.router.tasks[two.task.id].agent_id == "ann"
    f = failure_of(two.sessions.reject("bob", two.offer.id))
    assert f.check(Forbidden)


def test_completing_someone_elses_task_is_forbidden(two):
    result(two.sessions.accept("ann", two.offer.id))
    assert failure_of(two.sessions.complete("bob", two.task.id)).check(Forbidden)
    assert failure_of(two.sessions.wrap_up("bob", two.task.id)).check(Forbidden)
    assert two.router.tasks[two.task.id].state is TaskState.ASSIGNED


@pytest.mark.parametrize("status", ["dancing", "", "BUSY"])
def test_an_unknown_status_fails_with_invalid_value(two, status):
    f = failure_of(two.sessions.set_status("ann", status))
    assert f.check(InvalidValue)
    assert two.router.agents["ann"].status is Presence.AVAILABLE


@pytest.mark.parametrize("status", [Presence.BUSY, Presence.WRAP_UP, Presence.NOT_RESPONDING])
def test_derived_statuses_cannot_be_chosen(two, status):
    assert failure_of(two.sessions.set_status("ann", status)).check(InvalidValue)


def test_an_unknown_agent_fails(two):
    assert failure_of(two.sessions.login("nobody")).check(UnknownAgent)


def test_a_break_withdraws_the_pending_offer(two):
    outcome = result(two.sessions.set_status("ann", "break", reason="lunch"))
    assert [o.id for o in outcome.ended] == [two.offer.id]
    assert two.router.agents["ann"].break_reason == "lunch"
    assert two.router.tasks[two.task.id].agent_id == "bob"
    assert failure_of(two.sessions.accept("ann", two.offer.id)).check(OfferNotCurrent)
    two.clock.advance(PHONE_OFFER_TIMEOUT * 0.9)
    assert two.router.agents["ann"].status is Presence.BREAK, "a withdrawn offer expired"


def test_logout_returns_assigned_work_to_the_queue(two):
    result(two.sessions.accept("ann", two.offer.id))
    result(two.sessions.logout("ann"))
    t = two.router.tasks[two.task.id]
    assert (t.state, t.agent_id) == (TaskState.OFFERED, "bob")
    assert t.created_at == two.task.created_at
    assert "ann" not in two.queries.agent_presence()


def test_a_dropped_connection_counts_as_expiry(two):
    result(two.sessions.drop(two.offer.id))
    assert two.router.agents["ann"].status is Presence.NOT_RESPONDING
    assert two.router.tasks[two.task.id].agent_id == "bob"
    [expired] = [e for e in two.events(two.task.id) if e.kind == ev.OFFER_EXPIRED]
    assert expired.data["reason"] == "disconnected"
    before = len(two.heard)
    two.clock.advance(PHONE_OFFER_TIMEOUT)  # ann's old timer must not fire again
    assert all(o.agent_id != "ann" for h in two.heard[before:] for o in h.offers)


def test_not_responding_agent_is_back_after_choosing_available(two):
    two.clock.advance(PHONE_OFFER_TIMEOUT)
    assert two.router.agents["ann"].status is Presence.NOT_RESPONDING
    second = two.call()
    assert two.router.tasks[second.id].state is TaskState.QUEUED
    two.login("ann")
    assert two.last_offer("ann").task_id == second.id


def test_requeue_cancel_and_abandon(two):
    result(two.sessions.accept("ann", two.offer.id))
    result(two.sessions.requeue(two.task.id, "supervisor", "supervisor:sue"))
    assert two.router.tasks[two.task.id].agent_id == "bob"
    result(two.sessions.cancel(two.task.id, "duplicate", "supervisor:sue"))
    assert two.task.id not in two.router.tasks
    waiting = two.call()  # ann is free again and takes it
    result(two.sessions.abandon(waiting.id))
    states = {t.id: t.state for t in result(two.store.list_tasks())}
    assert states == {two.task.id: "cancelled", waiting.id: "abandoned"}
    f = failure_of(two.sessions.cancel(two.task.id, "again", "supervisor:sue"))
    assert f.value.code in ("unknown_task", "illegal_transition")


def test_wrap_up_then_complete(two):
    result(two.sessions.accept("ann", two.offer.id))
    result(two.sessions.wrap_up("ann", two.task.id))
    assert failure_of(two.sessions.wrap_up("ann", two.task.id)).check(IllegalTransition)
    result(two.sessions.complete("ann", two.task.id, "solved"))
    assert two.task.id not in two.router.tasks
    done = [e for e in two.events(two.task.id) if e.kind == ev.TASK_COMPLETED]
    assert done[0].data["disposition"] == "solved"


def test_pick_from_a_pull_queue():
    s = build_stack()
    s.put_queue(support_queue(mode=Mode.PULL))
    s.put_agent("ann", 8)
    s.put_agent("cy", 2)
    s.login("ann")
    s.login("cy")
    mail = result(s.intake.submit(Channel.EMAIL, "support"))
    assert s.router.tasks[mail.id].state is TaskState.QUEUED, "a pull queue offered a task"
    assert failure_of(s.sessions.pick("cy", mail.id)).check(NotEligible)
    result(s.sessions.pick("ann", mail.id))
    t = s.router.tasks[mail.id]
    assert (t.state, t.agent_id) == (TaskState.ASSIGNED, "ann")


# ---------------------------------------------------------------- the desk's rules (the service's)


def test_an_agent_keeps_at_least_one_channel_on(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    f = failure_of(stack.sessions.switch_channels("ann", {"email": False, "phone": False}))
    assert f.check(InvalidValue) and "at least one channel" in str(f.value)
    assert failure_of(stack.sessions.set_channels("ann", [])).check(InvalidValue)
    assert stack.router.agents["ann"].paused == set()
    changed = result(stack.sessions.switch_channels("ann", {"phone": False}))
    assert [e.kind for e in changed.events] == [ev.AGENT_CHANNELS]
    assert stack.router.agents["ann"].paused == {Channel.PHONE}
    # The channels not named keep their state; nothing to change fires with None.
    assert result(stack.sessions.switch_channels("ann", {"email": True})) is None
    f = failure_of(stack.sessions.switch_channels("ann", {"email": False}))
    assert f.check(InvalidValue)  # phone is off already: email is the last one on
    assert failure_of(stack.sessions.switch_channels("nobody", {"email": True})).check(
        UnknownAgent)


def test_a_sip_call_is_accepted_by_the_phone_never_at_the_desk(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call(attributes={"source": "sip"})
    offer = stack.last_offer("ann")
    f = failure_of(stack.sessions.accept_at_desk("ann", offer.id))
    assert f.check(AnswerOnPhone) and f.value.code == "answer_on_phone"
    assert stack.router.tasks[task.id].state is TaskState.OFFERED
    result(stack.sessions.reject("ann", offer.id))
    cti = stack.call(attributes={"source": "cti"})  # a PBX's call: accepted at the desk
    result(stack.sessions.accept_at_desk("ann", stack.last_offer("ann").id))
    assert stack.router.tasks[cti.id].state is TaskState.ASSIGNED


def test_an_agent_transfers_only_a_task_they_hold(two):
    result(two.sessions.accept("ann", two.offer.id))
    f = failure_of(two.sessions.transfer_held("bob", two.task.id, to_agent="bob"))
    assert f.check(Forbidden)
    assert two.router.tasks[two.task.id].agent_id == "ann"
    result(two.sessions.transfer_held("ann", two.task.id, to_agent="bob"))
    transferred = [e for e in two.events(two.task.id) if e.kind == ev.TASK_TRANSFERRED]
    assert transferred and transferred[-1].actor == "agent:ann"


def test_the_grace_period_keeps_work_then_gives_it_back(two):
    absences = Absences(two.sessions, two.clock, grace_seconds=30)
    result(two.sessions.accept("ann", two.offer.id))
    absences.left("ann")
    assert absences.away("ann")
    two.advance(29)
    assert two.router.tasks[two.task.id].agent_id == "ann"  # still theirs
    absences.back("ann")  # came back in time: everything stays
    two.advance(60)
    assert not absences.away("ann") and two.router.tasks[two.task.id].agent_id == "ann"
    absences.left("ann")
    two.advance(30)
    assert not absences.away("ann")
    assert two.router.agents["ann"].status is Presence.OFFLINE
    requeued = [e for e in two.events(two.task.id) if e.kind == ev.TASK_REQUEUED]
    assert requeued and requeued[-1].data.get("reason") == GRACE_REQUEUE_REASON


def test_a_pending_offer_goes_back_at_once_when_the_desk_leaves(two):
    absences = Absences(two.sessions, two.clock, grace_seconds=30)
    absences.left("ann")
    two.settle()
    assert two.router.agents["ann"].status is Presence.NOT_RESPONDING
    assert two.router.tasks[two.task.id].agent_id != "ann"
    absences.stop()
    assert not absences.away("ann")
