"""The analytic references (dispatcher/runtime/erlang.py): Erlang C, Erlang A and the e-mail
deadline model.

Erlang C: the published row test_simulate.py uses (100 calls per 30 minutes, AHT 180 s, 14
agents, 20 s -> service level 88.8 %, ASA 7.84 s, P(wait) 17.4 %).

Erlang A, with patience: no numeric row from a calculator was at hand to cite, so the check is
an exact identity of the model instead, which no shared error can satisfy by accident. When
the mean patience equals the mean handling time (theta = mu), every caller in the system, waiting
or served, leaves at the same rate, so the number in the system is that of an M/M/infinity
queue: Poisson with mean a = lambda / mu (Mandelbaum & Zeltyn, "The Palm/Erlang-A queue, with
applications to call centers", 2007, and Garnett, Mandelbaum & Reiman 2002: "theta = mu ...
M/M/infinity"). Then P(wait) = P(N >= n) and P(abandon) = theta E[(N - n)+] / lambda =
E[(N - n)+] / a, computed here from the Poisson law directly, and by Little's law the mean
wait of every caller is E[(N - n)+] / lambda. The row used: 12 agents, a = 10 erlangs
(200 calls/h, AHT = patience = 180 s). The service level (answered within 20 s) has no such
closed form; it is checked against a direct numerical integration of the same model (the
hypoexponential wait of a caller with j ahead, integrated by the trapezoidal rule), and by the
simulator in test_scenario.py.
"""

from __future__ import annotations

import math

import pytest

from dispatcher.domain.deadlines import BusinessCalendar, SlidingDeadline
from dispatcher.runtime.erlang import (
    agents_for,
    email_capacity,
    erlang_a,
    erlang_c,
    planning_window,
)
from dispatcher.runtime.simulate import erlang_c as erlang_c_of_simulate


def poisson(a: float, k: int) -> float:
    return math.exp(-a + k * math.log(a) - math.lgamma(k + 1))


def test_erlang_c_reproduces_the_published_row_and_stays_importable_from_simulate():
    row = erlang_c(14, 200, 180, 20)
    assert row["service_level"] == pytest.approx(0.888, abs=0.002)
    assert row["asa_seconds"] == pytest.approx(7.84, abs=0.05)
    assert row["p_wait"] == pytest.approx(0.174, abs=0.002)
    assert erlang_c_of_simulate is erlang_c


def test_erlang_a_with_patience_equal_to_the_handling_time_is_m_m_infinity():
    n, a = 12, 10.0
    row = erlang_a(n, a * 3600 / 180, 180, 180, 20)
    p_wait = 1 - sum(poisson(a, k) for k in range(n))
    excess = sum(poisson(a, k) * (k - n) for k in range(n, 200))
    assert row["p_wait"] == pytest.approx(p_wait, rel=1e-9)
    assert row["p_abandon"] == pytest.approx(excess / a, rel=1e-9)
    assert row["mean_wait_seconds"] == pytest.approx(excess / (a / 180), rel=1e-9)
    # the figures themselves, for whoever checks them with another calculator
    assert row["p_wait"] == pytest.approx(0.3032, abs=5e-5)
    assert row["p_abandon"] == pytest.approx(0.05309, abs=5e-6)


def test_erlang_a_service_level_matches_a_direct_integration():
    n, per_hour, aht, patience, t = 10, 200.0, 180.0, 120.0, 20.0
    lam, mu, theta = per_hour / 3600, 1 / aht, 1 / patience
    # stationary law, cut far out
    w = [1.0]
    for k in range(1, 120):
        w.append(w[-1] * lam / (min(k, n) * mu + max(k - n, 0) * theta))
    pi = [x / sum(w) for x in w]
    # Callers who find j waiting ahead start at place j + 1; by linearity one integration
    # carries all of them at once: p[m] = probability of being at place m + 1, still waiting.
    # Euler steps of the place chain on [0, t] (fine enough at 20,000 steps).
    places = len(pi) - n
    p = pi[n:]
    sl = sum(pi[:n])
    steps = 20_000
    dt = t / steps
    for _ in range(steps):
        sl += p[0] * n * mu * dt  # reaches an agent
        new = [p[m] * (1 - (n * mu + (m + 1) * theta) * dt) for m in range(places)]
        for m in range(1, places):
            new[m - 1] += p[m] * (n * mu + m * theta) * dt
        p = new
    row = erlang_a(n, per_hour, aht, patience, t)
    assert row["service_level"] == pytest.approx(sl, abs=2e-3)
    assert 0.5 < row["service_level"] < 0.8  # 10 erlangs on 10 agents: stable with patience


