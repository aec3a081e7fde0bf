"""Garbage collection on our schedule: keep long-lived objects out of CPython's full passes.

A full collection walks every tracked object, so with thousands of agent connections and a
large router state it stalls the reactor for tens to hundreds of milliseconds, at moments the
interpreter picks (measured in bench/push.py: it is the whole p99 of offer latency). `Collector`
freezes what exists (`gc.freeze`: automatic passes skip it) and, every `every_seconds`,
unfreezes, collects once and freezes again — one pass at a known time instead of many at random
ones, and cyclic garbage is still reclaimed (a freeze alone would keep it forever).

While it refreezes on a schedule, the interpreter makes no full pass of its own (the third
threshold of `gc.set_threshold` is raised out of reach; `stop` puts the thresholds back). Else,
once it had made one, CPython would make another each time the objects made since the freeze grew
by a quarter: measured in bench/push.py at 500 tasks/s on PostgreSQL, a full pass every 1 to
1.5 s, each pausing the reactor 30 to 350 ms, growing with the state. The youngest generation is
collected every `YOUNG_THRESHOLD` allocations instead of 700: most objects of a decision die
before, and are then never walked (measured the same way: young passes 80-100 ms per 7 s
instead of 150-650 ms, the longest pass about as long). Cycles that die young are still freed by
the young passes; cycles that die after them wait for the next refreeze (`every_seconds`). With
`every_seconds` 0 (freeze once, never again) the interpreter keeps its thresholds, or such
cycles would never be freed.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from twisted.internet.task import LoopingCall

log = logging.getLogger(__name__)

DEFAULT_EVERY_SECONDS = 300.0
# The thresholds while refreezes run on a schedule: allocations before a pass of the youngest
# generation (the interpreter's default is 700), and young passes before a full one.
YOUNG_THRESHOLD = 10_000
NO_AUTOMATIC_FULL_PASS = 2**30


class Collector:
    def __init__(self, reactor: Any, every_seconds: float = DEFAULT_EVERY_SECONDS) -> None:
        self.every_seconds = every_seconds
        self._loop = LoopingCall(self.refreeze)
        self._loop.clock = reactor
        self._thresholds: tuple[int, int, int] | None = None  # the interpreter's, while raised

    def start(self) -> None:
        """Freeze now, then refreeze every `every_seconds` (0: freeze once, never again)."""
        self.refreeze()
        if self.every_seconds > 0:
            if self._thresholds is None:
                self._thresholds = gc.get_threshold()
                young, older, _ = self._thresholds
                gc.set_threshold(max(young, YOUNG_THRESHOLD), older, NO_AUTOMATIC_FULL_PASS)
            self._loop.start(self.every_seconds, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        gc.unfreeze()

    def refreeze(self) -> float:
        """Collect everything once, then freeze what survived; returns the seconds it took."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        took = time.perf_counter() - started
        log.debug("gc: %d unreachable objects collected, %d frozen, %.1f ms", found,
                  gc.get_freeze_count(), took * 1000)
        return took
