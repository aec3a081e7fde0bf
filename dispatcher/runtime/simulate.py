"""Simulation on the real core: `switchboard simulate`.

Drives the real service layer (Intake, Assignment, Sessions, the Router) on a virtual clock
(`twisted.internet.task.Clock`) with the in-memory store: Poisson arrivals, exponential handling
times, agents who accept every offer at once. Nothing here re-implements routing; it only plays
the customers and the agents. With one queue, one skill and no abandonment the figures must
agree with Erlang C, which `erlang_c` (erlang.py) computes for comparison. A whole centre
(queues, skills, shifts, patience, e-mail) is centre.py's.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from twisted.internet.task import Clock

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel
from dispatcher.service.assignment import Assignment
from dispatcher.service.intake import Intake
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore

from .erlang import erlang_c  # the reference lives in erlang.py; importable from here too

SIM_QUEUE = "sim"
# Bounds of the inputs (a simulation is memory and time linear in tasks).
MAX_AGENTS = 10_000
MAX_TASKS = 2_000_000
# Agents accept at once, so offers never time out; a generous lease keeps that true.
SIM_OFFER_TIMEOUT = 3600.0
WAITED_EPSILON = 1e-9


@dataclass(frozen=True)
class SimulationResult:
    tasks: int
    agents: int
    arrivals_per_hour: float
    aht_seconds: float
    sl_seconds: float
    service_level: float  # share answered within sl_seconds
    asa_seconds: float  # average speed of answer, over every task
    p_wait: float  # share of tasks that waited at all
    occupancy: float  # agents' busy time / (agents x simulated time)
    simulated_seconds: float
    erlang_c: dict

    @property
    def load(self) -> float:
        """Offered traffic in erlangs (arrivals per second x handling time)."""
        return self.arrivals_per_hour / 3600.0 * self.aht_seconds

    @property
    def overloaded(self) -> bool:
        """At least as much work arrives as the agents can do: the queue grows without end
        and Erlang C has no steady state (no service level, no average wait)."""
        return self.load >= self.agents

    def as_dict(self) -> dict:
        """Plain JSON values: an undefined figure (overload) is None, never Infinity."""
        out = asdict(self)
        out["erlang_c"] = {k: (None if isinstance(v, float) and math.isinf(v) else v)
                           for k, v in self.erlang_c.items()}
        out["load_erlangs"] = self.load
        out["overloaded"] = self.overloaded
        return out


def check_inputs(agents: int, arrivals_per_hour: float, aht: float, sl_seconds: float,
                 tasks: int) -> None:
    """Refuse inputs that cannot describe a queue (InvalidValue, every problem at once)."""
    problems = []
    if not 1 <= agents <= MAX_AGENTS:
        problems.append(f"--agents must be 1-{MAX_AGENTS:,}, got {agents}")
    if not (math.isfinite(arrivals_per_hour) and arrivals_per_hour > 0):
        problems.append(f"--arrivals-per-hour must be more than 0, got {arrivals_per_hour:g}")
    if not (math.isfinite(aht) and aht > 0):
        problems.append(f"--aht must be more than 0 seconds, got {aht:g}")
    if not (math.isfinite(sl_seconds) and sl_seconds >= 0):
        problems.append(f"--sl-seconds must be 0 or more, got {sl_seconds:g}")
    if not 1 <= tasks <= MAX_TASKS:
        problems.append(f"--tasks must be 1-{MAX_TASKS:,}, got {tasks}")
    if problems:
        raise InvalidValue("; ".join(problems))


class _Run:
    """One simulation: plays customers (arrivals) and agents (accept at once, then handle)."""

    def __init__(self, agents: int, arrivals_per_hour: float, aht: float, tasks: int,
                 seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.router = Router(new_offer_id=map("o{}".format, itertools.count(1)).__next__)
        self.assignment = Assignment(self.router, MemoryStore(), self.clock)
        ids = map("t{}".format, itertools.count(1)).__next__
        self.intake = Intake(self.assignment, self.assignment.store, self.clock, new_id=ids)
        self.sessions = Sessions(self.assignment)
        self.rate = arrivals_per_hour / 3600.0
        self.aht = aht
        self.target = tasks
        self.arrived = 0
        self.created: dict[str, float] = {}
        self.waits: list[float] = []
        self.busy = 0.0
        self.router.put_queue(
            Queue(SIM_QUEUE, offer_timeout={Channel.PHONE: SIM_OFFER_TIMEOUT}), 0.0
        )
        for i in range(agents):
            self.router.put_agent(Agent(f"agent{i}", queues={SIM_QUEUE}), 0.0)
            self.router.set_status(f"agent{i}", Presence.AVAILABLE, 0.0)
        self.assignment.listen(self._heard)

    def _heard(self, outcome: Outcome) -> None:
        for offer in outcome.offers:
            self.clock.callLater(0, self._accept, offer.agent_id, offer.id)
        for event in outcome.events:
            if event.kind == ev.TASK_ASSIGNED:
                self.waits.append(event.at - self.created.pop(event.task_id))
                handle = self.rng.expovariate(1.0 / self.aht)
                self.busy += handle
                self.clock.callLater(handle, self._complete, event.agent_id, event.task_id)

    def _accept(self, agent_id: str, offer_id: str) -> None:
        self.sessions.accept(agent_id, offer_id)

    def _complete(self, agent_id: str, task_id: str) -> None:
        self.sessions.complete(agent_id, task_id, "done")

    def _arrive(self) -> None:
        self.arrived += 1
        d = self.intake.submit(Channel.PHONE, SIM_QUEUE)
        d.addCallback(lambda task: self.created.__setitem__(task.id, task.created_at))
        if self.arrived < self.target:
            self.clock.callLater(self.rng.expovariate(self.rate), self._arrive)

    def run(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Run until every task has been answered; returns the simulated time. `progress(done,
        total)` is called as tasks are answered (it decides itself how often to show it)."""
        # The created time is recorded after intake; an offer made inside the same call is
        # accepted later (callLater 0), so the wait is measured from a known arrival.
        self.clock.callLater(self.rng.expovariate(self.rate), self._arrive)
        while len(self.waits) < self.target:
            calls = self.clock.getDelayedCalls()
            if not calls:
                break
            step = min(c.getTime() for c in calls) - self.clock.seconds()
            self.clock.advance(max(0.0, step))
            if progress is not None:
                progress(len(self.waits), self.target)
        return self.clock.seconds()


def simulate(agents: int, arrivals_per_hour: float, aht: float, sl_seconds: float, tasks: int,
             seed: int = 1, progress: Callable[[int, int], None] | None = None
             ) -> SimulationResult:
    check_inputs(agents, arrivals_per_hour, aht, sl_seconds, tasks)
    run = _Run(agents, arrivals_per_hour, aht, tasks, seed)
    elapsed = run.run(progress)
    waits = run.waits
    n = len(waits)
    return SimulationResult(
        tasks=n,
        agents=agents,
        arrivals_per_hour=arrivals_per_hour,
        aht_seconds=aht,
        sl_seconds=sl_seconds,
        service_level=sum(1 for w in waits if w <= sl_seconds) / n if n else 0.0,
        asa_seconds=sum(waits) / n if n else 0.0,
        p_wait=sum(1 for w in waits if w > WAITED_EPSILON) / n if n else 0.0,
        occupancy=run.busy / (agents * elapsed) if elapsed else 0.0,
        simulated_seconds=elapsed,
        erlang_c=erlang_c(agents, arrivals_per_hour, aht, sl_seconds),
    )