def test_erlang_a_tends_to_erlang_c_as_patience_grows():
    c = erlang_c(14, 200, 180, 20)
    for patience, tolerance in ((1e5, 2e-3), (1e8, 2e-6)):
        a = erlang_a(14, 200, 180, patience, 20)
        assert a["service_level"] == pytest.approx(c["service_level"], abs=tolerance)
        assert a["p_wait"] == pytest.approx(c["p_wait"], abs=tolerance)
        assert a["asa_seconds"] == pytest.approx(c["asa_seconds"], rel=tolerance * 10)
        assert a["p_abandon"] < tolerance
    assert erlang_a(14, 200, 180, None, 20)["p_abandon"] == 0.0
    assert erlang_a(14, 200, 180, None, 20)["service_level"] == c["service_level"]


def test_erlang_a_is_stable_where_erlang_c_is_not_and_patience_helps_the_answered():
    over = erlang_a(10, 240, 180, 60, 20)  # 12 erlangs on 10 agents
    assert erlang_c(10, 240, 180, 20)["asa_seconds"] == math.inf
    assert 0 < over["p_abandon"] < 0.5 and over["asa_seconds"] < 120
    shorter, longer = erlang_a(14, 200, 180, 30, 20), erlang_a(14, 200, 180, 600, 20)
    assert shorter["p_abandon"] > longer["p_abandon"]
    assert shorter["asa_seconds"] < longer["asa_seconds"]


def test_agents_for_is_the_fewest_that_reach_the_target():
    n = agents_for(200, 180, None, 20, 0.8)
    assert n == 14  # 13 agents give 0.796, the published row's 14 give 0.888
    assert erlang_c(n, 200, 180, 20)["service_level"] >= 0.8
    assert erlang_c(n - 1, 200, 180, 20)["service_level"] < 0.8
    m = agents_for(200, 180, 90, 20, 0.8)
    assert erlang_a(m, 200, 180, 90, 20)["service_level"] >= 0.8
    assert erlang_a(m - 1, 200, 180, 90, 20)["service_level"] < 0.8
    assert m <= n  # callers who leave make room for the others
    assert agents_for(0, 180, 90, 20, 0.8) == 0


def test_email_capacity_spreads_work_over_business_hours_before_the_deadline():
    office = BusinessCalendar.from_spec("office", "UTC", {"mon": [["08:00", "12:00"]]})
    monday = 1772409600.0  # 2026-03-02 00:00 UTC, a Monday
    starts = [monday + i * 900 for i in range(96)]
    work = [0.0] * 96
    work[4] = 3600.0 * 4  # 4 agent-hours of e-mail arrive at 01:00-01:15
    rule = SlidingDeadline(4)  # business hours
    window = planning_window(lambda t: rule.due(t, office), office.business_seconds_between,
                             office.add_business_seconds, 0.75)
    need = email_capacity(starts, work, 900, window, office.business_seconds_between)
    # Due at 12:00 (4 business hours after 08:00); planned by 11:00: 08:00-11:00, 12 intervals
    assert sum(need) * 900 == pytest.approx(4 * 3600)
    busy = [i for i, n in enumerate(need) if n > 1e-9]
    assert busy == list(range(32, 44))
    assert need[32] == pytest.approx(4 * 3600 / 3 / 3600)  # 4 agent-hours over 3 hours
