"""Garbage collection on our schedule: keep long-lived objects out of CPython's full passes.

A full collection walks every tracked object, so with thousands of agent connections and a
large router state it stalls the reactor for tens to hundreds of milliseconds, at moments the
interpreter picks (measured in bench/push.py: it is the whole p99 of offer latency). `Collector`
freezes what exists (`gc.freeze`: automatic passes skip it) and, every `every_seconds`,
unfreezes, collects once and freezes again — one pass at a known time instead of many at random
ones, and cyclic garbage is still reclaimed (a freeze alone would keep it forever).

While it refreezes on a schedule, the interpreter makes only passes of its youngest generation,
and each freezes what survived it (a `gc.callbacks` hook: `gc.freeze` moves lists, it walks
nothing). Survivors are then never walked again before the next refreeze. Measured in
bench/push.py at 500 tasks/s on PostgreSQL (2,000 agents): without that, the objects made since
the freeze that outlive a young pass (a new customer's card, each agent's pending read) piled up
in the middle generation, and the interpreter's pass over it, every tenth young pass, paused the
reactor 65 to 135 ms; the longest young passes took 30 to 70 ms. No full pass of the
interpreter's own either: once it had made one, CPython would make another each time the objects
made since the freeze grew by a quarter (a pass every 1 to 1.5 s at that rate, 30 to 350 ms
each). The youngest generation is collected every
`YOUNG_THRESHOLD` allocations instead of 700: most objects of a decision die before, and are
then never walked. Cycles that die young are freed by the young passes; cycles that outlive one
wait for the next refreeze (`every_seconds`), as cycles that reached the oldest generation
always did. In that bench they are few: a full pass at the end of the run found about 100
unreachable objects a second of it (closures of Twisted's thread pool), and the RSS after 60 s
was 224 MB, against 225 MB with the middle generation's passes. With
`every_seconds` 0 (freeze once, never again) the interpreter keeps its thresholds and its
passes, or such cycles would never be freed.
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
# generation (the interpreter's default is 700; in that bench, survivors frozen, 2,000 gave
# passes of about 1 ms, 11 ms at most, where 10,000 had given 4-8 ms, 30-70 ms at most, for
# about the same total), and passes of one generation before one of the next (out of reach:
# the young passes are the only automatic ones).
YOUNG_THRESHOLD = 2_000
NO_AUTOMATIC_PASS = 2**30


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
                young = self._thresholds[0]
                gc.set_threshold(max(young, YOUNG_THRESHOLD), NO_AUTOMATIC_PASS, NO_AUTOMATIC_PASS)
                gc.callbacks.append(_freeze_young_survivors)
            self._loop.start(self.every_seconds, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._thresholds is not None:
            gc.callbacks.remove(_freeze_young_survivors)
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


def _freeze_young_survivors(phase: str, info: dict[str, Any]) -> None:
    """A `gc.callbacks` hook: once a pass of the youngest generation is over, freeze what
    survived it (moved to the next generation), so that no later automatic pass walks it."""
    if phase == "stop" and info["generation"] == 0:
        gc.freeze()
