"""`switchboard replay`: a recorded period played again on the real core, with the recorded
configuration or another one, and the two outcomes side by side.

Like centre.py it drives the real service layer (Intake, Assignment, Sessions, the Router) on a
virtual clock (virtual_clock.HeapClock) with the in-memory store, and only plays the customers
and the agents, as they were recorded (replay_day.py reads them from the log); nothing here
routes. What it plays:
- each task arrives at its recorded time through `Intake.submit` (its recorded id, channel,
  queue, priority, deadline, attributes, and the skills it asked beyond its queue's);
- the agents choose their recorded presence at its times (`Sessions.set_status`,
  `set_channels`); added agents (`--add-agents N --like A`) choose A's, a microsecond later;
- an offer the same agent got for the same task in the record is answered as recorded: the
  recorded time when the offer comes at its recorded time, else after the recorded delay;
  accepted or rejected, or left to expire (a miss: the queue's offer timeout ends it) or
  unanswered (it was withdrawn); any other offer is accepted after that agent's median accept
  delay (the median of every agent when they have none);
- an assigned task is held for its recorded handle time (never answered in the record: the
  median of its queue and channel, or of its channel; counted in `estimated`), then wrapped
  up for its recorded length (extended when it was longer than the queue's), or with the
  queue's wrap-up; then completed with its recorded disposition;
- a caller who hung up in the record hangs up after the same patience if still waiting; a
  task cancelled in the record is cancelled after the same time if still open; a task an
  agent picked from a pull queue's list is picked by them after the same time if still
  waiting (nobody else picks: pull queues replay only what was picked).
Inputs due at the same instant are played in the order the log recorded them, after the
service's own timers of that instant. Transfers, requeues and priority changes are not played
(counted in `not_played`), nor are tasks that arrived before the period (`open_before`).

`ReplayResult` holds the two `Tally`s (replay_day.py), recorded and replayed, over the same
period and with the replayed configuration's targets, and `compare` lays them side by side.
"""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, InterruptionMatrix
from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.errors import DomainError
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import Assignment
from dispatcher.service.configuration import agent_config, agent_from_config
from dispatcher.service.intake import Intake
from dispatcher.service.ports import Calendar
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore

from .centre_figures import figures
from .replay_day import ACCEPTED, EXPIRED, REJECTED, WITHDRAWN, Answer, RecordedDay, Tally, Work
from .virtual_clock import HeapClock

SAME_TIME = 1e-6  # seconds: an offer made at its recorded time (float noise aside)
COPY_STEP = 1e-6  # seconds between an agent and their copies choosing a presence
LATE = 1 << 62  # the key of inputs not in the log: after the recorded ones of their instant
STEP = 900.0  # progress is reported every 15 simulated minutes


@dataclass
class Setup:
    """What the replay runs with: the configuration (queues, agents, calendars, the centre's
    interruption matrix) and who plays like whom (copies' presence: the original's)."""

    queues: list[Queue]
    agents: list[Agent]
    calendars: list[Calendar] = field(default_factory=list)
    matrix: InterruptionMatrix | None = None
    like: dict[str, str] = field(default_factory=dict)  # copy id -> original id


def with_copies(agents: Sequence[Agent], like: str, count: int) -> tuple[list[Agent],
                                                                         dict[str, str]]:
    """`count` copies of agent `like` (ids `like+1`, ...), present when `like` is."""
    original = next((a for a in agents if a.id == like), None)
    if original is None:
        raise DomainError(f"--like: no agent {like!r}")
    ids = {a.id for a in agents}
    copies, like_map = [], {}
    n = 0
    while len(copies) < count:
        n += 1
        new_id = f"{like}+{n}"
        if new_id in ids:
            continue
        copies.append(Agent(new_id, name=f"{original.name or like} +{n}",
                            skills=dict(original.skills), queues=set(original.queues),
                            capacity=dict(original.capacity), channels=set(original.channels),
                            disabled=original.disabled, attributes=dict(original.attributes),
                            interruptions=original.interruptions))
        like_map[new_id] = like
    return copies, like_map


