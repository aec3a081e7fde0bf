"""The blend as configuration (dispatcher/domain/agents.py `interruptions`, routing.py
`matrix_of`, `set_reserve`): an agent's own interruption matrix, and the reserve of agents a
queue keeps for its calls while they are at risk."""

from __future__ import annotations

import pytest

from dispatcher.domain.agents import DEFAULT_INTERRUPTIONS, Agent, Presence, interruptions
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.explanations import explain_in_words
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel, Task
from tests.dispatcher.domain.test_routing import check, offers

T0 = 1_000_000.0
PHONE, EMAIL = Channel.PHONE, Channel.EMAIL
NO_CALLS_ON_MAIL = interruptions("email:email; phone:")


def task(task_id: str, channel: Channel, queue: str, at: float = T0) -> Task:
    return Task(task_id, channel, queue, None, at)


def test_the_settings_text_and_the_json_form():
    assert interruptions("email:email,phone; phone:") == DEFAULT_INTERRUPTIONS
    assert interruptions({"email": ["email", "phone"], "phone": []}) == DEFAULT_INTERRUPTIONS
    assert DEFAULT_INTERRUPTIONS.text() == "email:email,phone; phone:"
    assert interruptions(DEFAULT_INTERRUPTIONS.as_dict()) == DEFAULT_INTERRUPTIONS
    assert interruptions("phone:email").as_dict() == {"email": [], "phone": ["email"]}
    for bad in ("email", "fax:email", "email:fax", 5, {"email": "phone"}):
        with pytest.raises(InvalidValue):
            interruptions(bad)


def test_an_agent_s_own_matrix_keeps_calls_off_their_e_mail():
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_agent(Agent("steady", queues={"q"}, interruptions=NO_CALLS_ON_MAIL), T0)
    r.put_agent(Agent("blend", queues={"q"}), T0)
    check(r.set_status("steady", Presence.AVAILABLE, T0))
    check(r.set_status("blend", Presence.AVAILABLE, T0 + 1))
    for n, aid in enumerate(("steady", "blend")):
        out = check(r.submit(task(f"m{n}", EMAIL, "q", T0 + 2 + n), T0 + 2 + n))
        assert offers(out) == [(f"m{n}", aid)]
        check(r.accept(aid, r.tasks[f"m{n}"].offer_id, T0 + 2 + n))
    # Both hold an e-mail; steady idles longest, but their blend lets no call in.
    assert offers(r.submit(task("c1", PHONE, "q", T0 + 5), T0 + 5)) == [("c1", "blend")]
    assert r.matrix_of(r.agents["steady"]) is NO_CALLS_ON_MAIL
    assert r.agents["steady"].presence(r.matrix_of(r.agents["steady"])) is Presence.AVAILABLE


def reserving_centre(reserve: int = 1) -> Router:
    r = Router()
    r.put_queue(Queue("calls", reserve=reserve), T0)
    r.put_queue(Queue("mail"), T0)
    for i, aid in enumerate(("ann", "bob", "cy")):
        r.put_agent(Agent(aid, queues={"calls", "mail"}), T0)
        check(r.set_status(aid, Presence.AVAILABLE, T0 + i))
    # The call buckets exist once a call was seen: one call, answered and done.
    check(r.submit(task("c0", PHONE, "calls", T0 + 3), T0 + 3))
    check(r.accept("ann", r.tasks["c0"].offer_id, T0 + 3))
    check(r.complete("ann", "c0", T0 + 4))
    return r


def test_while_calls_are_at_risk_e_mail_leaves_the_reserve_free():
    r = reserving_centre(reserve=2)
    check(r.set_reserve("calls", True, T0 + 5))
    # Three free: one may take e-mail, two stay for calls.
    assert offers(r.submit(task("m1", EMAIL, "mail", T0 + 6), T0 + 6)) == [("m1", "bob")]
    out = check(r.submit(task("m2", EMAIL, "mail", T0 + 7), T0 + 7))
    assert offers(out) == []
    # A call still goes to the reserve at once.
    assert offers(r.submit(task("c1", PHONE, "calls", T0 + 8), T0 + 8)) == [("c1", "cy")]
    # Calls no longer at risk: the free agent is served the waiting e-mail.
    out = check(r.set_reserve("calls", False, T0 + 9))
    assert offers(out) == [("m2", "ann")]


def test_an_agent_freed_while_reserving_is_not_given_e_mail():
    r = reserving_centre(reserve=1)
    check(r.set_status("bob", Presence.OFFLINE, T0 + 5))
    check(r.set_status("cy", Presence.OFFLINE, T0 + 5))
    check(r.set_reserve("calls", True, T0 + 6))
    assert offers(r.submit(task("m1", EMAIL, "mail", T0 + 7), T0 + 7)) == []  # ann is the reserve
    out = check(r.set_status("bob", Presence.AVAILABLE, T0 + 8))
    assert offers(out) == [("m1", "bob")]  # ann stays free for calls


def test_no_reserve_is_kept_by_a_queue_that_keeps_none_or_for_e_mail_only_agents():
    r = reserving_centre(reserve=0)
    check(r.set_reserve("calls", True, T0 + 5))
    assert r.reserving == set()
    r2 = reserving_centre(reserve=3)
    r2.put_agent(Agent("dee", queues={"calls", "mail"}, channels={EMAIL}), T0)
    check(r2.set_status("dee", Presence.AVAILABLE, T0 + 5))
    check(r2.set_reserve("calls", True, T0 + 6))
    # ann, bob, cy are the reserve; dee takes no calls and may take e-mail.
    assert offers(r2.submit(task("m1", EMAIL, "mail", T0 + 7), T0 + 7)) == [("m1", "dee")]


def test_a_reserve_must_be_a_count():
    for bad in (-1, True, 1.5):
        with pytest.raises(InvalidValue):
            Queue("q", reserve=bad)


def test_the_explanation_names_the_agents_kept_for_calls():
    r = reserving_centre(reserve=3)
    r.put_agent(Agent("dee", queues={"calls", "mail"}, channels={EMAIL}), T0)
    check(r.set_status("dee", Presence.AVAILABLE, T0 + 5))
    check(r.set_reserve("calls", True, T0 + 6))
    out = r.submit(task("m1", EMAIL, "mail", T0 + 7), T0 + 7)
    (why,) = [e.data["explanation"] for e in out.events if e.kind == "task.offered"]
    assert why["offered"] == "dee"  # the last free in the order, the only one not kept
    kept = {"ann": "kept_for_calls", "bob": "kept_for_calls", "cy": "kept_for_calls"}
    assert why["skipped"] == kept
    assert {p["agent"]: p["reason"] for p in why["passed"][:3]} == kept
    assert why["counts"]["more_available"] == 0
    assert "bob kept free for calls (the call queue's reserve)" in explain_in_words(why)
