"""The blend's reserve, decided (dispatcher/service/blending.py) on the real service layer and
router with a virtual clock: a queue's calls fall behind its target, the service turns its
reserve on and e-mail leaves agents free for calls; the calls catch up, the reserve goes off
and the waiting e-mail is offered."""

from __future__ import annotations

from dispatcher.domain.agents import Presence
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.blending import AT_RISK_SHARE, MIN_CALLS, TICK, Blending
from tests.dispatcher.service.stacks import build_stack

TARGET = 20.0


def centre():
    s = build_stack()
    s.put_queue(Queue("calls", reserve=1, sl_target={Channel.PHONE: TARGET,
                                                      Channel.EMAIL: 86400.0}))
    s.put_queue(Queue("mail"))
    for aid in ("a1", "a2"):
        s.put_agent(aid, 0, queues=("calls", "mail"))
    blending = Blending(s.router, s.assignment, s.clock)
    s.assignment.listen(blending.on_outcome)
    blending.start()
    return s, blending


def answer_and_finish(s, agent_id: str) -> None:
    offer = s.last_offer(agent_id)
    s.wait(s.sessions.accept(agent_id, offer.id))
    s.wait(s.sessions.complete(agent_id, offer.task_id, "done"))
    s.settle()


def test_late_calls_turn_the_reserve_on_and_timely_ones_off():
    s, blending = centre()
    for _ in range(MIN_CALLS):  # nobody signed in: each call waits past its target
        s.call("calls")
        s.advance(TARGET + 1)
        s.login("a1")
        answer_and_finish(s, "a1")
        s.wait(s.sessions.set_status("a1", Presence.OFFLINE))
        s.settle()
    s.advance(TICK)
    assert s.router.reserving == {"calls"}
    s.login("a1")
    s.login("a2")
    first = s.wait(s.intake.submit(Channel.EMAIL, "mail"))
    s.settle()
    second = s.wait(s.intake.submit(Channel.EMAIL, "mail"))
    s.settle()
    offered = {o.task_id for o in s.offers_made()}
    assert first.id in offered and second.id not in offered  # one of the two stays free
    # Calls answered at once bring the recent share up: the reserve goes and mail flows.
    free = next(a for a in ("a1", "a2") if s.router.agents[a].offer_id is None)
    for _ in range(4 * MIN_CALLS):
        s.call("calls")
        answer_and_finish(s, free)
    s.advance(TICK)
    assert s.router.reserving == set()
    assert second.id in {o.task_id for o in s.offers_made()}


def test_a_call_waiting_half_its_target_is_a_risk_at_once():
    s, blending = centre()
    s.call("calls")
    s.advance(AT_RISK_SHARE * TARGET - 1)
    assert not blending.at_risk("calls", s.clock.seconds())
    s.advance(TICK)
    assert blending.at_risk("calls", s.clock.seconds())
    assert s.router.reserving == {"calls"}
    blending.stop()
