"""Assignment: carry out the router's decisions — commit them, time them, announce them.

Every use case ends in `Assignment.apply(outcome)`: it (1) arms or disarms the server-side
timers the outcome implies (offer expiry, escalation steps, automatic end of wrap-up, end of a
task's preference for one agent), (2) hands
the changes to the store in one batch (the store's group commit merges the batches of one
reactor turn into one transaction) and (3) only after the commit tells the listeners (the agent
console, the phone channel) what happened, so nobody outside hears of a state that could be lost.

Timers run on the injected `IReactorTime`: the real reactor in production, `task.Clock` in tests
and in the simulator.

After a restart (`restore`) every agent starts offline, and what they held stays theirs for
`restart_grace` seconds: an agent who comes back (any presence but offline) carries on; one
still offline then gets their assigned tasks taken back to their queues with their original age
(`task.requeued`, reason `agent_not_back`), as if they had gone offline, so work held by someone
who never returns (a desk nobody reopens, a robot that is gone) does not stay assigned for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import DomainError
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Task, TaskState

from .ports import Changes, State, Store
from .slices import slices

log = logging.getLogger(__name__)

Listener = Callable[[Outcome], None]
WRAP_UP_TIMEOUT_DISPOSITION = "wrap_up_timeout"
# After a restart, how long an agent's assigned tasks wait for them to come back (the console
# reconnects by itself within seconds; an agent then has to choose a presence).
RESTART_GRACE_SECONDS = 300.0
NOT_BACK_REASON = "agent_not_back"
NOT_STORED_REASON = "not_stored"  # a routed task whose intake did not commit (`forget`)


class Assignment:
    def __init__(self, router: Router, store: Store, clock: IReactorTime,
                 restart_grace: float = RESTART_GRACE_SECONDS) -> None:
        self.router = router
        self.store = store
        self.clock = clock
        self.restart_grace = restart_grace
        self.listeners: list[Listener] = []
        self._offer_timers: dict[str, IDelayedCall] = {}
        self._step_timers: dict[str, IDelayedCall] = {}
        self._wrap_timers: dict[str, tuple[float, IDelayedCall]] = {}  # task -> (ends, timer)
        self._sticky_timers: dict[str, tuple[float, IDelayedCall]] = {}  # task -> (until, timer)
        self._return_timers: dict[str, IDelayedCall] = {}  # agent -> end of their restart grace
        # New tasks routed whose intake is not committed yet -> the writes waiting for it.
        self._storing: dict[str, list[Deferred[None]]] = {}

    def now(self) -> float:
        return self.clock.seconds()

    def listen(self, listener: Listener) -> None:
        """`listener(outcome)` is called after each outcome is committed."""
        self.listeners.append(listener)

    # ------------------------------------------------------------------ apply

    def apply(self, outcome: Outcome,
              write: Callable[[Changes], Deferred[object]] | None = None) -> Deferred[Outcome]:
        """Arm timers, commit the outcome, then announce it. Fires with the outcome. `write`
        commits the changes instead of the store's `record` (the intake commits a new task's
        routing in the task's own transaction); it is called even when nothing changed."""
        self._arm(outcome)
        changes = Changes(
            tasks=list(outcome.tasks.values()),  # the store copies them at call time
            events=list(outcome.events),
            declines=list(outcome.declines),
        )
        if write is None:
            if not changes:
                self._announce(outcome)
                return succeed(outcome)
            write = self.store.record
            if self._storing:
                new = [task_id for task_id in outcome.tasks if task_id in self._storing]
                if new:
                    write = self._behind(new, write)
        # One entry in the Deferred's chain, not two: `_committed` cannot fail (`_announce`
        # catches what a listener raises), so `_failed` sees only the commit's failure.
        return write(changes).addCallbacks(
            self._committed, self._failed, (outcome,), None, (outcome,))

    def apply_new(self, task_id: str, outcome: Outcome,
                  write: Callable[[Changes], Deferred[object]]) -> Deferred[Outcome]:
        """`apply` the routing of a new task, which `write` commits with the task itself (its
        intake: Intake.submit). Until that commit, another change of the task (an agent picked
        it from a pull list, a supervisor moved it) is written only after it, and not at all
        when it fails: nothing is stored of a task the database does not have."""
        self._storing[task_id] = []
        d = self.apply(outcome, write)
        d.addBoth(self._settle_new, task_id)
        return d

    def _settle_new(self, result: object, task_id: str) -> object:
        for waiter in self._storing.pop(task_id, ()):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        return result

    def _behind(self, task_ids: list[str], write: Callable[[Changes], Deferred[object]]
                ) -> Callable[[Changes], Deferred[object]]:
        """`write`, called once the intakes of the new tasks `task_ids` committed."""
        waits: list[Deferred[None]] = []
        for task_id in task_ids:
            waits.append(Deferred())
            self._storing[task_id].append(waits[-1])

        def later(changes: Changes) -> Deferred[object]:
            ready = waits[0] if len(waits) == 1 else gatherResults(waits, consumeErrors=True)
            return ready.addCallback(lambda _: write(changes))

        return later

    def _committed(self, _: object, outcome: Outcome) -> Outcome:
        self._announce(outcome)
        return outcome

    def _announce(self, outcome: Outcome) -> None:
        for listener in list(self.listeners):
            try:
                listener(outcome)
            except Exception:
                log.exception("listener %r failed on an outcome", listener)

    def _failed(self, failure, outcome: Outcome):
        if not failure.check(DomainError):  # refused input (a task id given twice): the caller's
            log.error("could not commit %d events: %s", len(outcome.events),
                      failure.getErrorMessage())
        return failure

    def forget(self, task_id: str) -> None:
        """A new task was routed but its intake's transaction failed (service/intake.py): the
        router lets it go as if it had never come. Its offer, never announced, ends and the
        agent it was for is served again (that outcome is committed and announced as usual);
        nothing is written about the task itself, which the database does not have."""
        if task_id not in self.router.tasks:
            return
        try:
            outcome = self.router.cancel(task_id, self.now(), NOT_STORED_REASON)
        except DomainError as exc:  # taken meanwhile in a way that cannot be undone
            log.error("task %s was not stored but could not be let go: %s", task_id, exc)
            return
        # Its timers disarmed as for any task that ended (the offer's, steps, preference)...
        self._arm(Outcome(ended=[o for o in outcome.ended if o.task_id == task_id],
                          tasks={task_id: outcome.tasks[task_id]}))
        # ...and nobody hears of it: what is said of it is left out (its offer's end too).
        rest = Outcome(
            events=[e for e in outcome.events if e.task_id != task_id],
            offers=outcome.offers,
            ended=[offer for offer in outcome.ended if offer.task_id != task_id],
            tasks={k: t for k, t in outcome.tasks.items() if k != task_id},
            declines=[d for d in outcome.declines if d[0] != task_id],
        )
        self._apply_logged(rest)

    # ------------------------------------------------------------------ timers

    def _arm(self, outcome: Outcome) -> None:
        for offer in outcome.ended:
            timer = self._offer_timers.pop(offer.id, None)
            if timer is not None and timer.active():
                timer.cancel()
        for offer in outcome.offers:
            delay = max(0.0, offer.expires_at - self.now())
            self._offer_timers[offer.id] = self.clock.callLater(delay, self._expire, offer.id)
        # Per task, each timer is looked at only when one is set or may be due (the usual
        # task has no escalation step left, no preference, no wrap-up).
        router, steps, stickies, wraps = (self.router, self._step_timers, self._sticky_timers,
                                          self._wrap_timers)
        for task in outcome.tasks.values():
            task_id = task.id
            if task_id in steps or router.step_due(task_id) is not None:
                self._arm_step(task_id)
            if stickies or router.sticky_until(task_id) is not None:
                self._arm_sticky(task_id)
            if task.state is TaskState.WRAP_UP:
                self._arm_wrap(task)
            elif task_id in wraps:
                _, timer = wraps.pop(task_id)
                if timer.active():
                    timer.cancel()

    def _arm_step(self, task_id: str) -> None:
        old = self._step_timers.pop(task_id, None)
        if old is not None and old.active():
            old.cancel()
        due = self.router.step_due(task_id)
        if due is not None:
            delay = max(0.0, due - self.now())
            self._step_timers[task_id] = self.clock.callLater(delay, self._escalate, task_id)

    def _arm_sticky(self, task_id: str) -> None:
        """A timer at the end of the task's preference for one agent (kept when it is already
        set for that time; disarmed when the preference ended or was served)."""
        until = self.router.sticky_until(task_id)
        old = self._sticky_timers.get(task_id)
        if old is not None:
            if old[0] == until and old[1].active():
                return
            del self._sticky_timers[task_id]
            if old[1].active():
                old[1].cancel()
        if until is not None:
            delay = max(0.0, until - self.now())
            timer = self.clock.callLater(delay, self._unstick, task_id)
            self._sticky_timers[task_id] = (until, timer)

    def _arm_wrap(self, task: Task) -> None:
        """Wrap-up ends by itself at the end of its window (the queue's wrap-up time after it
        began, or later when the agent extended it), also when the timer is re-armed after a
        restart. A timer already set for that time is kept; an extension re-arms it."""
        window = self.router.wrap_up_window(task.id)
        if window is None or task.agent_id is None:
            return
        ends = window[0]
        old = self._wrap_timers.get(task.id)
        if old is not None:
            if old[0] == ends and old[1].active():
                return
            if old[1].active():
                old[1].cancel()
        timer = self.clock.callLater(max(0.0, ends - self.now()), self._end_wrap, task.id,
                                     task.agent_id)
        self._wrap_timers[task.id] = (ends, timer)

    def _expire(self, offer_id: str) -> None:
        self._offer_timers.pop(offer_id, None)
        self._apply_logged(self.router.expire(offer_id, self.now()))

    def _escalate(self, task_id: str) -> None:
        self._step_timers.pop(task_id, None)
        self._apply_logged(self.router.escalate(task_id, self.now()))

    def _unstick(self, task_id: str) -> None:
        self._sticky_timers.pop(task_id, None)
        self._apply_logged(self.router.unstick(task_id, self.now()))

    def _end_wrap(self, task_id: str, agent_id: str) -> None:
        self._wrap_timers.pop(task_id, None)
        task = self.router.tasks.get(task_id)
        if task is None or task.state is not TaskState.WRAP_UP:
            return
        outcome = self.router.complete(
            agent_id, task_id, self.now(), WRAP_UP_TIMEOUT_DISPOSITION, actor=ev.SYSTEM
        )
        self._apply_logged(outcome)

    def _apply_logged(self, outcome: Outcome) -> None:
        self.apply(outcome).addErrback(lambda f: log.error("timer outcome lost: %s", f))

    # ------------------------------------------------------------------ start and stop

    def restore(self, state: State) -> Deferred[Outcome]:
        """Rebuild the router from the store's state and re-arm every timer. Open work whose
        queue or agent was removed meanwhile (the command line, while a server ran) is not
        lost: a disabled stand-in for the queue serves what waits in it, and one for the agent
        holds their tasks until the restart grace returns them to their queues.

        In slices (service/slices.py): the reactor runs between two slices of tasks, so the
        lease is renewed and no timer waits long, whatever the number of open tasks. Nothing
        else uses the router before this fires (no edge listens yet). The router is whole and
        the restore's own changes handed to the store before any timer is armed: a timer due
        already fires between the slices of the arming, after the restore's changes."""
        return ensureDeferred(self._restore(state))

    async def _restore(self, state: State) -> Outcome:
        now = self.now()
        queues, agents = list(state.queues), list(state.agents)
        known_queues, known_agents = {q.name for q in queues}, {a.id for a in agents}
        async for chunk in slices(self.clock, state.open_tasks):
            for task in chunk:
                if task.queue not in known_queues:
                    log.warning("queue %s is gone but still has task %s: kept until it is "
                                "done", task.queue, task.id)
                    queues.append(Queue(task.queue, disabled=True))
                    known_queues.add(task.queue)
                if (task.state in (TaskState.ASSIGNED, TaskState.WRAP_UP)
                        and task.agent_id is not None and task.agent_id not in known_agents):
                    log.warning("agent %s is gone but still holds task %s", task.agent_id,
                                task.id)
                    agents.append(Agent(task.agent_id, disabled=True))
                    known_agents.add(task.agent_id)
        outcome = self.router.restore_setup(queues, agents, state.declines, now)
        async for chunk in slices(self.clock, state.open_tasks):
            self.router.restore_tasks(chunk, now, outcome)
        committed = self.apply(outcome)
        holding: set[str] = set()
        async for chunk in slices(self.clock, list(self.router.tasks.values())):
            for task in chunk:
                self._arm_step(task.id)
                self._arm_sticky(task.id)
                if task.state is TaskState.WRAP_UP:
                    self._arm_wrap(task)
            holding |= self._holding_assigned(chunk)
        for agent_id in sorted(holding):
            self._return_timers[agent_id] = self.clock.callLater(
                self.restart_grace, self._not_back, agent_id)
        return await committed

    def back(self, agent_id: str) -> None:
        """The agent is back after a restart (their desk reconnected): their restart grace
        ends and what they hold stays theirs; the desk's own rules take over from here."""
        timer = self._return_timers.pop(agent_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    @staticmethod
    def _holding_assigned(tasks: Iterable[Task]) -> set[str]:
        return {t.agent_id for t in tasks
                if t.state is TaskState.ASSIGNED and t.agent_id is not None}

    def _not_back(self, agent_id: str) -> None:
        """The restart grace of an agent is over: still offline, their assigned tasks go back
        to their queues (wrap-ups end by their own timers)."""
        self._return_timers.pop(agent_id, None)
        agent = self.router.agents.get(agent_id)
        if agent is None or agent.status is not Presence.OFFLINE:
            return
        held = [t for t in agent.held if self.router.tasks[t].state is TaskState.ASSIGNED]
        for task_id in held:
            try:
                outcome = self.router.requeue(task_id, self.now(), NOT_BACK_REASON, ev.SYSTEM)
            except DomainError as exc:  # changed meanwhile: nothing to take back
                log.info("restart grace of %s: %s not taken back: %s", agent_id, task_id, exc)
                continue
            self._apply_logged(outcome)

    def stop(self) -> None:
        """Cancel every timer (the state they would change is rebuilt at the next start)."""
        for timers in (self._offer_timers, self._step_timers):
            for timer in timers.values():
                if timer.active():
                    timer.cancel()
            timers.clear()
        for timer in self._return_timers.values():
            if timer.active():
                timer.cancel()
        self._return_timers.clear()
        for pairs in (self._sticky_timers, self._wrap_timers):
            for _, timer in pairs.values():
                if timer.active():
                    timer.cancel()
            pairs.clear()
