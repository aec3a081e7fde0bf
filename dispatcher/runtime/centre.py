"""The scenario simulator: a contact centre's day played on the real core (`switchboard simulate
--scenario`, `switchboard staffing`).

Like simulate.py it drives the real service layer (Intake, Assignment, Sessions, the Router and
its interruption matrix) on a virtual clock (virtual_clock.HeapClock, a `task.Clock` whose
pending calls are in a heap) with the in-memory store, and only plays the customers and the agents; nothing here routes. What it plays:
- arrivals: Poisson within each 15-minute interval at the scenario's profile, per queue and
  channel; e-mail deadlines come from Intake (the queue's rule on its business calendar);
- callers with a patience (exponential) hang up when they have waited longer: the task is
  abandoned through `Sessions.abandon` (the router's abandon, as the phone channel does);
- agents sign in (`available`), take breaks and leave (`break`) at their scheduled times through
  `Sessions.set_status`, accept every offer at once, and work one thing at a time: a call stops
  the e-mail in hand (the router offers calls on top of e-mails: the default interruption
  matrix) and the e-mail goes on, from where it stopped, once the call and its wrap-up are
  over. A call ends in the queue's wrap-up (`Sessions.wrap_up`; Assignment's timer completes
  it), an e-mail with `Sessions.complete`. Work held when a shift ends is finished (overtime).

Results (`CentreResult`) per 15-minute interval of arrival and in total, per queue and channel,
with the reports' definitions (dispatcher/domain/metrics.py): service level = calls answered
within the target / calls offered (answered + abandoned); ASA = mean wait of answered calls;
e-mails: share answered (completed) by their deadline among those answered or overdue, and the
mean and longest time to answer. Per agent: occupancy = working time / time signed in and not
on break.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import DomainError
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import Assignment
from dispatcher.service.blending import Blending
from dispatcher.service.intake import Intake
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore

from .scenario import DAY, INTERVAL, AgentGroup, Scenario, Traffic
from .virtual_clock import HeapClock

# Agents accept at once, so offers never time out; a generous lease keeps that true.
OFFER_TIMEOUT = 24 * 3600.0
SIGN_IN_STEP = 1e-6  # seconds between agents signing in "at the same time"
BREAK = "break"
OFF_SHIFT = "off_shift"


@dataclass(frozen=True)
class Staff:
    """One agent of a run: who they are (an Agent, offline) and when they work: sorted,
    non-overlapping (start, end) periods in seconds from the scenario's start."""

    agent: Agent
    periods: tuple[tuple[float, float], ...]


def staff_from_groups(groups: Sequence[AgentGroup], days: int) -> list[Staff]:
    """The scenario's agent groups as agents: each works their shift every day, minus breaks."""
    out = []
    for group in groups:
        periods = []
        for day in range(days):
            cuts = [group.shift[0], *itertools.chain.from_iterable(group.breaks),
                    group.shift[1]]
            for a, b in zip(cuts[::2], cuts[1::2], strict=True):
                a, b = day * DAY + a, day * DAY + b
                if periods and periods[-1][1] == a:  # on till midnight and on from midnight
                    periods[-1] = (periods[-1][0], b)
                elif b > a:
                    periods.append((a, b))
        for i in range(group.count):
            out.append(Staff(Agent(f"{group.name}-{i + 1}", skills=dict(group.skills),
                                   queues=set(group.queues), channels=set(group.channels),
                                   capacity=dict(group.capacity),
                                   interruptions=group.interruptions), tuple(periods)))
    return out


@dataclass
class TaskRecord:
    channel: Channel
    queue: str
    created: float
    deadline: float | None = None
    answered: float | None = None  # assigned to an agent
    done: float | None = None  # completed
    abandoned: bool = False


@dataclass
class _Desk:
    """What one agent holds and works on: the call (talk and wrap-up) comes first, then the
    e-mails in the order they came, each with the work left on it."""

    agent_id: str
    call: str | None = None
    emails: list[list] = field(default_factory=list)  # [task id, seconds of work left]
    timer: object | None = None  # the e-mail being worked on ends
    since: float = 0.0  # the e-mail in hand since
    busy: float = 0.0  # working while signed in and not on break
    overtime: float = 0.0  # working otherwise (finishing what they held)
    staffed: float = 0.0  # signed in and not on break
    on_since: float | None = None
    mark: float = 0.0  # working time is counted up to here


