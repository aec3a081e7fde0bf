"""Sessions: what an agent (or a supervisor on their behalf) does — presence, accept, reject,
pick, wrap-up (and its extension), complete (with one of the queue's disposition codes, when
the queue lists any).

Each call runs one router decision and returns the Deferred of `Assignment.apply`: it fires
with the outcome once committed, or fails with the DomainError that refused the action
(`OfferNotCurrent` for a late accept, `Forbidden` for someone else's task, ...).

The desk's rules live here, whoever the desk is (the console only translates):
- an agent transfers only a task they hold (`transfer_held`);
- an agent keeps at least one channel on (`set_channels`, `switch_channels`): to take nothing,
  they take a break;
- a desk's accept (`accept_at_desk`) of a call that rings the agent's SIP phone is refused
  (calls.py: the phone's answer accepts it);
- `Absences`: the presence grace period of an agent whose desk went away (a pending offer goes
  back at once; held work stays `grace_seconds`, then assigned tasks go back to their queue
  and the agent goes offline).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import (
    AgentDisabled,
    DomainError,
    Forbidden,
    InvalidValue,
    UnknownAgent,
)
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, TaskState

from .assignment import Assignment
from .calls import AnswerOnPhone, answered_on_phone

log = logging.getLogger(__name__)

GRACE_REQUEUE_REASON = "agent_disconnected"


class Sessions:
    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.router = assignment.router

    def _run(self, method, *args, **kwargs) -> Deferred[Outcome]:
        try:
            outcome = method(*args, **kwargs)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(outcome)

    def _now(self) -> float:
        return self.assignment.now()

    def set_status(self, agent_id: str, status: Presence | str, reason: str | None = None,
                   actor: str | None = None) -> Deferred[Outcome]:
        try:
            status = Presence(status)
        except ValueError:
            return fail(InvalidValue(f"unknown status {status!r}"))
        if status is not Presence.OFFLINE and self._disabled(agent_id):
            return fail(AgentDisabled(agent_id))
        return self._run(self.router.set_status, agent_id, status, self._now(), reason, actor)

    def _disabled(self, agent_id: str) -> bool:
        """A disabled agent (`switchboard agents disable`) may finish what they hold, and go
        offline, but take no new work."""
        agent = self.router.agents.get(agent_id)
        return agent is not None and agent.disabled

    def connected(self, agent_id: str) -> None:
        """The agent's desk (the console) connected: after a restart, they are back, and keep
        what they hold whatever presence they choose next (Assignment.back)."""
        self.assignment.back(agent_id)

    def login(self, agent_id: str) -> Deferred[Outcome]:
        return self.set_status(agent_id, Presence.AVAILABLE)

    def logout(self, agent_id: str, actor: str | None = None) -> Deferred[Outcome]:
        return self.set_status(agent_id, Presence.OFFLINE, actor=actor)

    def set_channels(self, agent_id: str, channels, actor: str | None = None
                     ) -> Deferred[Outcome]:
        """Per-channel presence: take new work only on these channels ('email', 'phone')."""
        try:
            wanted = {Channel(c) for c in channels}
        except ValueError:
            return fail(InvalidValue(f"unknown channel in {sorted(map(str, channels))}"))
        if not wanted:
            return fail(InvalidValue("keep at least one channel on (or take a break)"))
        return self._run(self.router.set_channels, agent_id, wanted, self._now(), actor)

    def switch_channels(self, agent_id: str, switches: Mapping[str, bool],
                        actor: str | None = None) -> Deferred[Outcome | None]:
        """Turn some of the agent's channels on or off (`{"phone": False}`); the others keep
        their state. At least one stays on (`InvalidValue`). Fires with None when nothing
        changes, else as `set_channels`."""
        agent = self.router.agents.get(agent_id)
        if agent is None:
            return fail(UnknownAgent(agent_id))
        on = agent.channels - agent.paused
        wanted = {c for c in agent.channels if switches.get(c.value, c in on)}
        if wanted == on:
            return succeed(None)
        return self.set_channels(agent_id, [c.value for c in wanted], actor)

    def accept(self, agent_id: str, offer_id: str) -> Deferred[Outcome]:
        return self._run(self.router.accept, agent_id, offer_id, self._now())

    def accept_at_desk(self, agent_id: str, offer_id: str) -> Deferred[Outcome]:
        """The agent accepts on their desk (a button, not a device): as `accept`, but a call
        that rings their SIP phone is refused with `AnswerOnPhone` (its answer accepts it)."""
        agent = self.router.agents.get(agent_id)
        offer = self.router.offers.get(agent.offer_id) if agent and agent.offer_id else None
        task = self.router.tasks.get(offer.task_id) if offer and offer.id == offer_id else None
        if task is not None and answered_on_phone(task):
            return fail(AnswerOnPhone(agent_id, task.id))
        return self.accept(agent_id, offer_id)

    def reject(self, agent_id: str, offer_id: str, reason: str = "") -> Deferred[Outcome]:
        return self._run(self.router.reject, agent_id, offer_id, self._now(), reason)

    def drop(self, offer_id: str) -> Deferred[Outcome]:
        """The agent's connection dropped while an offer was pending: same as expiry."""
        return self._run(self.router.expire, offer_id, self._now(), "disconnected")

    def pick(self, agent_id: str, task_id: str) -> Deferred[Outcome]:
        if self._disabled(agent_id):
            return fail(AgentDisabled(agent_id))
        return self._run(self.router.pick, agent_id, task_id, self._now())

    def wrap_up(self, agent_id: str, task_id: str) -> Deferred[Outcome]:
        return self._run(self.router.wrap_up, agent_id, task_id, self._now())

    def extend_wrap_up(self, agent_id: str, task_id: str, seconds: float) -> Deferred[Outcome]:
        """More time to wrap up (bounded: see Router.extend_wrap_up); the timer is re-armed."""
        return self._run(self.router.extend_wrap_up, agent_id, task_id, seconds, self._now())

    def complete(self, agent_id: str, task_id: str, disposition: str = "",
                 notes: str = "", coded: bool = True) -> Deferred[Outcome]:
        """The agent is done. `coded`: the disposition is the agent's choice, so it must be one
        of the queue's codes when the queue lists any (`invalid_value` otherwise); False for
        outcomes the system names itself (a redirect, a reminder)."""
        task = self.router.tasks.get(task_id)
        if coded and task is not None and task.agent_id == agent_id:
            queue = self.router.queues.get(task.queue)
            try:
                if queue is not None:
                    queue.check_disposition(disposition)
            except DomainError as exc:
                return fail(exc)
        return self._run(self.router.complete, agent_id, task_id, self._now(), disposition,
                         notes=notes)

    def transfer(self, task_id: str, queue: str | None = None, agent_id: str | None = None,
                 actor: str = "system") -> Deferred[Outcome]:
        """Move an assigned task to another queue, or offer it to a named agent."""
        return self._run(self.router.transfer, task_id, self._now(), actor, queue, agent_id)

    def transfer_held(self, agent_id: str, task_id: str, queue: str | None = None,
                      to_agent: str | None = None) -> Deferred[Outcome]:
        """The agent's own transfer: only of a task they hold (assigned or in wrap-up),
        `Forbidden` otherwise; then as `transfer`, with the agent as the actor."""
        task = self.router.tasks.get(task_id)
        if task is None or task.agent_id != agent_id or task.state not in (
                TaskState.ASSIGNED, TaskState.WRAP_UP):
            return fail(Forbidden(agent_id, f"task {task_id}"))
        return self.transfer(task_id, queue=queue, agent_id=to_agent,
                             actor=ev.agent_actor(agent_id))

    def requeue(self, task_id: str, reason: str, actor: str) -> Deferred[Outcome]:
        return self._run(self.router.requeue, task_id, self._now(), reason, actor)

    def cancel(self, task_id: str, reason: str, actor: str) -> Deferred[Outcome]:
        return self._run(self.router.cancel, task_id, self._now(), reason, actor)

    def abandon(self, task_id: str, actor: str = "system") -> Deferred[Outcome]:
        return self._run(self.router.abandon, task_id, self._now(), actor)


