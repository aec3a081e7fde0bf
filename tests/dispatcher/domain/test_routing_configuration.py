"""Tests of dispatcher.domain.routing's configuration changes: queues and agents removed, agents
disabled (`Router.remove_queue`, `Router.remove_agent`, `put_agent` with `disabled`), and the
open-work rule (`refuse_open_work`) they share with the configuration service."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import InUse, UnknownAgent, UnknownQueue
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import refuse_open_work

from .test_routing import (
    AVAILABLE,
    OFFLINE,
    T0,
    add_agent,
    busy,
    check,
    ended,
    events_of,
    kinds,
    make_router,
    offers,
    submit,
    submit_sticky,
    take,
)


def test_a_removed_queue_leaves_its_members_and_the_router():
    r = make_router(Queue("sales"), Queue("billing"))
    add_agent(r, "a1", queues=("sales", "billing"))
    add_agent(r, "a2", queues=("billing",))
    submit(r, "warm", queue="sales")  # a bucket of the queue exists
    _, _ = take(r, "a1")
    check(r.complete("a1", "warm", T0 + 1))
    out = check(r.remove_queue("sales", T0 + 2, actor="operator"))
    (removed,) = events_of(out, ev.QUEUE_REMOVED)
    assert removed.data == {"queue": "sales", "members": ["a1"]} and removed.actor == "operator"
    assert "sales" not in r.queues and r.members("sales") == set()
    assert r.agents["a1"].queues == {"billing"}
    with pytest.raises(UnknownQueue):
        submit(r, "late", queue="sales")
    # the members still serve what they have left, and the name may be used again
    assert offers(submit(r, "b1", T0 + 3, queue="billing")) == [("b1", "a2")]  # longest idle
    assert offers(submit(r, "b2", T0 + 3, queue="billing")) == [("b2", "a1")]
    take(r, "a2", T0 + 4)
    check(r.complete("a2", "b1", T0 + 4))
    r.put_queue(Queue("sales"), T0 + 4)
    add_agent(r, "a2", queues=("billing", "sales"), now=T0 + 4)
    assert offers(submit(r, "s2", T0 + 5, queue="sales")) == [("s2", "a2")]


def test_a_queue_with_open_work_is_not_removed_and_nothing_changes():
    r = make_router(Queue("sales"))
    submit(r, "t1")
    submit(r, "t2")
    with pytest.raises(InUse, match=r"queue sales has 2 open task\(s\): t1 \(queued\), t2"):
        r.remove_queue("sales", T0)
    assert "sales" in r.queues
    add_agent(r, "a1")
    assert r.agents["a1"].offer_task_id == "t1"
    with pytest.raises(UnknownQueue):
        r.remove_queue("nope", T0)


def test_a_removed_agent_goes_offline_and_their_reserved_work_goes_to_others():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2", status=OFFLINE)
    busy(r, "a2", "call2")
    check(r.complete("a2", "call2", T0 + 1))
    busy(r, "a2", "call3", now=T0 + 2)
    out = submit_sticky(r, "t1", "a2", now=T0 + 3)
    assert r.reserved_for("t1") == "a2"
    with pytest.raises(InUse, match=r"agent a2 holds 1 open task\(s\): call3"):
        r.remove_agent("a2", T0 + 4)
    check(r.complete("a2", "call3", T0 + 5))  # the reserved task was offered to a2 again
    check(r.reject("a2", r.agents["a2"].offer_id, T0 + 6))
    check(r.set_status("a1", AVAILABLE, T0 + 7))
    assert r.agents["a1"].offer_task_id == "t1"
    check(r.reject("a1", r.agents["a1"].offer_id, T0 + 8))
    check(r.set_status("a1", OFFLINE, T0 + 8))
    # a2 may hold a reservation again: a fresh sticky task while they are busy
    busy(r, "a2", "call4", now=T0 + 9)
    out = submit_sticky(r, "t2", "a2", now=T0 + 10)
    assert r.reserved_for("t2") == "a2"
    check(r.complete("a2", "call4", T0 + 11))
    check(r.reject("a2", r.agents["a2"].offer_id, T0 + 12))  # t2 waits in the queue now
    out = check(r.remove_agent("a2", T0 + 13, actor="operator"))
    assert kinds(out)[-1] == ev.AGENT_REMOVED
    assert events_of(out, ev.AGENT_STATUS)[0].data["status"] == "offline"
    assert "a2" not in r.agents and r.members("sales") == {"a1"}
    with pytest.raises(UnknownAgent):
        r.set_status("a2", AVAILABLE, T0 + 14)
    check(r.set_status("a1", AVAILABLE, T0 + 14))
    assert r.agents["a1"].offer_task_id in {"t1", "t2"}


def test_removing_an_agent_ends_the_preference_of_the_tasks_reserved_for_them():
    r = make_router()
    add_agent(r, "a1", status=OFFLINE)
    add_agent(r, "a2", status=OFFLINE)
    busy(r, "a2", "call2")
    check(r.set_status("a1", AVAILABLE, T0))
    submit_sticky(r, "t1", "a2", now=T0 + 1)
    assert r.reserved_for("t1") == "a2"
    check(r.set_status("a1", OFFLINE, T0 + 1))
    check(r.set_status("a1", AVAILABLE, T0 + 2))
    assert r.agents["a1"].offer_task_id is None  # t1 is a2's for now
    check(r.complete("a2", "call2", T0 + 3))
    # ... a2 is offered t1 at once; withdraw by going offline, then remove them
    check(r.set_status("a2", OFFLINE, T0 + 4))
    out = check(r.remove_agent("a2", T0 + 5))
    assert ended(out) == [("t1", "agent_removed")] and r.reserved_for("t1") is None
    assert r.tasks["t1"].agent_id == "a1"  # placed as usual: a1 is free


def test_put_agent_honours_disabled_an_idle_agent_goes_offline_and_gets_no_offer():
    r = make_router()
    add_agent(r, "a1")
    out = check(r.put_agent(Agent("a1", queues={"sales"}, disabled=True), T0 + 1, "operator"))
    assert r.agents["a1"].disabled and r.agents["a1"].status is OFFLINE
    (status,) = events_of(out, ev.AGENT_STATUS)
    assert (status.data["status"], status.actor) == ("offline", "operator")
    submit(r, "t1", T0 + 2)
    check(r.set_status("a1", AVAILABLE, T0 + 3))  # the service refuses this; the router too
    assert r.agents["a1"].offer_task_id is None and r.tasks["t1"].agent_id is None
    check(r.put_agent(Agent("a1", queues={"sales"}), T0 + 4))
    assert not r.agents["a1"].disabled and r.agents["a1"].offer_task_id == "t1"


def test_a_disabled_agent_keeps_what_they_hold_and_gets_nothing_new():
    r = make_router()
    add_agent(r, "a1")
    submit(r, "call1")
    take(r, "a1")
    check(r.put_agent(Agent("a1", queues={"sales"}, disabled=True), T0 + 1))
    assert r.agents["a1"].status is AVAILABLE and "call1" in r.agents["a1"].held
    check(r.complete("a1", "call1", T0 + 2))
    out = submit(r, "call2", T0 + 3)
    assert offers(out) == [] and r.tasks["call2"].agent_id is None


def test_refuse_open_work_names_the_oldest_tasks_first():
    r = make_router()
    for i in range(7):
        submit(r, f"t{i}", T0 + 7 - i)
    with pytest.raises(InUse) as caught:
        refuse_open_work(r.tasks.values(), queue="sales")
    assert "7 open task(s): t6 (queued), t5 (queued)" in str(caught.value)
    assert "and 2 more" in str(caught.value)
    refuse_open_work(r.tasks.values(), queue="billing")
    refuse_open_work(r.tasks.values(), agent_id="a1")
