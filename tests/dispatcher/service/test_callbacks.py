"""Tests of dispatcher.service.callbacks: web/API callbacks in the queue with their window's
age, held aside until the window opens; attempts, retries and the end as not reached; the
number joining the customer's identities. MemoryStore and a Clock, the real Router."""

from __future__ import annotations

import pytest

from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.calls import Calls
from dispatcher.service.intake import email_identity, phone_identity
from tests.dispatcher.service import stacks
from tests.dispatcher.service.stacks import (
    Stack,
    build_stack,
    failure_of,
    support_queue,
    support_stack,
)

NUMBER = "+32 2 555 01 99"
DIGITS = "+3225550199"


@pytest.fixture
def s() -> Stack:
    return support_stack()


def calls_for(s: Stack) -> Calls:
    calls = stacks.calls_for(s)
    calls.callbacks.configure(attempts=2, retry_delay=300)
    return calls


def test_a_web_callback_waits_aside_until_its_window_then_with_the_window_age(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    now = s.clock.seconds()
    task = s.wait(calls.callbacks.request(NUMBER, "support", origin="web",
                                          not_before=now + 3600, not_after=now + 7200,
                                          name="Zoé"))
    assert task.created_at == now + 3600 and task.attributes[cb.ATTRIBUTE]["number"] == DIGITS
    assert s.router.tasks[task.id].state is TaskState.QUEUED
    assert not s.offers_made()  # ann is free, but the window is not open
    assert task.id in {t.id for t in s.router.waiting("support")}  # counted as waiting
    # An older call arriving meanwhile is not behind it: the window's start is its age.
    s.advance(3599)
    assert not s.offers_made()
    s.advance(1)
    assert [o.task_id for o in s.offers_made()] == [task.id]
    kinds = s.kinds(task.id)
    assert kinds[:2] == [ev.TASK_CREATED, ev.CALLBACK_REQUESTED]
    created = s.events(task.id)[0]
    assert created.at == now  # logged when it was asked for


def test_the_window_start_orders_callbacks_among_calls(s: Stack) -> None:
    calls = calls_for(s)
    now = s.clock.seconds()
    early = s.wait(calls.arrived("c1", "+3225550100", "support", source="sip"))
    s.advance(60)
    # asked now, window open since... now: it is younger than the call of a minute ago
    web = s.wait(calls.callbacks.request(NUMBER, "support", origin="api"))
    assert web.created_at == now + 60 and early.created_at == now
    s.put_agent("ann", 7)
    s.login("ann")
    assert s.offers_made()[0].task_id == early.id


def test_retries_keep_the_place_then_the_task_ends_not_reached(s: Stack) -> None:
    calls = calls_for(s)
    callbacks = calls.callbacks
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(callbacks.request(NUMBER, "support", origin="api"))
    offer = s.last_offer("ann")
    s.wait(callbacks.agent_answered(task.id, "ann"))  # ann's phone answered: her accept
    assert s.router.tasks[task.id].state is TaskState.ASSIGNED
    assert s.wait(callbacks.dialled(task.id, "ann", "sip"))["attempts"] == 1
    s.wait(callbacks.not_reached(task.id, "ann", "no_answer"))
    t = s.router.tasks[task.id]
    assert t.state is TaskState.QUEUED and t.created_at == task.created_at
    assert s.router.agents["ann"].status.value == "available"
    assert len(s.offers_made()) == 1  # held aside: not offered back at once
    s.advance(299)
    assert len(s.offers_made()) == 1
    s.advance(1)
    assert len(s.offers_made()) == 2 and s.last_offer("ann").id != offer.id
    s.wait(callbacks.agent_answered(task.id, "ann"))
    assert s.wait(callbacks.dialled(task.id, "ann", "sip"))["attempts"] == 2
    s.wait(callbacks.not_reached(task.id, "ann", "busy"))
    assert task.id not in s.router.tasks  # two attempts: over
    kinds = s.kinds(task.id)
    assert kinds.count(ev.CALLBACK_DIALLED) == 2 and kinds.count(ev.CALLBACK_NO_ANSWER) == 2
    assert kinds.count(ev.CALLBACK_RETRY) == 1
    cancelled = [e for e in s.events(task.id) if e.kind == ev.TASK_CANCELLED]
    assert cancelled[0].data["reason"] == cb.NOT_REACHED


def test_reached_then_ended_is_a_call_with_talk_time_and_wrap_up(s: Stack) -> None:
    calls = calls_for(s)
    callbacks = calls.callbacks
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(callbacks.request(NUMBER, "support", origin="api"))
    s.wait(callbacks.agent_answered(task.id, "ann"))
    s.wait(callbacks.dialled(task.id, "ann", "sip"))
    s.advance(12)
    s.wait(callbacks.reached(task.id, "ann"))
    s.advance(100)
    s.wait(callbacks.ended(task.id, "customer"))
    assert s.router.tasks[task.id].state is TaskState.WRAP_UP
    events = s.events(task.id)
    ended = [e for e in events if e.kind == ev.CALL_ENDED][0]
    assert ended.data["talk_seconds"] == 100
    assert [e.kind for e in events].count(ev.CALLBACK_REACHED) == 1


def test_the_number_joins_the_customer_known_by_e_mail(s: Stack) -> None:
    calls = calls_for(s)
    mail = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("zoe@example.org"),
                                  "Zoé"))
    task = s.wait(calls.callbacks.request(NUMBER, "support", origin="api",
                                          email="Zoe@Example.org", name="Zoé"))
    assert task.customer_id == mail.customer_id
    customer = s.wait(s.store.find_customer(phone_identity(DIGITS)))
    assert customer is not None and customer.id == mail.customer_id
    # A later call from that number is the same customer: one history.
    call = s.wait(calls.arrived("c9", DIGITS, "support", source="sip"))
    assert call.customer_id == mail.customer_id
    # A new number and a new address: one new customer with both.
    other = s.wait(calls.callbacks.request("+3225550123", "support", origin="api",
                                           email="new@example.org"))
    found = s.wait(s.store.find_customer(email_identity("new@example.org")))
    assert found is not None and found.id == other.customer_id


