"""HeapClock (dispatcher/runtime/virtual_clock.py): Clock's behaviour with a heap — calls in
time order, ties in the order they were made, cancel, reset and delay honoured, and `seconds()`
at each call's own time."""

from __future__ import annotations

import random

from twisted.internet.task import Clock

from dispatcher.runtime.virtual_clock import HeapClock


def test_calls_run_in_time_order_ties_in_the_order_made_and_see_their_own_time():
    clock = HeapClock(100.0)
    seen = []
    for delay, name in ((5, "c"), (1, "a"), (5, "d"), (3, "b")):
        clock.callLater(delay, lambda n=name: seen.append((n, clock.seconds())))
    clock.callLater(2, lambda: clock.callLater(0, lambda: seen.append(("now", clock.seconds()))))
    assert clock.next_time() == 101.0
    clock.advance_to(104.0)
    assert seen == [("a", 101.0), ("now", 102.0), ("b", 103.0)]
    assert clock.seconds() == 104.0
    clock.advance(10)
    assert [n for n, _ in seen[3:]] == ["c", "d"] and clock.next_time() is None


def test_cancel_reset_and_delay():
    clock = HeapClock()
    seen = []
    gone = clock.callLater(1, seen.append, "gone")
    later = clock.callLater(2, seen.append, "later")
    sooner = clock.callLater(9, seen.append, "sooner")
    gone.cancel()
    later.delay(5)  # now at 7
    sooner.reset(3)  # now at 3
    assert not gone.active() and len(clock.getDelayedCalls()) == 2
    clock.advance_to(5)
    assert seen == ["sooner"]
    clock.advance_to(7)
    assert seen == ["sooner", "later"] and not later.active()


def test_same_order_as_twisted_clock_on_random_timers():
    rng = random.Random(5)
    plan = [(round(rng.uniform(0, 50), 1), i) for i in range(300)]
    order = {}
    for kind in (Clock, HeapClock):
        clock, seen = kind(), []
        calls = [clock.callLater(t, seen.append, i) for t, i in plan]
        for c in calls[::7]:
            c.cancel()
        clock.advance(60)
        order[kind] = seen
    assert order[Clock] == order[HeapClock] and len(order[Clock]) == 300 - len(plan[::7])


def test_a_call_reset_later_then_earlier_runs_once_at_its_last_time():
    clock = HeapClock()
    seen = []
    call = clock.callLater(4, lambda: seen.append(clock.seconds()))
    call.reset(10)  # later
    call.reset(2)  # earlier again: pushed at 2
    call.delay(6)  # and later: 8
    assert [c.getTime() for c in clock.getDelayedCalls()] == [8]
    clock.advance_to(20)
    assert seen == [8]
