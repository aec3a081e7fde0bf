"""Tests of dispatcher.domain.routing: every rule the router enforces, one scenario each.

Time is passed explicitly (`now`); nothing sleeps. Every outcome goes through `check()`, which
asserts that each TASK_OFFERED event carries a complete explanation.
"""

from __future__ import annotations

import json

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import (
    DuplicateTask,
    Forbidden,
    IllegalTransition,
    InvalidValue,
    NotEligible,
    OfferNotCurrent,
    UnknownAgent,
    UnknownQueue,
    UnknownTask,
)
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, Task, TaskState

T0 = 1_000_000.0
PHONE, EMAIL = Channel.PHONE, Channel.EMAIL
AVAILABLE, OFFLINE, BREAK = Presence.AVAILABLE, Presence.OFFLINE, Presence.BREAK
EXPLANATION_KEYS = {"rule", "requirement", "eligible", "available", "skipped", "offered",
                    "passed", "counts"}


# ---------------------------------------------------------------- helpers


def check(out: Outcome) -> Outcome:
    """Every offer explains itself; every offer in `offers` has its TASK_OFFERED event."""
    offered = [e for e in out.events if e.kind == ev.TASK_OFFERED]
    for e in offered:
        why = e.data["explanation"]
        assert set(why) >= EXPLANATION_KEYS, why
        assert isinstance(why["eligible"], int) and isinstance(why["available"], int)
        assert why["eligible"] >= 1 and why["available"] >= 1
        assert e.data["offer_id"] and e.agent_id
        assert why["offered"] == e.agent_id and e.agent_id not in [p["agent"]
                                                                    for p in why["passed"]]
    assert [e.data["offer_id"] for e in offered] == [o.id for o in out.offers]
    return out


def offers(out: Outcome) -> list[tuple[str, str]]:
    """(task id, agent id) of each offer made, in order."""
    return [(o.task_id, o.agent_id) for o in check(out).offers]


def kinds(out: Outcome) -> list[str]:
    return [e.kind for e in out.events]


def events_of(out: Outcome, kind: str) -> list[ev.Event]:
    return [e for e in out.events if e.kind == kind]


def make_router(*queues: Queue) -> Router:
    r = Router()
    for q in queues or (Queue("sales"),):
        r.put_queue(q, T0)
    return r


def add_agent(r: Router, agent_id: str, queues=("sales",), skills=None, status=AVAILABLE,
              idle_since: float = T0, now: float = T0, **kw) -> Outcome:
    return check(r.put_agent(Agent(id=agent_id, skills=dict(skills or {}), queues=set(queues),
                                   status=status, idle_since=idle_since, **kw), now))


def new_task(task_id: str, channel: Channel = PHONE, queue: str = "sales", at: float = T0,
             priority: int = 0, skills=None, deadline: float | None = None) -> Task:
    return Task(id=task_id, channel=channel, queue=queue, customer_id=None, created_at=at,
                base_skills=dict(skills or {}), priority=priority, deadline=deadline)


def submit(r: Router, task_id: str, now: float | None = None, **kw) -> Outcome:
    at = kw.pop("at", T0 if now is None else now)
    return check(r.submit(new_task(task_id, at=at, **kw), at if now is None else now))


def offer_of(r: Router, agent_id: str) -> str:
    oid = r.agents[agent_id].offer_id
    assert oid is not None, f"{agent_id} has no offer"
    return oid


def take(r: Router, agent_id: str, now: float = T0) -> tuple[str, Outcome]:
    """The agent accepts their pending offer; returns the task id and the outcome."""
    oid = offer_of(r, agent_id)
    task_id = r.offers[oid].task_id
    return task_id, check(r.accept(agent_id, oid, now))


def serve_order(r: Router, agent_id: str, n: int, now: float = T0) -> list[str]:
    """The order in which the agent receives tasks when they take and finish one at a time."""
    order = []
    for i in range(n):
        task_id, _ = take(r, agent_id, now + i)
        order.append(task_id)
        check(r.complete(agent_id, task_id, now + i + 0.5))
    return order


# ---------------------------------------------------------------- basics


def test_a_new_task_is_offered_to_an_available_agent():
    r = make_router()
    add_agent(r, "a1")
    out = submit(r, "t1")
    assert offers(out) == [("t1", "a1")]
    assert kinds(out) == [ev.TASK_QUEUED, ev.TASK_OFFERED]
    task = r.tasks["t1"]
    assert task.state is TaskState.OFFERED
    assert task.agent_id == "a1" and task.offer_id == out.offers[0].id
    assert out.offers[0].expires_at == T0 + 20.0  # phone offer timeout
    assert out.tasks["t1"] is task


def test_a_new_task_waits_when_nobody_is_available():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    out = submit(r, "t1")
    assert offers(out) == []
    assert r.tasks["t1"].state is TaskState.QUEUED
    assert [t.id for t in r.waiting("sales")] == ["t1"]
    out = check(r.set_status("a1", AVAILABLE, T0 + 1))
    assert offers(out) == [("t1", "a1")]
    assert list(r.waiting("sales")) == []


def test_email_offer_uses_the_email_timeout():
    r = make_router()
    add_agent(r, "a1")
    out = submit(r, "e1", channel=EMAIL)
    assert out.offers[0].expires_at == T0 + 60.0


def test_submit_errors():
    r = make_router()
    submit(r, "t1")
    with pytest.raises(DuplicateTask):
        submit(r, "t1")
    with pytest.raises(UnknownQueue):
        submit(r, "t2", queue="nope")
    with pytest.raises(UnknownQueue):
        add_agent(r, "a1", queues=("nope",))
    with pytest.raises(UnknownAgent):
        r.set_status("ghost", AVAILABLE, T0)
    with pytest.raises(UnknownTask):
        r.cancel("ghost", T0, "x")


def test_an_agent_cannot_choose_a_derived_status():
    r = make_router()
    add_agent(r, "a1")
    for status in (Presence.BUSY, Presence.WRAP_UP, Presence.NOT_RESPONDING):
        with pytest.raises(InvalidValue):
            r.set_status("a1", status, T0)


def test_a_task_goes_only_to_members_with_the_skills():
    r = make_router(Queue("sales"), Queue("support"))
    add_agent(r, "other_queue", queues=("support",), skills={"fr": 9}, idle_since=T0 - 100)
    add_agent(r, "low_skill", skills={"fr": 4}, idle_since=T0 - 50)
    add_agent(r, "good", skills={"fr": 5})
    assert offers(submit(r, "t1", skills={"fr": 5})) == [("t1", "good")]


# ---------------------------------------------------------------- capacity and interruptions


def test_capacity_three_emails_then_no_fourth():
    r = make_router()
    add_agent(r, "a1")
    for i in range(3):
        assert offers(submit(r, f"e{i}", channel=EMAIL, at=T0 + i)) == [(f"e{i}", "a1")]
        take(r, "a1", T0 + i)
    assert r.agents["a1"].count(EMAIL) == 3
    assert offers(submit(r, "e3", channel=EMAIL, at=T0 + 5)) == []
    assert r.tasks["e3"].state is TaskState.QUEUED
    # Finishing one frees a slot: the waiting e-mail comes at once.
    out = check(r.complete("a1", "e0", T0 + 6))
    assert offers(out) == [("e3", "a1")]


def test_accepting_an_email_offers_the_next_waiting_email_at_once():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    for i in range(4):
        submit(r, f"e{i}", channel=EMAIL, at=T0 + i)
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 10))) == [("e0", "a1")]
    _, out = take(r, "a1", T0 + 11)
    assert offers(out) == [("e1", "a1")]
    _, out = take(r, "a1", T0 + 12)
    assert offers(out) == [("e2", "a1")]
    _, out = take(r, "a1", T0 + 13)
    assert offers(out) == []  # three e-mails held: no fourth
    assert r.tasks["e3"].state is TaskState.QUEUED


def test_a_call_may_be_offered_to_an_agent_holding_only_emails():
    r = make_router()
    add_agent(r, "a1")
    for i in range(3):
        submit(r, f"e{i}", channel=EMAIL)
        take(r, "a1")
    assert offers(submit(r, "p1", channel=PHONE)) == [("p1", "a1")]
    take(r, "a1")
    assert r.agents["a1"].held == {"e0": EMAIL, "e1": EMAIL, "e2": EMAIL, "p1": PHONE}


