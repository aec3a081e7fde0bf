"""The blend's reserve, decided: which queues' calls are at risk now (service layer).

A queue that keeps a reserve (`Queue.reserve` = N > 0) asks the router to keep N of its
members who take calls free of e-mail while its calls are at risk (routing.py `set_reserve`).
This service says when that is, from what the router decided (it listens to every committed
outcome through Assignment) and on a timer:

  - its recent calls: the last WINDOW calls of the queue answered (assigned) or abandoned within
    WINDOW_SECONDS; a call counts as met when it was answered within the queue's phone target;
  - at risk when, with at least MIN_CALLS of them, the share met is below the queue's
    `sl_share`, or when the call the router would serve first has waited AT_RISK_SHARE of the
    target already (the service level is about to slip, whatever the recent figure says);
  - no longer at risk once the recent share is at or above `sl_share` and no call has waited
    that long.

Every change is applied through Assignment (committed like any routing outcome: turning the
reserve off may offer e-mail at once) and logged once. Nothing runs on the hot path: the timer
looks at the queues that keep a reserve, every TICK seconds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from dispatcher.domain import events as ev
from dispatcher.domain.queues import DEFAULT_SL_TARGET
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel

from .assignment import Assignment

log = logging.getLogger(__name__)

TICK = 2.0  # seconds between two looks at the queues that keep a reserve
WINDOW = 50  # recent calls per queue
WINDOW_SECONDS = 900.0  # ... of the last 15 minutes
MIN_CALLS = 5  # fewer recent calls say nothing about the service level
AT_RISK_SHARE = 0.5  # a call that waited half its target puts the queue at risk


class Blending:
    """Keeps each reserving queue's recent calls and tells the router when they are at risk."""

    def __init__(self, router: Router, assignment: Assignment, clock: IReactorTime) -> None:
        self.router = router
        self.assignment = assignment
        self.clock = clock
        # queue -> (answered or abandoned at, met the target), oldest first
        self.recent: dict[str, deque[tuple[float, bool]]] = {}
        self._loop: LoopingCall | None = None

    def start(self, tick: float = TICK) -> None:
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(tick, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def on_outcome(self, outcome: Outcome) -> None:
        """Count the calls of reserving queues answered or abandoned (Assignment's listener)."""
        queues = self.router.queues
        for e in outcome.events:
            if e.kind not in (ev.TASK_ASSIGNED, ev.TASK_ABANDONED) or e.task_id is None:
                continue
            task = outcome.tasks.get(e.task_id) or self.router.tasks.get(e.task_id)
            if task is None or task.channel is not Channel.PHONE:
                continue
            queue = queues.get(task.queue)
            if queue is None or not queue.reserve:
                continue
            target = queue.sl_target.get(Channel.PHONE, DEFAULT_SL_TARGET[Channel.PHONE])
            met = e.kind == ev.TASK_ASSIGNED and e.at - task.created_at <= target
            self.recent.setdefault(queue.name, deque(maxlen=WINDOW)).append((e.at, met))

    def at_risk(self, name: str, now: float) -> bool:
        """Whether the queue's calls are at risk now (module docstring)."""
        queue = self.router.queues[name]
        target = queue.sl_target.get(Channel.PHONE, DEFAULT_SL_TARGET[Channel.PHONE])
        arrived = self.router.head_arrival(name, Channel.PHONE)
        if arrived is not None and now - arrived >= AT_RISK_SHARE * target:
            return True
        recent = self.recent.get(name)
        if not recent:
            return False
        while recent and recent[0][0] < now - WINDOW_SECONDS:
            recent.popleft()
        return len(recent) >= MIN_CALLS and sum(m for _, m in recent) / len(recent) < \
            queue.sl_share

    def check(self) -> None:
        """One look at every queue that keeps a reserve: tell the router what changed."""
        now = self.assignment.now()
        router = self.router
        for name, queue in list(router.queues.items()):
            on = bool(queue.reserve) and self.at_risk(name, now)
            if on == (name in router.reserving):
                continue
            log.info("blend: queue %s %s", name,
                     f"calls at risk: keeping {queue.reserve} agent(s) free of e-mail for them"
                     if on else "calls no longer at risk: its reserve takes e-mail again")
            self._apply(lambda name=name, on=on: router.set_reserve(name, on, now))

    def _apply(self, decide: Callable[[], Outcome]) -> None:
        d = self.assignment.apply(decide())
        d.addErrback(lambda f: log.error("blend: could not apply the reserve: %s",
                                         f.getErrorMessage()))
