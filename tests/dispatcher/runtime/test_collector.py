"""The collector keeps objects out of automatic full passes without leaking cyclic garbage."""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock

from dispatcher.runtime.collector import NO_AUTOMATIC_PASS, YOUNG_THRESHOLD, Collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_frozen_objects_are_skipped_but_garbage_is_reclaimed_at_each_refreeze():
    clock = Clock()
    collector = Collector(clock, every_seconds=60)
    try:
        node = Node()
        dead = weakref.ref(node)
        collector.start()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()  # an automatic-style pass: the frozen cycle is not looked at
        assert dead() is not None

        clock.advance(60)  # the scheduled refreeze collects it

        assert dead() is None
        assert gc.get_freeze_count() > 0
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0


def full_passes_while(work, generation: int = 2) -> int:
    """How many passes of `generation` (2: full) the interpreter made on its own during
    `work()`."""
    passes = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == generation:
            passes.append(info)

    gc.callbacks.append(seen)
    try:
        work()
    finally:
        gc.callbacks.remove(seen)
    return len(passes)


def grow() -> list:
    """Containers that survive young passes: enough to reach the interpreter's full pass."""
    kept = []
    for _ in range(300):
        kept.append([[i] for i in range(2000)])
    return kept


def test_no_automatic_full_pass_between_scheduled_refreezes_and_thresholds_come_back():
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    try:
        # Without the collector's schedule, this growth makes the interpreter walk the
        # objects made since the freeze at least once (this is what the collector prevents).
        assert full_passes_while(grow) > 0
    finally:
        gc.unfreeze()
    clock = Clock()
    collector = Collector(clock, every_seconds=60)
    try:
        collector.start()
        assert gc.get_threshold() == (max(thresholds[0], YOUNG_THRESHOLD), NO_AUTOMATIC_PASS,
                                      NO_AUTOMATIC_PASS)
        assert full_passes_while(grow) == 0
        assert full_passes_while(grow, generation=1) == 0  # nor of the middle generation
        assert full_passes_while(lambda: clock.advance(60)) == 1  # the scheduled one
    finally:
        collector.stop()
    assert gc.get_threshold() == thresholds


def test_what_outlives_a_young_pass_is_frozen_and_its_cycles_freed_at_the_refreeze():
    clock = Clock()
    collector = Collector(clock, every_seconds=60)
    try:
        collector.start()
        frozen = gc.get_freeze_count()
        node = Node()
        dead = weakref.ref(node)
        gc.collect(0)  # a young pass, as the interpreter makes them: `node` outlives it

        assert gc.get_freeze_count() > frozen
        assert not any(o is node for g in range(3) for o in gc.get_objects(generation=g))
        del node
        gc.collect(0)
        gc.collect(1)
        assert dead() is not None  # no pass walks it before the schedule's

        clock.advance(60)

        assert dead() is None
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0
    node = Node()
    gc.collect(0)  # the hook is gone with the schedule
    assert gc.get_freeze_count() == 0
    assert any(o is node for o in gc.get_objects(generation=1))


def test_freezing_once_leaves_the_full_passes_to_the_interpreter():
    thresholds = gc.get_threshold()
    collector = Collector(Clock(), every_seconds=0)
    try:
        collector.start()
        assert gc.get_threshold() == thresholds
    finally:
        collector.stop()
