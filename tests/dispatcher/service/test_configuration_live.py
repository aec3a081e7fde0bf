"""Configuration's queues and agents changed at run time (`change_queue`, `change_agent`: what
the router did at once): store first, then the router; the router reacts at once. Then the same
rules on the database alone, as the command line uses them."""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import (
    AgentDisabled,
    InUse,
    InvalidValue,
    QueueDisabled,
    UnknownAgent,
    UnknownQueue,
)
from dispatcher.domain.queues import Mode, Queue, check_queue_name
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import RESTART_GRACE_SECONDS
from dispatcher.service.configuration import Configuration
from dispatcher.service.ports import Calendar
from tests.dispatcher.service.stacks import (
    HeldStore,
    build_stack,
    failure_of,
    result,
    support_queue,
)


def test_a_new_queue_is_stored_and_routable():
    s = build_stack()
    result(ensureDeferred(s.configuration.change_queue(support_queue())))
    assert [q.name for q in result(s.store.list_queues())] == ["support"]
    assert "support" in s.router.queues


def test_the_store_is_written_before_the_router_changes():
    store = HeldStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    order = []
    real_put_agent = store.inner.put_agent

    def put_agent(agent, events=()):
        order.append(("stored", agent.id in s.router.agents))
        return real_put_agent(agent, events)

    store.inner.put_agent = put_agent
    result(ensureDeferred(s.configuration.change_agent(
        Agent("ann", skills={"support": 8}, queues={"support"}))))
    assert order == [("stored", False)]
    assert "ann" in s.router.agents


def test_an_agent_for_an_unknown_queue_is_refused_before_anything_is_stored(stack):
    f = failure_of(ensureDeferred(stack.configuration.change_agent(
        Agent("ann", queues={"support", "nope"}))))
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

    result(ensureDeferred(s.configuration.change_queue(support_queue(mode=Mode.PUSH))))

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


# ---------------------------------------------------------------------- stored alone (CLI)


class Stored:
    """The command line's view: `Configuration` on the database alone (no router), every call
    as the operator run by the OS user `user`."""

    def __init__(self, configuration: Configuration, user: str | None) -> None:
        self.configuration, self.user = configuration, user

    def __getattr__(self, name: str):
        method = getattr(self.configuration, name)
        return lambda *a: method(*a, actor=ev.OPERATOR, user=self.user)


def stored(s, user: str | None = "ops") -> Stored:
    return Stored(Configuration(s.store, s.clock), user)


def audit(s) -> list[tuple[str, str, str, dict]]:
    return [(e.kind, e.agent_id, e.actor, dict(e.data)) for e in s.store.agent_events
            if e.kind not in (ev.AGENT_STATUS,)]


def test_a_queue_name_must_survive_addresses_and_settings(stack):
    cli = stored(stack)
    for bad in ("bad name!", "a,b", "x=y", "-lead", "é" * 3, "q" * 65, "sales@x"):
        with pytest.raises(InvalidValue, match="queue name"):
            check_queue_name(bad)
        f = failure_of(ensureDeferred(cli.put_queue(Queue(bad))))
        assert f.check(InvalidValue) and "queue name" in str(f.value)
    assert [q.name for q in result(stack.store.list_queues())] == ["support"]
    live = stack.configuration.change_queue(Queue("bad name!"))  # the live service too
    f = failure_of(ensureDeferred(live))
    assert f.check(InvalidValue)
    for good in ("sales", "level-2", "fr.billing", "q_1"):
        assert check_queue_name(good) == good


