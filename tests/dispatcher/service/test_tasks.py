"""Tasks for the API's callers (dispatcher/service/tasks.py), on the in-memory stack with a
Clock: who sees and changes what, creation through Intake with `source`, filters and cursor
paging, cancel and reprioritise as router outcomes."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import Forbidden, InvalidValue, UnknownQueue, UnknownTask
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.conversation import Conversation
from dispatcher.service.tasks import (
    Caller,
    TaskFilter,
    Tasks,
    decode_cursor,
    encode_cursor,
    summary_of,
)
from tests.dispatcher.service.stacks import build_stack, failure_of, support_queue

BOSS = Caller("boss", "supervisor")
CRM = Caller("crm", "integration")
A1 = Caller("a1", "agent")


@pytest.fixture
def world():
    stack = build_stack()
    stack.put_queue(support_queue())
    stack.put_queue(Queue("sales"))
    stack.put_agent("a1", 5)
    tasks = Tasks(stack.queries, stack.store, stack.intake, stack.sessions, stack.assignment,
                  Conversation(stack.router, stack.store))
    return stack, tasks


def _new(stack, tasks, caller=CRM, queue="sales", who="ann@example.com", **kw):
    task = stack.wait(tasks.create(caller, "email", queue, identity=who, **kw))
    stack.settle()
    return task


def test_create_goes_through_intake_with_its_source(world) -> None:
    stack, tasks = world
    task = _new(stack, tasks, source="crm", priority=4, attributes={"case": "9"})
    assert task.channel is Channel.EMAIL and task.priority == 4
    assert task.attributes == {"case": "9", "source": "crm", "submitted_by": "integration:crm"}
    assert stack.kinds(task.id)[:2] == ["task.created", "task.queued"]
    assert task.customer_id is not None


@pytest.mark.parametrize("kw,error", [
    ({"queue": "nowhere"}, UnknownQueue),
    ({"who": "not-an-address"}, InvalidValue),
    ({"source": ""}, InvalidValue),
    ({"source": "x" * 41}, InvalidValue),
])
def test_create_refuses_bad_input_and_stores_nothing(world, kw, error) -> None:
    stack, tasks = world
    args = {"queue": "sales", "who": "ann@example.com", **kw}
    d = tasks.create(CRM, "email", args.pop("queue"), identity=args.pop("who"), **args)
    failure_of(d).trap(error)
    assert stack.wait(stack.store.list_tasks()) == []


def test_an_unknown_channel_is_refused(world) -> None:
    _, tasks = world
    failure_of(tasks.create(CRM, "fax", "sales")).trap(InvalidValue)


def test_agents_create_cancel_and_reprioritise_nothing(world) -> None:
    stack, tasks = world
    task = _new(stack, tasks)
    failure_of(tasks.create(A1, "email", "sales")).trap(Forbidden)
    failure_of(tasks.cancel(A1, task.id)).trap(Forbidden)
    failure_of(tasks.set_priority(A1, task.id, 9)).trap(Forbidden)


def test_an_agent_sees_only_the_work_they_hold_or_are_offered(world) -> None:
    stack, tasks = world
    other = _new(stack, tasks)
    stack.login("a1")
    mine = _new(stack, tasks, queue="support", who="bob@example.com")
    offered = stack.last_offer("a1")
    assert offered.task_id == mine.id
    page = stack.wait(tasks.list(A1))
    assert [t.id for t in page.items] == [mine.id]
    assert stack.wait(tasks.show(A1, mine.id)).task.id == mine.id
    failure_of(tasks.show(A1, other.id)).trap(Forbidden)
    # Supervisors and integrations see both.
    assert {t.id for t in stack.wait(tasks.list(BOSS)).items} == {mine.id, other.id}
    assert {t.id for t in stack.wait(tasks.list(CRM)).items} == {mine.id, other.id}


def test_an_integration_never_acts_as_an_agent(world) -> None:
    stack, tasks = world
    stack.login("a1")
    mine = _new(stack, tasks, queue="support")
    detail = stack.wait(tasks.show(Caller("a1", "integration"), mine.id))
    assert detail.conversation is None  # Conversation's rule: not an integration's to read
    assert stack.wait(tasks.show(BOSS, mine.id)).conversation is not None


def test_filters_and_cursor_paging_newest_first(world) -> None:
    stack, tasks = world
    made = []
    for i in range(5):
        stack.clock.advance(1)
        made.append(_new(stack, tasks, who=f"c{i}@example.com").id)
    seen, cursor = [], None
    while True:
        page = stack.wait(tasks.list(BOSS, TaskFilter(queue="sales", channel="email"),
                                     limit=2, cursor=cursor))
        seen += [t.id for t in page.items]
        cursor = page.next
        if cursor is None:
            break
    assert seen == list(reversed(made))
    customer = stack.wait(tasks.show(BOSS, made[2])).task.customer_id
    page = stack.wait(tasks.list(BOSS, TaskFilter(customer=customer)))
    assert [t.id for t in page.items] == [made[2]]
    assert stack.wait(tasks.list(BOSS, TaskFilter(channel="phone"))).items == ()


@pytest.mark.parametrize("kw", [{"limit": 0}, {"limit": 201}, {"limit": True},
                                {"cursor": "not-a-cursor"},
                                {"where": TaskFilter(state="lost")},
                                {"where": TaskFilter(channel="fax")}])
def test_bad_list_requests_are_refused(world, kw) -> None:
    _, tasks = world
    failure_of(tasks.list(BOSS, **kw)).trap(InvalidValue)


def test_cursor_round_trip() -> None:
    stack = build_stack()
    stack.put_queue(Queue("sales"))
    task = stack.wait(stack.intake.submit(Channel.EMAIL, "sales"))
    summary = summary_of(task)
    assert decode_cursor(encode_cursor(summary)) == (summary.created_at, summary.id)


def test_cancel_and_reprioritise_are_committed_outcomes(world) -> None:
    stack, tasks = world
    task = _new(stack, tasks)
    changed = stack.wait(tasks.set_priority(BOSS, task.id, 40))
    assert changed.priority == 40
    stack.wait(tasks.set_priority(CRM, task.id, 41))
    failure_of(tasks.set_priority(BOSS, task.id, 101)).trap(InvalidValue)
    cancelled = stack.wait(tasks.cancel(CRM, task.id, "duplicate"))
    assert cancelled.state == "cancelled"
    events = stack.events(task.id)
    assert [e.actor for e in events if e.kind == "task.changed"] == [
        "supervisor:boss", "integration:crm"]
    assert events[-1].kind == "task.cancelled" and events[-1].actor == "integration:crm"
    failure_of(tasks.cancel(CRM, task.id)).trap(UnknownTask)
    failure_of(tasks.show(BOSS, "none")).trap(UnknownTask)
