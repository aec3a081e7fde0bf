"""Roster: queues and agents changed while the dispatcher runs. Store first, then the router, so
a restart sees what the live router saw; the router reacts at once (an agent who now qualifies
for waiting work gets it)."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import UnknownQueue
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome

from .assignment import Assignment
from .ports import Store


class Roster:
    def __init__(self, assignment: Assignment, store: Store) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store

    def put_queue(self, queue: Queue) -> Deferred[Outcome]:
        return ensureDeferred(self._put_queue(queue))

    async def _put_queue(self, queue: Queue) -> Outcome:
        await self.store.put_queue(queue)
        return await self.assignment.apply(self.router.put_queue(queue, self.assignment.now()))

    def put_agent(self, agent: Agent, actor: str = ev.SYSTEM) -> Deferred[Outcome]:
        """`actor`: who changed the configuration (e.g. `supervisor:<id>`), in its event."""
        return ensureDeferred(self._put_agent(agent, actor))

    async def _put_agent(self, agent: Agent, actor: str = ev.SYSTEM) -> Outcome:
        for q in agent.queues:  # refuse before storing anything
            if q not in self.router.queues:
                raise UnknownQueue(q)
        await self.store.put_agent(agent)
        return await self.assignment.apply(self.router.put_agent(agent, self.assignment.now(),
                                                                 actor))
