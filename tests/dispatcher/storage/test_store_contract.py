"""The contract of `dispatcher.service.ports.Store`, run on every implementation: `MemoryStore`,
`SqlStore` on a temporary SQLite file and `SqlStore` on PostgreSQL.

Each test gets a `Harness`: the store and a `wait(d)` that returns what a Deferred fired with
(the memory store's have already fired; the SQL stores' are driven through a real thread pool by
a `TurnReactor`, see turns.py, so a group commit happens exactly when the test waits).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.ports import (
    Calendar,
    Changes,
    Customer,
    CustomerHistory,
    Identity,
    OutboxItem,
    Store,
    StoredTask,
    TaskFilter,
)
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0
ALICE = Identity("email", "alice@example.org")
BOB = Identity("phone", "+3225550100")
EVERY = TaskFilter()


@dataclass
class Harness:
    store: Store
    wait: Callable[[Deferred[Any]], Any]


def fired(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (raise its failure)."""
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryStore(), fired)
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield Harness(w.store, w.wait)
    w.close()


def make_task(task_id: str = "t1", at: float = T0, **kw: Any) -> Task:
    kw.setdefault("channel", Channel.EMAIL)
    kw.setdefault("queue", "support")
    return Task(id=task_id, customer_id=None, created_at=at, **kw)


def created(task: Task) -> list[Event]:
    return [
        Event(ev.TASK_CREATED, task.created_at, task_id=task.id, data={"channel": "email"}),
        Event(ev.TASK_QUEUED, task.created_at, task_id=task.id, data={"reason": "new"}),
    ]


def create(h: Harness, task: Task, identity: Identity | None = ALICE, name: str = "") -> str:
    return h.wait(h.store.create_task(task, identity, name, created(task)))


def open_tasks(h: Harness) -> dict[str, Task]:
    return {t.id: t for t in h.wait(h.store.load_state()).open_tasks}


# --- configuration -------------------------------------------------------------------------


def sample_queue(name: str = "support") -> Queue:
    return Queue(
        name=name,
        requirement={"french": 5, "billing": 3},
        steps=(
            EscalationStep(60.0, {"french": 2}),
            EscalationStep(300.0, {"french": None, "billing": 1}),
        ),
        mode=Mode.PULL,
        agent_choice=AgentChoice.HIGHEST_SKILL,
        priority=7,
        sl_target={Channel.PHONE: 15.0, Channel.EMAIL: 3600.0},
        sl_share=0.9,
        offer_timeout={Channel.PHONE: 25.0, Channel.EMAIL: 90.0},
        wrap_up_seconds=45.0,
        calendar="brussels",
        deadline_rule="sliding 8h",
        dispositions=(("solved", "Solved"), ("callback", "Call back later")),
    )


def test_queues_round_trip_and_update(h: Harness) -> None:
    queue = sample_queue()
    h.wait(h.store.put_queue(queue))
    h.wait(h.store.put_queue(Queue(name="alpha")))
    assert h.wait(h.store.list_queues()) == [Queue(name="alpha"), queue]
    changed = copy.deepcopy(queue)
    changed.priority = 1
    changed.steps = ()
    changed.calendar = None
    h.wait(h.store.put_queue(changed))
    assert h.wait(h.store.list_queues())[1] == changed
    assert h.wait(h.store.load_state()).queues == [Queue(name="alpha"), changed]


def test_queue_dispositions_round_trip_in_order_and_clear(h: Harness) -> None:
    queue = Queue(name="sales", dispositions=(("won", "Deal won"), ("lost", "Lost — price"),
                                              ("call.back-2", "Call back later")))
    h.wait(h.store.put_queue(queue))
    (stored,) = h.wait(h.store.list_queues())
    assert stored.dispositions == queue.dispositions  # tuples of (code, label), in order
    assert h.wait(h.store.load_state()).queues[0].dispositions == queue.dispositions
    h.wait(h.store.put_queue(Queue(name="sales")))  # updated without codes: any code again
    assert h.wait(h.store.list_queues())[0].dispositions == ()


