"""Queries: read models for people — live queue figures from the router's memory, what an agent
of a pull queue may pick, a customer's history and task lists from the store. Reads never
change state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import DomainError
from dispatcher.domain.offers import Offer
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel, Task

from .ports import Store, TaskSummary

MAX_PULL_LIST = 50  # items of one pull list (the count says how many there are in all)
MAX_CACHED_NAMES = 10_000  # customer names remembered for pull lists (then forgotten at once)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    queue: str
    channel: str
    waiting: int
    longest_wait: float  # seconds; 0 when nothing waits
    oldest_deadline: float | None
    members: int
    available: int


@dataclass(frozen=True, slots=True)
class PullItem:
    """One task an agent may pick. `customer`: the customer's name, else their address or
    number; `subject` (e-mails) or `caller` (calls) says what it is about."""

    task_id: str
    channel: str
    queue: str
    request: str | None  # the request number, e.g. "SB-000123"
    subject: str | None
    caller: str | None
    customer_id: str | None
    customer: str
    created_at: float
    age: float  # seconds waited
    deadline: float | None
    priority: int


@dataclass(frozen=True, slots=True)
class PullList:
    """The first items, best first, and how many the agent could pick in all."""

    items: tuple[PullItem, ...]
    total: int


class Queries:
    def __init__(self, router: Router, store: Store) -> None:
        self.router = router
        self.store = store
        self._names: dict[str, str] = {}  # customer id -> name (pull lists)

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

    def acting_agent(self, sub: str, role: str) -> Agent | None:
        """The agent a connection acts as: its subject's, for agents and supervisors; never
        for an integration (a PBX token sees calls, not an agent's offers and customers, even
        when its subject happens to be an agent's id)."""
        return None if role == "integration" else self.agent(sub)

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

    def queue(self, name: str) -> Queue | None:
        return self.router.queues.get(name)

    def wrap_up_window(self, task_id: str) -> tuple[float, float] | None:
        """(when the task's wrap-up ends by itself, the latest it may be extended to)."""
        return self.router.wrap_up_window(task_id)

    # Pull queues: the list an agent picks from.

    def pulls(self, agent_id: str) -> bool:
        """Whether the agent is a member of a pull queue."""
        agent = self.agent(agent_id)
        queues = self.router.queues
        return agent is not None and any(
            name in queues and queues[name].mode is Mode.PULL for name in agent.queues)

    def pull_list(self, agent_id: str, now: float, limit: int = MAX_PULL_LIST
                  ) -> Deferred[PullList]:
        """What the agent could pick now from their pull queues, in the order the router serves
        (Router.pull_list), at most `limit` items, with the customers' names."""
        try:
            tasks, total = self.router.pull_list(agent_id, limit)
        except DomainError as exc:  # an unknown agent
            return fail(exc)
        drafts = [self._pull_draft(t, now) for t in tasks]  # read now: the tasks move on
        return ensureDeferred(self._named(drafts, total))

    @staticmethod
    def _pull_draft(task: Task, now: float) -> dict[str, Any]:
        a = task.attributes
        phone = task.channel is Channel.PHONE
        text = lambda v: v if isinstance(v, str) and v else None  # noqa: E731
        return {"task_id": task.id, "channel": task.channel.value, "queue": task.queue,
                "request": text(a.get("request")),
                "subject": None if phone else text(a.get("subject")),
                "caller": text(a.get("caller")) if phone else None,
                "customer_id": task.customer_id,
                "customer": text(a.get("caller" if phone else "from")) or "",
                "created_at": task.created_at, "age": max(0.0, now - task.created_at),
                "deadline": task.deadline, "priority": task.priority}

    async def _named(self, drafts: list[dict[str, Any]], total: int) -> PullList:
        names = self._names
        for cid in {d["customer_id"] for d in drafts if d["customer_id"]} - names.keys():
            customer = await self.store.get_customer(cid)
            if len(names) >= MAX_CACHED_NAMES:
                names.clear()
            names[cid] = customer.name if customer is not None else ""
        return PullList(tuple(PullItem(**{**d, "customer": names.get(d["customer_id"] or "")
                                          or d["customer"]}) for d in drafts), total)

    def presence(self, agent: Agent) -> str:
        return agent.presence(self.router.matrix_of(agent)).value

    def agent_presence(self) -> dict[str, str]:
        r = self.router
        return {a.id: a.presence(r.matrix_of(a)).value for a in r.agents.values()
                if a.status is not Presence.OFFLINE or a.held}

    def customer_history(self, customer_id: str, limit: int = 50) -> Deferred[list[TaskSummary]]:
        return self.store.customer_tasks(customer_id, limit)

    def tasks(self, state: str | None = None, queue: str | None = None,
              limit: int = 1000) -> Deferred[list[TaskSummary]]:
        return self.store.list_tasks(state, queue, limit)
