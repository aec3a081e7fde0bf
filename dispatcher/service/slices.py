"""Slices: a long loop at start-up cut into slices, with the reactor running between them.

Sits in `dispatcher.service`, used by the start-up's loops over every open task (the router's
restore and its timers, the lost calls, the callbacks). The router lives on the reactor thread,
so such a loop cannot move to a thread; in one piece, millions of tasks would block the reactor
for seconds, past the lease's margin for its renewals (service/leadership.py). It promises:

- `slices(clock, items, size)` gives `items` in lists of at most `size`, in order, and lets the
  reactor run once (a `callLater(0)` on `clock`) before every slice but the first: timers,
  sockets and the lease's renewals wait one slice at most, whatever the number of items;
- a loop that fits in one slice runs at once, without giving the reactor a turn (as it did in
  one piece: a test on `task.Clock` with a few tasks sees the Deferred fired at once).

Counted in items rather than timed: the same slices on every run and in tests (SLICE: ~5 ms of
the router's restore on the machine measured, bench/startup.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

T = TypeVar("T")

# Items per slice: the router restores ~1,000 tasks in ~5 ms (bench/startup.py, 100 k tasks on
# SQLite), so a slice stays well under the ~50 ms a reactor step may take even under tracemalloc;
# a turn of the reactor between slices costs ~0.1 ms.
SLICE = 1000


async def slices(clock: IReactorTime, items: Sequence[T], size: int = SLICE
                 ) -> AsyncIterator[Sequence[T]]:
    """`items` in slices of at most `size`, the reactor given a turn between two slices."""
    for start in range(0, len(items), size):
        if start:
            await deferLater(clock, 0, lambda: None)
        yield items[start:start + size]
