"""Where a waiting call stands: its position in its queue and the wait it may expect — what
queued callers hear announced (channels/phone/media.py).

Sits in the service layer on the router's memory (read only) and the assignment listener's
outcomes. Promises:
- `position(task_id, now)` -> `Standing(position, expected_wait)`, or None when the task is not
  waiting. The position counts the queue's waiting tasks of the same channel served before it,
  in the router's order (priority with the queue's, due time, arrival): 1 = next. O(queue depth).
- The expected wait is the queue's recent speed of answer (the mean wait of its last
  `RECENT` calls answered, `call.answered` events heard) minus what this caller has already
  waited, times the callers ahead over the agents that could take them (at least one), never
  below one minute's fraction: None until a call of that queue has been answered (we do not
  invent a figure: the announcement then leaves the wait out).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from dispatcher.domain import events as ev
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import TaskState

RECENT = 20  # answered calls per queue whose waits make the speed of answer


@dataclass(frozen=True, slots=True)
class Standing:
    position: int
    expected_wait: float | None  # seconds; None: no calls answered yet to judge by


class QueueWaits:
    def __init__(self, router: Router) -> None:
        self.router = router
        self._waits: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT))

    def heard(self, outcome: Any) -> None:
        """Assignment listener: remembers how long each answered call waited."""
        for event in outcome.events:
            if event.kind != ev.CALL_ANSWERED or event.task_id is None:
                continue
            task = self.router.tasks.get(event.task_id)
            if task is not None:
                self._waits[task.queue].append(max(0.0, event.at - task.created_at))

    def speed_of_answer(self, queue: str) -> float | None:
        waits = self._waits.get(queue)
        return sum(waits) / len(waits) if waits else None

    def position(self, task_id: str, now: float) -> Standing | None:
        task = self.router.tasks.get(task_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.OFFERED):
            return None
        queue = self.router.queues.get(task.queue)
        if queue is None:
            return None

        def order(t: Any) -> tuple:
            return (-(t.priority + queue.priority), queue.due(t), t.created_at, t.id)

        mine = order(task)
        ahead = sum(1 for t in self.router.waiting(task.queue)
                    if t.channel is task.channel and t.id != task.id and order(t) < mine)
        asa = self.speed_of_answer(task.queue)
        expected = None
        if asa is not None:
            agents = max(1, len(self.router.members(task.queue)))
            per_caller = asa / agents if ahead else asa
            expected = max(0.0, per_caller * (ahead + 1) - (now - task.created_at))
        return Standing(ahead + 1, expected)