def test_an_agent_on_a_call_is_offered_nothing_else():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "p1", channel=PHONE)
    take(r, "a1")
    assert offers(submit(r, "e1", channel=EMAIL)) == []
    assert offers(submit(r, "p2", channel=PHONE)) == []
    # Once the call is over, the agent gets the best waiting task (the older call first).
    out = check(r.complete("a1", "p1", T0 + 30))
    assert len(out.offers) == 1


def test_an_agent_holding_an_offer_gets_no_second_offer():
    r = make_router()
    add_agent(r, "a1")
    assert offers(submit(r, "e1", channel=EMAIL)) == [("e1", "a1")]
    assert offers(submit(r, "e2", channel=EMAIL)) == []
    assert offers(submit(r, "p1", channel=PHONE)) == []
    assert r.tasks["e2"].state is TaskState.QUEUED
    assert r.tasks["p1"].state is TaskState.QUEUED


def test_an_agent_can_be_limited_to_one_channel():
    r = make_router()
    add_agent(r, "mail_only", channels={EMAIL})
    assert offers(submit(r, "p1", channel=PHONE)) == []
    assert offers(submit(r, "e1", channel=EMAIL)) == [("e1", "mail_only")]


# ---------------------------------------------------------------- ordering


def test_phone_order_is_priority_then_age():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    submit(r, "young_high", at=T0 + 3, priority=5)
    submit(r, "old_low", at=T0 + 1, priority=0)
    submit(r, "oldest_low", at=T0, priority=0)
    submit(r, "old_high", at=T0 + 2, priority=5)
    check(r.set_status("a1", AVAILABLE, T0 + 10))
    assert serve_order(r, "a1", 4, T0 + 10) == ["old_high", "young_high", "oldest_low", "old_low"]


def test_email_order_is_priority_then_earliest_deadline():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE, capacity={PHONE: 1, EMAIL: 1})
    submit(r, "old_late", channel=EMAIL, at=T0, deadline=T0 + 9000)
    submit(r, "young_soon", channel=EMAIL, at=T0 + 5, deadline=T0 + 100)
    submit(r, "young_mid", channel=EMAIL, at=T0 + 6, deadline=T0 + 500)
    submit(r, "urgent_late", channel=EMAIL, at=T0 + 7, deadline=T0 + 9999, priority=3)
    check(r.set_status("a1", AVAILABLE, T0 + 10))
    assert serve_order(r, "a1", 4, T0 + 10) == [
        "urgent_late", "young_soon", "young_mid", "old_late"]


def test_email_without_deadline_is_due_at_arrival_plus_the_queue_target():
    r = make_router(Queue("sales", sl_target={PHONE: 20.0, EMAIL: 1000.0}))
    add_agent(r, "a1", status=OFFLINE, capacity={PHONE: 1, EMAIL: 1})
    submit(r, "no_deadline", channel=EMAIL, at=T0)  # due T0 + 1000
    submit(r, "later_deadline", channel=EMAIL, at=T0 + 1, deadline=T0 + 2000)
    submit(r, "sooner_deadline", channel=EMAIL, at=T0 + 2, deadline=T0 + 500)
    check(r.set_status("a1", AVAILABLE, T0 + 10))
    assert serve_order(r, "a1", 3, T0 + 10) == [
        "sooner_deadline", "no_deadline", "later_deadline"]


def test_one_global_order_across_the_queues_an_agent_serves():
    r = make_router(Queue("sales"), Queue("support"), Queue("vip", priority=10))
    add_agent(r, "a1", queues=("sales", "support", "vip"), status=OFFLINE)
    submit(r, "sales_old", queue="sales", at=T0)
    submit(r, "support_older", queue="support", at=T0 - 5)
    submit(r, "support_high", queue="support", at=T0 + 4, priority=2)
    submit(r, "vip_young", queue="vip", at=T0 + 8)  # queue priority 10 is added
    submit(r, "sales_young", queue="sales", at=T0 + 6)
    check(r.set_status("a1", AVAILABLE, T0 + 10))
    assert serve_order(r, "a1", 5, T0 + 10) == [
        "vip_young", "support_high", "support_older", "sales_old", "sales_young"]


def test_global_order_skips_buckets_the_agent_cannot_take_now():
    r = make_router(Queue("sales"), Queue("support"))
    add_agent(r, "a1", queues=("sales", "support"), status=OFFLINE)
    submit(r, "e1", channel=EMAIL, queue="support", at=T0)
    submit(r, "p_old", channel=PHONE, queue="sales", at=T0 - 100)
    check(r.set_status("a1", AVAILABLE, T0 + 1))
    # The call is due first (arrival + 20 s) and is offered; once on the call, nothing else.
    task_id, out = take(r, "a1", T0 + 1)
    assert task_id == "p_old" and offers(out) == []
    out = check(r.complete("a1", "p_old", T0 + 2))
    assert offers(out) == [("e1", "a1")]


def test_requirement_buckets_of_one_queue_share_the_order():
    r = make_router()
    add_agent(r, "a1", skills={"fr": 5, "de": 5}, status=OFFLINE)
    submit(r, "fr_young", skills={"fr": 5}, at=T0 + 2)
    submit(r, "de_old", skills={"de": 3}, at=T0)
    submit(r, "plain_mid", at=T0 + 1)
    check(r.set_status("a1", AVAILABLE, T0 + 10))
    assert serve_order(r, "a1", 3, T0 + 10) == ["de_old", "plain_mid", "fr_young"]


# ---------------------------------------------------------------- agent choice


def test_longest_idle_agent_is_chosen_by_default():
    r = make_router()
    add_agent(r, "recent", idle_since=T0 - 10)
    add_agent(r, "longest", idle_since=T0 - 300)
    add_agent(r, "middle", idle_since=T0 - 100)
    assert offers(submit(r, "t1", at=T0)) == [("t1", "longest")]
    assert offers(submit(r, "t2", at=T0)) == [("t2", "middle")]
    assert offers(submit(r, "t3", at=T0)) == [("t3", "recent")]


def test_finishing_work_makes_an_agent_the_most_recently_idle():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 300, capacity={PHONE: 1, EMAIL: 3})
    add_agent(r, "a2", idle_since=T0 - 100)
    assert offers(submit(r, "e1", channel=EMAIL, at=T0)) == [("e1", "a1")]
    take(r, "a1", T0 + 1)  # a1 still has e-mail room, but was idle until T0 + 1
    assert offers(submit(r, "e2", channel=EMAIL, at=T0 + 2)) == [("e2", "a2")]


def test_highest_skill_agent_is_chosen_when_the_queue_says_so():
    q = Queue("experts", agent_choice=AgentChoice.HIGHEST_SKILL)
    r = make_router(q)
    add_agent(r, "idle_low", queues=("experts",), skills={"fr": 5}, idle_since=T0 - 900)
    add_agent(r, "best", queues=("experts",), skills={"fr": 9}, idle_since=T0)
    add_agent(r, "good", queues=("experts",), skills={"fr": 7}, idle_since=T0 - 10)
    out = submit(r, "t1", queue="experts", skills={"fr": 5})
    assert offers(out) == [("t1", "best")]
    assert out.events[-1].data["explanation"]["rule"] == "highest_skill"
    assert offers(submit(r, "t2", queue="experts", skills={"fr": 5})) == [("t2", "good")]


def test_highest_skill_ties_go_to_the_longest_idle():
    r = make_router(Queue("experts", agent_choice=AgentChoice.HIGHEST_SKILL))
    add_agent(r, "b", queues=("experts",), skills={"fr": 7}, idle_since=T0 - 10)
    add_agent(r, "a", queues=("experts",), skills={"fr": 7}, idle_since=T0 - 20)
    assert offers(submit(r, "t1", queue="experts", skills={"fr": 5})) == [("t1", "a")]


# ---------------------------------------------------------------- escalation


def escalating_queue(**kw) -> Queue:
    return Queue("sales", steps=(EscalationStep(30, {"fr": 5}), EscalationStep(90, {"fr": None})),
                 **kw)