def test_agents_keep_configuration_not_presence(h: Harness) -> None:
    agent = Agent(
        id="a1",
        name="Ann",
        skills={"french": 8, "billing": 4},
        queues={"support", "sales"},
        capacity={Channel.EMAIL: 5, Channel.PHONE: 1},
        channels={Channel.EMAIL},
        status=Presence.AVAILABLE,
        idle_since=T0,
        held={"t9": Channel.EMAIL},
    )
    h.wait(h.store.put_agent(agent))
    h.wait(h.store.put_agent(Agent(id="a0")))
    expected = Agent(
        id="a1",
        name="Ann",
        skills={"french": 8, "billing": 4},
        queues={"support", "sales"},
        capacity={Channel.EMAIL: 5, Channel.PHONE: 1},
        channels={Channel.EMAIL},
    )
    assert h.wait(h.store.list_agents()) == [Agent(id="a0"), expected]
    assert h.wait(h.store.load_state()).agents[1].status is Presence.OFFLINE


def test_agent_update_replaces_skills_and_queues(h: Harness) -> None:
    h.wait(h.store.put_agent(Agent(id="a1", skills={"french": 8}, queues={"support"})))
    h.wait(h.store.put_agent(Agent(id="a1", name="Ann", skills={"dutch": 3}, queues={"sales"})))
    [agent] = h.wait(h.store.list_agents())
    assert (agent.name, agent.skills, agent.queues) == ("Ann", {"dutch": 3}, {"sales"})


def test_disabled_queues_and_agents_round_trip(h: Harness) -> None:
    h.wait(h.store.put_queue(Queue("support", disabled=True)))
    h.wait(h.store.put_agent(Agent(id="a1", queues={"support"}, disabled=True)))
    [queue] = h.wait(h.store.list_queues())
    [agent] = h.wait(h.store.list_agents())
    assert queue.disabled and agent.disabled
    h.wait(h.store.put_queue(Queue("support")))
    h.wait(h.store.put_agent(Agent(id="a1", queues={"support"})))
    assert not h.wait(h.store.list_queues())[0].disabled
    assert not h.wait(h.store.list_agents())[0].disabled


def test_removing_a_queue_drops_its_memberships_and_removing_an_agent_its_config(
        h: Harness) -> None:
    for name in ("support", "sales"):
        h.wait(h.store.put_queue(Queue(name)))
    h.wait(h.store.put_agent(Agent(id="a1", skills={"x": 1}, queues={"support", "sales"})))
    h.wait(h.store.put_agent(Agent(id="a2", queues={"sales"})))

    assert h.wait(h.store.remove_queue("sales")) is True
    assert h.wait(h.store.remove_queue("sales")) is False
    assert [q.name for q in h.wait(h.store.list_queues())] == ["support"]
    assert {a.id: a.queues for a in h.wait(h.store.list_agents())} == {
        "a1": {"support"}, "a2": set()}

    assert h.wait(h.store.remove_agent("a1")) is True
    assert h.wait(h.store.remove_agent("a1")) is False
    assert [a.id for a in h.wait(h.store.list_agents())] == ["a2"]
    h.wait(h.store.put_agent(Agent(id="a1")))  # the id may come back, without the old skills
    assert {a.id: a.skills for a in h.wait(h.store.list_agents())}["a1"] == {}


