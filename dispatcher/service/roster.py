"""Roster: queues, agents and calendars, and the rules for changing them.

- `Roster`: changed while the dispatcher runs (the console, supervisors). Store first, then the
  router, so a restart sees what the live router saw; the router reacts at once (an agent who
  now qualifies for waiting work gets it).
- `StoredRoster`: changed on the database while no router runs here (the command line). Same
  rules (queue names, agents only in known queues), plus removal and disabling, refused while
  work waits in the queue or is held by the agent; every change is written with its audit event
  in the agent log (actor `operator`, the OS user in its data) in one transaction. A running
  server reads these changes at its next start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, check_skills
from dispatcher.domain.errors import InUse, InvalidValue, UnknownAgent, UnknownQueue
from dispatcher.domain.queues import Queue, check_queue_name
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task

from .assignment import Assignment
from .ports import Calendar, Changes, Store


class Roster:
    def __init__(self, assignment: Assignment, store: Store) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store

    def put_queue(self, queue: Queue) -> Deferred[Outcome]:
        return ensureDeferred(self._put_queue(queue))

    async def _put_queue(self, queue: Queue) -> Outcome:
        check_queue_name(queue.name)
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


SHOWN_TASKS = 5  # tasks named in a refusal


def queue_config(queue: Queue) -> dict[str, Any]:
    """A queue's configuration as plain values (audit data, `queues list --json`)."""
    return {"name": queue.name, "requirement": dict(queue.requirement), "mode": queue.mode.value,
            "agent_choice": queue.agent_choice.value, "priority": queue.priority,
            "steps": [{"after_seconds": s.after_seconds, "requirement": dict(s.requirement)}
                      for s in queue.steps],
            "sl_target": {Channel(c).value: v for c, v in queue.sl_target.items()},
            "offer_timeout": {Channel(c).value: v for c, v in queue.offer_timeout.items()},
            "wrap_up_seconds": queue.wrap_up_seconds, "deadline_rule": queue.deadline_rule,
            "calendar": queue.calendar,
            "dispositions": [{"code": c, "label": label} for c, label in queue.dispositions],
            "disabled": queue.disabled}


def agent_config(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "skills": dict(agent.skills),
            "queues": sorted(agent.queues),
            "capacity": {Channel(c).value: n for c, n in agent.capacity.items()},
            "channels": sorted(Channel(c).value for c in agent.channels),
            "disabled": agent.disabled}


