"""`switchboard staffing`: how many agents each 15-minute interval needs so that calls reach
their service level and e-mails are answered by their deadline, checked by the simulator.

The plan, per interval of the day (every simulated day has the scenario's same profile):
- calls, per queue: the fewest agents whose Erlang A service level (Erlang C when the traffic
  has no patience) reaches the target, with the interval's arrival rate and a handling time of
  the mean talk time plus the queue's wrap-up (erlang.agents_for); queues are added up (no
  pooling between queues is assumed, which errs on the safe side);
- e-mails, per queue: the agents the deadline model asks for (erlang.email_capacity: the work
  spread over the business hours before its deadline, done a quarter of it early);
- together: blended agents take e-mails in the time calls leave them (a call interrupts an
  e-mail: the router's default interruption matrix), so an interval needs its call agents and
  at least enough for the call load plus the e-mail load: max(calls, ceil(call erlangs + e-mail
  agents)).
The check: the plan is played on the real router (centre.py) by blended agents holding every
queue's skills (one call, one e-mail at a time), agent k working every interval whose plan
asks for more than k agents; the simulated figures are set beside the targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from dispatcher.domain.agents import Agent
from dispatcher.domain.deadlines import ALWAYS_OPEN, parse_rule
from dispatcher.domain.tasks import Channel

from .centre import Staff
from .centre_figures import CentreResult, simulate_scenario
from .erlang import agents_for, email_capacity, planning_window
from .scenario import DAY, INTERVAL, INTERVALS_PER_DAY, Scenario

DEADLINE_SHARE = 0.75  # e-mail work is planned to be done within this share of its window
EMAIL_TARGET = 0.9  # share of e-mails to answer by their deadline (default of --email-share)


@dataclass(frozen=True)
class Plan:
    calls: list[int]  # agents for calls, per interval of the day
    call_load: list[float]  # erlangs of call work
    email: list[float]  # agents' worth of e-mail work the deadlines ask for
    agents: list[int]  # the plan: agents per interval
    sl_share: dict[str, float]  # the call target per queue
    sl_seconds: dict[str, float]
    email_share: float

    @property
    def agent_hours(self) -> float:
        return sum(self.agents) * INTERVAL / 3600


@dataclass(frozen=True)
class Staffing:
    plan: Plan
    checked: CentreResult

    def verdicts(self) -> list[dict]:
        """Per queue and channel: the target, the simulated figure, met or not."""
        out = []
        for total in self.checked.totals:
            q = total["queue"]
            if total["channel"] == Channel.PHONE.value:
                target, got = self.plan.sl_share[q], total["service_level"]
                what = f"answered within {self.plan.sl_seconds[q]:g} s"
            else:
                target, got = self.plan.email_share, total["within_deadline"]
                what = "answered by the deadline"
            out.append({"queue": q, "channel": total["channel"], "figure": what,
                        "target": target, "simulated": got,
                        "met": got is not None and got >= target})
        return out

    def as_dict(self) -> dict:
        p = self.plan
        return {"intervals": [{"interval": i, "starts": _clock(i), "agents": p.agents[i],
                               "call_agents": p.calls[i], "call_erlangs": p.call_load[i],
                               "email_agents": p.email[i]}
                              for i in range(INTERVALS_PER_DAY) if p.agents[i]],
                "agent_hours_per_day": p.agent_hours, "peak_agents": max(p.agents, default=0),
                "verdicts": self.verdicts(), "simulated": self.checked.as_dict()}


def _clock(i: int) -> str:
    minutes = int(i * INTERVAL // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def plan(scenario: Scenario, sl: float | None = None, within: float | None = None,
         email_share: float = EMAIL_TARGET) -> Plan:
    """The agents each interval of the day needs (see the module docstring). `sl` and `within`
    override every queue's call target (share, seconds)."""
    n = INTERVALS_PER_DAY
    calls, load, email = [0] * n, [0.0] * n, [0.0] * n
    shares, seconds = {}, {}
    starts = [scenario.start + i * INTERVAL for i in range(n)]
    for q in scenario.queues:
        shares[q.name] = q.sl_share if sl is None else sl
        seconds[q.name] = q.sl_seconds[Channel.PHONE] if within is None else within
    for t in scenario.traffic:
        q = scenario.queue(t.queue)
        if t.channel is Channel.PHONE:
            aht = t.handle.mean + q.wrap_up_seconds
            for i, expected in enumerate(t.profile):
                per_hour = expected * 3600 / INTERVAL
                calls[i] += agents_for(per_hour, aht, t.patience, seconds[q.name],
                                       shares[q.name])
                load[i] += per_hour / 3600 * aht
        else:
            calendar = scenario.calendars.get(q.calendar or "", ALWAYS_OPEN)
            rule = parse_rule(q.deadline) if q.deadline else None
            default = q.sl_seconds[Channel.EMAIL]
            due: Callable[[float], float] = (
                (lambda at, r=rule, c=calendar: r.due(at, c)) if rule is not None
                else (lambda at, d=default: at + d))
            work = [expected * t.handle.mean for expected in t.profile]
            business = calendar.business_seconds_between
            window = planning_window(due, business, calendar.add_business_seconds,
                                     DEADLINE_SHARE)
            for i, agents in enumerate(email_capacity(starts, work, INTERVAL, window,
                                                      business)):
                email[i] += agents
    agents = [max(c, math.ceil(a + e - 1e-9)) for c, a, e in zip(calls, load, email,
                                                                  strict=True)]
    return Plan(calls, load, email, agents, shares, seconds, email_share)


def staff_for(scenario: Scenario, agents: list[int]) -> list[Staff]:
    """Blended agents for a plan: every queue's skills, both channels, one call and one e-mail
    at a time; agent k works the intervals (every day) whose plan asks for more than k."""
    skills: dict[str, int] = {}
    for q in scenario.queues:
        for name, level in q.skills.items():
            skills[name] = max(level, skills.get(name, 0))
    channels = {t.channel for t in scenario.traffic}
    out = []
    for k in range(max(agents, default=0)):
        periods: list[tuple[float, float]] = []
        for day in range(scenario.days):
            for i, wanted in enumerate(agents):
                if wanted <= k:
                    continue
                a = day * DAY + i * INTERVAL
                if periods and periods[-1][1] == a:
                    periods[-1] = (periods[-1][0], a + INTERVAL)
                else:
                    periods.append((a, a + INTERVAL))
        out.append(Staff(Agent(f"planned-{k + 1}", skills=dict(skills),
                               queues={q.name for q in scenario.queues}, channels=channels,
                               capacity={Channel.PHONE: 1, Channel.EMAIL: 1}),
                         tuple(periods)))
    return out


def staffing(scenario: Scenario, sl: float | None = None, within: float | None = None,
             email_share: float = EMAIL_TARGET, seed: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> Staffing:
    """The plan, and its check on the simulator."""
    p = plan(scenario, sl, within, email_share)
    if within is not None:  # the simulated figures against the same target
        scenario = replace(scenario, queues=tuple(
            replace(q, sl_seconds={**q.sl_seconds, Channel.PHONE: within})
            for q in scenario.queues))
    checked = simulate_scenario(scenario, staff_for(scenario, p.agents), seed, progress)
    return Staffing(p, checked)
