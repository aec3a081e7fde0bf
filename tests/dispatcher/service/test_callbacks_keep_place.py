"""Tests of `Calls.keep_place` (issue 18, item 2): a queued caller who asks to be called back
keeps their call's place (queue, arrival) as a callback task to their number, and the end of
their SIP dialog abandons nothing. MemoryStore and a Clock."""

from __future__ import annotations

import pytest

from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev
from dispatcher.domain.errors import OfferNotCurrent
from dispatcher.domain.tasks import TaskState
from tests.dispatcher.service.stacks import Stack, calls_for, failure_of, support_stack

CALLER = "+3225550100"


@pytest.fixture
def s() -> Stack:
    return support_stack()


def test_keep_place_keeps_queue_and_arrival_and_the_hang_up_abandons_nothing(s: Stack) -> None:
    calls = calls_for(s)
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    arrived = task.created_at
    s.advance(95)
    kept = s.wait(calls.keep_place("c1"))
    assert kept.id == task.id and kept.queue == "support" and kept.created_at == arrived
    assert kept.state is TaskState.QUEUED
    assert kept.attributes["source"] == cb.SOURCE
    request = kept.attributes[cb.ATTRIBUTE]
    assert request["number"] == CALLER and request["origin"] == "ivr"
    assert request["attempts"] == 0 and request["call_id"] == "c1"
    assert calls.call_id(task.id) is None  # the SIP edge rings no phone with the dialog
    events = s.events(task.id)
    requested = [e for e in events if e.kind == ev.CALLBACK_REQUESTED]
    assert len(requested) == 1 and requested[0].data["kept"] is True
    assert requested[0].data["waited"] == 95
    # The caller hangs up (their dialog ends; the edge reports it as usual): nothing abandoned.
    s.wait(calls.ended("c1", "caller"))
    s.wait(calls.abandoned("c1", "caller_cancel"))
    assert s.router.tasks[task.id].state is TaskState.QUEUED
    assert ev.TASK_ABANDONED not in s.kinds(task.id)
    # Stored as such: the committed row carries the callback.
    stored = s.wait(s.store.get_task(task.id))
    assert stored.attributes[cb.ATTRIBUTE]["number"] == CALLER
    # Asked again (a repeated digit): the same task, one request in the log.
    assert s.wait(calls.keep_place("c1")).id == task.id
    assert s.kinds(task.id).count(ev.CALLBACK_REQUESTED) == 1


def test_keep_place_while_offered_takes_the_offer_back_without_blame(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    assert s.router.tasks[task.id].state is TaskState.OFFERED
    first_offer = s.router.tasks[task.id].offer_id
    s.wait(calls.keep_place("c1"))
    kinds = s.kinds(task.id)
    assert ev.OFFER_WITHDRAWN in kinds and ev.OFFER_EXPIRED not in kinds
    # Placed again at once: offered to ann again, now as a callback (a new offer).
    now = s.router.tasks[task.id]
    assert now.state is TaskState.OFFERED and now.offer_id != first_offer
    assert s.router.agents["ann"].status.value == "available"


def test_keep_place_is_refused_for_anonymous_callers_and_calls_not_waiting(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    s.wait(calls.arrived("c2", CALLER, "support", source="sip"))
    s.wait(calls.answered("c2", "ann"))
    failure = failure_of(calls.keep_place("c2"))
    assert failure.check(cb.CallNotWaiting) and failure.value.state == "assigned"
    s.wait(calls.arrived("anon", "anonymous", "support", source="sip"))
    assert failure_of(calls.keep_place("anon")).check(cb.NoCallbackNumber)
    assert failure_of(calls.keep_place("never-seen")).check(cb.CallNotWaiting)


def test_the_old_dialog_cannot_answer_a_kept_place(s: Stack) -> None:
    """A phone that answers the caller's proxied INVITE after the caller kept their place (the
    race with its CANCEL) accepts nothing: the edge then hangs that leg up."""
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    s.wait(calls.keep_place("c1"))
    assert s.router.tasks[task.id].state is TaskState.OFFERED  # offered again, as a callback
    assert failure_of(calls.answered("c1", "ann")).check(OfferNotCurrent)
    assert s.router.tasks[task.id].state is TaskState.OFFERED
