"""The collector keeps objects out of automatic full passes without leaking cyclic garbage."""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock

from dispatcher.runtime.collector import Collector


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
