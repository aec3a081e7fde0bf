"""Sessions: what an agent (or a supervisor on their behalf) does — presence, accept, reject,
pick, wrap-up (and its extension), complete (with one of the queue's disposition codes, when
the queue lists any).

Each call runs one router decision and returns the Deferred of `Assignment.apply`: it fires
with the outcome once committed, or fails with the DomainError that refused the action
(`OfferNotCurrent` for a late accept, `Forbidden` for someone else's task, ...).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail

from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import AgentDisabled, DomainError, InvalidValue
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel

from .assignment import Assignment


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
        return self._run(self.router.set_channels, agent_id, wanted, self._now(), actor)

    def accept(self, agent_id: str, offer_id: str) -> Deferred[Outcome]:
        return self._run(self.router.accept, agent_id, offer_id, self._now())

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

    def requeue(self, task_id: str, reason: str, actor: str) -> Deferred[Outcome]:
        return self._run(self.router.requeue, task_id, self._now(), reason, actor)

    def cancel(self, task_id: str, reason: str, actor: str) -> Deferred[Outcome]:
        return self._run(self.router.cancel, task_id, self._now(), reason, actor)

    def abandon(self, task_id: str, actor: str = "system") -> Deferred[Outcome]:
        return self._run(self.router.abandon, task_id, self._now(), actor)