def test_escalation_relaxes_the_requirement_at_the_step_time():
    r = make_router(escalating_queue())
    add_agent(r, "fr9", skills={"fr": 9}, status=BREAK)  # step 0 is matchable, later
    add_agent(r, "fr6", skills={"fr": 6})
    out = submit(r, "t1", skills={"fr": 8})
    assert offers(out) == [] and ev.TASK_ESCALATED not in kinds(out)
    assert r.step_due("t1") == T0 + 30
    assert check(r.escalate("t1", T0 + 29)).events == []  # not yet due
    out = check(r.escalate("t1", T0 + 30))
    assert offers(out) == [("t1", "fr6")]
    esc = events_of(out, ev.TASK_ESCALATED)[0]
    assert esc.data["step"] == 1 and esc.data["requirement"] == {"fr": 5}
    assert esc.data["skipped_unmatchable"] == []
    task = r.tasks["t1"]
    assert task.step == 1 and task.required_skills == {"fr": 5}
    assert task.step_started_at == T0 + 30
    assert task.created_at == T0
    assert r.step_due("t1") == T0 + 90
    why = events_of(out, ev.TASK_OFFERED)[0].data
    assert why["step"] == 1 and why["explanation"]["requirement"] == {"fr": 5}


def test_several_due_steps_are_applied_at_once():
    r = make_router(escalating_queue())
    add_agent(r, "nobody_fr", skills={"de": 3}, status=OFFLINE)
    add_agent(r, "fr9", skills={"fr": 9}, status=OFFLINE)
    submit(r, "t1", skills={"fr": 8})
    out = check(r.escalate("t1", T0 + 100))
    esc = events_of(out, ev.TASK_ESCALATED)
    assert len(esc) == 1 and esc[0].data["step"] == 2 and esc[0].data["requirement"] == {}
    assert r.step_due("t1") is None
    out = check(r.set_status("nobody_fr", AVAILABLE, T0 + 101))
    assert offers(out) == [("t1", "nobody_fr")]


def test_an_unmatchable_requirement_is_skipped_at_once_on_arrival():
    r = make_router(escalating_queue())
    add_agent(r, "fr6", skills={"fr": 6})
    out = submit(r, "t1", skills={"fr": 10})  # nobody has fr 10, whatever their status
    esc = events_of(out, ev.TASK_ESCALATED)
    assert len(esc) == 1
    assert esc[0].data["step"] == 1 and esc[0].data["skipped_unmatchable"] == [0]
    assert esc[0].at == T0
    assert offers(out) == [("t1", "fr6")]


def test_an_unmatchable_step_is_skipped_at_once_when_reached():
    q = Queue("sales", steps=(EscalationStep(30, {"fr": 10}), EscalationStep(90, {"fr": 3})))
    r = make_router(q)
    add_agent(r, "fr8", skills={"fr": 8}, status=OFFLINE)
    add_agent(r, "fr4", skills={"fr": 4})
    submit(r, "t1", skills={"fr": 8})  # fr8 could take it (when available): no skip
    assert r.tasks["t1"].step == 0
    out = check(r.escalate("t1", T0 + 30))  # step 1 (fr 10): nobody, ever -> step 2 at once
    esc = events_of(out, ev.TASK_ESCALATED)[0]
    assert esc.data["step"] == 2 and esc.data["skipped_unmatchable"] == [1]
    assert offers(out) == [("t1", "fr4")]


def test_a_step_is_not_skipped_when_a_member_could_take_it_later():
    r = make_router(escalating_queue())
    add_agent(r, "fr9_on_break", skills={"fr": 9}, status=BREAK)
    out = submit(r, "t1", skills={"fr": 8})
    assert ev.TASK_ESCALATED not in kinds(out)
    assert r.tasks["t1"].step == 0


def test_a_channel_nobody_handles_counts_as_unmatchable():
    q = Queue("sales", steps=(EscalationStep(30, {"fr": None}),))
    r = make_router(q)
    add_agent(r, "fr_mail_only", skills={"fr": 5}, channels={EMAIL})
    add_agent(r, "plain")
    out = submit(r, "p1", channel=PHONE, skills={"fr": 5})
    assert events_of(out, ev.TASK_ESCALATED)[0].data["skipped_unmatchable"] == [0]
    assert offers(out) == [("p1", "plain")]


def test_an_offered_task_escalates_when_its_offer_ends():
    r = make_router(escalating_queue())
    add_agent(r, "fr9", skills={"fr": 9})
    add_agent(r, "fr6", skills={"fr": 6}, idle_since=T0 + 1)
    submit(r, "t1", skills={"fr": 8})
    assert r.tasks["t1"].agent_id == "fr9"
    assert check(r.escalate("t1", T0 + 30)).events == []  # offered: nothing now
    out = check(r.reject("fr9", offer_of(r, "fr9"), T0 + 31))
    assert r.tasks["t1"].step == 1
    assert offers(out) == [("t1", "fr6")]


# ---------------------------------------------------------------- push and pull


def test_pull_tasks_are_never_offered_and_pick_assigns():
    r = make_router(Queue("backoffice", mode=Mode.PULL))
    add_agent(r, "a1", queues=("backoffice",), skills={"fr": 5})
    out = submit(r, "t1", queue="backoffice", channel=EMAIL, skills={"fr": 3})
    assert offers(out) == [] and r.tasks["t1"].state is TaskState.QUEUED
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 1))) == []
    assert [t.id for t in r.waiting("backoffice")] == ["t1"]
    out = check(r.pick("a1", "t1", T0 + 2))
    assigned = events_of(out, ev.TASK_ASSIGNED)[0]
    assert assigned.data["via"] == "pick" and assigned.agent_id == "a1"
    assert r.tasks["t1"].state is TaskState.ASSIGNED and r.tasks["t1"].agent_id == "a1"
    assert r.agents["a1"].held == {"t1": EMAIL}
    assert list(r.waiting("backoffice")) == []


def test_pick_refusals():
    r = make_router(Queue("backoffice", mode=Mode.PULL), Queue("sales"))
    add_agent(r, "skilled", queues=("backoffice",), skills={"fr": 5})
    add_agent(r, "unskilled", queues=("backoffice",), skills={"fr": 2})
    add_agent(r, "outsider", queues=("sales",), skills={"fr": 9})
    submit(r, "t1", queue="backoffice", skills={"fr": 3})
    submit(r, "t2", queue="backoffice", skills={"fr": 3})
    for agent_id in ("unskilled", "outsider"):
        with pytest.raises(NotEligible) as info:
            r.pick(agent_id, "t1", T0)
        assert info.value.code == "not_eligible"
    r.pick("skilled", "t1", T0)
    with pytest.raises(NotEligible):  # on a call: no capacity for a second one
        r.pick("skilled", "t2", T0)
    with pytest.raises(NotEligible):  # no longer waiting
        r.pick("skilled", "t1", T0)
    add_agent(r, "seller")
    submit(r, "p1", queue="sales")
    with pytest.raises(NotEligible):  # a push queue's task cannot be picked
        r.pick("outsider", "p1", T0)


def test_a_queue_switched_to_push_offers_its_waiting_tasks():
    r = make_router(Queue("backoffice", mode=Mode.PULL))
    add_agent(r, "a1", queues=("backoffice",))
    submit(r, "t1", queue="backoffice")
    out = check(r.put_queue(Queue("backoffice", mode=Mode.PUSH), T0 + 1))
    assert offers(out) == [("t1", "a1")]


# ---------------------------------------------------------------- offers


def test_accept_assigns():
    r = make_router()
    add_agent(r, "a1")
    out = submit(r, "t1")
    oid = out.offers[0].id
    out = check(r.accept("a1", oid, T0 + 2))
    assert kinds(out) == [ev.OFFER_ACCEPTED, ev.TASK_ASSIGNED]
    assert [o.id for o in out.ended] == [oid]
    task = r.tasks["t1"]
    assert task.state is TaskState.ASSIGNED and task.agent_id == "a1"
    assert task.offer_id is None and task.offer_expires_at is None
    agent = r.agents["a1"]
    assert agent.held == {"t1": PHONE} and agent.offer_id is None
    assert agent.presence() is Presence.BUSY
    assert oid not in r.offers


