"""A virtual clock for long simulations: `twisted.internet.task.Clock` with its pending calls
in a heap.

`Clock` keeps its calls in a list it sorts again at every `callLater` and every call run, which
is fine for tests and for simulate.py's one queue, but a simulated centre has hundreds of
pending timers (agents' shifts, callers' patience, calls being handled, wrap-ups) and spent
four fifths of its time sorting (profiled: a day of a 200-agent centre, 110 s under cProfile,
87 s in `Clock._sortCalls`). Here a call costs O(log n): cancelled calls stay in the heap and
are skipped when they come up; a call reset to an earlier time is pushed again at once (its
resetter) and its old entry skipped; one delayed or reset to a later time is pushed again when
its old entry comes up (as the reactor does).

What it promises: the `IReactorTime` of `Clock` (`seconds`, `callLater`, `getDelayedCalls`)
with the same `DelayedCall`s (cancel, reset, delay, active), calls run in time order, and calls
due at the same time in the order they were made; `advance_to(t)` runs every call due by t with
`seconds()` at each call's own time, then stops at t.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock


class HeapClock(Clock):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self.rightNow = start
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = itertools.count()

    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> IDelayedCall:
        dc = DelayedCall(self.rightNow + delay, callable, args, kw, _skip, self._push,
                         self.seconds)
        self._push(dc)
        return dc

    def _push(self, dc: DelayedCall) -> None:
        heapq.heappush(self._heap, (dc.getTime(), next(self._seq), dc))

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        live = {id(dc): dc for _, _, dc in self._heap if not dc.cancelled and not dc.called}
        return sorted(live.values(), key=lambda dc: dc.getTime())

    def _top(self) -> tuple[float, DelayedCall] | None:
        """The next call to run and its time, after dropping what is no longer due: cancelled
        or run calls, entries left behind by a reset to an earlier time (the call was pushed
        again), and calls delayed to a later time (pushed again at it, as the reactor does)."""
        heap = self._heap
        while heap:
            t, _, dc = heap[0]
            if dc.cancelled or dc.called:
                heapq.heappop(heap)
                continue
            due = dc.getTime()
            if due == t:
                return t, dc
            heapq.heappop(heap)
            if due > t:  # delay() or a reset to later: no resetter call, so push it here
                dc.activate_delay()
                self._push(dc)
        return None

    def next_time(self) -> float | None:
        """When the next pending call is due (None: nothing is pending)."""
        top = self._top()
        return None if top is None else top[0]

    def advance(self, amount: float) -> None:
        self.advance_to(self.rightNow + amount)

    def advance_to(self, until: float) -> None:
        while (top := self._top()) is not None and top[0] <= until:
            t, dc = top
            heapq.heappop(self._heap)
            self.rightNow = max(self.rightNow, t)
            dc.called = 1
            dc.func(*dc.args, **dc.kw)
        self.rightNow = max(self.rightNow, until)


def _skip(dc: DelayedCall) -> None:
    """A cancelled call stays in the heap until it comes up (then it is skipped)."""
