"""Garbage collection on our schedule: keep long-lived objects out of CPython's full passes.

A full collection walks every tracked object, so with thousands of agent connections and a
large router state it stalls the reactor for tens to hundreds of milliseconds, at moments the
interpreter picks (measured in bench/push.py: it is the whole p99 of offer latency). `Collector`
freezes what exists (`gc.freeze`: automatic passes skip it) and, every `every_seconds`,
unfreezes, collects once and freezes again — one pass at a known time instead of many at random
ones, and cyclic garbage is still reclaimed (a freeze alone would keep it forever).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from twisted.internet.task import LoopingCall

log = logging.getLogger(__name__)

DEFAULT_EVERY_SECONDS = 300.0


class Collector:
    def __init__(self, reactor: Any, every_seconds: float = DEFAULT_EVERY_SECONDS) -> None:
        self.every_seconds = every_seconds
        self._loop = LoopingCall(self.refreeze)
        self._loop.clock = reactor

    def start(self) -> None:
        """Freeze now, then refreeze every `every_seconds` (0: freeze once, never again)."""
        self.refreeze()
        if self.every_seconds > 0:
            self._loop.start(self.every_seconds, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
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
