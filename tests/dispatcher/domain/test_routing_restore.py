"""Tests of the router's restore in slices (`restore_setup`, then `restore_tasks` slice by
slice): the same routing state and the same Outcome as the restore in one piece, on a state
that holds every kind of open task a restart finds."""

from __future__ import annotations

import json

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.callbacks import NOT_BEFORE
from dispatcher.domain.queues import EscalationStep, Mode, Queue
from dispatcher.domain.routing import WRAP_UP_ATTRIBUTE, Outcome, Router
from dispatcher.domain.tasks import Channel, Task, TaskState

T0 = 1_000_000.0
NOW = T0 + 100
PHONE, EMAIL = Channel.PHONE, Channel.EMAIL
QUEUED, OFFERED, ASSIGNED, WRAP_UP = (TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED,
                                      TaskState.WRAP_UP)


def queues() -> list[Queue]:
    return [
        Queue("sales", steps=(EscalationStep(30, {"fr": None}),)),
        Queue("support", mode=Mode.PULL),
        Queue("gone", disabled=True),  # the service's stand-in for a removed queue
    ]


def agents() -> list[Agent]:
    # As loaded: some were available, one had an offer, one held tasks (all cleared).
    return [
        Agent(id="a1", queues={"sales", "support"}, skills={"fr": 5},
              status=Presence.AVAILABLE, idle_since=T0 - 50),
        Agent(id="a2", queues={"sales"}, status=Presence.BREAK, idle_since=T0 - 10,
              offer_id="o9", offer_task_id="offered1", offer_channel=PHONE),
        Agent(id="a3", queues={"sales", "gone"}, held={"stale": EMAIL}),
        Agent(id="left", disabled=True),  # the stand-in for a removed agent holding work
    ]


def task(task_id: str, state: TaskState = QUEUED, *, queue: str = "sales",
         channel: Channel = EMAIL, at: float = T0, agent: str | None = None,
         attributes: dict | str | None = None, **kw) -> Task:
    return Task(id=task_id, channel=channel, queue=queue, customer_id=None, created_at=at,
                state=state, agent_id=agent, attributes=attributes or {}, **kw)


def open_tasks() -> list[Task]:
    """A fresh copy of the stored open tasks, in the store's order (restores change them)."""
    window = {"until": NOW + 30, "limit": NOW + 300}
    return [
        task("q_young", at=T0 + 9),
        task("q_old", at=T0 + 1, priority=5),
        task("q_fr", at=T0 + 2, base_skills={"fr": 5}),  # its step is due: 30 s after T0
        task("offered1", OFFERED, channel=PHONE, at=T0 + 3, agent="a2", offer_id="o9",
             offer_expires_at=T0 + 23),
        task("offered2", OFFERED, at=T0 + 4, agent="a1", offer_id="o8",
             offer_expires_at=T0 + 64),
        task("assigned", ASSIGNED, at=T0 + 5, agent="a1"),
        task("wrapping", WRAP_UP, channel=PHONE, at=T0 + 6, agent="a3",
             attributes={WRAP_UP_ATTRIBUTE: window}),
        task("orphan", ASSIGNED, at=T0 + 7, agent="left"),
        task("in_gone", queue="gone", at=T0 + 8),
        task("pulled", queue="support", at=T0 + 2),
        task("parked", channel=PHONE, at=T0, attributes={NOT_BEFORE: NOW + 600}),
        task("parked_over", channel=PHONE, at=T0 + 1, attributes={NOT_BEFORE: NOW - 1}),
        task("sticky", at=T0 + 10,
             attributes=json.dumps({"preferred_agent": "a1", "preferred_until": NOW + 60})),
        task("sticky_declined", at=T0 + 11,
             attributes={"preferred_agent": "a1", "preferred_until": NOW + 60}),
        task("sticky_over", at=T0 + 12,
             attributes={"preferred_agent": "a2", "preferred_until": NOW - 5}),
        task("sticky_unknown", at=T0 + 13,
             attributes={"preferred_agent": "nobody", "preferred_until": NOW + 60}),
        task("packed", at=T0 + 14, attributes=json.dumps({"subject": "hello"})),
    ]


