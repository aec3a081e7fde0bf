"""Tests of the router's balancing actions (dispatcher.domain.routing, section "supervision"):
a supervisor changes a task's priority, sends a waiting, offered or assigned task to another
queue or to a named agent, takes a task back from an agent, moves an agent between queues.

Scenarios first, then the property machine of test_routing_properties with these actions
added to its rules: every invariant of the router must still hold after them.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import (
    IllegalTransition,
    InvalidValue,
    NotEligible,
    UnknownAgent,
    UnknownQueue,
    UnknownTask,
)
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import TaskState
from tests.dispatcher.domain.test_routing import (
    AVAILABLE,
    BREAK,
    EMAIL,
    OFFLINE,
    T0,
    add_agent,
    check,
    events_of,
    make_router,
    new_task,
    offer_of,
    offers,
    submit,
    take,
)
from tests.dispatcher.domain.test_routing_properties import QUEUES, RouterMachine, eligible

SUP = "supervisor:boss"


# ---------------------------------------------------------------- priority


def test_a_higher_priority_moves_a_waiting_task_to_the_head():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    for i, tid in enumerate(("t1", "t2", "t3")):
        submit(r, tid, at=T0 + i, now=T0 + i, channel=EMAIL)
    out = check(r.set_priority("t3", 5, T0 + 10, SUP))
    (changed,) = events_of(out, ev.TASK_CHANGED)
    assert (changed.actor, changed.data) == (SUP, {"priority": 5, "was": 0})
    assert out.tasks["t3"].priority == 5 and out.offers == []
    out = check(r.set_status("a1", AVAILABLE, T0 + 11))
    assert offers(out) == [("t3", "a1")]


def test_a_lower_priority_sends_a_waiting_task_back_and_the_same_one_changes_nothing():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    submit(r, "t1", priority=3, channel=EMAIL)
    submit(r, "t2", at=T0 + 1, now=T0 + 1, priority=3, channel=EMAIL)
    check(r.set_priority("t1", 1, T0 + 2, SUP))
    assert r.set_priority("t1", 1, T0 + 3, SUP).events == []
    out = check(r.set_status("a1", AVAILABLE, T0 + 4))
    assert offers(out) == [("t2", "a1")]


def test_priority_of_an_offered_or_held_task_changes_without_moving_it():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1")
    out = check(r.set_priority("t1", 9, T0 + 1, SUP))
    assert r.tasks["t1"].state is TaskState.OFFERED and out.offers == []
    assert events_of(out, ev.TASK_CHANGED)[0].agent_id == "a1"
    take(r, "a1")
    check(r.set_priority("t1", 2, T0 + 2, SUP))
    assert (r.tasks["t1"].priority, r.tasks["t1"].agent_id) == (2, "a1")


@pytest.mark.parametrize("bad", [-1, 101, 2.5, True, "3", None])
def test_priority_out_of_range_is_refused(bad):
    r = make_router()
    submit(r, "t1")
    with pytest.raises(InvalidValue):
        r.set_priority("t1", bad, T0, SUP)
    assert r.tasks["t1"].priority == 0
    with pytest.raises(UnknownTask):
        r.set_priority("nope", 1, T0, SUP)


# ---------------------------------------------------------------- redirect


def test_a_waiting_task_moves_to_another_queue_keeping_its_age_and_extra_skills():
    r = make_router(Queue("sales", requirement={"sales": 3}),
                    Queue("billing", requirement={"billing": 4}))
    add_agent(r, "b1", queues=("billing",), skills={"billing": 6})
    add_agent(r, "b2", queues=("billing",), skills={"billing": 6, "fr": 5}, idle_since=T0 + 1)
    submit(r, "t1", skills={"sales": 3, "fr": 2}, at=T0 - 30, now=T0)
    assert r.tasks["t1"].state is TaskState.QUEUED  # nobody in sales

    out = check(r.redirect("t1", T0 + 10, SUP, queue="billing"))

    task = r.tasks["t1"]
    assert (task.queue, task.created_at, task.step) == ("billing", T0 - 30, 0)
    assert task.required_skills == {"billing": 4, "fr": 2}
    assert offers(out) == [("t1", "b2")]  # b1 lacks fr
    (moved,) = events_of(out, ev.TASK_TRANSFERRED)
    assert moved.actor == SUP and moved.agent_id is None
    assert moved.data == {"from_agent": None, "from_queue": "sales", "to_queue": "billing"}
    assert list(r.waiting("sales")) == []


def test_an_offered_task_is_withdrawn_and_offered_to_the_named_agent():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", idle_since=T0)
    submit(r, "t1")
    assert offer_of(r, "a1")
    out = check(r.redirect("t1", T0 + 5, SUP, agent_id="a2"))
    assert offers(out) == [("t1", "a2")]
    (withdrawn,) = events_of(out, ev.OFFER_WITHDRAWN)
    assert (withdrawn.agent_id, withdrawn.actor, withdrawn.data["reason"]) == (
        "a1", SUP, "redirected")
    why = events_of(out, ev.TASK_OFFERED)[0].data["explanation"]
    assert (why["rule"], why["by"]) == ("supervisor", SUP)
    assert events_of(out, ev.TASK_TRANSFERRED)[0].data["offered_to"] == "a1"
    assert "a1" not in r.declined.get("t1", ())  # not a decline: a1 may get it later
    assert r.agents["a1"].offer_id is None


def test_a_task_named_for_an_agent_skips_skills_and_order_but_not_capacity():
    r = make_router(Queue("sales", requirement={"sales": 5}), Queue("other"))
    add_agent(r, "x", queues=("other",), skills={})  # not in sales, no skill
    add_agent(r, "busy", queues=("other",), status=BREAK)
    submit(r, "t1")
    with pytest.raises(NotEligible):
        r.redirect("t1", T0, SUP, agent_id="busy")
    with pytest.raises(UnknownAgent):
        r.redirect("t1", T0, SUP, agent_id="ghost")
    out = check(r.redirect("t1", T0 + 1, SUP, agent_id="x"))
    assert offers(out) == [("t1", "x")]
    _, out = take(r, "x", T0 + 2)
    assert r.tasks["t1"].agent_id == "x"


def test_redirect_of_an_assigned_task_is_a_transfer_by_the_supervisor():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1")
    add_agent(r, "b1", queues=("billing",))
    submit(r, "t1")
    take(r, "a1")
    out = check(r.redirect("t1", T0 + 5, SUP, queue="billing"))
    (moved,) = events_of(out, ev.TASK_TRANSFERRED)
    assert (moved.actor, moved.data["from_agent"]) == (SUP, "a1")
    assert offers(out) == [("t1", "b1")]


def test_redirect_refusals_change_nothing():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1")
    submit(r, "t1")
    with pytest.raises(InvalidValue):
        r.redirect("t1", T0, SUP)
    with pytest.raises(InvalidValue):
        r.redirect("t1", T0, SUP, queue="billing", agent_id="a1")
    with pytest.raises(InvalidValue):
        r.redirect("t1", T0, SUP, agent_id="a1")  # already offered to a1
    with pytest.raises(UnknownQueue):
        r.redirect("t1", T0, SUP, queue="nope")
    task = r.tasks["t1"]
    assert (task.state, task.agent_id, task.queue) == (TaskState.OFFERED, "a1", "sales")
    take(r, "a1")
    check(r.wrap_up("a1", "t1", T0 + 1))
    with pytest.raises(IllegalTransition):
        r.redirect("t1", T0 + 2, SUP, queue="billing")


def test_redirect_ends_a_preference_for_one_agent():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1")
    add_agent(r, "a2", idle_since=T0 - 50)
    check(r.set_status("a1", BREAK, T0 + 1, "lunch"))
    t = new_task("t1", channel=EMAIL)
    t.attributes = {"preferred_agent": "a1", "preferred_until": T0 + 3600}
    check(r.submit(t, T0 + 2))
    assert r.reserved_for("t1") == "a1"
    out = check(r.redirect("t1", T0 + 3, SUP, agent_id="a2"))
    ended = [e for e in events_of(out, ev.TASK_CHANGED) if e.data.get("preference") == "ended"]
    assert ended[0].data["reason"] == "redirected"
    assert r.reserved_for("t1") is None and r.sticky_until("t1") is None
    assert offers(out) == [("t1", "a2")]


# ---------------------------------------------------------------- take back


def test_take_back_requeues_with_its_age_and_never_offers_it_back():
    r = make_router()
    add_agent(r, "a1", idle_since=T0 - 100)
    add_agent(r, "a2", status=OFFLINE)
    submit(r, "t1", at=T0 - 20, now=T0)
    take(r, "a1")
    out = check(r.take_back("t1", T0 + 5, SUP))
    (back,) = events_of(out, ev.TASK_REQUEUED)
    assert (back.agent_id, back.actor, back.data) == ("a1", SUP, {"reason": "supervisor"})
    assert ("t1", "a1") in out.declines and out.offers == []  # a1 is free but declined it
    task = r.tasks["t1"]
    assert (task.state, task.agent_id, task.created_at) == (TaskState.QUEUED, None, T0 - 20)
    out = check(r.set_status("a2", AVAILABLE, T0 + 6))
    assert offers(out) == [("t1", "a2")]


def test_take_back_needs_an_assigned_task():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "t1")
    with pytest.raises(IllegalTransition):
        r.take_back("t1", T0, SUP)
    assert "t1" not in r.declined
    with pytest.raises(UnknownTask):
        r.take_back("nope", T0, SUP)


# ---------------------------------------------------------------- agents


def test_moving_an_agent_to_another_queue_is_audited_and_the_routing_follows():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1", queues=("sales",))
    submit(r, "t1", queue="billing", channel=EMAIL)
    assert r.tasks["t1"].state is TaskState.QUEUED
    agent = r.agents["a1"]
    moved = Agent("a1", name=agent.name, skills={"x": 3}, queues={"billing"},
                  capacity=dict(agent.capacity), channels=set(agent.channels))
    out = check(r.put_agent(moved, T0 + 1, SUP))
    (changed,) = events_of(out, ev.AGENT_CHANGED)
    assert changed.actor == SUP
    assert changed.data == {"queues": ["billing"], "skills": {"x": 3}}
    assert offers(out) == [("t1", "a1")]
    assert r.agents["a1"].status is AVAILABLE  # status and work kept
    assert r.members("sales") == set()


# ---------------------------------------------------------------- properties


class SupervisedMachine(RouterMachine):
    """The router machine with a supervisor at work: priorities, redirects, take-backs and
    agents moved between queues, mixed with everything agents, customers and time do.

    What a supervisor may do that the router alone never does, and the invariants that
    therefore change: an offer the supervisor directs to a named agent (or one pending while
    its agent was moved out of the task's queue) may go to someone not eligible, in a pull
    queue, or who declined the task; once an agent has left a queue, a task may wait at an
    escalation step nobody could take any more (the router re-checks steps on its timers)."""

    def __init__(self) -> None:
        super().__init__()
        self.exempt: set[str] = set()  # ids of offers a supervisor's action may make unusual
        self.left_a_queue = False

    def apply(self, out: Outcome) -> Outcome:
        for e in out.events:
            if e.kind == ev.TASK_OFFERED and e.data["explanation"]["rule"] in (
                    "supervisor", "transfer"):
                self.exempt.add(e.data["offer_id"])
        return super().apply(out)

    def offers_are_consistent(self) -> None:
        """As the router machine's check, with the exemptions above."""
        r = self.router
        by_agent = [o.agent_id for o in r.offers.values()]
        assert len(by_agent) == len(set(by_agent)), "an agent with two offers"
        for offer in r.offers.values():
            task, agent = r.tasks[offer.task_id], r.agents[offer.agent_id]
            assert task.state is TaskState.OFFERED
            assert task.offer_id == offer.id and task.agent_id == agent.id
            assert agent.offer_id == offer.id and agent.offer_task_id == task.id
            assert agent.offer_channel is task.channel is offer.channel
            assert agent.status is AVAILABLE and task.channel in agent.channels
            if offer.id not in self.exempt:
                assert eligible(r, agent, task), (agent, task)
                assert r.queues[task.queue].mode is Mode.PUSH
                assert agent.id not in self.declines.get(task.id, ()), "offered to a decliner"
        offered = {t.id for t in r.tasks.values() if t.state is TaskState.OFFERED}
        assert offered == {o.task_id for o in r.offers.values()}

    def no_wait_at_a_step_nobody_could_take(self) -> None:
        if not self.left_a_queue:
            super().no_wait_at_a_step_nobody_could_take()

    def check_stickiness(self, out: Outcome) -> None:
        # A supervisor's redirect ends a preference for its own reason; the rest as before.
        redirected = {e.task_id for e in out.events if e.kind == ev.TASK_CHANGED
                      and e.data.get("preference") == "ended"
                      and e.data["reason"] == "redirected"}
        for task_id in redirected:
            self.prefs.pop(task_id, None)
        super().check_stickiness(Outcome(
            events=[e for e in out.events if not (
                e.task_id in redirected and (e.kind == ev.TASK_CHANGED or (
                    e.kind == ev.TASK_OFFERED
                    and e.data["explanation"]["rule"] == "supervisor")))],
            offers=out.offers, ended=out.ended, tasks=out.tasks, declines=out.declines))

    def check_agent_choice(self, out: Outcome) -> None:
        # An offer the supervisor directed goes to whom they named, not by the queue's rule.
        if any(e.kind == ev.TASK_OFFERED and e.data["explanation"]["rule"] in (
                "supervisor", "transfer") for e in out.events):
            return
        super().check_agent_choice(out)

    def open_ids(self, *states: TaskState) -> list[str]:
        return self.tasks_in(*(states or (TaskState.QUEUED, TaskState.OFFERED,
                                          TaskState.ASSIGNED, TaskState.WRAP_UP)))

    @precondition(lambda self: self.router.tasks)
    @rule(data=st.data(), priority=st.integers(min_value=0, max_value=4))
    def supervisor_sets_priority(self, data, priority) -> None:
        r = self.router
        task = r.tasks[self.pick_from(data, r.tasks, "task")]
        state, agent_id = task.state, task.agent_id
        self.apply(r.set_priority(task.id, priority, self.now, SUP))
        assert task.priority == priority
        if state is not TaskState.QUEUED:
            assert (task.state, task.agent_id) == (state, agent_id)

    @precondition(lambda self: self.router.tasks)
    @rule(data=st.data(), to_agent=st.booleans())
    def supervisor_redirects(self, data, to_agent) -> None:
        r = self.router
        task = r.tasks[self.pick_from(data, r.tasks, "task")]
        state, holder = task.state, task.agent_id
        queue = agent_id = None
        if to_agent and r.agents:
            agent_id = self.pick_from(data, r.agents, "to agent")
        else:
            queue = data.draw(st.sampled_from(QUEUES), label="to queue")
        declined = set(self.declines.get(task.id, ()))
        if state is TaskState.ASSIGNED:  # a transfer: the holder passes it on
            self.declines.setdefault(task.id, set()).add(holder)
        try:
            out = self.apply(r.redirect(task.id, self.now, SUP, queue=queue, agent_id=agent_id))
        except (NotEligible, IllegalTransition, InvalidValue):
            assert (task.state, task.agent_id) == (state, holder)
            self.declines[task.id] = declined
            if not declined:
                del self.declines[task.id]
            return
        assert state in (TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED)
        if state is TaskState.ASSIGNED:
            assert task.id not in r.agents[holder].held
        if agent_id is not None:
            assert (task.state, task.agent_id) == (TaskState.OFFERED, agent_id)
        else:
            assert task.queue == queue
        self.prefs.pop(task.id, None)
        moved = events_of(out, ev.TASK_TRANSFERRED)
        assert len(moved) == 1 and moved[0].actor == SUP

    @precondition(lambda self: self.tasks_in(TaskState.ASSIGNED))
    @rule(data=st.data())
    def supervisor_takes_back(self, data) -> None:
        r = self.router
        task = r.tasks[self.pick_from(data, self.tasks_in(TaskState.ASSIGNED), "task")]
        holder = task.agent_id
        self.declines.setdefault(task.id, set()).add(holder)
        self.apply(r.take_back(task.id, self.now, SUP))
        assert task.id not in r.agents[holder].held
        assert task.agent_id != holder

    @precondition(lambda self: self.router.agents)
    @rule(data=st.data(), queues=st.sets(st.sampled_from(QUEUES)))
    def supervisor_moves_an_agent(self, data, queues) -> None:
        r = self.router
        agent = r.agents[self.pick_from(data, r.agents, "agent")]
        status, held = agent.status, dict(agent.held)
        if agent.queues - queues:
            self.left_a_queue = True
            if agent.offer_id is not None:  # pending: it may be from a queue they leave
                self.exempt.add(agent.offer_id)
        config = Agent(agent.id, name=agent.name, skills=dict(agent.skills), queues=set(queues),
                       capacity=dict(agent.capacity), channels=set(agent.channels))
        self.apply(r.put_agent(config, self.now, SUP))
        assert (agent.status, agent.held, agent.queues) == (status, held, set(queues))
        for q in QUEUES:
            assert (agent.id in r.members(q)) == (q in queues)


SupervisedMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisedRouterProperties = SupervisedMachine.TestCase