class Absences:
    """The presence grace period of agents whose desk (the console's socket) went away.

    `left(agent_id)`: a pending offer goes back at once (`Sessions.drop`: head of the queue, the
    agent `not_responding`); an agent who is not offline or holds work gets `grace_seconds`
    to come back (`back`), which keeps everything. After that, their assigned tasks go back to
    their queue (`requeue`, reason GRACE_REQUEUE_REASON) and they go offline. `away(agent_id)`
    says whether they are in their grace period now (an offer made to them then cannot reach
    them: the desk gives it back)."""

    def __init__(self, sessions: Sessions, clock: IReactorTime, grace_seconds: float) -> None:
        self.sessions = sessions
        self.clock = clock
        self.grace_seconds = grace_seconds
        self._timers: dict[str, Any] = {}

    @property
    def router(self) -> Any:
        return self.sessions.router

    def left(self, agent_id: str) -> None:
        agent = self.router.agents.get(agent_id)
        if agent is None:
            return
        if agent.offer_id is not None and agent.offer_id in self.router.offers:
            self._logged(self.sessions.drop(agent.offer_id), f"drop offer {agent.offer_id}")
        if agent.status is not Presence.OFFLINE or agent.held:
            self._cancel(agent_id)
            self._timers[agent_id] = self.clock.callLater(self.grace_seconds, self._over,
                                                          agent_id)

    def back(self, agent_id: str) -> None:
        """The agent's desk is back: the grace period ends, and after a restart their work
        stays theirs (`Sessions.connected`)."""
        self._cancel(agent_id)
        self.sessions.connected(agent_id)

    def away(self, agent_id: str) -> bool:
        return agent_id in self._timers

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _cancel(self, agent_id: str) -> None:
        timer = self._timers.pop(agent_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _over(self, agent_id: str) -> None:
        self._timers.pop(agent_id, None)
        agent = self.router.agents.get(agent_id)
        for task_id in list(agent.held) if agent is not None else ():
            task = self.router.tasks.get(task_id)
            if task is not None and task.state is TaskState.ASSIGNED:
                self._logged(self.sessions.requeue(task_id, GRACE_REQUEUE_REASON, ev.SYSTEM),
                             f"requeue {task_id}")
        self._logged(self.sessions.logout(agent_id, actor=ev.SYSTEM), f"log out {agent_id}")

    @staticmethod
    def _logged(d: Deferred[Any], what: str) -> None:
        d.addErrback(lambda f: log.warning("sessions: could not %s: %s", what,
                                           f.getErrorMessage()))