def test_reject_goes_to_the_next_agent_and_never_back():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", idle_since=T0 - 50)
    submit(r, "t1")
    out = check(r.reject("a1", offer_of(r, "a1"), T0 + 1, reason="busy"))
    assert offers(out) == [("t1", "a2")]
    assert out.declines == [("t1", "a1")]
    assert events_of(out, ev.OFFER_REJECTED)[0].data["reason"] == "busy"
    # a2 declines too: a1 is available and alone, but never gets t1 again.
    out = check(r.reject("a2", offer_of(r, "a2"), T0 + 2))
    assert offers(out) == []
    assert r.tasks["t1"].state is TaskState.QUEUED
    assert r.declined["t1"] == {"a1", "a2"}
    check(r.set_status("a2", OFFLINE, T0 + 2))
    assert offers(check(r.set_status("a1", BREAK, T0 + 3, reason="tea"))) == []
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 4))) == []
    # ...but a newer task is theirs at once, and a third agent gets t1.
    assert offers(submit(r, "t2", now=T0 + 5)) == [("t2", "a1")]
    assert offers(add_agent(r, "a3", now=T0 + 6)) == [("t1", "a3")]


def test_the_only_agent_who_declined_is_passed_over_for_younger_tasks():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "old", at=T0)
    check(r.reject("a1", offer_of(r, "a1"), T0 + 1))
    assert r.tasks["old"].state is TaskState.QUEUED and r.agents["a1"].offer_id is None
    out = submit(r, "young", at=T0 + 2)
    assert offers(out) == [("young", "a1")]
    take(r, "a1", T0 + 3)
    out = check(r.complete("a1", "young", T0 + 4))
    assert offers(out) == []


def test_a_declined_head_does_not_hide_the_tasks_behind_it():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2", idle_since=T0 - 10)
    submit(r, "t1", at=T0)
    check(r.reject("a2", offer_of(r, "a2"), T0 + 1))
    submit(r, "t2", at=T0 + 2)
    take(r, "a2", T0 + 2)
    submit(r, "t3", at=T0 + 3)
    out = check(r.complete("a2", "t2", T0 + 4))
    assert offers(out) == [("t3", "a2")]  # t1 is ahead but declined
    why = events_of(out, ev.TASK_OFFERED)[0].data["explanation"]
    assert why["skipped"] == {"t1": "declined"}
    assert r.tasks["t1"].state is TaskState.QUEUED
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 5))) == [("t1", "a1")]


def test_expiry_puts_the_task_back_at_the_head_and_the_agent_out():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", status=OFFLINE)
    submit(r, "old", at=T0)
    submit(r, "young", at=T0 + 1)
    oid = offer_of(r, "a1")
    out = check(r.expire(oid, T0 + 20))
    assert kinds(out)[:2] == [ev.OFFER_EXPIRED, ev.AGENT_STATUS]
    assert events_of(out, ev.AGENT_STATUS)[0].data["status"] == "not_responding"
    assert [o.id for o in out.ended] == [oid]
    task = r.tasks["old"]
    assert task.state is TaskState.QUEUED and task.created_at == T0
    assert task.agent_id is None and task.offer_id is None
    agent = r.agents["a1"]
    assert agent.status is Presence.NOT_RESPONDING and agent.offer_id is None
    # The agent gets nothing until they choose available again.
    assert offers(submit(r, "new", at=T0 + 21)) == []
    # The expired task is offered before the younger one of the same priority.
    assert offers(check(r.set_status("a2", AVAILABLE, T0 + 22))) == [("old", "a2")]
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 23))) == [("young", "a1")]


def test_expiry_offers_the_task_to_another_available_agent_at_once():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2")
    submit(r, "t1")
    out = check(r.expire(offer_of(r, "a1"), T0 + 20, reason="socket_drop"))
    assert offers(out) == [("t1", "a2")]
    assert events_of(out, ev.OFFER_EXPIRED)[0].data["reason"] == "socket_drop"
    assert "t1" not in r.declined  # an expiry is not a decline


def test_late_accept_after_expiry_fails_cleanly():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1")
    oid = offer_of(r, "a1")
    check(r.expire(oid, T0 + 20))
    with pytest.raises(OfferNotCurrent) as info:
        r.accept("a1", oid, T0 + 21)
    assert info.value.code == "offer_not_current"
    with pytest.raises(OfferNotCurrent):
        r.reject("a1", oid, T0 + 21)
    assert r.expire(oid, T0 + 22).events == []  # the timer and an accept may race
    assert r.tasks["t1"].state is TaskState.QUEUED


def test_a_late_accept_does_not_take_a_reoffered_task():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2")
    submit(r, "t1")
    old = offer_of(r, "a1")
    check(r.expire(old, T0 + 20))
    check(r.set_status("a1", AVAILABLE, T0 + 21))
    with pytest.raises(OfferNotCurrent):
        r.accept("a1", old, T0 + 22)
    assert r.tasks["t1"].agent_id == "a2" and r.tasks["t1"].state is TaskState.OFFERED


def test_accepting_or_rejecting_another_agents_offer_is_forbidden():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    submit(r, "t1")
    oid = offer_of(r, "a1")
    with pytest.raises(Forbidden) as info:
        r.accept("a2", oid, T0 + 1)
    assert info.value.code == "forbidden"
    with pytest.raises(Forbidden):
        r.reject("a2", oid, T0 + 1)
    assert r.tasks["t1"].state is TaskState.OFFERED and r.offers[oid].agent_id == "a1"


def test_complete_or_wrap_up_a_task_one_does_not_hold_is_forbidden():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    submit(r, "t1")
    with pytest.raises(Forbidden):  # offered, not yet accepted
        r.complete("a1", "t1", T0)
    take(r, "a1")
    for action in (r.complete, r.wrap_up):
        with pytest.raises(Forbidden):
            action("a2", "t1", T0 + 1)
    assert r.tasks["t1"].state is TaskState.ASSIGNED


def test_wrap_up_keeps_the_slot_until_complete():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "p1")
    take(r, "a1")
    out = check(r.wrap_up("a1", "p1", T0 + 60))
    assert kinds(out) == [ev.TASK_WRAP_UP]
    assert r.tasks["p1"].state is TaskState.WRAP_UP
    assert r.agents["a1"].presence() is Presence.WRAP_UP
    assert offers(submit(r, "p2", at=T0 + 61)) == []
    with pytest.raises(IllegalTransition):
        r.wrap_up("a1", "p1", T0 + 62)
    out = check(r.complete("a1", "p1", T0 + 70, disposition="sold"))
    assert events_of(out, ev.TASK_COMPLETED)[0].data == {"disposition": "sold"}
    assert out.tasks["p1"].state is TaskState.COMPLETED
    assert "p1" not in r.tasks
    assert offers(out) == [("p2", "a1")]


# ---------------------------------------------------------------- presence


def test_a_break_withdraws_the_pending_offer_and_the_task_goes_on():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2")
    submit(r, "t1")
    oid = offer_of(r, "a1")
    out = check(r.set_status("a1", BREAK, T0 + 5, reason="lunch"))
    withdrawn = events_of(out, ev.OFFER_WITHDRAWN)[0]
    assert withdrawn.data == {"offer_id": oid, "reason": "agent_break"}
    assert [o.id for o in out.ended] == [oid]
    assert offers(out) == [("t1", "a2")]
    agent = r.agents["a1"]
    assert agent.status is BREAK and agent.break_reason == "lunch" and agent.offer_id is None
    assert "t1" not in r.declined
    assert offers(submit(r, "t2", at=T0 + 6)) == []


def test_going_offline_returns_assigned_tasks_and_ends_wrap_ups():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", status=OFFLINE)
    for i in range(2):
        submit(r, f"e{i}", channel=EMAIL, at=T0 + i)
        take(r, "a1", T0 + i)
    check(r.wrap_up("a1", "e1", T0 + 5))
    check(r.set_status("a2", AVAILABLE, T0 + 6))
    out = check(r.set_status("a1", OFFLINE, T0 + 10))
    requeued = events_of(out, ev.TASK_REQUEUED)
    assert [(e.task_id, e.data["reason"]) for e in requeued] == [("e0", "agent_offline")]
    done = events_of(out, ev.TASK_COMPLETED)
    assert [(e.task_id, e.data["disposition"]) for e in done] == [("e1", "logged_out")]
    assert offers(out) == [("e0", "a2")]
    assert r.tasks["e0"].created_at == T0
    assert r.agents["a1"].held == {} and r.agents["a1"].wrapping == set()


def test_going_offline_with_nobody_else_leaves_the_tasks_waiting():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "p1")
    take(r, "a1")
    out = check(r.set_status("a1", OFFLINE, T0 + 10))
    assert offers(out) == []
    assert r.tasks["p1"].state is TaskState.QUEUED and r.tasks["p1"].agent_id is None
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 11))) == [("p1", "a1")]


