"""Property tests of dispatcher.domain.routing: random sequences of outside events (agents
joining, statuses, arrivals, accepts, rejects, expiries, wrap-ups, completions, cancels,
abandons, escalations, pulls, time passing and restarts) against the router's invariants.
Some tasks prefer one agent for a while (stickiness): they must go to nobody else meanwhile,
unless that agent declined them, let an offer of them expire or could never take them.

The invariants are checked against the router's public state after every step, by brute force
(scans of every agent and task, which the router itself must never do).
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence, meets
from dispatcher.domain.errors import NotEligible
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue
from dispatcher.domain.routing import MAX_EXPLAINED, Outcome, Router
from dispatcher.domain.tasks import Channel, Task, TaskState

T0 = 1_000_000.0
SKILLS = ("fr", "de", "en")
QUEUES = ("q0", "q1", "q2")
MAX_AGENTS = 7
MAX_OPEN_TASKS = 24
MAX_RESTARTS = 2
STATUSES = (Presence.AVAILABLE, Presence.AVAILABLE, Presence.AVAILABLE, Presence.BREAK,
            Presence.OFFLINE)
AGENT_ACTIONS = ("answer", "answer", "work", "work", "status", "nothing")
OFFER_ACTIONS = ("accept", "accept", "reject", "expire")
WORK_ACTIONS = ("complete", "wrap_up")
EXPLANATION_KEYS = {"rule", "requirement", "eligible", "available", "skipped", "offered",
                    "passed", "counts"}

# Biased towards agents who can take most tasks, so that offers, declines, queues served
# together and interruptions happen often; the edges (level 0 or 10, capacity 0, one channel)
# still come up.
agent_skills = st.dictionaries(st.sampled_from(SKILLS), st.sampled_from([10, 8, 5, 3, 0]),
                               min_size=2, max_size=3)
task_skills = st.just({}) | st.dictionaries(st.sampled_from(SKILLS),
                                            st.sampled_from([0, 2, 4, 6, 9]), max_size=1)
step_levels = st.none() | st.sampled_from([0, 3, 6, 10])
channels = st.sampled_from(list(Channel))
agent_channels = st.sampled_from([{Channel.PHONE, Channel.EMAIL}] * 4
                                 + [{Channel.PHONE}, {Channel.EMAIL}]).map(set)
agent_queues = st.sampled_from(
    [set(QUEUES)] * 3 + [{"q0"}, {"q1"}, {"q0", "q2"}, {"q1", "q2"}]
).map(set)


@st.composite
def escalation_steps(draw) -> tuple[EscalationStep, ...]:
    n = draw(st.integers(min_value=0, max_value=2))
    return tuple(
        EscalationStep(
            draw(st.sampled_from([0.0, 10.0, 30.0, 60.0, 120.0])),
            draw(st.dictionaries(st.sampled_from(SKILLS), step_levels, max_size=2)),
        )
        for _ in range(n)
    )


@st.composite
def queue_configs(draw, name: str) -> Queue:
    return Queue(
        name,
        steps=draw(escalation_steps()),
        mode=draw(st.sampled_from([Mode.PUSH, Mode.PUSH, Mode.PUSH, Mode.PULL])),
        agent_choice=draw(st.sampled_from(list(AgentChoice))),
        priority=draw(st.integers(min_value=0, max_value=2)),
        sl_target={Channel.PHONE: draw(st.sampled_from([10.0, 20.0])),
                   Channel.EMAIL: draw(st.sampled_from([60.0, 3600.0]))},
    )


def order_key(r: Router, task: Task) -> tuple:
    queue = r.queues[task.queue]
    return (-(task.priority + queue.priority), queue.due(task), task.created_at)


def could_take(r: Router, agent: Agent, channel: Channel) -> bool:
    """Whether the agent, were their pending offer not there, could take `channel`."""
    held = list(agent.held.values())
    return (
        channel in agent.channels
        and sum(1 for c in held if c is channel) < agent.capacity.get(channel, 0)
        and r.matrix.permits(held, channel)
    )


def eligible(r: Router, agent: Agent, task: Task) -> bool:
    return task.queue in agent.queues and meets(agent.skills, task.required_skills)


def copy_task(t: Task) -> Task:
    """A task as the store would rebuild it from its row."""
    task = Task(
        id=t.id, channel=t.channel, queue=t.queue, customer_id=t.customer_id,
        created_at=t.created_at, base_skills=dict(t.base_skills), priority=t.priority,
        deadline=t.deadline, attributes=dict(t.attributes), state=t.state, step=t.step,
        agent_id=t.agent_id, offer_id=t.offer_id, offer_expires_at=t.offer_expires_at,
        step_started_at=t.step_started_at, updated_at=t.updated_at,
    )
    task.required_skills = dict(t.required_skills)
    return task


def copy_agent(a: Agent) -> Agent:
    """An agent's configuration as the store keeps it (no status, no work)."""
    return Agent(id=a.id, name=a.name, skills=dict(a.skills), queues=set(a.queues),
                 capacity=dict(a.capacity), channels=set(a.channels), idle_since=a.idle_since)


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        counter = itertools.count(1)
        self.new_offer_id = lambda: f"o{next(counter)}"  # unique across restarts
        self.router = Router(new_offer_id=self.new_offer_id)
        self.now = T0
        self.queues: list[Queue] = []
        self.agent_seq = itertools.count()
        self.task_seq = itertools.count()
        self.declines: dict[str, set[str]] = {}  # the model: task id -> agents who declined
        # The model of stickiness: task id -> (preferred agent, until) while it holds.
        self.prefs: dict[str, tuple[str, float]] = {}
        self.fired_at = T0  # when the service's timers last fired
        self.calls = 0
        self.restarts = 0

    # ------------------------------------------------------------ setup

    @initialize(data=st.data(), n_agents=st.integers(min_value=1, max_value=4))
    def setup(self, data, n_agents) -> None:
        for name in QUEUES:
            q = data.draw(queue_configs(name), label=name)
            self.queues.append(q)
            self.router.put_queue(q, self.now)
        for _ in range(n_agents):
            self.apply(self.router.put_agent(data.draw(self.agents_drawn()), self.now))

    def agents_drawn(self):
        return st.builds(
            Agent,
            id=st.just(f"a{next(self.agent_seq)}"),
            skills=agent_skills,
            queues=agent_queues,
            capacity=st.fixed_dictionaries({Channel.PHONE: st.sampled_from([1, 1, 1, 0, 2]),
                                            Channel.EMAIL: st.sampled_from([3, 3, 1, 2, 0])}),
            channels=agent_channels,
            status=st.sampled_from(STATUSES),
            idle_since=st.just(self.now),
        )

    # ------------------------------------------------------------ helpers

    def apply(self, out: Outcome) -> Outcome:
        """Check one router call's outcome, then every invariant (a step may make several
        calls, and each must leave the router sound)."""
        self.calls += 1
        for e in out.events:
            if e.kind == ev.TASK_OFFERED:
                why = e.data["explanation"]
                assert set(why) >= EXPLANATION_KEYS, e.data
                # Who was offered, and at most MAX_EXPLAINED passed over, never them.
                assert why["offered"] == e.agent_id, why
                assert len(why["passed"]) <= MAX_EXPLAINED, why
                assert e.agent_id not in {p["agent"] for p in why["passed"]}, why
                assert all(v >= 0 for v in why["counts"].values()), why
        self.check_stickiness(out)
        self.check_serve_order(out)
        self.check_agent_choice(out)
        self.check_all()
        return out

    def check_serve_order(self, out: Outcome) -> None:
        """An agent freed and served gets the first waiting task they could take, in the one
        order (priority desc, due time, arrival) across every queue they serve."""
        r = self.router
        for e in out.events:
            if e.kind != ev.TASK_OFFERED or e.data["explanation"]["rule"] != "best_task_for_agent":
                continue
            offer = r.offers.get(e.data["offer_id"])
            if offer is None:
                continue
            agent, got = r.agents[offer.agent_id], r.tasks[offer.task_id]
            for other in r.tasks.values():
                if (
                    other.state is TaskState.QUEUED
                    and r.reserved_for(other.id) in (None, agent.id)
                    and r.queues[other.queue].mode is Mode.PUSH
                    and eligible(r, agent, other)
                    and could_take(r, agent, other.channel)
                    and agent.id not in self.declines.get(other.id, ())
                ):
                    assert order_key(r, other) >= order_key(r, got), (other, got)

    def check_stickiness(self, out: Outcome) -> None:
        """A preference ends only for a reason that holds; while it holds, its task is offered
        to its agent only."""
        r = self.router
        for e in out.events:
            pref = self.prefs.get(e.task_id)
            if e.kind == ev.TASK_CHANGED and e.data.get("preference") == "ended":
                agent_id, reason = e.data["preferred_agent"], e.data["reason"]
                assert pref is None or pref[0] == agent_id, (pref, e)
                task, agent = r.tasks[e.task_id], r.agents.get(agent_id)
                if reason == "timeout":
                    assert e.data["preferred_until"] <= e.at, e
                elif reason == "unknown_agent":
                    assert agent is None, e
                elif reason == "not_eligible":
                    assert agent is not None and not (
                        task.queue in agent.queues
                        and meets(agent.skills, e.data["requirement"])
                        and task.channel in agent.channels
                        and agent.capacity.get(task.channel, 0) > 0), e
                elif reason == "declined":
                    assert agent_id in self.declines.get(e.task_id, ()), e
                else:
                    assert reason == "offer_expired", e
                    assert any(x.kind == ev.OFFER_EXPIRED and x.task_id == e.task_id
                               and x.agent_id == agent_id for x in out.events), e
                self.prefs.pop(e.task_id, None)
            elif e.kind == ev.TASK_OFFERED:
                sticky = e.data["explanation"]["rule"] == "sticky"
                if pref is not None and e.at < pref[1]:
                    assert e.agent_id == pref[0], f"{e.task_id} for {pref}, offered to {e.agent_id}"
                    assert sticky or r.queues[r.tasks[e.task_id].queue].mode is Mode.PULL
                elif sticky:
                    assert pref is not None and e.agent_id == pref[0], (pref, e)

    def check_agent_choice(self, out: Outcome) -> None:
        """A task offered to an agent goes to the best available one by the queue's rule
        (longest idle, or highest skill then longest idle). Checked when the call made that one
        offer only: then every agent who could take it now could take it then."""
        r = self.router
        if len(out.offers) != 1:
            return
        [e] = [e for e in out.events if e.kind == ev.TASK_OFFERED]
        rule = e.data["explanation"]["rule"]
        if rule in ("best_task_for_agent", "sticky"):
            return
        offer = out.offers[0]
        if offer.id not in r.offers:
            return
        task, chosen = r.tasks[offer.task_id], r.agents[offer.agent_id]

        def key(agent: Agent) -> tuple:
            if rule == AgentChoice.HIGHEST_SKILL.value:
                level = sum(agent.skills.get(s, 0) for s in task.required_skills)
                return (-level, agent.idle_since)
            return (agent.idle_since,)

        for other in r.agents.values():
            if (
                other.id != chosen.id
                and other.can_take(task.channel, r.matrix)
                and eligible(r, other, task)
                and other.id not in self.declines.get(task.id, ())
            ):
                assert key(chosen) <= key(other), (rule, chosen, other)

    def pick_from(self, data, items, label):
        return data.draw(st.sampled_from(sorted(items)), label=label)

    def tasks_in(self, *states: TaskState) -> list[str]:
        return [t.id for t in self.router.tasks.values() if t.state in states]

    # ------------------------------------------------------------ rules

    @precondition(lambda self: len(self.router.agents) < MAX_AGENTS)
    @rule(data=st.data())
    def add_agent(self, data) -> None:
        self.apply(self.router.put_agent(data.draw(self.agents_drawn(), label="agent"), self.now))

    @precondition(lambda self: len(self.router.tasks) < MAX_OPEN_TASKS)
    @rule(data=st.data(), n=st.integers(min_value=1, max_value=3))
    def arrive(self, data, n) -> None:
        """New tasks arrive (random queue, channel, skills, priority, age and deadline); some
        prefer an agent (perhaps one who does not exist) for a while."""
        for _ in range(n):
            pref = data.draw(st.none() | st.tuples(
                st.sampled_from(sorted(self.router.agents) + ["ghost"]),
                st.sampled_from([10.0, 60.0, 1000.0])), label="preference")
            channel = data.draw(channels, label="channel")
            deadline = data.draw(st.none() | st.floats(min_value=0, max_value=7200),
                                 label="deadline")
            task = Task(
                id=f"t{next(self.task_seq)}", channel=channel,
                queue=data.draw(st.sampled_from(QUEUES), label="queue"), customer_id=None,
                created_at=self.now - data.draw(st.sampled_from([0.0, 0.0, 5.0, 50.0]),
                                                label="age"),
                base_skills=data.draw(task_skills, label="skills"),
                priority=data.draw(st.integers(min_value=0, max_value=3), label="priority"),
                deadline=None if deadline is None else self.now + deadline,
            )
            if pref is not None:
                until = self.now + pref[1]
                task.attributes = {"preferred_agent": pref[0], "preferred_until": until}
                self.prefs[task.id] = (pref[0], until)
            self.apply(self.router.submit(task, self.now))
            assert task.state in (TaskState.QUEUED, TaskState.OFFERED)

    @precondition(lambda self: self.router.agents)
    @rule(data=st.data())
    def agents_act(self, data) -> None:
        """Each agent, in turn, answers their offer, finishes some work, changes status or
        does nothing."""
        r = self.router
        for agent_id in sorted(r.agents):
            agent = r.agents[agent_id]
            action = data.draw(st.sampled_from(AGENT_ACTIONS), label=f"{agent_id} does")
            if action == "answer" and agent.offer_id is not None:
                self.answer(data, r.offers[agent.offer_id])
            elif action == "work" and agent.held:
                task = r.tasks[data.draw(st.sampled_from(sorted(agent.held)), label="task")]
                how = data.draw(st.sampled_from(WORK_ACTIONS), label="how")
                if how == "wrap_up" and task.state is TaskState.ASSIGNED:
                    self.apply(r.wrap_up(agent_id, task.id, self.now))
                else:
                    self.apply(r.complete(agent_id, task.id, self.now, "done"))
                    assert task.id not in r.tasks
            elif action == "status":
                status = data.draw(st.sampled_from(STATUSES), label="status")
                reason = "lunch" if status is Presence.BREAK else None
                self.apply(r.set_status(agent_id, status, self.now, reason))
                assert agent.status is status

    def answer(self, data, offer) -> None:
        r = self.router
        how = data.draw(st.sampled_from(OFFER_ACTIONS), label=f"answer {offer.id}")
        if how == "accept":
            self.prefs.pop(offer.task_id, None)  # served
            self.apply(r.accept(offer.agent_id, offer.id, self.now))
            assert r.tasks[offer.task_id].state is TaskState.ASSIGNED
            assert offer.task_id in r.agents[offer.agent_id].held
        elif how == "reject":
            self.declines.setdefault(offer.task_id, set()).add(offer.agent_id)
            self.apply(r.reject(offer.agent_id, offer.id, self.now, "no"))
        else:
            self.apply(r.expire(offer.id, self.now))
            assert r.agents[offer.agent_id].status is Presence.NOT_RESPONDING
            assert offer.task_id in r.tasks

    @precondition(lambda self: self.tasks_in(TaskState.QUEUED, TaskState.OFFERED,
                                             TaskState.ASSIGNED))
    @rule(data=st.data(), abandon=st.booleans())
    def close(self, data, abandon) -> None:
        """A supervisor cancels an open task, or a waiting customer hangs up."""
        r = self.router
        if abandon and self.tasks_in(TaskState.QUEUED, TaskState.OFFERED):
            task_id = self.pick_from(data, self.tasks_in(TaskState.QUEUED, TaskState.OFFERED),
                                     "task")
            created = r.tasks[task_id].created_at
            out = self.apply(r.abandon(task_id, self.now))
            [done] = [e for e in out.events if e.kind == ev.TASK_ABANDONED]
            assert done.data["waited"] == self.now - created
        else:
            ids = self.tasks_in(TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED)
            task_id = self.pick_from(data, ids, "task")
            self.apply(r.cancel(task_id, self.now, "test"))
        assert task_id not in r.tasks
        self.prefs.pop(task_id, None)

    @precondition(lambda self: self.router.tasks)
    @rule(data=st.data())
    def escalate(self, data) -> None:
        task = self.router.tasks[self.pick_from(data, self.router.tasks, "task")]
        was = task.state
        self.apply(self.router.escalate(task.id, self.now))
        if was is TaskState.QUEUED:
            queue = self.router.queues[task.queue]
            due = sum(1 for s in queue.steps if task.created_at + s.after_seconds <= self.now)
            assert task.step >= due

    @precondition(lambda self: self.router.agents and self.tasks_in(TaskState.QUEUED))
    @rule(data=st.data())
    def pick(self, data) -> None:
        r = self.router
        task = r.tasks[self.pick_from(data, self.tasks_in(TaskState.QUEUED), "task")]
        agent = r.agents[self.pick_from(data, r.agents, "agent")]
        may = (
            r.queues[task.queue].mode is Mode.PULL
            and eligible(r, agent, task)
            and agent.can_take(task.channel, r.matrix)
        )
        held_before = list(agent.held.values())
        try:
            self.apply(r.pick(agent.id, task.id, self.now))
        except NotEligible:
            assert not may
            return
        assert may
        self.prefs.pop(task.id, None)
        assert r.matrix.permits(held_before, task.channel)
        assert task.state is TaskState.ASSIGNED and task.agent_id == agent.id

    @rule(seconds=st.sampled_from([1.0, 5.0, 15.0, 45.0, 100.0]), fire=st.booleans())
    def advance_time(self, seconds, fire) -> None:
        """Time passes; with `fire`, every offer and escalation timer now due fires, as the
        service's timers would."""
        self.now += seconds
        if fire:
            r = self.router
            for offer in sorted(r.offers.values(), key=lambda o: o.id):
                if offer.id in r.offers and offer.expires_at <= self.now:
                    self.apply(r.expire(offer.id, self.now))
            for task_id in sorted(r.tasks):
                due = r.step_due(task_id)
                if due is not None and due <= self.now:
                    self.apply(r.escalate(task_id, self.now))
            for task_id in sorted(r.tasks):
                until = r.sticky_until(task_id)
                if until is not None and until <= self.now:
                    self.apply(r.unstick(task_id, self.now))
            self.fired_at = self.now

    # A restart leaves every agent offline: rare, so that the steps after it matter.
    @precondition(
        lambda self: self.restarts < MAX_RESTARTS and self.calls >= 8 * (self.restarts + 1)
    )
    @rule()
    def restart(self) -> None:
        self.restarts += 1
        old = self.router
        fresh = Router(new_offer_id=self.new_offer_id)
        before = {t.id: (t.state, t.agent_id) for t in old.tasks.values()}
        held = {a.id: dict(a.held) for a in old.agents.values()}
        declines = [(t, a) for t, ids in old.declined.items() for a in sorted(ids)]
        out = fresh.restore(
            list(old.queues.values()),
            [copy_agent(a) for a in old.agents.values()],
            [copy_task(t) for t in old.tasks.values()],
            declines,
            self.now,
        )
        self.router = fresh
        self.apply(out)
        assert set(fresh.tasks) == set(before)
        for task_id, (state, agent_id) in before.items():
            task = fresh.tasks[task_id]
            if state is TaskState.OFFERED:
                assert task.state is TaskState.QUEUED and task.agent_id is None
            else:
                assert (task.state, task.agent_id) == (state, agent_id)
        expired = sorted(e.task_id for e in out.events if e.kind == ev.OFFER_EXPIRED)
        assert expired == sorted(t for t, (s, _) in before.items() if s is TaskState.OFFERED)
        assert all(e.data["reason"] == "restart" for e in out.events
                   if e.kind == ev.OFFER_EXPIRED)
        assert fresh.offers == {}
        assert {a.id: a.held for a in fresh.agents.values()} == held
        assert all(a.status is Presence.OFFLINE for a in fresh.agents.values())
        assert fresh.declined == old.declined

    # ------------------------------------------------------------ invariants

    @invariant()
    def check_all(self) -> None:
        self.capacity_and_interruptions()
        self.offers_are_consistent()
        self.tasks_are_where_their_state_says()
        self.declines_are_kept()
        self.nobody_idles_next_to_work_they_could_take()
        self.no_wait_at_a_step_nobody_could_take()
        self.reservations_are_sound()

    def capacity_and_interruptions(self) -> None:
        r = self.router
        for agent in r.agents.values():
            for ch in Channel:
                assert agent.count(ch) <= agent.capacity.get(ch, 0), (agent, ch)
            if agent.offer_id is not None:
                assert r.matrix.permits(list(agent.held.values()), agent.offer_channel), agent
            if Channel.PHONE in agent.held.values():
                assert agent.offer_id is None, agent

    def offers_are_consistent(self) -> None:
        r = self.router
        by_agent = [o.agent_id for o in r.offers.values()]
        assert len(by_agent) == len(set(by_agent)), "an agent with two offers"
        for offer in r.offers.values():
            task, agent = r.tasks[offer.task_id], r.agents[offer.agent_id]
            assert task.state is TaskState.OFFERED
            assert task.offer_id == offer.id and task.agent_id == agent.id
            assert agent.offer_id == offer.id and agent.offer_task_id == task.id
            assert agent.offer_channel is task.channel is offer.channel
            assert agent.status is Presence.AVAILABLE
            assert task.channel in agent.channels
            assert eligible(r, agent, task), (agent, task)
            assert r.queues[task.queue].mode is Mode.PUSH
            assert agent.id not in self.declines.get(task.id, ()), "offered to a decliner"
        offered = {t.id for t in r.tasks.values() if t.state is TaskState.OFFERED}
        assert offered == {o.task_id for o in r.offers.values()}
        for agent in r.agents.values():
            if agent.offer_id is not None:
                assert r.offers[agent.offer_id].agent_id == agent.id

    def tasks_are_where_their_state_says(self) -> None:
        r = self.router
        waiting = [t.id for q in QUEUES for t in r.waiting(q)] if self.queues else []
        assert len(waiting) == len(set(waiting))
        assert set(waiting) == {t.id for t in r.tasks.values() if t.state is TaskState.QUEUED}
        holding = {t: a.id for a in r.agents.values() for t in a.held}
        assert holding == {t.id: t.agent_id for t in r.tasks.values()
                           if t.state in (TaskState.ASSIGNED, TaskState.WRAP_UP)}
        for agent in r.agents.values():
            assert agent.wrapping == {t for t in agent.held
                                      if r.tasks[t].state is TaskState.WRAP_UP}
        for task in r.tasks.values():
            queue = r.queues[task.queue]
            assert task.required_skills == queue.requirement_at(task.base_skills, task.step)

    def declines_are_kept(self) -> None:
        r = self.router
        open_declines = {t: s for t, s in self.declines.items() if t in r.tasks}
        assert r.declined == open_declines

    def nobody_idles_next_to_work_they_could_take(self) -> None:
        r = self.router
        for task in r.tasks.values():
            if task.state is not TaskState.QUEUED or r.queues[task.queue].mode is not Mode.PUSH:
                continue
            for agent in r.agents.values():
                if (
                    agent.can_take(task.channel, r.matrix)
                    and r.reserved_for(task.id) in (None, agent.id)
                    and eligible(r, agent, task)
                    and agent.id not in self.declines.get(task.id, ())
                ):
                    raise AssertionError(f"{agent.id} is free for waiting task {task.id}")


    def no_wait_at_a_step_nobody_could_take(self) -> None:
        """A task does not wait at an escalation step that no member could ever take (whatever
        their status) while a later step exists. Agents only join in this machine, so a step
        that was matchable stays so."""
        r = self.router
        for task in r.tasks.values():
            if task.state is not TaskState.QUEUED:
                continue
            if task.step >= len(r.queues[task.queue].steps):
                continue
            assert any(
                eligible(r, a, task) and task.channel in a.channels
                and a.capacity.get(task.channel, 0) > 0
                for a in r.agents.values()
            ), task

    def reservations_are_sound(self) -> None:
        """A task waits for one agent only while it prefers them, they could take it but for
        their status or the work they hold, did not decline it, and its timer did not fire."""
        r = self.router
        for task in r.tasks.values():
            until = r.sticky_until(task.id)
            if until is not None:
                assert self.prefs.get(task.id) == (self.prefs[task.id][0], until), task
                assert task.state in (TaskState.QUEUED, TaskState.OFFERED), task
            agent_id = r.reserved_for(task.id)
            if agent_id is None:
                continue
            agent = r.agents[agent_id]
            assert task.state is TaskState.QUEUED and r.queues[task.queue].mode is Mode.PUSH
            assert self.prefs[task.id][0] == agent_id and until > self.fired_at, task
            assert eligible(r, agent, task) and agent.capacity.get(task.channel, 0) > 0
            assert task.channel in agent.channels
            assert agent_id not in self.declines.get(task.id, ())
            assert not agent.can_take(task.channel, r.matrix), f"{agent_id} idles next to {task}"


RouterMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouterProperties = RouterMachine.TestCase