def test_every_change_is_audited_with_the_operator_and_the_os_user(stack):
    cli = stored(stack)
    assert result(ensureDeferred(cli.put_queue(Queue("sales")))) is True
    assert result(ensureDeferred(cli.put_queue(Queue("sales", priority=3)))) is False
    assert result(ensureDeferred(cli.put_agent(Agent("ann", queues={"sales"})))) is True
    result(ensureDeferred(cli.set_skills("ann", {"sales": 7})))
    office = Calendar("office", "UTC", {"mon": [["09:00", "17:00"]]}, ())
    result(ensureDeferred(cli.put_calendar(office)))

    got = [a for a in audit(stack) if a[2] == ev.OPERATOR]  # the stack's own: `system`
    assert [(k, who, actor) for k, who, actor, _ in got] == [
        (ev.QUEUE_CHANGED, ev.OPERATOR, ev.OPERATOR),
        (ev.QUEUE_CHANGED, ev.OPERATOR, ev.OPERATOR),
        (ev.AGENT_ADDED, "ann", ev.OPERATOR),
        (ev.AGENT_CHANGED, "ann", ev.OPERATOR),
        (ev.CALENDAR_CHANGED, ev.OPERATOR, ev.OPERATOR),
    ]
    assert all(data["user"] == "ops" for *_, data in got)
    assert got[0][3]["added"] is True and got[1][3]["config"]["priority"] == 3
    assert got[3][3]["skills"] == {"sales": 7}


def test_removal_and_disabling_are_refused_while_work_waits_or_is_held(stack):
    cli = stored(stack)
    stack.put_agent("ann", 8)
    task = stack.call()  # waits in support: nobody is available

    for attempt in (cli.remove_queue("support"), cli.set_queue_disabled("support", True)):
        f = failure_of(ensureDeferred(attempt))
        assert f.check(InUse) and "queue support has 1 open task(s)" in str(f.value)

    stack.login("ann")
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    for attempt in (cli.remove_agent("ann"), cli.set_agent_disabled("ann", True)):
        f = failure_of(ensureDeferred(attempt))
        assert f.check(InUse) and "agent ann holds 1 open task(s)" in str(f.value)
    assert "ann" in {a.id for a in result(stack.store.list_agents())}

    result(stack.sessions.complete("ann", task.id, "done"))
    assert result(ensureDeferred(cli.set_agent_disabled("ann", True))).disabled
    assert result(ensureDeferred(cli.remove_queue("support"))) == ["ann"]
    result(ensureDeferred(cli.remove_agent("ann")))
    assert result(stack.store.list_queues()) == [] and result(stack.store.list_agents()) == []
    kinds = [k for k, *_ in audit(stack)]
    assert kinds[-3:] == [ev.AGENT_CHANGED, ev.QUEUE_REMOVED, ev.AGENT_REMOVED]
    for attempt in (cli.remove_queue("support"), cli.remove_agent("ann")):
        assert failure_of(ensureDeferred(attempt)).check(UnknownQueue, UnknownAgent)


def test_a_disabled_queue_takes_no_new_task_and_a_disabled_agent_no_work(stack):
    stack.put_agent("ann", 8)
    result(ensureDeferred(stack.configuration.change_queue(support_queue(disabled=True))))
    f = failure_of(stack.intake.submit(Channel.PHONE, "support"))
    assert f.check(QueueDisabled) and f.check(UnknownQueue)  # edges treat it as unknown

    result(ensureDeferred(stack.configuration.change_agent(
        Agent("bob", skills={"support": 8}, queues={"support"}, disabled=True))))
    assert failure_of(stack.sessions.login("bob")).check(AgentDisabled)
    assert stack.router.agents["bob"].status is Presence.OFFLINE
    result(stack.sessions.logout("bob"))  # going offline stays possible


def test_a_restart_keeps_work_whose_queue_or_agent_was_removed_meanwhile(stack):
    """The command line checked the database, but a running server took work after it."""
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    held = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    waiting = stack.call()
    result(stack.store.remove_agent("ann"))
    result(stack.store.remove_queue("support"))
    stack.assignment.stop()

    state = result(stack.store.load_state())
    new = build_stack(stack.store, start=stack.clock.seconds() + 10)
    result(new.assignment.restore(state))

    assert new.router.queues["support"].disabled
    assert new.router.tasks[waiting.id].state is TaskState.QUEUED
    assert new.router.agents["ann"].disabled and held.id in new.router.agents["ann"].held
    new.advance(RESTART_GRACE_SECONDS)
    assert new.router.tasks[held.id].state is TaskState.QUEUED  # back, for someone else
