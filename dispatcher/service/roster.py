"""Roster: the in-process shorthand of `Configuration` for services that change queues and agents
while the dispatcher runs (codification's spam queue, supervisors' balancing, the demo, tests).

Sits in `dispatcher.service` beside configuration.py and holds no rule of its own: every check,
the audit and the live apply are `Configuration`'s. Its methods return the Deferred of what the
router did at once (an `Outcome`: offers made because of the change).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome

from .assignment import Assignment
from .configuration import Configuration, agent_config, queue_config
from .ports import Store

__all__ = ["Roster", "agent_config", "queue_config"]


class Roster:
    def __init__(self, assignment: Assignment, store: Store,
                 configuration: Configuration | None = None) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store
        self.configuration = configuration or Configuration(store, assignment.clock,
                                                            assignment=assignment)

    def put_queue(self, queue: Queue, actor: str = ev.SYSTEM) -> Deferred[Outcome]:
        return ensureDeferred(self.configuration.change_queue(queue, actor))

    def put_agent(self, agent: Agent, actor: str = ev.SYSTEM) -> Deferred[Outcome]:
        """`actor`: who changed the configuration (e.g. `supervisor:<id>`), in its event."""
        return ensureDeferred(self.configuration.change_agent(agent, actor))
