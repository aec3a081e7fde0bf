"""`MemoryStore`: the `dispatcher.service.ports.Store` port in process memory.

Sits under `dispatcher.storage`, beside `SqlStore`, and keeps the same promises (the contract
suite in tests/dispatcher/storage runs on both): customers found by identity, the last snapshot
of a task wins, events in order, declines remembered once, configuration stored without
presence. Every Deferred it returns has already fired. It copies what it is given and what it
returns, so callers may keep mutating their objects; JSON-like values come back as they would
from the database (tuples as lists). For the simulator and for unit tests of the service layer.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail, succeed

from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import (
    Calendar,
    Changes,
    Customer,
    Identity,
    OutboxItem,
    State,
    StoredEvent,
    TaskSummary,
)

from .rows import DEFAULT_HISTORY_LIMIT, DEFAULT_LIST_LIMIT, snapshot


@dataclass(slots=True)
class _CustomerRow:
    name: str
    created_at: float


def _copy_task(task: Task) -> Task:
    out = task.snapshot()
    out.attributes = snapshot(task.attributes)
    return out


def _config_only(agent: Agent) -> Agent:
    """What the store keeps of an agent: configuration, no presence (as `SqlStore` does)."""
    return Agent(
        id=agent.id,
        name=agent.name,
        skills=dict(agent.skills),
        queues=set(agent.queues),
        capacity={ch: agent.capacity.get(ch, 0) for ch in Channel},
        channels={Channel(c) for c in agent.channels},
    )


def _summary(task: Task) -> TaskSummary:
    return TaskSummary(
        id=task.id,
        channel=Channel(task.channel).value,
        queue=task.queue,
        state=task.state.value,
        customer_id=task.customer_id,
        created_at=task.created_at,
        deadline=task.deadline,
        agent_id=task.agent_id,
        priority=task.priority,
    )


class MemoryStore:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._customers: dict[str, _CustomerRow] = {}
        self._identities: dict[Identity, str] = {}
        self._declines: dict[tuple[str, str], None] = {}  # ordered set
        self._task_events: list[StoredEvent] = []
        self._queues: dict[str, Queue] = {}
        self._agents: dict[str, Agent] = {}
        self._calendars: dict[str, Calendar] = {}
        self._task_event_ids = itertools.count(1)
        self._agent_event_ids = itertools.count(1)
        # Inspectable by tests: what SqlStore writes to `agent_events` and `outbox`.
        self.agent_events: list[StoredEvent] = []
        self.outbox: list[OutboxItem] = []

    # intake
    def create_task(
        self, task: Task, identity: Identity | None, customer_name: str, events: Sequence[Event]
    ) -> Deferred[str]:
        if task.id in self._tasks:
            return fail(DuplicateTask(task.id))
        customer_id = self._identities.get(identity) if identity is not None else None
        if customer_id is None:
            customer_id = uuid.uuid4().hex
            self._customers[customer_id] = _CustomerRow(customer_name, task.created_at)
            if identity is not None:
                self._identities[Identity(identity.kind, identity.value)] = customer_id
        stored = _copy_task(task)
        stored.customer_id = customer_id
        self._tasks[task.id] = stored
        self._append(events)
        return succeed(customer_id)

    def record(self, changes: Changes) -> Deferred[None]:
        for task in changes.tasks:
            self._tasks[task.id] = _copy_task(task)
        for task_id, agent_id in changes.declines:
            self._declines[(task_id, agent_id)] = None
        self._append(changes.events)
        self.outbox.extend(
            OutboxItem(i.kind, i.task_id, snapshot(i.payload), i.created_at) for i in changes.outbox
        )
        return succeed(None)

    def _append(self, events: Sequence[Event]) -> None:
        for e in events:
            if e.task_id is not None:
                log, ids = self._task_events, self._task_event_ids
            else:
                log, ids = self.agent_events, self._agent_event_ids
            log.append(
                StoredEvent(
                    next(ids), e.kind, e.at, e.task_id, e.agent_id, e.actor, snapshot(e.data)
                )
            )

    # start-up
    def load_state(self) -> Deferred[State]:
        open_tasks = [_copy_task(t) for t in self._tasks.values() if t.is_open]
        open_ids = {t.id for t in open_tasks}
        return succeed(
            State(
                queues=self._sorted_queues(),
                agents=self._sorted_agents(),
                open_tasks=open_tasks,
                declines=[d for d in self._declines if d[0] in open_ids],
                calendars=[copy.deepcopy(self._calendars[k]) for k in sorted(self._calendars)],
            )
        )

    # configuration
    def put_queue(self, queue: Queue) -> Deferred[None]:
        self._queues[queue.name] = copy.deepcopy(queue)
        return succeed(None)

    def put_agent(self, agent: Agent) -> Deferred[None]:
        self._agents[agent.id] = _config_only(agent)
        return succeed(None)

    def put_calendar(self, calendar: Calendar) -> Deferred[None]:
        self._calendars[calendar.name] = copy.deepcopy(calendar)
        return succeed(None)

    def list_queues(self) -> Deferred[list[Queue]]:
        return succeed(self._sorted_queues())

    def list_agents(self) -> Deferred[list[Agent]]:
        return succeed(self._sorted_agents())

    def _sorted_queues(self) -> list[Queue]:
        return [copy.deepcopy(self._queues[k]) for k in sorted(self._queues)]

    def _sorted_agents(self) -> list[Agent]:
        return [_config_only(self._agents[k]) for k in sorted(self._agents)]

    # queries
    def get_customer(self, customer_id: str) -> Deferred[Customer | None]:
        return succeed(self._customer(customer_id))

    def find_customer(self, identity: Identity) -> Deferred[Customer | None]:
        customer_id = self._identities.get(Identity(identity.kind, identity.value))
        return succeed(None if customer_id is None else self._customer(customer_id))

    def _customer(self, customer_id: str) -> Customer | None:
        row = self._customers.get(customer_id)
        if row is None:
            return None
        identities = sorted(
            (i for i, c in self._identities.items() if c == customer_id),
            key=lambda i: (i.kind, i.value),
        )
        return Customer(customer_id, row.name, row.created_at, tuple(identities))

    def list_tasks(
        self, state: str | None = None, queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT
    ) -> Deferred[list[TaskSummary]]:
        found = [
            t
            for t in self._tasks.values()
            if (state is None or t.state.value == state) and (queue is None or t.queue == queue)
        ]
        found.sort(key=lambda t: (t.created_at, t.id))
        return succeed([_summary(t) for t in found[:limit]])

    def customer_tasks(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> Deferred[list[TaskSummary]]:
        found = [t for t in self._tasks.values() if t.customer_id == customer_id]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return succeed([_summary(t) for t in found[:limit]])

    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        return succeed([copy.deepcopy(e) for e in self._task_events if e.task_id == task_id])
