"""Roster: queues and agents changed at run time. Store first, then the router; the router
reacts at once."""

from __future__ import annotations

from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import UnknownQueue
from dispatcher.domain.queues import Mode
from dispatcher.domain.tasks import TaskState
from tests.dispatcher.service.stacks import (
    HeldStore,
    build_stack,
    failure_of,
    result,
    support_queue,
)


def test_a_new_queue_is_stored_and_routable():
    s = build_stack()
    result(s.roster.put_queue(support_queue()))
    assert [q.name for q in result(s.store.list_queues())] == ["support"]
    assert "support" in s.router.queues


def test_the_store_is_written_before_the_router_changes():
    store = HeldStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    order = []
    real_put_agent = store.inner.put_agent

    def put_agent(agent):
        order.append(("stored", agent.id in s.router.agents))
        return real_put_agent(agent)

    store.inner.put_agent = put_agent
    result(s.roster.put_agent(Agent("ann", skills={"support": 8}, queues={"support"})))
    assert order == [("stored", False)]
    assert "ann" in s.router.agents


def test_an_agent_for_an_unknown_queue_is_refused_before_anything_is_stored(stack):
    f = failure_of(stack.roster.put_agent(Agent("ann", queues={"support", "nope"})))
    assert f.check(UnknownQueue)
    assert result(stack.store.list_agents()) == []
    assert "ann" not in stack.router.agents


def test_an_agent_who_now_qualifies_gets_waiting_work_at_once(stack):
    stack.put_agent("cy", 2)
    stack.put_agent("ann", 8)  # keeps step 0 reachable, stays offline
    stack.login("cy")
    task = stack.call()
    assert stack.router.tasks[task.id].state is TaskState.QUEUED

    stack.put_agent("cy", 6)  # trained: now meets support >= 5

    assert stack.router.agents["cy"].skills == {"support": 6}
    assert stack.last_offer("cy").task_id == task.id
    [stored] = [a for a in result(stack.store.list_agents()) if a.id == "cy"]
    assert stored.skills == {"support": 6}


def test_a_queue_switched_to_push_offers_its_waiting_tasks():
    s = build_stack()
    s.put_queue(support_queue(mode=Mode.PULL))
    s.put_agent("ann", 8)
    s.login("ann")
    task = s.call()
    assert s.router.tasks[task.id].state is TaskState.QUEUED

    result(s.roster.put_queue(support_queue(mode=Mode.PUSH)))

    assert s.last_offer("ann").task_id == task.id
    assert result(s.store.list_queues())[0].mode is Mode.PUSH


def test_changing_an_agent_keeps_their_status_and_work(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    stack.put_agent("ann", 9)
    agent = stack.router.agents["ann"]
    assert agent.status.value == "available" and task.id in agent.held
