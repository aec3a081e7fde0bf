"""Figures of a scenario run (centre.py): per 15-minute interval of arrival and in total, per
queue and channel, and per agent; `simulate_scenario` runs a scenario and returns them.

Definitions (the reports', dispatcher/domain/metrics.py):
- calls: offered = arrived; service level = answered within the queue's phone target /
  (answered + abandoned); ASA = mean wait of the answered calls; abandon rate = abandoned /
  (answered + abandoned); calls still waiting at the end count in neither;
- e-mails: answered = completed; within deadline = answered by its deadline / (answered +
  overdue at the end), an e-mail still open and not yet due counting in neither; mean and
  longest time to answer over the answered ones (hours);
- agents: occupancy = working time while signed in and not on break / that time; work done
  on a break or after the shift (finishing what the agent held) is `overtime_hours`, apart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dispatcher.domain.tasks import Channel

from .centre import CentreRun, Staff, TaskRecord
from .scenario import DAY, INTERVAL, Scenario


@dataclass(frozen=True)
class CentreResult:
    scenario: str
    start: float
    days: int
    agents: int
    simulated_seconds: float
    totals: list[dict]  # one per queue and channel
    intervals: list[dict]  # one per queue, channel and interval with arrivals
    per_day: list[dict]  # one per day, queue and channel (by day of arrival)
    agent_occupancy: dict[str, float]
    occupancy: float  # every agent's working time / their time signed in
    overtime_hours: float  # work finished on breaks and after shifts, every agent

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "start": self.start, "days": self.days,
                "agents": self.agents, "simulated_seconds": self.simulated_seconds,
                "occupancy": self.occupancy,
                "overtime_hours": self.overtime_hours, "totals": self.totals,
                "per_day": self.per_day, "intervals": self.intervals, "agent_occupancy": self.agent_occupancy}

    def total(self, queue: str, channel: str) -> dict:
        return next(t for t in self.totals if t["queue"] == queue and t["channel"] == channel)


def figures(records: Iterable[TaskRecord], channel: Channel, target: float, end: float) -> dict:
    """The figures of one group of tasks of one channel (see the module docstring)."""
    records = list(records)
    out: dict = {"offered": len(records)}
    if channel is Channel.PHONE:
        answered = [r.answered - r.created for r in records if r.answered is not None]
        abandoned = sum(1 for r in records if r.abandoned)
        settled = len(answered) + abandoned
        out.update(
            answered=len(answered), abandoned=abandoned,
            waiting_at_end=len(records) - settled,
            service_level=_ratio(sum(1 for w in answered if w <= target), settled),
            asa_seconds=_ratio(sum(answered), len(answered)),
            abandon_rate=_ratio(abandoned, settled),
            max_wait_seconds=max(answered, default=None))
        return out
    done = [r for r in records if r.done is not None]
    waits = [r.done - r.created for r in done]
    in_time = sum(1 for r in done if r.deadline is None or r.done <= r.deadline)
    overdue = sum(1 for r in records if r.done is None and r.deadline is not None
                  and r.deadline < end)
    out.update(
        answered=len(done), open_at_end=len(records) - len(done), overdue_at_end=overdue,
        within_deadline=_ratio(in_time, len(done) + overdue),
        mean_wait_hours=None if not waits else sum(waits) / len(waits) / 3600,
        max_wait_hours=None if not waits else max(waits) / 3600)
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def result_of(run: CentreRun, elapsed: float) -> CentreResult:
    scenario = run.scenario
    end = scenario.start + elapsed
    groups: dict[tuple[str, Channel], list[TaskRecord]] = defaultdict(list)
    slices: dict[tuple[str, Channel, int], list[TaskRecord]] = defaultdict(list)
    days: dict[tuple[int, str, Channel], list[TaskRecord]] = defaultdict(list)
    for r in run.records.values():
        groups[(r.queue, r.channel)].append(r)
        slices[(r.queue, r.channel, int((r.created - scenario.start) // INTERVAL))].append(r)
        days[(int((r.created - scenario.start) // DAY), r.queue, r.channel)].append(r)
    targets = {q.name: q.sl_seconds for q in scenario.queues}
    totals = [{"queue": q, "channel": ch.value,
               **figures(rs, ch, targets[q][ch], end)}
              for (q, ch), rs in sorted(groups.items())]
    intervals = [{"queue": q, "channel": ch.value, "interval": i,
                  "starts": scenario.start + i * INTERVAL, **figures(rs, ch, targets[q][ch], end)}
                 for (q, ch, i), rs in sorted(slices.items())]
    per_day = [{"day": day + 1, "queue": q, "channel": ch.value,
                **figures(rs, ch, targets[q][ch], end)}
               for (day, q, ch), rs in sorted(days.items())]
    occupancy = {d.agent_id: d.busy / d.staffed for d in run.desks.values() if d.staffed > 0}
    staffed = sum(d.staffed for d in run.desks.values())
    busy = sum(d.busy for d in run.desks.values())
    return CentreResult(scenario.name, scenario.start, scenario.days, len(run.desks), elapsed,
                        totals, intervals, per_day, occupancy,
                        busy / staffed if staffed else math.nan,
                        sum(d.overtime for d in run.desks.values()) / 3600)


def simulate_scenario(scenario: Scenario, staff: Sequence[Staff] | None = None,
                      seed: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> CentreResult:
    """Run a scenario (with its own agents, or `staff`) and return its figures."""
    run = CentreRun(scenario, staff, seed)
    elapsed = run.run(progress)
    return result_of(run, elapsed)
