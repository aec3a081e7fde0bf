"""Queries: read models for people — live queue figures from the router's memory, a customer's
history and task lists from the store. Reads never change state."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.offers import Offer
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel, Task

from .ports import Store, TaskSummary


@dataclass(frozen=True, slots=True)
class QueueFigures:
    queue: str
    channel: str
    waiting: int
    longest_wait: float  # seconds; 0 when nothing waits
    oldest_deadline: float | None
    members: int
    available: int


class Queries:
    def __init__(self, router: Router, store: Store) -> None:
        self.router = router
        self.store = store

    def queue_figures(self, now: float) -> list[QueueFigures]:
        """Per queue and channel: waiting tasks, longest wait, oldest deadline, agents.
        Costs O(waiting tasks): for a supervisor's view once a second, not for routing."""
        out = []
        for name in sorted(self.router.queues):
            members = self.router.members(name)
            for channel in Channel:
                waiting = [t for t in self.router.waiting(name) if t.channel is channel]
                deadlines = [t.deadline for t in waiting if t.deadline is not None]
                out.append(QueueFigures(
                    queue=name,
                    channel=channel.value,
                    waiting=len(waiting),
                    longest_wait=max((now - t.created_at for t in waiting), default=0.0),
                    oldest_deadline=min(deadlines, default=None),
                    members=len(members),
                    available=self.router.available_count(name, channel),
                ))
        return out

    # One agent's live state, for the edges (read only: never change what these return).

    def agent(self, agent_id: str) -> Agent | None:
        return self.router.agents.get(agent_id)

    def task(self, task_id: str) -> Task | None:
        """An open task (None once it is closed)."""
        return self.router.tasks.get(task_id)

    def held(self, agent_id: str) -> list[Task]:
        """The agent's assigned and wrap-up tasks."""
        agent = self.agent(agent_id)
        if agent is None:
            return []
        return [t for t in (self.task(i) for i in agent.held) if t is not None]

    def pending_offer(self, agent_id: str) -> Offer | None:
        agent = self.agent(agent_id)
        if agent is None or agent.offer_id is None:
            return None
        return self.router.offers.get(agent.offer_id)

    def presence(self, agent: Agent) -> str:
        return agent.presence(self.router.matrix).value

    def agent_presence(self) -> dict[str, str]:
        matrix = self.router.matrix
        return {a.id: a.presence(matrix).value for a in self.router.agents.values()
                if a.status is not Presence.OFFLINE or a.held}

    def customer_history(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskSummary]]:
        return self.store.customer_tasks(customer_id, limit)

    def tasks(self, state: str | None = None, queue: str | None = None,
              limit: int = 1000) -> Deferred[list[TaskSummary]]:
        return self.store.list_tasks(state, queue, limit)
