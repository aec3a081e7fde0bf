"""Calls.refused(busy=True) (a phone's 486, issue 18 item 3): the refusal and the phone engaged
in one decision, so no other call is offered to the agent meanwhile; e-mail offers follow the
agent's interruption matrix as for a PBX's `device.state` busy; `device(engaged=False)` frees
them. MemoryStore and a Clock."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence, interruptions
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.supervision import Supervision
from tests.dispatcher.service.stacks import Stack, calls_for, support_stack

CALLER = "+3225550100"


@pytest.fixture
def s() -> Stack:
    return support_stack()


def test_a_busy_refusal_keeps_other_calls_and_mail_away_by_default(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    first = s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    second = s.wait(calls.arrived("c2", CALLER, "support", source="sip"))
    assert s.router.tasks[first.id].agent_id == "ann"
    out = s.wait(calls.refused("c1", "ann", "busy", busy=True))
    kinds = [e.kind for e in out.events]
    assert ev.OFFER_REJECTED in kinds and kinds.count(ev.AGENT_DEVICE) == 1
    assert not [o for o in out.offers if o.agent_id == "ann"]  # c2 did not ring her
    assert Channel.PHONE in s.router.agents["ann"].engaged
    assert s.router.agents["ann"].presence() is Presence.BUSY  # what supervisors see
    assert s.router.tasks[second.id].state is TaskState.QUEUED
    board = Supervision(s.router, s.clock).state()  # what the wallboard says
    (ann,) = [a for a in board.agents if a.id == "ann"]
    assert ann.presence == "busy"
    (phone,) = [q for q in board.queues if q.queue == "support" and q.channel == "phone"]
    assert phone.hint == "The one agent who could take it is occupied: 1 on a call outside " \
        "routing"
    mail = s.wait(s.intake.submit(Channel.EMAIL, "support"))
    assert s.router.tasks[mail.id].state is TaskState.QUEUED  # on a call: nothing else
    s.wait(calls.device("ann", engaged=False))
    assert s.router.agents["ann"].offer_task_id in (second.id, mail.id)
    assert "ann" in s.router.declined[first.id]  # never offered c1 again


def test_a_busy_refusal_lets_mail_through_when_the_matrix_allows(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7, interruptions=interruptions("email:email,phone; phone:email"))
    s.login("ann")
    s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    s.wait(calls.refused("c1", "ann", "busy", busy=True))
    mail = s.wait(s.intake.submit(Channel.EMAIL, "support"))
    assert s.router.tasks[mail.id].state is TaskState.OFFERED
    assert s.router.tasks[mail.id].agent_id == "ann"


def test_a_plain_refusal_engages_nothing(s: Stack) -> None:
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    s.wait(calls.arrived("c1", CALLER, "support", source="sip"))
    s.wait(calls.refused("c1", "ann", "declined"))
    assert s.router.agents["ann"].engaged == set()
