"""The scenario simulator (dispatcher/runtime/centre.py, centre_figures.py): what it plays on
the real router, and its agreement with Erlang A.

Erlang A, and why the bands are what they are: one queue, 10 agents round the clock, Poisson
calls at 200/h, exponential handling with a mean of 180 s (10 erlangs: Erlang C has no steady
state) and exponential patience with a mean of 120 s. Erlang A (test_erlang.py checks the
formula) gives service level 0.6399 (answered within 20 s / offered), abandon rate 0.1375 and
ASA 14.55 s. Measured over 24 seeds of 3 simulated days (about 14,400 calls each), one run's
figures have standard deviations 0.0113 (service level), 0.0043 (abandon rate) and 0.59 s
(ASA); the 24 means were 0.6428, 0.1363 and 14.42 s, within 1.3 standard errors of Erlang
A. The test runs 4 seeds x 3 days (two processes, ~13 s on this 2-core machine), so the mean
of 4 has standard errors 0.0056, 0.0021 and 0.29 s, and the bands are 3.5 of them: ±0.02,
±0.0075 and ±1.0 s (a correct simulator would fail one of the three about once in 700 sets
of seeds if its figures were normal; a simulator without abandonment, or with waits measured
wrong, is far outside: Erlang C has no finite answer here). The seeds are fixed, so the result is reproducible.
"""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ProcessPoolExecutor

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.tasks import Channel
from dispatcher.runtime import scenario
from dispatcher.runtime.centre import CentreRun
from dispatcher.runtime.centre_figures import result_of, simulate_scenario
from dispatcher.runtime.erlang import erlang_a

N, PER_HOUR, AHT, PATIENCE, TARGET = 10, 200.0, 180.0, 120.0, 20.0
SEEDS, DAYS = (1, 2, 3, 4), 3
BANDS = {"service_level": 0.02, "abandon_rate": 0.0075, "asa_seconds": 1.0}


def erlang_a_centre(seed: int, days: int = DAYS) -> scenario.Scenario:
    return scenario.parse({
        "scenario": {"name": "erlang a", "days": days, "seed": seed},
        "queues": [{"name": "q", "sl_seconds": {"phone": TARGET}}],
        "agents": [{"name": "a", "count": N, "channels": ["phone"]}],
        "traffic": [{"queue": "q", "channel": "phone", "per_interval": [PER_HOUR / 4] * 96,
                     "handle": {"mean": AHT}, "patience": PATIENCE}]})


def _one_seed(seed: int) -> dict:
    return simulate_scenario(erlang_a_centre(seed)).total("q", "phone")


def test_one_queue_with_patience_agrees_with_erlang_a():
    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_one_seed, SEEDS))
    row = erlang_a(N, PER_HOUR, AHT, PATIENCE, TARGET)
    expected = {"service_level": row["service_level"], "abandon_rate": row["p_abandon"],
                "asa_seconds": row["asa_seconds"]}
    mean = {k: statistics.mean(r[k] for r in results) for k in BANDS}
    print(f"\n{len(SEEDS)} x {DAYS} days: {mean}, Erlang A {expected}")
    for key, band in BANDS.items():
        assert mean[key] == pytest.approx(expected[key], abs=band), (key, mean, expected)
    assert all(r["waiting_at_end"] <= N for r in results)


def one_agent(**queue) -> CentreRun:
    """One blended agent 08:00-09:00 with a break 08:30-08:40; no arrivals of its own (the
    tests place them)."""
    s = scenario.parse({
        "scenario": {"name": "desk", "timezone": "UTC", "date": "2026-03-02"},
        "calendars": {"office": {"hours": {"mon": [["08:00", "18:00"]]}}},
        "queues": [{"name": "q", "wrap_up_seconds": 30, **queue}],
        "agents": [{"name": "a", "count": 1, "shift": ["08:00", "09:00"],
                    "breaks": [["08:30", "08:40"]]}],
        "traffic": [{"queue": "q", "channel": "phone", "per_interval": [0],
                     "handle": {"distribution": "fixed", "mean": 120}},
                    {"queue": "q", "channel": "email", "per_interval": [0],
                     "handle": {"distribution": "fixed", "mean": 600}}]})
    return CentreRun(s)


def place(run: CentreRun, at: str, channel: Channel) -> None:
    hours, minutes, seconds = (int(x) for x in at.split(":"))
    traffic = run.handle[("q", channel)]
    run.clock.callLater(hours * 3600 + minutes * 60 + seconds, run._arrive, iter(()), traffic)


def test_a_call_interrupts_an_email_which_goes_on_after_the_wrap_up():
    run = one_agent()
    heard: list[ev.Event] = []
    run.assignment.listen(lambda outcome: heard.extend(outcome.events))
    place(run, "08:00:00", Channel.EMAIL)
    place(run, "08:05:00", Channel.PHONE)
    run.run()
    t0 = run.scenario.start
    mail, call = sorted(run.records.values(), key=lambda r: r.created)
    assert mail.answered == t0 + 8 * 3600  # taken at once
    assert call.answered == t0 + 8 * 3600 + 300  # offered on top of the e-mail
    # the call: 120 s of talk, then the queue's 30 s of wrap-up, ended by Assignment's timer
    assert call.done == call.answered + 150
    wrap = [e for e in heard if e.kind == ev.TASK_WRAP_UP]
    assert [e.at for e in wrap] == [call.answered + 120]
    # the e-mail: 300 s done before the call, the 300 s left after it
    assert mail.done == t0 + 8 * 3600 + 600 + 150
    desk = run.desks["a-1"]
    assert desk.busy == pytest.approx(600 + 150)
    assert desk.staffed == pytest.approx(50 * 60)  # 08:00-09:00 less the 10-minute break