class CentreRun:
    """One run of a scenario (see the module docstring). `staff` overrides the scenario's
    agent groups (`switchboard staffing` checks its own staffing)."""

    def __init__(self, scenario: Scenario, staff: Sequence[Staff] | None = None,
                 seed: int | None = None) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed if seed is None else seed)
        self.clock = HeapClock(scenario.start)
        self.router = Router(scenario.interruptions,
                             new_offer_id=map("o{}".format, itertools.count(1)).__next__)
        self.assignment = Assignment(self.router, MemoryStore(), self.clock)
        self.intake = Intake(self.assignment, self.assignment.store, self.clock,
                             calendars=scenario.calendars)
        self.sessions = Sessions(self.assignment)
        self.staff = list(staff_from_groups(scenario.agents, scenario.days)
                          if staff is None else staff)
        self.records: dict[str, TaskRecord] = {}
        self.desks: dict[str, _Desk] = {}
        self.patience: dict[str, object] = {}
        self.handle = {(t.queue, t.channel): t for t in scenario.traffic}
        self.errors: list[BaseException] = []
        self._ids = map("t{}".format, itertools.count(1)).__next__
        now = scenario.start
        for q in scenario.queues:
            self.router.put_queue(Queue(
                q.name, requirement=dict(q.skills), sl_target=dict(q.sl_seconds),
                sl_share=q.sl_share, wrap_up_seconds=q.wrap_up_seconds, calendar=q.calendar,
                deadline_rule=q.deadline, reserve=q.reserve,
                offer_timeout={Channel.PHONE: OFFER_TIMEOUT, Channel.EMAIL: OFFER_TIMEOUT}),
                now)
        # The blend's reserve, decided as `serve` decides it (service/blending.py).
        self.blending = Blending(self.router, self.assignment, self.clock)
        self.assignment.listen(self.blending.on_outcome)
        if any(q.reserve for q in scenario.queues):
            self.blending.start()
        for k, s in enumerate(self.staff):
            self.router.put_agent(s.agent, now)
            self.desks[s.agent.id] = _Desk(s.agent.id)
            starts = {a for a, _ in s.periods}
            for a, b in s.periods:
                # A break when the agent is back later the same day, else the shift's end.
                back = any(b < a2 < (b // DAY + 1) * DAY for a2 in starts)
                # Agents who sign in together are equally idle, and the router breaks that tie
                # in the order of a set (which varies with the process's hash seed): a
                # microsecond apart, in the staff's order, the same seed gives the same run.
                self.clock.callLater(a + k * SIGN_IN_STEP, self._sign_in, s.agent.id)
                self.clock.callLater(b, self._sign_out, s.agent.id, BREAK if back else OFF_SHIFT)
        self.assignment.listen(self._heard)
        for traffic in scenario.traffic:
            self._next_arrival(iter(self._arrivals(traffic)), traffic)

    # -- customers -------------------------------------------------------------------------

    def _arrivals(self, traffic: Traffic):
        """Arrival times (seconds from the start) of one stream, Poisson in each interval."""
        rng = random.Random(self.rng.getrandbits(64))
        for day in range(self.scenario.days):
            for i, expected in enumerate(traffic.profile):
                if expected <= 0:
                    continue
                rate = expected / INTERVAL
                t = day * DAY + i * INTERVAL
                end = t + INTERVAL
                while True:
                    t += rng.expovariate(rate)
                    if t >= end:
                        break
                    yield t

    def _next_arrival(self, times, traffic: Traffic) -> None:
        at = next(times, None)
        if at is not None:
            self.clock.callLater(self.scenario.start + at - self.clock.seconds(),
                                 self._arrive, times, traffic)

    def _arrive(self, times, traffic: Traffic) -> None:
        task_id = self._ids()
        now = self.clock.seconds()
        record = self.records[task_id] = TaskRecord(traffic.channel, traffic.queue, now)
        d = self.intake.submit(traffic.channel, traffic.queue, task_id=task_id)
        d.addCallback(lambda task: setattr(record, "deadline", task.deadline))
        d.addErrback(self._failed)
        if traffic.patience is not None:
            self.patience[task_id] = self.clock.callLater(
                self.rng.expovariate(1.0 / traffic.patience), self._give_up, task_id)
        self._next_arrival(times, traffic)

    def _give_up(self, task_id: str) -> None:
        self.patience.pop(task_id, None)
        task = self.router.tasks.get(task_id)
        if task is not None and task.state in (TaskState.QUEUED, TaskState.OFFERED):
            self.sessions.abandon(task_id, actor="customer").addErrback(self._failed)

    # -- agents ----------------------------------------------------------------------------

    def _account(self, desk: _Desk) -> None:
        """Count the desk's working time up to now (called before anything changes whether
        the agent works or is on)."""
        now = self.clock.seconds()
        if desk.call is not None or desk.timer is not None:
            if desk.on_since is not None:
                desk.busy += now - desk.mark
            else:
                desk.overtime += now - desk.mark
        desk.mark = now

    def _sign_in(self, agent_id: str) -> None:
        desk = self.desks[agent_id]
        self._account(desk)
        desk.on_since = self.clock.seconds()
        self.sessions.set_status(agent_id, Presence.AVAILABLE).addErrback(self._failed)

    def _sign_out(self, agent_id: str, reason: str) -> None:
        desk = self.desks[agent_id]
        self._account(desk)
        if desk.on_since is not None:
            desk.staffed += self.clock.seconds() - desk.on_since
            desk.on_since = None
        self.sessions.set_status(agent_id, Presence.BREAK, reason).addErrback(self._failed)

    def _heard(self, outcome: Outcome) -> None:
        try:
            for offer in outcome.offers:
                self.clock.callLater(0, self._accept, offer.agent_id, offer.id)
            for event in outcome.events:
                if event.kind == ev.TASK_ASSIGNED:
                    self._assigned(event)
                elif event.kind == ev.TASK_COMPLETED:
                    self._completed(event)
                elif event.kind == ev.TASK_ABANDONED:
                    self.records[event.task_id].abandoned = True
        except Exception as exc:  # noqa: BLE001 - kept, and raised by run()
            self.errors.append(exc)

    def _accept(self, agent_id: str, offer_id: str) -> None:
        d = self.sessions.accept(agent_id, offer_id)
        d.addErrback(lambda f: f.trap(DomainError) and None)  # withdrawn meanwhile (a break)

    def _assigned(self, event: ev.Event) -> None:
        now = self.clock.seconds()
        record = self.records[event.task_id]
        record.answered = now
        timer = self.patience.pop(event.task_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        desk = self.desks[event.agent_id]
        self._account(desk)
        handle = self.handle[(record.queue, record.channel)].handle.draw(self.rng)
        if record.channel is Channel.PHONE:
            self._pause(desk)
            desk.call = event.task_id
            self.clock.callLater(handle, self._talked, desk, event.task_id)
        else:
            desk.emails.append([event.task_id, handle])
            self._resume(desk)

    def _talked(self, desk: _Desk, task_id: str) -> None:
        queue = self.router.queues[self.records[task_id].queue]
        if queue.wrap_up_seconds > 0:
            d = self.sessions.wrap_up(desk.agent_id, task_id)
        else:
            d = self.sessions.complete(desk.agent_id, task_id, "done")
        d.addErrback(self._failed)

    def _completed(self, event: ev.Event) -> None:
        record = self.records[event.task_id]
        record.done = self.clock.seconds()
        desk = self.desks[event.agent_id]
        if desk.call == event.task_id:
            self._account(desk)
            desk.call = None
            self._resume(desk)

    def _pause(self, desk: _Desk) -> None:
        if desk.timer is not None:
            desk.emails[0][1] -= self.clock.seconds() - desk.since
            desk.timer.cancel()
            desk.timer = None

    def _resume(self, desk: _Desk) -> None:
        if desk.call is None and desk.timer is None and desk.emails:
            desk.since = self.clock.seconds()
            desk.timer = self.clock.callLater(max(0.0, desk.emails[0][1]), self._written, desk)

    def _written(self, desk: _Desk) -> None:
        self._account(desk)
        desk.timer = None
        task_id, _ = desk.emails.pop(0)
        self.sessions.complete(desk.agent_id, task_id, "done").addErrback(self._failed)
        self._resume(desk)

    def _failed(self, failure) -> None:
        self.errors.append(failure.value)

    # -- the run ---------------------------------------------------------------------------

    def run(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Play the scenario's days; returns the simulated seconds. `progress` is called with
        (simulated minutes done, minutes in all) as time goes by."""
        end = self.scenario.start + self.scenario.days * DAY
        total = int(self.scenario.days * DAY // 60)
        now = self.scenario.start
        while now < end:  # one 15-minute step at a time: errors and progress between steps
            now = min(end, now + INTERVAL)
            self.clock.advance_to(now)
            if self.errors:
                raise self.errors[0]
            if progress is not None:
                progress(int((now - self.scenario.start) // 60), total)
        for desk in self.desks.values():  # close the books at the end
            self._account(desk)
            if desk.on_since is not None:
                desk.staffed += end - desk.on_since
                desk.on_since = None
        return end - self.scenario.start
