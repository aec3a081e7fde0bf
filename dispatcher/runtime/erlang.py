"""Analytic references of the simulator and of `switchboard staffing`: Erlang C, Erlang A and
an e-mail deadline model. Pure arithmetic (standard library only, no I/O, no clock).

Definitions, the same as the reports' (dispatcher/domain/metrics.py):
- service level = calls answered within the target / calls offered (answered + abandoned);
- ASA = mean wait of the answered calls (a call answered at once waited 0 s);
- P(wait) = share of arriving calls that find every agent busy.
Without abandonment every call is answered, so Erlang A's figures tend to Erlang C's as the
patience grows.

Erlang A (M/M/n+M, Palm 1943; Garnett, Mandelbaum & Reiman 2002) is computed exactly from its
birth-death chain: the number in the system k has birth rate lambda and death rate
min(k, n) mu + max(k - n, 0) theta (theta = 1 / mean patience). An arrival sees the stationary
law (PASTA). One that finds j callers waiting ahead of it moves up one place at rate
n mu + (m - 1) theta and leaves at rate theta while at place m, so it is answered with
probability prod_m (n mu + (m-1) theta) / (n mu + m theta), after a wait whose law, given that
it is answered, is the sum of independent Exp(n mu + m theta) over its places: its distribution
function is computed by uniformization (a Poisson mixture of a discrete chain, stable for any
number of places). The chain is cut where the stationary mass left is below 1e-14.

The e-mail deadline model (`email_capacity`): e-mail work (arrivals x mean handling time)
arriving in an interval must be done before its deadline, counted on the queue's business
hours. Each interval's work is spread evenly over the business time of the first `share` of
its window [arrival, deadline] (share 0.75: done a quarter of the window's business time
early, the margin left for the randomness of arrivals and handling). Doing every piece of work at a constant rate
over its own window finishes it in time (a processor-sharing, fluid schedule), so the capacity
this gives per interval is enough in the fluid sense; the simulator checks it with the real
router. Work is in agent-seconds; the answer is in agents (agent-seconds / interval length).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

# Stationary mass below this far out is ignored (Erlang A's chain is infinite).
TAIL = 1e-14
# Poisson weights below this are skipped in the uniformization of the wait.
POISSON_TAIL = 1e-13
MAX_AGENTS = 100_000


def erlang_c(agents: int, arrivals_per_hour: float, aht: float, sl_seconds: float) -> dict:
    """Erlang C: probability of waiting, service level and ASA for an M/M/N queue."""
    load = arrivals_per_hour / 3600.0 * aht  # offered traffic in erlangs
    if load >= agents:
        return {"p_wait": 1.0, "service_level": 0.0, "asa_seconds": math.inf}
    term, total = 1.0, 1.0
    for k in range(1, agents):
        term *= load / k
        total += term
    top = term * load / agents * agents / (agents - load)
    p_wait = top / (total + top)
    service_level = 1.0 - p_wait * math.exp(-(agents - load) * sl_seconds / aht)
    asa = p_wait * aht / (agents - load)
    return {"p_wait": p_wait, "service_level": service_level, "asa_seconds": asa}


def _stationary(n: int, lam: float, mu: float, theta: float) -> list[float]:
    """The stationary law of the number in an M/M/n+M system, cut where the tail is negligible
    (log-space weights, so hundreds of agents do not overflow)."""
    logs = [0.0]
    k = 0
    while True:
        k += 1
        death = min(k, n) * mu + max(k - n, 0) * theta
        logs.append(logs[-1] + math.log(lam / death))
        top = max(logs)
        if k > n and death > lam and logs[-1] < top + math.log(TAIL):
            break
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return [w / total for w in weights]


def _within(rates: Sequence[float], t: float) -> list[float]:
    """F[j] = P(Exp(rates[0]) + ... + Exp(rates[j]) <= t), for every j, by uniformization."""
    places = len(rates)
    if places == 0:
        return []
    if t <= 0:
        return [0.0] * places
    big = max(rates)
    steps = [r / big for r in rates]
    mean = big * t
    # u[m] = P(absorbed within k steps from place m+1); place 0 is absorbed.
    u = [0.0] * places
    out = [0.0] * places
    weight = math.exp(-mean) if mean < 700 else 0.0
    log_weight = -mean
    k = 0
    limit = int(mean + 12 * math.sqrt(mean) + 30)
    while k <= limit:
        w = weight if weight > 0 else math.exp(log_weight)
        if w > POISSON_TAIL or k < mean:
            for m in range(places):
                out[m] += w * u[m]
        # one step of the discrete chain: move down one place with probability steps[m]
        prev = 1.0
        for m in range(places):
            here = u[m]
            u[m] = (1.0 - steps[m]) * here + steps[m] * prev
            prev = here
        k += 1
        log_weight += math.log(mean) - math.log(k)
        weight = math.exp(log_weight) if log_weight > -700 else 0.0
    return [min(1.0, v) for v in out]


def erlang_a(agents: int, arrivals_per_hour: float, aht: float, patience: float | None,
             sl_seconds: float) -> dict:
    """Erlang A (M/M/n+M): P(wait), P(abandon), service level (answered within `sl_seconds`
    / offered), ASA (mean wait of answered calls) and the mean wait of every call. With no
    patience (None or infinite) this is Erlang C, with P(abandon) 0."""
    if patience is None or math.isinf(patience):
        c = erlang_c(agents, arrivals_per_hour, aht, sl_seconds)
        waited = c["asa_seconds"]
        return {**c, "p_abandon": 0.0, "mean_wait_seconds": waited}
    if not 1 <= agents <= MAX_AGENTS or arrivals_per_hour < 0 or aht <= 0 or patience <= 0:
        raise ValueError("erlang_a: agents >= 1, arrivals >= 0, aht > 0, patience > 0")
    lam, mu, theta = arrivals_per_hour / 3600.0, 1.0 / aht, 1.0 / patience
    if lam == 0:
        return {"p_wait": 0.0, "p_abandon": 0.0, "service_level": 1.0, "asa_seconds": 0.0,
                "mean_wait_seconds": 0.0}
    pi = _stationary(agents, lam, mu, theta)
    waiting = pi[agents:]  # an arrival finds j = 0, 1, ... callers waiting ahead
    rates = [agents * mu + (j + 1) * theta for j in range(len(waiting))]
    within = _within(rates, sl_seconds)
    served_immediately = sum(pi[:agents])
    answered = served_immediately
    answered_in_time = served_immediately
    answered_wait = 0.0
    all_wait = 0.0
    survive = 1.0  # P(answered | j ahead), built up one place at a time
    sum_inverse = 0.0  # expected wait at each place, summed
    for j, p in enumerate(waiting):
        survive *= (agents * mu + j * theta) / rates[j]
        sum_inverse += 1.0 / rates[j]
        answered += p * survive
        answered_in_time += p * survive * within[j]
        answered_wait += p * survive * sum_inverse
        # the wait of every caller (answered or not): time spent at each place reached
        all_wait += p * _mean_time_to_leave(j, rates, agents * mu, theta)
    p_wait = sum(waiting)
    return {
        "p_wait": p_wait,
        "p_abandon": max(0.0, 1.0 - answered),
        "service_level": answered_in_time,
        "asa_seconds": answered_wait / answered if answered > 0 else math.inf,
        "mean_wait_seconds": all_wait,
    }


def _mean_time_to_leave(j: int, rates: Sequence[float], served: float, theta: float) -> float:
    """Expected time a caller with j ahead spends waiting (until answered or gone): the sum
    over the places it reaches of the mean time spent there."""
    total, reach = 0.0, 1.0
    for m in range(j, -1, -1):
        total += reach / rates[m]
        reach *= (served + m * theta) / rates[m]
    return total


def agents_for(arrivals_per_hour: float, aht: float, patience: float | None,
               sl_seconds: float, sl_share: float) -> int:
    """The fewest agents whose service level reaches `sl_share` (Erlang A, or Erlang C without
    patience); 0 when no call arrives. The service level grows with the agents, so this is a
    search between bounds."""
    if arrivals_per_hour <= 0:
        return 0
    load = arrivals_per_hour / 3600.0 * aht

    def good(n: int) -> bool:
        return erlang_a(n, arrivals_per_hour, aht, patience, sl_seconds)["service_level"] >= \
            sl_share

    low = 1 if patience is not None else max(1, math.floor(load) + 1)
    high = max(low, math.ceil(load) + 1)
    while not good(high):
        low, high = high + 1, high * 2
        if high > MAX_AGENTS:
            raise ValueError("no staffing up to MAX_AGENTS reaches the service level")
    while low < high:
        mid = (low + high) // 2
        if good(mid):
            high = mid
        else:
            low = mid + 1
    return high


def email_capacity(starts: Sequence[float], work: Sequence[float], length: float,
                   window_end: Callable[[float], float],
                   business: Callable[[float, float], float]) -> list[float]:
    """Agents needed per interval so that the e-mail work arriving is done by its deadline.

    `starts[i]` is when interval i begins (each `length` seconds long), `work[i]` the agent-
    seconds of e-mail arriving in it; `window_end(t)` the end of the planning window of an
    e-mail arriving at t (its deadline, or earlier for a margin: `planning_window`) and
    `business(a, b)` the business seconds between two instants. The work of interval i is
    spread evenly over the business time of [mid, window_end(mid)] (mid: the middle of the
    interval); work whose window passes the last interval wraps around to the first (the day
    repeats). A window with no business time at all puts the work in the interval itself. See
    the module docstring for why this suffices in the fluid sense."""
    count = len(starts)
    need = [0.0] * count
    for i, amount in enumerate(work):
        if amount <= 0:
            continue
        mid = starts[i] + length / 2
        end = window_end(mid)
        pieces: list[tuple[int, float]] = []
        at, k = starts[i], i
        while at < end:
            a, b = max(at, mid), min(at + length, end)
            if b > a:
                pieces.append((k % count, business(a, b)))
            at += length
            k += 1
        total = sum(s for _, s in pieces)
        if total <= 0:
            need[i] += amount
            continue
        for k, seconds in pieces:
            need[k] += amount * seconds / total
    return [n / length for n in need]


def planning_window(due: Callable[[float], float], business: Callable[[float, float], float],
                    add_business: Callable[[float, float], float],
                    share: float) -> Callable[[float], float]:
    """window_end for `email_capacity`: the instant when `share` of the business time between
    an arrival and its deadline has passed (share 0.75: a quarter of it kept as a margin)."""

    def end(at: float) -> float:
        return add_business(at, share * business(at, due(at)))

    return end