DECLINES = [("sticky_declined", "a1"), ("q_young", "a3")]


def whole() -> tuple[Router, Outcome]:
    r = Router()
    return r, r.restore(queues(), agents(), open_tasks(), DECLINES, NOW)


def sliced(size: int) -> tuple[Router, Outcome]:
    r = Router()
    out = r.restore_setup(queues(), agents(), DECLINES, NOW)
    tasks = open_tasks()
    for start in range(0, len(tasks), size):
        r.restore_tasks(tasks[start:start + size], NOW, out)
    r.restore_tasks([], NOW, out)  # an empty slice changes nothing
    return r, out


def state_of(r: Router) -> dict:
    """What a restore builds, as plain values (the tasks' attributes decoded)."""
    return {
        "tasks": {t.id: (t.state, t.agent_id, t.offer_id, t.offer_expires_at, t.step,
                         t.required_skills, t.updated_at, t.packed, t.attributes)
                  for t in r.tasks.values()},
        "order": list(r.tasks),
        "agents": {a.id: (a.status, a.held, a.wrapping, a.offer_id) for a in r.agents.values()},
        "declined": r.declined,
        "parked": r.parked(),
        "sticky": {t: (r.sticky_until(t), r.reserved_for(t)) for t in r.tasks},
        "steps": {t: r.step_due(t) for t in r.tasks},
        "waiting": {q: sorted(t.id for t in r.waiting(q)) for q in r.queues},
        "pull": [t.id for t in r.pull_list("a1", 10)[0]],
        "offers": r.offers,
    }


def outcome_of(out: Outcome) -> dict:
    return {"events": [(e.kind, e.at, e.task_id, e.agent_id, e.actor, dict(e.data))
                       for e in out.events],
            "tasks": list(out.tasks), "offers": out.offers, "ended": out.ended,
            "declines": out.declines}


def served(r: Router) -> list[tuple]:
    """What happens next: agents come back one by one and finish what they get."""
    done = []
    for i, agent_id in enumerate(("a1", "a2", "a3")):
        out = r.set_status(agent_id, Presence.AVAILABLE, NOW + 1 + i)
        done += [(o.task_id, o.agent_id) for o in out.offers]
        done += [(e.kind, e.task_id) for e in out.events if e.kind != ev.TASK_OFFERED]
    return done


@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_a_restore_in_slices_builds_what_the_whole_restore_builds(size):
    one_router, one_out = whole()
    router, out = sliced(size)
    assert state_of(router) == state_of(one_router)
    assert outcome_of(out) == outcome_of(one_out)
    assert served(router) == served(one_router)


def test_the_mixed_state_holds_every_kind_of_open_task():
    """The state above is what the test means it to be (else the comparison proves little)."""
    r, out = whole()
    assert [(e.kind, e.task_id) for e in out.events if e.kind == ev.OFFER_EXPIRED] == [
        (ev.OFFER_EXPIRED, "offered1"), (ev.OFFER_EXPIRED, "offered2")]
    assert r.parked() == {"parked": NOW + 600}
    assert r.reserved_for("sticky") == "a1" and r.tasks["sticky"].packed is False
    assert r.reserved_for("sticky_declined") is None
    assert r.sticky_until("sticky_over") is None and r.sticky_until("sticky_unknown") is None
    assert r.agents["a1"].held == {"assigned": EMAIL}
    assert r.agents["a3"].held == {"wrapping": PHONE} and r.agents["a3"].wrapping == {"wrapping"}
    assert r.agents["left"].held == {"orphan": EMAIL}
    assert r.step_due("q_fr") == T0 + 2 + 30
    assert r.tasks["packed"].packed
    assert all(a.status is Presence.OFFLINE for a in r.agents.values()) and not r.offers