def test_breaks_and_the_end_of_a_shift_go_through_presence():
    run = one_agent()
    heard: list[ev.Event] = []
    run.assignment.listen(lambda outcome: heard.extend(outcome.events))
    place(run, "08:31:00", Channel.PHONE)  # during the break: waits for 08:40
    place(run, "08:59:00", Channel.PHONE)  # answered, finished after the shift (overtime)
    place(run, "09:10:00", Channel.PHONE)  # nobody left: waits to the end
    elapsed = run.run()
    t0 = run.scenario.start
    statuses = [(e.at - t0, e.data["status"], e.data["reason"]) for e in heard
                if e.kind == ev.AGENT_STATUS]
    assert statuses == [(8 * 3600, "available", None), (8.5 * 3600, "break", "break"),
                        (8 * 3600 + 40 * 60, "available", None),
                        (9 * 3600, "break", "off_shift")]
    first, second, third = sorted(run.records.values(), key=lambda r: r.created)
    assert first.answered == t0 + 8 * 3600 + 40 * 60
    assert second.answered == t0 + 8 * 3600 + 59 * 60
    assert second.done == second.answered + 150  # past 09:00: work in hand is finished
    assert third.answered is None
    figures = result_of(run, elapsed).total("q", "phone")
    assert figures["answered"] == 2 and figures["waiting_at_end"] == 1
    assert figures["service_level"] == 0.5  # 540 s and 0 s of wait, target 20 s
    assert figures["asa_seconds"] == pytest.approx(540 / 2)


def test_callers_without_agents_abandon_after_their_patience():
    s = scenario.parse({
        "scenario": {"name": "nobody", "seed": 3},
        "queues": [{"name": "q"}],
        "agents": [{"name": "a", "count": 0}],
        "traffic": [{"queue": "q", "channel": "phone", "per_interval": [100] * 8,
                     "handle": {"mean": 100}, "patience": 60}]})
    run = CentreRun(s)
    heard: list[ev.Event] = []
    run.assignment.listen(lambda outcome: heard.extend(outcome.events))
    result = result_of(run, run.run())
    gone = [e for e in heard if e.kind == ev.TASK_ABANDONED]
    assert len(gone) == len(run.records) > 600
    assert {e.actor for e in gone} == {"customer"}
    # exponential patience with a mean of 60 s: the waits the router recorded
    assert statistics.mean(e.data["waited"] for e in gone) == pytest.approx(60, rel=0.1)
    total = result.total("q", "phone")
    assert total["abandon_rate"] == 1.0 and total["service_level"] == 0.0


def test_emails_get_their_deadline_from_the_queue_rule_and_calendar():
    run = one_agent(deadline="sliding 2h", calendar="office")
    place(run, "07:00:00", Channel.EMAIL)  # before opening: due 2 business hours after 08:00
    run.run()
    (mail,) = run.records.values()
    assert mail.deadline == run.scenario.start + 10 * 3600


def test_same_seed_same_run():
    a = simulate_scenario(erlang_a_centre(9, days=1))
    b = simulate_scenario(erlang_a_centre(9, days=1))
    c = simulate_scenario(erlang_a_centre(10, days=1))
    assert a.totals == b.totals and a.totals != c.totals


def blended(reserve: int, interruptions: str) -> scenario.Scenario:
    """Ten blended agents, calls (5 erlangs, patience 2 min) and e-mails (5 erlangs, 4-hour
    deadline) round the clock; the centre's blend and the call queue's reserve as given."""
    return scenario.parse({
        "scenario": {"name": "blend", "days": 1, "seed": 1, "interruptions": interruptions},
        "queues": [{"name": "calls", "sl_seconds": {"phone": 20}, "reserve": reserve},
                   {"name": "mail", "deadline": "sliding 4h"}],
        "agents": [{"name": "a", "count": 10}],
        "traffic": [{"queue": "calls", "channel": "phone", "per_interval": [25] * 96,
                     "handle": {"mean": 180}, "patience": 120},
                    {"queue": "mail", "channel": "email", "per_interval": [12] * 96,
                     "handle": {"mean": 600}}]})


def test_the_blend_decides_who_waits_calls_or_e_mails():
    """The blended policy on the real router: where calls cannot interrupt e-mail, e-mail takes
    the agents and callers wait and hang up; a reserve of agents kept for calls while they are
    at risk (service/blending.py) brings the calls back, at the e-mails' expense; where calls
    interrupt e-mail (the default blend) calls are served first and e-mail waits."""
    def figures(reserve: int, blend: str) -> tuple[float, float]:
        result = simulate_scenario(blended(reserve, blend))
        return (result.total("calls", "phone")["service_level"],
                result.total("mail", "email")["within_deadline"])
    no_interrupt, kept, default = (figures(0, "email:email; phone:"),
                                   figures(3, "email:email; phone:"),
                                   figures(0, "email:email,phone; phone:"))
    print(f"\ncall SL, e-mails within deadline: no interruption {no_interrupt}, with a reserve "
          f"of 3 {kept}, calls interrupt e-mail {default}")
    assert no_interrupt[0] < 0.4 and kept[0] > no_interrupt[0] + 0.25
    assert kept[1] < no_interrupt[1] - 0.3
    assert default[0] > 0.9 and default[1] < no_interrupt[1]
