"""The machine a benchmark ran on, printed beside its figures: the load average, and how fast one
core was at that moment.

Why the second. On this project's machines (small shared virtual machines) a core's speed
changes by up to 2.5x within minutes: `core_ms()` gave 41.6 ms and then 70.9 to 77.5 ms within
ten minutes of one session, nothing else running; the same kind of loop, timed apart, had its
CPU time equal to its wall time, no steal time reported and the load average unchanged. Every
figure of a benchmark (decisions/s, latencies, CPU time per task) moves with it, so a figure
without the core's speed beside it cannot be compared with one of another run, and a ratio only
holds between runs that alternated in one command.

`core_ms()` times a fixed loop (`PROBE_ADDITIONS` additions of Python ints; the median of three
runs), in milliseconds: the smaller, the faster the core was (about 40 ms at best here).
Benchmarks take it before and after a run (never during, where it would compete with what they
measure) and print it as `core N ms`.
"""

from __future__ import annotations

import os
import statistics
import time

PROBE_ADDITIONS = 1_000_000
PROBE_REPEATS = 3


def load() -> list[float]:
    """The load average over 1, 5 and 15 minutes."""
    return [round(x, 2) for x in os.getloadavg()]


def core_ms(repeats: int = PROBE_REPEATS) -> float:
    """How long a fixed pure-Python loop takes now, in ms (median of `repeats`)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        total = 0
        for i in range(PROBE_ADDITIONS):
            total += i
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def now() -> dict[str, object]:
    """The load average and the core's speed, as a benchmark's JSON keeps them."""
    return {"load": load(), "core_ms": core_ms()}


def said(state: dict) -> str:
    """`now()` in words, for a benchmark's text output."""
    return f"load {' '.join(map(str, state['load']))}, core {state['core_ms']} ms"