class _TalliedStore(MemoryStore):
    """The in-memory store, telling the tally of each task's `task.created` (stored by Intake,
    never announced to Assignment's listeners; the routing events stored with it are)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    def create_task(self, task, identity, customer_name, events):
        for e in events:
            if e.kind == ev.TASK_CREATED:
                self._tally.fold(e)
        return super().create_task(task, identity, customer_name, events)


class ReplayRun:
    """One replay of a recorded day with a setup (see the module docstring)."""

    def __init__(self, day: RecordedDay, setup: Setup) -> None:
        self.day, self.setup = day, setup
        self.clock = HeapClock(day.start)
        router_kw: dict[str, Any] = {} if setup.matrix is None else {"matrix": setup.matrix}
        self.router = Router(new_offer_id=map("r{}".format, itertools.count(1)).__next__,
                             **router_kw)
        self.tally = Tally(day.start, day.end)
        self.assignment = Assignment(self.router, _TalliedStore(self.tally), self.clock)
        self.intake = Intake(self.assignment, self.assignment.store, self.clock, calendars={
            c.name: BusinessCalendar.from_spec(c.name, c.timezone, c.hours, c.holidays)
            for c in setup.calendars})
        self.sessions = Sessions(self.assignment)
        self.errors: list[BaseException] = []
        self.estimated: set[str] = set()  # tasks given a median handle time
        self.unanswered_offers = 0
        self._script: list[tuple[float, int, int, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()
        self._answers = {k: list(v) for k, v in day.answers.items()}
        delays = day.accept_delays()
        self._delay = delays
        self._any_delay = statistics.median(delays.values()) if delays else 0.0
        self._handle = day.handle_times()
        self._work: dict[str, Work] = dict(day.work)
        self._turn: dict[str, int] = {}  # task -> how many times it was assigned
        self.refused: dict[str, int] = {}  # arrivals the configuration refused, by reason
        for q in setup.queues:
            self.router.put_queue(q, day.start)
        for a in setup.agents:  # their configuration only: offline, holding nothing
            self.router.put_agent(agent_from_config(agent_config(a)), day.start)
        self.assignment.listen(self._heard)
        self._plan()

    # -- the script: inputs at their times, in the log's order ---------------------------------

    def _at(self, at: float, key: int, fn: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._script, (at, key, next(self._seq), fn, args))

    def _plan(self) -> None:
        day, queues = self.day, {q.name: q for q in self.setup.queues}
        for a in day.arrivals:
            self._at(a.at, a.key, self._arrive, a, queues.get(a.queue))
            if a.task_id in day.patience:
                seconds, key = day.patience[a.task_id]
                self._at(a.at + seconds, key, self._give_up, a.task_id)
            if a.task_id in day.picks:
                agent_id, seconds, key = day.picks[a.task_id]
                self._at(a.at + seconds, key, self._pick, agent_id, a.task_id)
            if a.task_id in day.cancels:
                seconds, key, reason = day.cancels[a.task_id]
                self._at(a.at + seconds, key, self._cancel, a.task_id, reason)
        copies: dict[str, list[str]] = {}
        for copy_id, original in sorted(self.setup.like.items()):
            copies.setdefault(original, []).append(copy_id)
        known = set(self.router.agents)
        for p in day.presence:
            for k, agent_id in enumerate([p.agent_id, *copies.get(p.agent_id, ())]):
                if agent_id in known:
                    self._at(p.at + k * COPY_STEP, p.key if k == 0 else LATE, self._presence,
                             agent_id, p)

    def _arrive(self, a, queue: Queue | None) -> None:
        extra = a.skills if queue is None else {
            s: v for s, v in a.skills.items() if queue.requirement.get(s) != v}
        d = self.intake.submit(a.channel, a.queue, skills=extra, priority=a.priority,
                               deadline=a.deadline, attributes=a.attributes, task_id=a.task_id)
        d.addErrback(self._refused)

    def _refused(self, failure) -> None:
        """An arrival the replayed configuration refuses (its queue removed or disabled)."""
        failure.trap(DomainError)
        name = type(failure.value).__name__
        self.refused[name] = self.refused.get(name, 0) + 1

    def _presence(self, agent_id: str, p) -> None:
        if p.status is not None:
            d = self.sessions.set_status(agent_id, p.status, p.reason)
        else:
            d = self.sessions.set_channels(agent_id, p.channels)
        d.addErrback(self._tolerated)

    def _give_up(self, task_id: str) -> None:
        task = self.router.tasks.get(task_id)
        if task is not None and task.state in (TaskState.QUEUED, TaskState.OFFERED):
            self.sessions.abandon(task_id, actor="customer").addErrback(self._failed)

    def _pick(self, agent_id: str, task_id: str) -> None:
        task = self.router.tasks.get(task_id)
        if task is not None and task.state is TaskState.QUEUED and agent_id in self.router.agents:
            self.sessions.pick(agent_id, task_id).addErrback(self._tolerated)

    def _cancel(self, task_id: str, reason: str) -> None:
        task = self.router.tasks.get(task_id)
        if task is not None and task.state in (TaskState.QUEUED, TaskState.OFFERED):
            self.sessions.cancel(task_id, reason, ev.SYSTEM).addErrback(self._failed)

    # -- the agents ----------------------------------------------------------------------------

    def _heard(self, outcome: Outcome) -> None:
        try:
            for e in outcome.events:
                self.tally.fold(e)
                if e.kind == ev.TASK_ASSIGNED:
                    self._turn[e.task_id] = self._turn.get(e.task_id, 0) + 1
                    self._start_work(e.task_id, e.agent_id)
            for offer in outcome.offers:
                self._answer(offer)
        except Exception as exc:  # noqa: BLE001 - kept, and raised by run()
            self.errors.append(exc)

    def _recorded_answer(self, task_id: str, agent_id: str, now: float) -> Answer | None:
        answers = self._answers.get((task_id, agent_id))
        if not answers:
            return None
        for i, a in enumerate(answers):  # the offer made at its recorded time
            if abs(a.offered_at - now) <= SAME_TIME:
                return answers.pop(i)
        for i, a in enumerate(answers):  # else the next one the agent gave
            if a.kind != WITHDRAWN:
                return answers.pop(i)
        return None

    def _answer(self, offer) -> None:
        now = self.clock.seconds()
        original = self.setup.like.get(offer.agent_id, offer.agent_id)
        recorded = self._recorded_answer(offer.task_id, offer.agent_id, now)
        if recorded is None:
            delay = self._delay.get(original, self._any_delay)
            self._at(now + delay, LATE, self._accept, offer.agent_id, offer.id)
            return
        same = abs(recorded.offered_at - now) <= SAME_TIME
        at = recorded.at if same else now + recorded.delay
        if recorded.kind == ACCEPTED:
            self._at(at, recorded.key if same else LATE, self._accept, offer.agent_id, offer.id)
        elif recorded.kind == REJECTED:
            self._at(at, recorded.key if same else LATE, self._reject, offer.agent_id,
                     offer.id, recorded.reason)
        elif recorded.kind in (EXPIRED, WITHDRAWN):
            self.unanswered_offers += recorded.kind == EXPIRED  # the queue's timer ends it

    def _accept(self, agent_id: str, offer_id: str) -> None:
        self.sessions.accept(agent_id, offer_id).addErrback(self._tolerated)

    def _reject(self, agent_id: str, offer_id: str, reason: str) -> None:
        self.sessions.reject(agent_id, offer_id, reason).addErrback(self._tolerated)

    def _start_work(self, task_id: str, agent_id: str) -> None:
        task = self.router.tasks[task_id]
        work = self._work.get(task_id)
        if work is None:
            self.estimated.add(task_id)
            handle = self._handle.get((task.queue, task.channel),
                                      self._handle.get(("", task.channel), 0.0))
            work = Work(handle, None, "")
        now = self.clock.seconds()
        self._at(now + work.handle, LATE, self._worked, task_id, agent_id, work,
                 self._turn[task_id])

    def _worked(self, task_id: str, agent_id: str, work: Work, turn: int) -> None:
        task = self.router.tasks.get(task_id)
        if (task is None or task.agent_id != agent_id or task.state is not TaskState.ASSIGNED
                or self._turn.get(task_id) != turn):
            return  # taken back meanwhile (the agent went offline)
        queue = self.router.queues[task.queue]
        estimated = task_id in self.estimated
        if (work.wrap is None and not (estimated and task.channel is Channel.PHONE
                                       and queue.wrap_up_seconds > 0)):
            self._complete(task_id, agent_id, work.disposition)
            return
        self.sessions.wrap_up(agent_id, task_id).addErrback(self._failed)
        if work.wrap is None:
            return  # the queue's wrap-up: Assignment's timer completes it
        more = work.wrap - queue.wrap_up_seconds
        if more > SAME_TIME:
            self.sessions.extend_wrap_up(agent_id, task_id, more).addErrback(self._tolerated)
        now = self.clock.seconds()
        self._at(now + work.wrap, LATE, self._complete, task_id, agent_id, work.disposition)

    def _complete(self, task_id: str, agent_id: str, disposition: str) -> None:
        task = self.router.tasks.get(task_id)
        if task is not None and task.agent_id == agent_id:
            self.sessions.complete(agent_id, task_id, disposition, coded=False).addErrback(
                self._tolerated)

    def _tolerated(self, failure) -> None:
        """An input the replayed state refuses (an offer withdrawn meanwhile, a status the
        agent has already): skipped, as the desk would have."""
        failure.trap(DomainError)

    def _failed(self, failure) -> None:
        self.errors.append(failure.value)

    # -- the run -------------------------------------------------------------------------------

    def run(self, progress: Callable[[int, int], None] | None = None) -> Tally:
        """Play the day up to its end; the replayed Tally. `progress(minutes done, minutes in
        all)` every 15 simulated minutes."""
        end = self.day.end
        total = max(1, int((end - self.day.start) // 60))
        shown = self.day.start
        while True:
            timer = self.clock.next_time()
            script = self._script[0][0] if self._script else math.inf
            at = min(timer if timer is not None else math.inf, script)
            if at >= end:
                break
            if timer is not None and timer <= script:
                self.clock.advance_to(timer)  # the service's own timers first
            else:
                self.clock.advance_to(script)
                _, _, _, fn, args = heapq.heappop(self._script)
                fn(*args)
            if self.errors:
                raise self.errors[0]
            if progress is not None and at - shown >= STEP:
                shown = at
                progress(int((at - self.day.start) // 60), total)
        self.clock.advance_to(end)
        if progress is not None:
            progress(total, total)
        self.tally.close()
        return self.tally


@dataclass
class ReplayResult:
    start: float
    end: float
    recorded: Tally
    replayed: Tally
    targets: dict[str, dict[Channel, float]]
    agents_added: list[str]
    estimated: int  # tasks given a median handle time
    not_played: dict[str, int]
    open_before: int
    refused: dict[str, int] = field(default_factory=dict)  # arrivals refused, by reason

    def same_agent_share(self) -> float | None:
        both = [t for t in self.recorded.agent_of if t in self.replayed.agent_of]
        if not both:
            return None
        return sum(self.recorded.agent_of[t] == self.replayed.agent_of[t]
                   for t in both) / len(both)

    def queues(self) -> list[dict]:
        """Per queue and channel: the recorded figures, the replayed ones, their difference."""
        keys = sorted({(r.queue, r.channel.value) for r in self.recorded.records.values()}
                      | {(r.queue, r.channel.value) for r in self.replayed.records.values()})
        out = []
        for queue, channel in keys:
            ch = Channel(channel)
            target = self.targets.get(queue, {}).get(ch)  # None: the queue is gone
            sides = {}
            for name, tally in (("recorded", self.recorded), ("replayed", self.replayed)):
                rs = [r for r in tally.records.values() if r.queue == queue and r.channel is ch]
                sides[name] = _waits(figures(rs, ch, math.inf if target is None else target,
                                             self.end), rs, ch)
            out.append({"queue": queue, "channel": channel, "target_seconds": target,
                        **sides, "difference": _difference(sides["recorded"],
                                                           sides["replayed"])})
        return out

    def agents(self) -> list[dict]:
        rec, rep = self.recorded.agents(), self.replayed.agents()
        return [{"agent": a, "recorded": rec.get(a), "replayed": rep.get(a)}
                for a in sorted(set(rec) | set(rep))]

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "queues": self.queues(),
                "agents": self.agents(), "agents_added": self.agents_added,
                "same_agent_share": self.same_agent_share(),
                "estimated_handle_times": self.estimated, "not_played": self.not_played,
                "open_before": self.open_before, "refused": self.refused}


def _waits(out: dict, records, channel: Channel) -> dict:
    """figures() plus what the replay compares for every channel: the mean and longest wait
    until an agent had the task (seconds), and for e-mails answered within their deadline."""
    waits = [r.answered - r.created for r in records if r.answered is not None]
    out["mean_wait_seconds"] = statistics.fmean(waits) if waits else None
    out["max_wait_seconds"] = max(waits, default=None)
    if channel is Channel.EMAIL:
        out["answered_within_deadline"] = sum(
            1 for r in records if r.done is not None
            and (r.deadline is None or r.done <= r.deadline))
    return out


def _difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    return {k: (None if a.get(k) is None or b.get(k) is None else b[k] - a[k])
            for k, v in b.items() if isinstance(v, int | float) or v is None}


def replay(day: RecordedDay, setup: Setup, recorded_events, open_before: int = 0,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Tally the recorded events, replay the day with `setup`, and return both."""
    recorded = Tally(day.start, day.end)
    for e in recorded_events:
        recorded.fold(e)
    recorded.close()
    run = ReplayRun(day, setup)
    replayed = run.run(progress)
    return ReplayResult(day.start, day.end, recorded, replayed,
                        {q.name: dict(q.sl_target) for q in setup.queues},
                        sorted(setup.like), len(run.estimated), dict(day.not_played),
                        open_before, dict(run.refused))
