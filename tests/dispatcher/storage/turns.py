"""A reactor stand-in for the storage tests: nothing runs until the test drives it.

Why not the real reactor: it cannot be restarted between tests, and pytest does not run it.
Why not `task.Clock`: `Pool` hands results back with `callFromThread` from real database threads.
`TurnReactor` keeps both queues the storage code uses: `callLater` calls (group commit flushes
at the end of a turn) and `callFromThread` calls (pool threads reporting back). `drive(d)` runs
turns, and blocks on the thread queue when there is nothing else to do, until `d` fires: the
real Pool, real threads and real databases are exercised, with no sleeps and no timing
assumptions, and "one reactor turn" is exactly what happens between two `turn()` calls.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

DRIVE_TIMEOUT_SECONDS = 30.0


@dataclass
class _Later:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def active(self) -> bool:
        return not self.cancelled


class TurnReactor:
    def __init__(self) -> None:
        self._later: list[_Later] = []
        self._from_threads: queue.SimpleQueue[tuple[Callable[..., Any], tuple, dict]] = (
            queue.SimpleQueue()
        )
        self._triggers: dict[int, tuple[str, str, Callable[..., Any]]] = {}
        self._trigger_ids = itertools.count()
        self.when_running: list[Callable[[], Any]] = []
        self.turns = 0

    # the IReactorTime / IReactorThreads / IReactorCore parts the storage code uses
    def seconds(self) -> float:
        return time.time()

    def callLater(self, _delay: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> _Later:
        later = _Later(fn, args, kw)
        self._later.append(later)
        return later

    def callFromThread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self._from_threads.put((fn, args, kw))

    def callWhenRunning(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.when_running.append(lambda: fn(*args, **kw))

    def addSystemEventTrigger(
        self, phase: str, event: str, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> int:
        trigger = next(self._trigger_ids)
        self._triggers[trigger] = (phase, event, lambda: fn(*args, **kw))
        return trigger

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self._triggers[trigger]

    # driving
    def turn(self) -> None:
        """One reactor turn: the delayed calls queued before it, then what threads reported."""
        self.turns += 1
        due, self._later = self._later, []
        for later in due:
            if not later.cancelled:
                later.fn(*later.args, **later.kwargs)
        while True:
            try:
                fn, args, kw = self._from_threads.get_nowait()
            except queue.Empty:
                return
            fn(*args, **kw)

    def drive(self, d: Deferred[Any], timeout: float = DRIVE_TIMEOUT_SECONDS) -> Any:
        """Run turns until `d` fires; return its result or raise its failure."""
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        deadline = time.monotonic() + timeout
        while not outcome:
            if self._later:
                self.turn()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the Deferred did not fire")
            try:
                fn, args, kw = self._from_threads.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError("the Deferred did not fire") from None
            fn(*args, **kw)
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    def shutdown(self) -> None:
        """Run the shutdown triggers phase by phase, waiting for the Deferreds they return."""
        for phase in ("before", "during", "after"):
            for trigger_phase, event, fn in list(self._triggers.values()):
                if event == "shutdown" and trigger_phase == phase:
                    result = fn()
                    if isinstance(result, Deferred):
                        self.drive(result)