def test_calendars_round_trip(h: Harness) -> None:
    cal = Calendar(
        name="brussels",
        timezone="Europe/Brussels",
        hours={"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "sat": []},
        holidays=("2025-12-25", "2026-01-01"),
    )
    h.wait(h.store.put_calendar(cal))
    changed = Calendar(name="brussels", timezone="UTC", hours={}, holidays=())
    h.wait(h.store.put_calendar(Calendar(name="abidjan", timezone="Africa/Abidjan", hours={})))
    assert h.wait(h.store.load_state()).calendars[1] == cal
    h.wait(h.store.put_calendar(changed))
    assert [c.name for c in h.wait(h.store.load_state()).calendars] == ["abidjan", "brussels"]
    assert h.wait(h.store.load_state()).calendars[1] == changed


def test_an_empty_store_loads_an_empty_state(h: Harness) -> None:
    state = h.wait(h.store.load_state())
    assert (state.queues, state.agents, state.open_tasks, state.declines, state.calendars) == (
        [],
        [],
        [],
        [],
        [],
    )


# --- intake and customers ------------------------------------------------------------------


def test_same_identity_same_customer_different_identity_different(h: Harness) -> None:
    first = create(h, make_task("t1"), ALICE, "Alice")
    again = create(h, make_task("t2", T0 + 1), ALICE, "Someone else")
    other = create(h, make_task("t3", T0 + 2), BOB, "Bob")
    assert first == again != other
    customer = h.wait(h.store.get_customer(first))
    assert (customer.id, customer.name, customer.created_at) == (first, "Alice", T0)
    assert customer.identities == (ALICE,)
    assert h.wait(h.store.find_customer(BOB)).id == other
    assert h.wait(h.store.find_customer(Identity("email", "nobody@example.org"))) is None
    assert h.wait(h.store.get_customer("no-such-customer")) is None


def test_no_identity_makes_a_new_anonymous_customer_each_time(h: Harness) -> None:
    one = create(h, make_task("t1"), None, "")
    two = create(h, make_task("t2"), None, "")
    assert one != two
    customer = h.wait(h.store.get_customer(one))
    assert customer.identities == () and customer.created_at == T0


def test_intakes_of_one_turn_with_the_same_new_identity_share_a_customer(h: Harness) -> None:
    ds = [h.store.create_task(make_task(f"t{i}"), BOB, "Bob", []) for i in range(3)]
    ids = {h.wait(d) for d in ds}
    assert len(ids) == 1
    assert h.wait(h.store.find_customer(BOB)).id == ids.pop()


def test_intake_task_gives_the_customer_it_created_as_stored(h: Harness) -> None:
    first = h.wait(h.store.intake_task(make_task("t1"), ALICE, "Alice", created(make_task("t1"))))
    assert first.new == Customer(first.customer_id, "Alice", T0, (ALICE,))
    assert first.new == h.wait(h.store.get_customer(first.customer_id))
    again = h.wait(h.store.intake_task(make_task("t2", T0 + 5), ALICE, "Someone else", []))
    assert again == StoredTask(first.customer_id, None)  # known: not created again
    anonymous = h.wait(h.store.intake_task(make_task("t3", T0 + 9), None, "", []))
    assert anonymous.new == Customer(anonymous.customer_id, "", T0 + 9, ())
    assert anonymous.new == h.wait(h.store.get_customer(anonymous.customer_id))


def test_intakes_of_one_turn_with_a_new_identity_the_first_creates_the_others_join(
        h: Harness) -> None:
    ds = [h.store.intake_task(make_task(f"t{i}", T0 + i), BOB, "Bob", []) for i in range(3)]
    stored = [h.wait(d) for d in ds]
    assert len({s.customer_id for s in stored}) == 1
    assert [s.new for s in stored] == [Customer(stored[0].customer_id, "Bob", T0, (BOB,)),
                                       None, None]
    assert h.wait(h.store.customer_tasks(stored[0].customer_id))[0].id == "t2"


def test_customer_history_is_the_customer_and_their_records_in_one_read(h: Harness) -> None:
    alice = create(h, make_task("t1"), ALICE, "Alice")
    create(h, make_task("t2", T0 + 10, channel=Channel.PHONE), ALICE)
    create(h, make_task("other", T0 + 20), BOB)
    history = h.wait(h.store.customer_history(alice, 5))
    assert history == CustomerHistory(h.wait(h.store.get_customer(alice)),
                                      h.wait(h.store.customer_records(alice, 5)))
    assert [r.summary.id for r in history.records] == ["t2", "t1"]
    assert [e.kind for e in history.records[1].events] == ["task.created", "task.queued"]
    assert [r.summary.id for r in h.wait(h.store.customer_history(alice, 1)).records] == ["t2"]
    assert h.wait(h.store.customer_history("nobody")) == CustomerHistory(None, [])


def test_create_task_stores_the_task_with_its_customer(h: Harness) -> None:
    task = make_task("t1", base_skills={"french": 4}, priority=3, deadline=T0 + 3600)
    task.attributes = {"subject": "Hello", "headers": {"to": ["a@b"]}, "n": 1.5}
    customer_id = create(h, task)
    stored = open_tasks(h)["t1"]
    expected = copy.deepcopy(task)
    expected.customer_id = customer_id
    assert stored == expected
    assert task.customer_id is None  # the caller's object is not touched


def test_a_task_id_is_created_only_once(h: Harness) -> None:
    create(h, make_task("t1"))
    with pytest.raises(DuplicateTask):
        create(h, make_task("t1", T0 + 5), BOB)
    assert len(h.wait(h.store.task_events("t1"))) == 2
    assert h.wait(h.store.find_customer(BOB)) is None


def test_the_store_snapshots_what_it_is_given(h: Harness) -> None:
    task = make_task("t1", attributes={"tags": ["a"]})
    d = h.store.create_task(task, ALICE, "", created(task))
    task.state = TaskState.OFFERED  # the router moves on before the commit
    task.attributes["tags"].append("b")
    h.wait(d)
    stored = open_tasks(h)["t1"]
    assert stored.state is TaskState.QUEUED and stored.attributes == {"tags": ["a"]}


def test_what_the_store_returns_is_a_copy(h: Harness) -> None:
    create(h, make_task("t1", attributes={"tags": ["a"]}))
    h.wait(h.store.put_queue(sample_queue()))
    state = h.wait(h.store.load_state())
    state.open_tasks[0].attributes["tags"].append("b")
    state.open_tasks[0].state = TaskState.CANCELLED
    state.queues[0].requirement["x"] = 1
    again = h.wait(h.store.load_state())
    assert again.open_tasks[0].attributes == {"tags": ["a"]}
    assert again.open_tasks[0].state is TaskState.QUEUED
    assert again.queues == [sample_queue()]


# --- state changes -------------------------------------------------------------------------


def offer(task: Task, at: float) -> Task:
    task.move(TaskState.OFFERED, at)
    task.agent_id, task.offer_id, task.offer_expires_at = "a1", "o1", at + 60
    return task


def test_record_upserts_tasks_and_appends_events_in_order(h: Harness) -> None:
    task = make_task("t1", base_skills={"french": 5})
    task.customer_id = create(h, task)
    offer(task, T0 + 10)
    h.wait(
        h.store.record(
            Changes(
                tasks=[task],
                events=[
                    Event(ev.TASK_OFFERED, T0 + 10, "t1", "a1", data={"offer_id": "o1"}),
                    Event(ev.AGENT_STATUS, T0 + 10, None, "a1", data={"status": "busy"}),
                ],
            )
        )
    )
    task.move(TaskState.ASSIGNED, T0 + 12)
    task.offer_id = task.offer_expires_at = None
    task.step, task.required_skills, task.step_started_at = 1, {}, T0 + 11
    h.wait(
        h.store.record(
            Changes(
                tasks=[task],
                events=[
                    Event(ev.OFFER_ACCEPTED, T0 + 12, "t1", "a1", actor=ev.agent_actor("a1")),
                    Event(ev.TASK_ASSIGNED, T0 + 12, "t1", "a1", data={"via": "offer"}),
                ],
            )
        )
    )
    assert open_tasks(h)["t1"] == task  # every field, required_skills {} included
    trail = h.wait(h.store.task_events("t1"))
    assert [e.kind for e in trail] == [
        ev.TASK_CREATED,
        ev.TASK_QUEUED,
        ev.TASK_OFFERED,
        ev.OFFER_ACCEPTED,
        ev.TASK_ASSIGNED,
    ]
    assert [e.id for e in trail] == sorted(e.id for e in trail)
    assert len({e.id for e in trail}) == len(trail)
    accepted = trail[3]
    assert (accepted.at, accepted.task_id, accepted.agent_id, accepted.actor) == (
        T0 + 12,
        "t1",
        "a1",
        "agent:a1",
    )
    assert trail[2].data == {"offer_id": "o1"} and trail[3].data == {}


def test_record_inserts_a_task_it_does_not_know(h: Harness) -> None:
    task = make_task("t1", channel=Channel.PHONE, priority=9)
    h.wait(h.store.record(Changes(tasks=[task])))
    assert open_tasks(h) == {"t1": task}


def test_record_several_snapshots_of_one_task_keeps_the_last(h: Harness) -> None:
    task = make_task("t1")
    create(h, task)
    first = offer(copy.deepcopy(task), T0 + 1)
    second = copy.deepcopy(first)
    second.move(TaskState.QUEUED, T0 + 61)
    second.agent_id = second.offer_id = second.offer_expires_at = None
    d1 = h.store.record(Changes(tasks=[first]))
    d2 = h.store.record(Changes(tasks=[second, first, second]))
    h.wait(d1), h.wait(d2)
    assert open_tasks(h)["t1"] == second


def test_declines_are_remembered_once_and_only_for_open_tasks(h: Harness) -> None:
    for i in (1, 2):
        create(h, make_task(f"t{i}"))
    h.wait(h.store.record(Changes(declines=[("t1", "a1"), ("t1", "a1"), ("t2", "a1")])))
    h.wait(h.store.record(Changes(declines=[("t1", "a1"), ("t1", "a2")])))
    assert sorted(h.wait(h.store.load_state()).declines) == [
        ("t1", "a1"),
        ("t1", "a2"),
        ("t2", "a1"),
    ]
    closed = make_task("t2")
    closed.move(TaskState.CANCELLED, T0 + 5)
    h.wait(h.store.record(Changes(tasks=[closed])))
    assert sorted(h.wait(h.store.load_state()).declines) == [("t1", "a1"), ("t1", "a2")]


def test_load_state_returns_only_open_tasks(h: Harness) -> None:
    states = [
        TaskState.QUEUED,
        TaskState.OFFERED,
        TaskState.ASSIGNED,
        TaskState.WRAP_UP,
        TaskState.COMPLETED,
        TaskState.CANCELLED,
        TaskState.ABANDONED,
    ]
    tasks = []
    for i, state in enumerate(states):
        task = make_task(f"t{i}", T0 + i)
        task.customer_id = create(h, task)
        task.state = state
        task.updated_at = T0 + 100
        tasks.append(task)
    h.wait(h.store.record(Changes(tasks=tasks, outbox=[OutboxItem("mail", "t0", {"a": 1}, T0)])))
    assert open_tasks(h) == {t.id: t for t in tasks if t.is_open}


# --- queries -------------------------------------------------------------------------------


def test_list_tasks_filters_by_state_and_queue(h: Harness) -> None:
    specs = [("t1", "support", TaskState.QUEUED), ("t2", "sales", TaskState.QUEUED)]
    specs += [("t3", "support", TaskState.COMPLETED), ("t4", "support", TaskState.QUEUED)]
    for i, (task_id, queue, state) in enumerate(specs):
        task = make_task(task_id, T0 + i, queue=queue, priority=i, deadline=T0 + 99,
                         attributes={"subject": f"about {task_id}"})
        create(h, task)
        if state is not TaskState.QUEUED:
            task.state = state
            h.wait(h.store.record(Changes(tasks=[task])))

    def ids(**kw: Any) -> list[str]:
        return [s.id for s in h.wait(h.store.list_tasks(**kw))]

    assert ids() == ["t1", "t2", "t3", "t4"]
    assert ids(state="queued") == ["t1", "t2", "t4"]
    assert ids(queue="support") == ["t1", "t3", "t4"]
    assert ids(state="queued", queue="support") == ["t1", "t4"]
    assert ids(state="queued", limit=2) == ["t1", "t2"]
    assert ids(state="offered") == []
    assert ids(newest_first=True) == ["t4", "t3", "t2", "t1"]
    assert ids(state="queued", limit=2, newest_first=True) == ["t4", "t2"]
    summary = h.wait(h.store.list_tasks(queue="sales"))[0]
    assert (summary.channel, summary.state, summary.priority, summary.deadline) == (
        "email",
        "queued",
        1,
        T0 + 99,
    )
    assert summary.customer_id is not None and summary.agent_id is None
    assert summary.attributes == {"subject": "about t2"}


def test_page_tasks_is_a_keyset_over_every_filter(h: Harness) -> None:
    # Two tasks share a creation time: the id breaks the tie, and a page boundary between them
    # loses neither.
    specs = [("a", T0, "support", Channel.EMAIL, ALICE), ("b", T0 + 1, "sales", Channel.PHONE, BOB),
             ("c", T0 + 1, "support", Channel.PHONE, ALICE), ("d", T0 + 2, "support",
                                                            Channel.EMAIL, BOB),
             ("e", T0 + 3, "sales", Channel.EMAIL, ALICE)]
    for task_id, at, queue, channel, who in specs:
        create(h, make_task(task_id, at, queue=queue, channel=channel), who)
    held = make_task("d", T0 + 2)
    held.state, held.agent_id = TaskState.ASSIGNED, "a1"
    h.wait(h.store.record(Changes(tasks=[held])))
    alice = h.wait(h.store.find_customer(ALICE)).id

    def ids(where: TaskFilter = EVERY, after: tuple[float, str] | None = None,
            limit: int = 10) -> list[str]:
        return [s.id for s in h.wait(h.store.page_tasks(where, after, limit))]

    def walk(where: TaskFilter, size: int) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            page = h.wait(h.store.page_tasks(where, after, size + 1))
            seen += [s.id for s in page[:size]]
            if len(page) <= size:
                return seen
            after = (page[size - 1].created_at, page[size - 1].id)

    assert ids() == ["e", "d", "c", "b", "a"]
    assert ids(limit=2) == ["e", "d"]
    assert ids(after=(T0 + 1, "c")) == ["b", "a"]
    assert ids(after=(T0 + 1, "b")) == ["a"]
    assert ids(after=(T0, "a")) == []
    assert walk(EVERY, 1) == walk(EVERY, 2) == ["e", "d", "c", "b", "a"]
    assert ids(TaskFilter(queue="support")) == ["d", "c", "a"]
    assert ids(TaskFilter(channel="phone")) == ["c", "b"]
    assert ids(TaskFilter(state="queued")) == ["e", "c", "b", "a"]
    assert ids(TaskFilter(agent="a1")) == ["d"]
    assert ids(TaskFilter(customer=alice)) == ["e", "c", "a"]
    assert walk(TaskFilter(queue="support", state="queued"), 1) == ["c", "a"]
    assert walk(TaskFilter(customer=alice, channel="email"), 1) == ["e", "a"]
    assert ids(TaskFilter(queue="support", channel="phone", customer=alice),
               after=(T0 + 1, "c")) == []
    assert ids(TaskFilter(queue="nowhere")) == []
    [summary] = h.wait(h.store.page_tasks(TaskFilter(agent="a1"), None, 5))
    assert (summary.state, summary.agent_id, summary.channel) == ("assigned", "a1", "email")


def test_customer_tasks_across_channels_newest_first(h: Harness) -> None:
    customer = create(h, make_task("old", T0), ALICE)
    create(h, make_task("call", T0 + 50, channel=Channel.PHONE), ALICE)
    create(h, make_task("new", T0 + 100), ALICE)
    create(h, make_task("other", T0 + 200), BOB)
    history = h.wait(h.store.customer_tasks(customer))
    assert [s.id for s in history] == ["new", "call", "old"]
    assert [s.channel for s in history] == ["email", "phone", "email"]
    assert [s.id for s in h.wait(h.store.customer_tasks(customer, limit=2))] == ["new", "call"]
    assert h.wait(h.store.customer_tasks("nobody")) == []


def test_task_events_are_the_task_trail_only(h: Harness) -> None:
    create(h, make_task("t1"))
    create(h, make_task("t2"))
    h.wait(
        h.store.record(
            Changes(
                events=[
                    Event(ev.TASK_CHANGED, T0 + 1, "t2", data={"priority": 5}),
                    Event(ev.AGENT_CHANGED, T0 + 1, None, "a1"),
                    Event(ev.TASK_CHANGED, T0 + 2, "t1", data={"nested": {"k": [1, 2]}}),
                ]
            )
        )
    )
    trail = h.wait(h.store.task_events("t1"))
    assert [(e.kind, e.task_id) for e in trail] == [
        (ev.TASK_CREATED, "t1"),
        (ev.TASK_QUEUED, "t1"),
        (ev.TASK_CHANGED, "t1"),
    ]
    assert trail[-1].data == {"nested": {"k": [1, 2]}} and trail[-1].actor == ev.SYSTEM
    assert h.wait(h.store.task_events("nothing")) == []


def test_last_event_at_is_the_newest_event_of_either_log(h: Harness) -> None:
    assert h.wait(h.store.last_event_at()) is None
    create(h, make_task("t1"))
    assert h.wait(h.store.last_event_at()) == T0
    h.wait(h.store.record(Changes(events=[
        Event(ev.AGENT_STATUS, T0 + 7.25, None, "a1", data={"status": "available"}),
        Event(ev.TASK_CHANGED, T0 + 3, "t1", data={"priority": 5}),  # logged later, older
    ])))
    assert h.wait(h.store.last_event_at()) == T0 + 7.25
    h.wait(h.store.record(Changes(events=[Event(ev.TASK_CHANGED, T0 + 9.5, "t1")])))
    assert h.wait(h.store.last_event_at()) == T0 + 9.5