def test_a_web_visitor_cannot_tie_a_number_to_a_known_customer(s: Stack) -> None:
    calls = calls_for(s)
    mail = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("zoe@example.org"),
                                  "Zoé"))
    task = s.wait(calls.callbacks.request(NUMBER, "support", origin="web",
                                          email="zoe@example.org", name="Mallory"))
    assert task.customer_id != mail.customer_id  # the number's own (new) card
    zoe = s.wait(s.store.get_customer(mail.customer_id))
    assert phone_identity(DIGITS) not in zoe.identities
    number = s.wait(s.store.find_customer(phone_identity(DIGITS)))
    assert number is not None and number.id == task.customer_id
    assert email_identity("zoe@example.org") not in number.identities
    # Vouched (the form's own mail created the address's customer): the number joins them.
    fresh = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("new@example.org"),
                                   "Nell"))
    joined = s.wait(calls.callbacks.request("+3225550123", "support", origin="web",
                                            email="new@example.org", vouched=True))
    assert joined.customer_id == fresh.customer_id


def test_bad_requests_are_refused(s: Stack) -> None:
    calls = calls_for(s)
    now = s.clock.seconds()
    assert failure_of(calls.callbacks.request("anonymous", "support")).check(cb.NoCallbackNumber)
    assert failure_of(calls.callbacks.request("12", "support")).check(cb.NoCallbackNumber)
    assert failure_of(calls.callbacks.request(NUMBER, "support", not_before=now + 10,
                                              not_after=now + 5)).check(InvalidValue)
    assert failure_of(calls.callbacks.request(NUMBER, "support",
                                              not_after=now - 1)).check(InvalidValue)
    assert failure_of(calls.callbacks.request(NUMBER, "nowhere")).value
    assert failure_of(calls.callbacks.request(NUMBER, "support", origin="ivr")).check(
        InvalidValue)