class StoredRoster:
    """Configuration changed on the database (the command line). `user`: who ran it (the OS
    user), kept in each audit event next to the actor."""

    def __init__(self, store: Store, clock: IReactorTime, actor: str = ev.OPERATOR,
                 user: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor
        self.user = user

    def _event(self, kind: str, agent_id: str | None, data: dict[str, Any]) -> ev.Event:
        if self.user:
            data = {**data, "user": self.user}
        return ev.Event(kind, self.clock.seconds(), None, agent_id or self.actor, self.actor,
                        data)

    # ------------------------------------------------------------------ queues

    async def queue(self, name: str) -> Queue:
        found = {q.name: q for q in await self.store.list_queues()}
        if name not in found:
            known = ", ".join(sorted(found)) or "none yet"
            raise InvalidValue(f"no such queue: {name} (known: {known})")
        return found[name]

    async def put_queue(self, queue: Queue) -> bool:
        """Add or update a queue (an update keeps it enabled or disabled as it was); True when
        it is new. Its calendar must exist."""
        check_queue_name(queue.name)
        old = {q.name: q for q in await self.store.list_queues()}.get(queue.name)
        if queue.calendar:
            known = {c.name for c in await self.store.list_calendars()}
            if queue.calendar not in known:
                raise InvalidValue(
                    f"unknown calendar {queue.calendar!r}: add it first with `switchboard "
                    f"calendars add` (known: {', '.join(sorted(known)) or 'none yet'})")
        if old is not None:
            queue.disabled = old.disabled
        await self.store.put_queue(queue, [self._event(
            ev.QUEUE_CHANGED, None, {"queue": queue.name, "added": old is None,
                                     "config": queue_config(queue)})])
        return old is None

    async def remove_queue(self, name: str) -> list[str]:
        """Remove a queue with no open work; the agents it was dropped from."""
        await self.queue(name)
        await self._refuse_open(f"queue {name}", lambda t: t.queue == name)
        members = sorted(a.id for a in await self.store.list_agents() if name in a.queues)
        if not await self.store.remove_queue(name, [self._event(
                ev.QUEUE_REMOVED, None, {"queue": name, "members": members})]):
            raise InvalidValue(f"no such queue: {name}")
        return members

    async def set_queue_disabled(self, name: str, disabled: bool) -> Queue:
        queue = await self.queue(name)
        if disabled:
            await self._refuse_open(f"queue {name}", lambda t: t.queue == name)
        queue.disabled = disabled
        await self.store.put_queue(queue, [self._event(
            ev.QUEUE_CHANGED, None, {"queue": name, "added": False, "disabled": disabled})])
        return queue

    # ------------------------------------------------------------------ agents

    async def agent(self, agent_id: str) -> Agent:
        found = {a.id: a for a in await self.store.list_agents()}
        if agent_id not in found:
            raise UnknownAgent(agent_id)
        return found[agent_id]

    async def put_agent(self, agent: Agent) -> bool:
        """Add or update an agent (an update keeps them enabled or disabled as they were); the
        queues must exist. True when the agent is new."""
        known = {q.name for q in await self.store.list_queues()}
        unknown = agent.queues - known
        if unknown:
            raise InvalidValue(f"unknown queue(s): {', '.join(sorted(unknown))}")
        old = {a.id: a for a in await self.store.list_agents()}.get(agent.id)
        if old is not None:
            agent.disabled = old.disabled
        kind = ev.AGENT_ADDED if old is None else ev.AGENT_CHANGED
        await self.store.put_agent(agent, [self._event(kind, agent.id, agent_config(agent))])
        return old is None

    async def set_skills(self, agent_id: str, skills: dict[str, int]) -> Agent:
        agent = await self.agent(agent_id)
        agent.skills = check_skills(skills)
        await self.store.put_agent(agent, [self._event(
            ev.AGENT_CHANGED, agent.id, {"skills": dict(agent.skills),
                                         "queues": sorted(agent.queues)})])
        return agent

    async def remove_agent(self, agent_id: str) -> None:
        await self.agent(agent_id)
        await self._refuse_open(f"agent {agent_id}", lambda t: t.agent_id == agent_id, "holds")
        if not await self.store.remove_agent(agent_id, [self._event(
                ev.AGENT_REMOVED, agent_id, {"id": agent_id})]):
            raise UnknownAgent(agent_id)

    async def set_agent_disabled(self, agent_id: str, disabled: bool) -> Agent:
        agent = await self.agent(agent_id)
        if disabled:
            await self._refuse_open(f"agent {agent_id}", lambda t: t.agent_id == agent_id,
                                    "holds")
        agent.disabled = disabled
        await self.store.put_agent(agent, [self._event(
            ev.AGENT_CHANGED, agent_id, {"disabled": disabled})])
        return agent

    # ------------------------------------------------------------------ calendars

    async def put_calendar(self, calendar: Calendar) -> None:
        await self.store.put_calendar(calendar, [self._event(
            ev.CALENDAR_CHANGED, None, {"calendar": calendar.name, "timezone": calendar.timezone,
                                        "hours": calendar.hours,
                                        "holidays": list(calendar.holidays)})])

    # ------------------------------------------------------------------ the rest

    def audit(self, what: str, action: str, subject: str | None = None,
              **details: Any) -> Deferred[None]:
        """Audit a configuration change whose own store keeps no log (phones, categories,
        response modes, imports), once it is done: `config.changed` in the agent log, under
        `subject` (an agent's id) or the operator. Never pass a secret in `details`."""
        return self.store.record(Changes(events=[self._event(
            ev.CONFIG_CHANGED, subject, {"what": what, "action": action, **details})]))

    # ------------------------------------------------------------------ the rule

    async def _refuse_open(self, what: str, mine: Callable[[Task], bool],
                           verb: str = "has") -> None:
        """Refuse (InUse) when open tasks match: waiting in a queue, offered to or held by an
        agent, as the database says."""
        state = await self.store.load_state()
        found = sorted((t for t in state.open_tasks if mine(t)), key=lambda t: t.created_at)
        if found:
            shown = ", ".join(f"{t.attributes.get('request') or t.id} ({t.state.value})"
                              for t in found[:SHOWN_TASKS])
            more = f" and {len(found) - SHOWN_TASKS} more" if len(found) > SHOWN_TASKS else ""
            raise InUse(f"{what} {verb} {len(found)} open task(s): {shown}{more}; wait until "
                        f"they are done (or move them from the wallboard), then try again")