def test_requeue_takes_an_assigned_task_back():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2")
    submit(r, "p1")
    take(r, "a1")
    out = check(r.requeue("p1", T0 + 5, reason="supervisor"))
    assert events_of(out, ev.TASK_REQUEUED)[0].data == {"reason": "supervisor"}
    assert offers(out) == [("p1", "a2")]
    with pytest.raises(IllegalTransition):
        r.requeue("p1", T0 + 6, reason="again")


# ---------------------------------------------------------------- cancel and abandon


def test_cancel_a_queued_task():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    submit(r, "t1")
    out = check(r.cancel("t1", T0 + 5, reason="duplicate", actor="supervisor:s1"))
    e = events_of(out, ev.TASK_CANCELLED)[0]
    assert e.data == {"reason": "duplicate"} and e.actor == "supervisor:s1"
    assert out.tasks["t1"].state is TaskState.CANCELLED
    assert "t1" not in r.tasks and list(r.waiting("sales")) == []
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 6))) == []


def test_cancel_an_offered_task_frees_and_serves_the_agent():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1", at=T0)
    submit(r, "t2", at=T0 + 1)
    oid = offer_of(r, "a1")
    out = check(r.cancel("t1", T0 + 5, reason="spam"))
    assert kinds(out)[:2] == [ev.OFFER_WITHDRAWN, ev.TASK_CANCELLED]
    assert [o.id for o in out.ended] == [oid]
    assert offers(out) == [("t2", "a1")]


def test_cancel_an_assigned_task_frees_the_agent():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1", at=T0)
    take(r, "a1")
    submit(r, "t2", at=T0 + 1)
    out = check(r.cancel("t1", T0 + 5, reason="merged"))
    assert offers(out) == [("t2", "a1")]
    assert "t1" not in r.agents["a1"].held


def test_abandon_a_queued_task_records_the_wait():
    r = make_router()
    submit(r, "t1", at=T0)
    out = check(r.abandon("t1", T0 + 42))
    e = events_of(out, ev.TASK_ABANDONED)[0]
    assert e.data == {"waited": 42.0}
    assert out.tasks["t1"].state is TaskState.ABANDONED
    assert "t1" not in r.tasks and list(r.waiting("sales")) == []


def test_abandon_an_offered_task_frees_and_serves_the_agent():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1", at=T0)
    submit(r, "t2", at=T0 + 1)
    out = check(r.abandon("t1", T0 + 7))
    assert events_of(out, ev.OFFER_WITHDRAWN)[0].data["reason"] == "abandoned"
    e = events_of(out, ev.TASK_ABANDONED)[0]
    assert e.data == {"waited": 7.0} and e.agent_id == "a1"
    assert offers(out) == [("t2", "a1")]
    assert r.agents["a1"].offer_task_id == "t2"


def test_an_assigned_task_cannot_be_abandoned_and_closed_tasks_are_gone():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1")
    take(r, "a1")
    with pytest.raises(IllegalTransition):
        r.abandon("t1", T0 + 1)
    check(r.complete("a1", "t1", T0 + 2))
    with pytest.raises(UnknownTask):
        r.cancel("t1", T0 + 3, reason="late")


# ---------------------------------------------------------------- restore


def test_restore_rebuilds_the_routing_state():
    queues = [Queue("sales"), Queue("support")]
    r = make_router(*queues)
    add_agent(r, "a1", queues=("sales", "support"), idle_since=T0 - 100)
    add_agent(r, "a2", queues=("sales",), status=OFFLINE)
    submit(r, "assigned", at=T0)
    take(r, "a1")
    submit(r, "q_young", at=T0 + 3)
    submit(r, "q_old", at=T0 + 1)
    submit(r, "q_high", at=T0 + 4, priority=1, queue="support")
    check(r.set_status("a1", AVAILABLE, T0 + 5))
    check(r.complete("a1", "assigned", T0 + 6))  # a1 gets q_high
    take(r, "a1", T0 + 7)  # a1 holds q_high...
    check(r.set_status("a2", AVAILABLE, T0 + 8))  # a2 gets q_old
    check(r.reject("a2", offer_of(r, "a2"), T0 + 9))  # ...declines it, gets q_young
    assert r.tasks["q_young"].state is TaskState.OFFERED

    fresh = Router()
    agents = [Agent(id=a.id, skills=dict(a.skills), queues=set(a.queues),
                    capacity=dict(a.capacity), idle_since=a.idle_since)
              for a in r.agents.values()]
    tasks = [Task(id=t.id, channel=t.channel, queue=t.queue, customer_id=None,
                  created_at=t.created_at, base_skills=dict(t.base_skills), priority=t.priority,
                  state=t.state, agent_id=t.agent_id, offer_id=t.offer_id)
             for t in r.tasks.values()]
    declines = [(t, a) for t, ids in r.declined.items() for a in ids]
    out = check(fresh.restore(queues, agents, tasks, declines, T0 + 100))

    assert offers(out) == []
    expired = events_of(out, ev.OFFER_EXPIRED)
    assert [(e.task_id, e.agent_id, e.data["reason"]) for e in expired] == [
        ("q_young", "a2", "restart")]
    assert fresh.tasks["q_young"].state is TaskState.QUEUED
    assert fresh.tasks["q_young"].agent_id is None and fresh.tasks["q_young"].offer_id is None
    assert fresh.tasks["q_high"].state is TaskState.ASSIGNED
    assert fresh.agents["a1"].held == {"q_high": PHONE}
    assert all(a.status is OFFLINE for a in fresh.agents.values())
    assert fresh.declined == {"q_old": {"a2"}}
    assert fresh.offers == {}
    # Queued tasks come back in their original order; declines are still honoured.
    out = check(fresh.set_status("a2", AVAILABLE, T0 + 101))
    assert offers(out) == [("q_young", "a2")]
    check(fresh.set_status("a1", AVAILABLE, T0 + 102))  # on a call: nothing
    assert fresh.agents["a1"].offer_id is None
    check(fresh.complete("a1", "q_high", T0 + 103))
    assert fresh.agents["a1"].offer_task_id == "q_old"


def test_restore_keeps_waiting_order_of_many_tasks():
    r = make_router()
    for i in (5, 3, 9, 1, 7):
        submit(r, f"t{i}", at=T0 + i)
    fresh = Router()
    fresh.restore([Queue("sales")], [Agent(id="a1", queues={"sales"})],
                  list(r.tasks.values()), [], T0 + 50)
    check(fresh.set_status("a1", AVAILABLE, T0 + 51))
    assert serve_order(fresh, "a1", 5, T0 + 52) == ["t1", "t3", "t5", "t7", "t9"]


def test_restore_keeps_an_empty_requirement_after_escalation():
    q = Queue("sales", steps=(EscalationStep(30, {"fr": None}),))
    r = make_router(q)
    add_agent(r, "fr", skills={"fr": 5}, status=OFFLINE)
    submit(r, "t1", skills={"fr": 5})
    check(r.escalate("t1", T0 + 30))
    assert r.tasks["t1"].required_skills == {}
    fresh = Router()
    fresh.restore([q], [Agent(id="fr", queues={"sales"}, skills={"fr": 5}),
                        Agent(id="plain", queues={"sales"})], list(r.tasks.values()), [], T0 + 40)
    assert offers(check(fresh.set_status("plain", AVAILABLE, T0 + 41))) == [("t1", "plain")]


# ---------------------------------------------------------------- reconfiguration and reads


def test_changing_an_agents_skills_changes_what_they_are_offered():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "fr_task", skills={"fr": 5})
    assert r.tasks["fr_task"].state is TaskState.QUEUED
    out = add_agent(r, "a1", skills={"fr": 6}, now=T0 + 1)
    assert ev.AGENT_CHANGED in kinds(out)
    assert offers(out) == [("fr_task", "a1")]


def test_reading_helpers():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    assert r.members("sales") == {"a1", "a2"}
    assert r.available_count("sales", PHONE) == 1
    assert r.available_count("sales", EMAIL) == 1
    submit(r, "p1")
    assert r.available_count("sales", PHONE) == 0
    assert r.step_due("p1") is None
    assert r.step_due("nope") is None