def test_parked_callbacks_come_back_after_a_restart(s: Stack) -> None:
    calls = calls_for(s)
    now = s.clock.seconds()
    task = s.wait(calls.callbacks.request(NUMBER, "support", origin="web",
                                          not_before=now + 600))
    open_tasks = [t for t in s.router.tasks.values()]
    # A new router restored from the same tasks holds it aside again; a new Calls re-arms.
    s2 = build_stack(store=s.store, start=now + 10)
    s2.put_queue(support_queue())
    s2.router.restore([], [], [t.snapshot() for t in open_tasks], [], now + 10)
    assert task.id in s2.router.parked()
    calls2 = calls_for(s2)
    s2.put_agent("ann", 7)
    s2.login("ann")
    assert not s2.offers_made()
    s2.advance(590)
    assert [o.task_id for o in s2.offers_made()] == [task.id]
    assert calls2.callbacks.task(task.id) is not None


def test_the_reports_count_callbacks_per_queue(s: Stack) -> None:
    from dispatcher.service.reports import Reports

    calls = calls_for(s)
    callbacks = calls.callbacks
    start = s.clock.seconds()
    s.put_agent("ann", 7)
    s.login("ann")
    reached = s.wait(callbacks.request(NUMBER, "support", origin="api"))
    s.wait(callbacks.agent_answered(reached.id, "ann"))
    s.wait(callbacks.dialled(reached.id, "ann", "sip"))
    s.wait(callbacks.reached(reached.id, "ann"))
    s.wait(callbacks.ended(reached.id, "customer"))
    s.wait(s.sessions.complete("ann", reached.id))
    lost = s.wait(callbacks.request("+3225550123", "support", origin="web", attempts=1))
    s.wait(callbacks.agent_answered(lost.id, "ann"))
    s.wait(callbacks.dialled(lost.id, "ann", "sip"))
    s.wait(callbacks.not_reached(lost.id, "ann", "busy"))
    report = s.wait(Reports(s.store, s.store, s.clock).build(start, start + 3600))
    cell = report.figures.cell("queue", "support")
    assert {k: cell.value(k) for k in (
        "callbacks_requested", "callback_attempts", "callbacks_reached", "callback_no_answers",
        "callback_retries", "callbacks_not_reached")} == {
        "callbacks_requested": 2, "callback_attempts": 2, "callbacks_reached": 1,
        "callback_no_answers": 1, "callback_retries": None, "callbacks_not_reached": 1}


def test_a_callback_still_waiting_when_its_window_ends_is_not_reached(s: Stack) -> None:
    calls = calls_for(s)
    now = s.clock.seconds()
    task = s.wait(calls.callbacks.request(NUMBER, "support", origin="web",
                                          not_before=now + 60, not_after=now + 600))
    s.advance(599)
    assert s.router.tasks[task.id].state is TaskState.QUEUED  # nobody to take it
    s.advance(1)
    assert task.id not in s.router.tasks
    events = s.events(task.id)
    final = [e for e in events if e.kind == ev.CALLBACK_NO_ANSWER][0]
    assert final.data["reason"] == "window_over" and final.data["final"] is True
    assert [e.data["reason"] for e in events if e.kind == ev.TASK_CANCELLED] == \
        [cb.NOT_REACHED]


def test_a_restart_puts_back_the_callbacks_the_sip_dialer_was_making(s: Stack) -> None:
    from dispatcher.service.calls import make_account

    calls = calls_for(s)
    s.wait(calls.phones.put_phone_account(make_account("ann", "ann", "pw")))
    calls._remember(make_account("ann", "ann", "pw"))
    s.put_agent("ann", 7)
    s.login("ann")
    dialling = s.wait(calls.callbacks.request(NUMBER, "support", origin="api"))
    s.wait(calls.callbacks.agent_answered(dialling.id, "ann"))
    s.wait(calls.callbacks.dialled(dialling.id, "ann", "sip"))
    open_tasks = [t.snapshot() for t in s.router.tasks.values()]
    s2 = build_stack(store=s.store, start=s.clock.seconds() + 5)
    s2.put_queue(support_queue())
    s2.put_agent("ann", 7)
    s2.router.restore([], [], open_tasks, [], s2.clock.seconds())
    calls2 = Calls(s2.assignment, s2.intake, calls.phones)
    s2.wait(calls2.start())
    t = s2.router.tasks[dialling.id]
    assert t.state is TaskState.QUEUED and t.created_at == dialling.created_at
    requeued = [e for e in s2.events(dialling.id) if e.kind == ev.TASK_REQUEUED]
    assert requeued[-1].data["reason"] == "dialer_restarted"