def test_a_queue_given_fewer_steps_does_not_break_its_escalated_tasks():
    r = make_router(escalating_queue())
    add_agent(r, "fr9", skills={"fr": 9}, status=BREAK)
    submit(r, "t1", skills={"fr": 8})
    check(r.escalate("t1", T0 + 100))
    assert r.tasks["t1"].step == 2
    check(r.put_queue(Queue("sales", steps=(EscalationStep(30, {"fr": 5}),)), T0 + 101))
    assert r.step_due("t1") is None
    # The task's step no longer exists: it takes the queue's last step (this used to raise
    # IndexError in every call that catches up a task's steps).
    out = check(r.escalate("t1", T0 + 102))
    esc = events_of(out, ev.TASK_ESCALATED)[0]
    assert esc.data["step"] == 1 and esc.data["requirement"] == {"fr": 5}
    assert offers(add_agent(r, "fr6", skills={"fr": 6}, now=T0 + 103)) == [("t1", "fr6")]


def test_the_router_keeps_its_own_copy_of_a_new_agents_configuration():
    r = make_router(Queue("sales"), Queue("support"))
    agent = Agent(id="a1", queues={"sales"}, status=AVAILABLE)
    check(r.put_agent(agent, T0))
    agent.queues.add("support")
    agent.capacity[PHONE] = 0
    assert r.agents["a1"].queues == {"sales"}
    assert r.agents["a1"].capacity[PHONE] == 1
    assert r.members("support") == set()


def test_available_count_is_members_who_could_take_the_channel_now_skills_aside():
    r = make_router(Queue("billing", requirement={"billing": 4}))
    add_agent(r, "expert", queues=("billing",), skills={"billing": 5})
    add_agent(r, "novice", queues=("billing",), skills={"billing": 2})
    add_agent(r, "away", queues=("billing",), status=OFFLINE)
    assert r.available_count("billing", PHONE) == 2  # before any task created a bucket
    assert r.available_count("nope", PHONE) == 0


# ---------------------------------------------------------------- transfer and wrap-up notes


def test_transfer_to_another_queue_routes_it_there_with_its_age_and_extra_skills():
    r = make_router(Queue("sales", requirement={"sales": 3}),
                    Queue("billing", requirement={"billing": 4}))
    add_agent(r, "a1", queues=("sales",), skills={"sales": 5, "fr": 5})
    add_agent(r, "b1", queues=("billing",), skills={"billing": 6}, status=OFFLINE)
    add_agent(r, "b2", queues=("billing",), skills={"billing": 6, "fr": 5}, status=OFFLINE)
    submit(r, "t1", skills={"sales": 3, "fr": 2}, at=T0 - 30, now=T0)
    take(r, "a1")
    check(r.set_status("b1", AVAILABLE, T0 + 1))
    check(r.set_status("b2", AVAILABLE, T0 + 2))

    out = check(r.transfer("t1", T0 + 10, "agent:a1", queue="billing"))

    task = r.tasks["t1"]
    assert (task.queue, task.created_at, task.step) == ("billing", T0 - 30, 0)
    assert task.required_skills == {"billing": 4, "fr": 2}  # sales dropped, the extra kept
    assert offers(out) == [("t1", "b2")]  # b1 lacks fr
    (moved,) = events_of(out, ev.TASK_TRANSFERRED)
    assert moved.data == {"from_agent": "a1", "from_queue": "sales", "to_queue": "billing"}
    assert moved.actor == "agent:a1" and ("t1", "a1") in out.declines
    assert "t1" not in r.agents["a1"].held


def test_transfer_to_a_named_agent_offers_it_to_them_and_never_back():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", idle_since=T0)
    submit(r, "t1")
    take(r, "a1")
    out = check(r.transfer("t1", T0 + 5, "agent:a1", agent_id="a2"))
    assert offers(out) == [("t1", "a2")]
    assert events_of(out, ev.TASK_OFFERED)[0].data["explanation"]["rule"] == "transfer"
    out = check(r.reject("a2", offer_of(r, "a2"), T0 + 6, "not mine"))
    assert out.offers == []  # a1 passed it on and a2 declined: it waits for someone else
    assert r.tasks["t1"].state is TaskState.QUEUED


def test_transfer_refusals_change_nothing():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1")
    add_agent(r, "a2", status=BREAK)
    submit(r, "t1")
    with pytest.raises(IllegalTransition):  # offered, not assigned yet
        r.transfer("t1", T0, "agent:a1", queue="billing")
    take(r, "a1")
    with pytest.raises(NotEligible):
        r.transfer("t1", T0, "agent:a1", agent_id="a2")  # on a break
    with pytest.raises(UnknownQueue):
        r.transfer("t1", T0, "agent:a1", queue="nope")
    with pytest.raises(InvalidValue):
        r.transfer("t1", T0, "agent:a1", queue="billing", agent_id="a2")
    with pytest.raises(InvalidValue):
        r.transfer("t1", T0, "agent:a1", agent_id="a1")
    task = r.tasks["t1"]
    assert (task.state, task.agent_id, task.queue) == (TaskState.ASSIGNED, "a1", "sales")
    assert "t1" in r.agents["a1"].held


def test_wrap_up_notes_are_kept_with_the_disposition():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1")
    take(r, "a1")
    out = check(r.complete("a1", "t1", T0 + 60, "solved", notes="refund promised"))
    (done,) = events_of(out, ev.TASK_COMPLETED)
    assert done.data == {"disposition": "solved", "notes": "refund promised"}


def test_per_channel_presence_pauses_new_work_on_one_channel_only():
    r = make_router()
    add_agent(r, "a1")
    out = check(r.set_channels("a1", {EMAIL}, T0))
    assert events_of(out, ev.AGENT_CHANNELS)[0].data == {"channels": ["email"]}
    assert offers(submit(r, "call", channel=PHONE)) == []  # no calls for now
    assert offers(submit(r, "mail", channel=EMAIL)) == [("mail", "a1")]
    take(r, "a1")
    assert offers(check(r.set_channels("a1", {EMAIL, PHONE}, T0 + 1))) == [("call", "a1")]
    with pytest.raises(InvalidValue):
        r.set_channels("a1", {EMAIL, Channel("phone")} | {"fax"}, T0)  # type: ignore[arg-type]
    check(r.set_channels("a1", {EMAIL}, T0 + 2))
    check(r.set_status("a1", OFFLINE, T0 + 3))
    assert r.agents["a1"].paused == set()  # a new sign-in starts with every channel on
    bucket_agents = {a for b in r._agent_buckets["a1"] for a in b.eligible}
    assert bucket_agents == {"a1"}  # still eligible for phone work: presence, not skills


# ---------------------------------------------------------------- stickiness (a reply goes back)

UNTIL = T0 + 3600


def sticky(task_id: str, agent_id: str, until: float = UNTIL, **kw) -> Task:
    """A task that prefers `agent_id` until `until` (as the e-mail reopening sets it)."""
    task = new_task(task_id, **kw)
    task.attributes = {"preferred_agent": agent_id, "preferred_until": until}
    return task


def submit_sticky(r: Router, task_id: str, agent_id: str, now: float = T0, **kw) -> Outcome:
    return check(r.submit(sticky(task_id, agent_id, **kw), now))


def ended(out: Outcome) -> list[tuple[str, str]]:
    """(task id, reason) of each preference that ended."""
    return [(e.task_id, e.data["reason"]) for e in events_of(out, ev.TASK_CHANGED)
            if e.data.get("preference") == "ended"]


def busy(r: Router, agent_id: str, task_id: str, now: float = T0) -> None:
    """Give the agent a call (they can take nothing more)."""
    check(r.set_status(agent_id, AVAILABLE, now))
    submit(r, task_id, now)
    assert r.tasks[task_id].agent_id == agent_id, "the call went to someone else"
    take(r, agent_id, now)


def test_a_sticky_task_goes_to_its_preferred_agent_before_a_longer_idle_one():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", idle_since=T0)
    out = submit_sticky(r, "t1", "a2")
    assert offers(out) == [("t1", "a2")]
    (offered,) = events_of(out, ev.TASK_OFFERED)
    why = offered.data["explanation"]
    assert (why["rule"], why["preferred_agent"], why["preferred_until"]) == ("sticky", "a2", UNTIL)
    assert why["waited_for_agent"] is False
    assert r.sticky_until("t1") == UNTIL
    take(r, "a2")
    assert r.sticky_until("t1") is None  # served: a requeue later routes it normally
    out = check(r.requeue("t1", T0 + 1, "supervisor"))
    assert offers(out) == [("t1", "a1")]


def test_a_sticky_task_waits_for_its_busy_agent_only_and_comes_before_other_work():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2", status=OFFLINE)
    busy(r, "a2", "call2")
    busy(r, "a1", "call1")
    submit(r, "urgent", T0 + 1, priority=9)  # waits for anyone
    out = submit_sticky(r, "t1", "a2", now=T0 + 2)
    assert offers(out) == [] and r.reserved_for("t1") == "a2"
    assert r.tasks["t1"].state is TaskState.QUEUED
    assert {t.id for t in r.waiting("sales")} == {"urgent", "t1"}
    add_agent(r, "a3", idle_since=T0 + 3, now=T0 + 3)  # a newcomer gets the urgent task only
    assert r.agents["a3"].offer_task_id == "urgent"
    out = check(r.complete("a2", "call2", T0 + 4))
    assert offers(out) == [("t1", "a2")]
    assert events_of(out, ev.TASK_OFFERED)[0].data["explanation"]["waited_for_agent"] is True
    assert r.reserved_for("t1") is None and list(r.waiting("sales")) == []


def test_the_tasks_reserved_for_an_agent_come_in_the_usual_order():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    for task_id, at, prio in (("late", T0 + 3, 0), ("first", T0 + 2, 0), ("high", T0 + 4, 5)):
        submit_sticky(r, task_id, "a1", now=at, at=at, priority=prio)
    assert serve_order_after_login(r, "a1") == ["high", "first", "late"]


def serve_order_after_login(r: Router, agent_id: str) -> list[str]:
    check(r.set_status(agent_id, AVAILABLE, T0 + 10))
    return serve_order(r, agent_id, 3, T0 + 11)


def test_a_reserved_email_goes_to_an_agent_with_room_for_one_more():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", status=OFFLINE)
    check(r.set_status("a2", AVAILABLE, T0))
    submit(r, "m1", channel=EMAIL)  # to a1, who idled longest
    take(r, "a1")
    submit(r, "m2", channel=EMAIL)
    take(r, "a2")
    out = submit_sticky(r, "t1", "a1", channel=EMAIL)  # a1 still has e-mail room
    assert offers(out) == [("t1", "a1")]


def test_unstick_places_a_reserved_task_normally_once_its_time_is_over():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    submit_sticky(r, "t1", "a2", until=T0 + 60)
    assert r.reserved_for("t1") == "a2" and r.agents["a1"].offer_id is None
    assert check(r.unstick("t1", T0 + 59)).events == []  # early: nothing
    assert r.reserved_for("t1") == "a2"
    out = check(r.unstick("t1", T0 + 60))
    assert offers(out) == [("t1", "a1")]
    assert events_of(out, ev.TASK_OFFERED)[0].data["explanation"]["rule"] == "longest_idle"
    assert ended(out) == [("t1", "timeout")]
    assert r.sticky_until("t1") is None and r.reserved_for("t1") is None
    assert check(r.unstick("t1", T0 + 61)).events == []  # twice: nothing


@pytest.mark.parametrize("why, agent, reason", [
    ("unknown agent", "ghost", "unknown_agent"),
    ("lacks the skill", "weak", "not_eligible"),
    ("not a member", "other_queue", "not_eligible"),
    ("no such channel", "no_phone", "not_eligible"),
])
def test_a_preference_for_an_agent_who_cannot_take_the_task_ends_at_once(why, agent, reason):
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1", skills={"fr": 9})
    add_agent(r, "weak", skills={"fr": 2}, status=OFFLINE)
    add_agent(r, "other_queue", queues=("billing",), skills={"fr": 9}, status=OFFLINE)
    add_agent(r, "no_phone", skills={"fr": 9}, channels={EMAIL}, status=OFFLINE)
    out = submit_sticky(r, "t1", agent, skills={"fr": 5})
    assert offers(out) == [("t1", "a1")], why
    assert ended(out) == [("t1", reason)]
    assert r.tasks["t1"].attributes["preferred_until"] == T0  # over: a restart keeps it over


def test_a_preference_whose_time_is_over_is_no_preference():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2")
    out = submit_sticky(r, "t1", "a2", until=T0)
    assert offers(out) == [("t1", "a1")] and ended(out) == []
    assert r.sticky_until("t1") is None
    for bad in ({"preferred_agent": "a2"}, {"preferred_agent": 7, "preferred_until": UNTIL},
                {"preferred_agent": "a2", "preferred_until": "soon"}):
        task = new_task(f"bad{len(r.tasks)}")
        task.attributes = bad
        check(r.submit(task, T0))
        assert r.sticky_until(task.id) is None


def test_a_reject_by_the_preferred_agent_ends_the_preference():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2")
    submit_sticky(r, "t1", "a2")
    out = check(r.reject("a2", offer_of(r, "a2"), T0 + 1, "not mine"))
    assert ended(out) == [("t1", "declined")]
    assert r.reserved_for("t1") is None and r.tasks["t1"].attributes["preferred_until"] == T0 + 1
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 2))) == [("t1", "a1")]


def test_an_expired_offer_to_the_preferred_agent_ends_the_preference():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2")
    submit_sticky(r, "t1", "a2")
    out = check(r.expire(offer_of(r, "a2"), T0 + 20))
    assert ended(out) == [("t1", "offer_expired")]
    assert r.reserved_for("t1") is None and r.tasks["t1"].state is TaskState.QUEUED
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 21))) == [("t1", "a1")]


def test_a_break_of_the_preferred_agent_keeps_the_task_waiting_for_them():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2")
    submit_sticky(r, "t1", "a2")
    out = check(r.set_status("a2", BREAK, T0 + 1, "coffee"))
    assert ended(out) == [] and r.reserved_for("t1") == "a2"
    assert offers(check(r.set_status("a1", AVAILABLE, T0 + 2))) == []
    assert offers(check(r.set_status("a2", AVAILABLE, T0 + 3))) == [("t1", "a2")]


def test_a_reserved_task_can_be_cancelled_or_abandoned():
    r = make_router()
    add_agent(r, "a2", status=OFFLINE)
    submit_sticky(r, "t1", "a2")
    submit_sticky(r, "t2", "a2")
    check(r.cancel("t1", T0 + 1, "spam"))
    check(r.abandon("t2", T0 + 2))
    assert r.reserved_for("t1") is r.reserved_for("t2") is None
    assert list(r.waiting("sales")) == [] and r._sticky == {} and r._prefs == {}
    assert offers(check(r.set_status("a2", AVAILABLE, T0 + 3))) == []


def test_an_escalation_keeps_the_reservation_while_the_agent_still_qualifies():
    q = Queue("sales", steps=(EscalationStep(10, {"fr": 3}), EscalationStep(20, {"fr": 9})))
    r = make_router(q)
    add_agent(r, "a1", skills={"fr": 9})
    add_agent(r, "a2", skills={"fr": 5}, status=OFFLINE)
    busy(r, "a1", "call")
    submit_sticky(r, "t1", "a2", skills={"fr": 5})
    assert r.reserved_for("t1") == "a2"
    check(r.escalate("t1", T0 + 10))
    assert r.tasks["t1"].step == 1 and r.reserved_for("t1") == "a2"
    out = check(r.escalate("t1", T0 + 20))  # fr 9: a2 no longer qualifies
    assert ended(out) == [("t1", "not_eligible")] and r.reserved_for("t1") is None
    assert offers(check(r.complete("a1", "call", T0 + 21))) == [("t1", "a1")]


def test_an_agent_moved_out_of_the_queue_releases_the_tasks_reserved_for_them():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    busy(r, "a1", "call")
    submit_sticky(r, "t1", "a2", now=T0 + 1)
    check(r.complete("a1", "call", T0 + 2))
    assert r.agents["a1"].offer_id is None  # t1 waits for a2
    out = add_agent(r, "a2", queues=("billing",), status=OFFLINE, now=T0 + 3)
    assert ended(out) == [("t1", "not_eligible")]
    assert offers(out) == [("t1", "a1")]


def test_a_pull_queue_ignores_preferences():
    r = make_router(Queue("sales", mode=Mode.PULL))
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    submit_sticky(r, "t1", "a2")
    assert r.reserved_for("t1") is None
    check(r.pick("a1", "t1", T0 + 1))
    assert r.sticky_until("t1") is None


def test_a_queue_turned_to_pull_lists_its_reserved_tasks():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    busy(r, "a1", "call")
    submit_sticky(r, "hi", "a2", priority=1)
    submit_sticky(r, "lo", "a2")
    check(r.put_queue(Queue("sales", priority=3), T0 + 1))  # re-ordered, still reserved
    assert r.reserved_for("hi") == r.reserved_for("lo") == "a2"
    check(r.put_queue(Queue("sales", mode=Mode.PULL), T0 + 2))
    assert r.reserved_for("hi") is None and {t.id for t in r.waiting("sales")} == {"hi", "lo"}
    check(r.complete("a1", "call", T0 + 3))
    check(r.pick("a1", "hi", T0 + 4))


@pytest.mark.parametrize("pack", [dict, json.dumps], ids=["decoded", "packed"])
def test_restore_keeps_active_preferences_and_not_ended_ones(pack):
    """The same whether the tasks' attributes come decoded or packed (a store's bulk load)."""
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2")
    submit_sticky(r, "kept", "a2", at=T0 - 5)  # the oldest: offered to a2 at the restart
    submit_sticky(r, "declined", "a2")
    submit_sticky(r, "expired", "a2", until=T0 + 50)
    check(r.set_status("a2", OFFLINE, T0 + 1))
    check(r.set_status("a2", AVAILABLE, T0 + 2))
    assert r.agents["a2"].offer_task_id == "kept"
    fresh_tasks = [Task(id=t.id, channel=t.channel, queue=t.queue, customer_id=None,
                        created_at=t.created_at, attributes=pack(t.attributes), state=t.state,
                        agent_id=t.agent_id, offer_id=t.offer_id)
                   for t in r.tasks.values()]
    fresh = Router()
    out = check(fresh.restore([Queue("sales")],
                              [Agent(id=a, queues={"sales"}) for a in ("a1", "a2")],
                              fresh_tasks, [("declined", "a2")], T0 + 100))
    assert fresh.reserved_for("kept") == "a2" and fresh.sticky_until("kept") == UNTIL
    assert fresh.reserved_for("declined") is None and fresh.reserved_for("expired") is None
    assert sorted(ended(out)) == [("declined", "declined")]  # "expired": its time is over
    assert fresh.tasks["declined"].attributes["preferred_until"] == T0 + 100
    check(fresh.set_status("a1", AVAILABLE, T0 + 101))
    assert fresh.agents["a1"].offer_task_id in {"declined", "expired"}
    out = check(fresh.set_status("a2", AVAILABLE, T0 + 102))
    assert offers(out) == [("kept", "a2")]


def test_restore_leaves_packed_attributes_packed_unless_they_may_name_a_preference():
    tasks = [new_task("plain"), new_task("prefers"), new_task("named")]
    tasks[0].attributes = json.dumps({"subject": "hello", "request": "SB-000001"})
    tasks[1].attributes = json.dumps({"preferred_agent": "a1", "preferred_until": UNTIL})
    tasks[2].attributes = json.dumps({"subject": "preferred_agent"})  # a value, not a key
    fresh = Router()
    check(fresh.restore([Queue("sales")], [Agent(id="a1", queues={"sales"})], tasks, [], T0))
    assert fresh.tasks["plain"].packed
    assert not fresh.tasks["prefers"].packed and fresh.reserved_for("prefers") == "a1"
    assert fresh.reserved_for("named") is None
    assert fresh.tasks["plain"].attributes["request"] == "SB-000001"  # read as ever


def test_a_served_preference_does_not_come_back_after_a_requeue_and_a_restart():
    r = make_router()
    add_agent(r, "a1")
    add_agent(r, "a2", status=OFFLINE)
    submit_sticky(r, "t", "a1")
    take(r, "a1", T0 + 1)
    assert r.tasks["t"].attributes["preferred_until"] == T0 + 1  # served: over
    check(r.set_status("a1", OFFLINE, T0 + 2))  # the task goes back to the queue
    fresh_tasks = [Task(id=t.id, channel=t.channel, queue=t.queue, customer_id=None,
                        created_at=t.created_at, attributes=dict(t.attributes), state=t.state)
                   for t in r.tasks.values()]
    fresh = Router()
    check(fresh.restore([Queue("sales")],
                        [Agent(id=a, queues={"sales"}) for a in ("a1", "a2")],
                        fresh_tasks, [], T0 + 3))
    assert fresh.reserved_for("t") is None and fresh.sticky_until("t") is None
    check(fresh.set_status("a1", AVAILABLE, T0 + 4))
    check(fresh.set_status("a1", OFFLINE, T0 + 5))
    out = check(fresh.set_status("a2", AVAILABLE, T0 + 6))  # not held back for a1
    assert offers(out) == [("t", "a2")]


# ---------------------------------------------------------------- devices (phones)


def test_unreachable_phone_gets_no_calls_but_still_emails():
    r = make_router()
    add_agent(r, "a1")
    out = r.set_device("a1", PHONE, T0, reachable=False)
    assert [e.data for e in events_of(out, ev.AGENT_DEVICE)] == [
        {"channel": "phone", "reachable": False, "engaged": False}]
    assert offers(r.submit(new_task("call"), T0 + 1)) == []
    assert offers(r.submit(new_task("mail", EMAIL), T0 + 2)) == [("mail", "a1")]
    r2 = make_router()
    add_agent(r2, "a1")
    r2.set_device("a1", PHONE, T0, reachable=False)
    r2.submit(new_task("call"), T0 + 1)
    # The phone registers: the waiting call is offered at once.
    assert offers(r2.set_device("a1", PHONE, T0 + 5, reachable=True)) == [("call", "a1")]


def test_engaged_phone_counts_as_a_call_held():
    r = make_router()
    add_agent(r, "a1")
    out = r.set_device("a1", PHONE, T0, engaged=True)
    assert r.agents["a1"].presence() is Presence.BUSY
    assert not r.agents["a1"].can_take(EMAIL)  # an agent on a call gets nothing else
    assert offers(out) == []
    assert offers(r.submit(new_task("mail", EMAIL), T0 + 1)) == []
    assert offers(r.submit(new_task("call"), T0 + 2)) == []
    out = r.set_device("a1", PHONE, T0 + 10, engaged=False)
    assert [a for _, a in offers(out)] == ["a1"]  # free again: served at once
    assert r.agents["a1"].idle_since == T0 + 10


def test_device_change_withdraws_a_pending_offer_on_that_channel():
    r = make_router()
    add_agent(r, "a1")
    assert offers(r.submit(new_task("call"), T0)) == [("call", "a1")]
    out = r.set_device("a1", PHONE, T0 + 1, engaged=True)
    withdrawn = events_of(out, ev.OFFER_WITHDRAWN)
    assert [e.data["reason"] for e in withdrawn] == ["device_engaged"]
    assert r.tasks["call"].state is TaskState.QUEUED
    # Unchanged state: no event.
    assert r.set_device("a1", PHONE, T0 + 2, engaged=True).events == []


def test_engaged_email_agent_keeps_emails_only_if_the_matrix_allows():
    r = make_router()
    add_agent(r, "a1")
    r.set_device("a1", EMAIL, T0, engaged=True)  # e.g. a mail client outside us (odd, allowed)
    assert offers(r.submit(new_task("call"), T0 + 1)) == [("call", "a1")]


def test_the_bucket_a_task_waits_in_is_the_routers_own():
    """A waiting task names its bucket (a slot, not a map by id); a copy of it names none
    (`snapshot`), and a copy made otherwise (`dataclasses.replace`) that enters the router
    starts from none: only where the router put it counts."""
    from dataclasses import replace

    r = make_router(Queue("backoffice", mode=Mode.PULL))
    add_agent(r, "a1", queues=("backoffice",), skills={"fr": 5})
    submit(r, "t1", queue="backoffice", skills={"fr": 3})
    waiting = r.tasks["t1"]
    assert waiting.bucket is not None and "a1" in waiting.bucket.eligible
    assert waiting.snapshot().bucket is None
    stale = replace(waiting, id="t2")  # a copy naming the bucket of t1
    r.cancel("t1", T0 + 1, "test")
    assert waiting.bucket is None and [t.id for t in r.waiting("backoffice")] == []
    r.submit(stale, T0 + 2)
    assert stale.bucket is not None and [t.id for t in r.waiting("backoffice")] == ["t2"]
    out = check(r.pick("a1", "t2", T0 + 3))
    assert events_of(out, ev.TASK_ASSIGNED)[0].data["via"] == "pick" and stale.bucket is None
