"""Tasks: one unit of customer work (an e-mail conversation or a phone call) and its state machine.

    queued -> offered -> assigned -> wrap_up -> completed
    queued | offered | assigned -> cancelled;  queued | offered -> abandoned

An offer that ends without an accept puts the task back to `queued`; `created_at` never changes,
so a re-offered task keeps its age. Times are seconds since the epoch, passed in by the caller.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import IllegalTransition

MIN_PRIORITY = 0
MAX_PRIORITY = 100
DEFAULT_PRIORITY = 0


class Channel(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    WRAP_UP = "wrap_up"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


OPEN_STATES = frozenset({TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED, TaskState.WRAP_UP})
FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.CANCELLED, TaskState.ABANDONED})

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset(
        {TaskState.OFFERED, TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.ABANDONED}
    ),
    TaskState.OFFERED: frozenset(
        {TaskState.QUEUED, TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.ABANDONED}
    ),
    # assigned -> queued: taken back by a supervisor, or the agent's grace period ran out.
    TaskState.ASSIGNED: frozenset(
        {TaskState.WRAP_UP, TaskState.COMPLETED, TaskState.QUEUED, TaskState.CANCELLED}
    ),
    TaskState.WRAP_UP: frozenset({TaskState.COMPLETED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.CANCELLED: frozenset(),
    TaskState.ABANDONED: frozenset(),
}


@dataclass(slots=True)
class Task:
    """A task as the router sees it. `required_skills` maps a skill to its minimum level (0-10) at
    the task's current escalation `step`; `base_skills` is what intake asked for (step 0).
    `priority` is the task's own (0-100, 0 unless given): the router orders by it plus its
    queue's priority, so a queue's priority is never copied into its tasks."""

    id: str
    channel: Channel
    queue: str
    customer_id: str | None
    created_at: float
    base_skills: dict[str, int] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    deadline: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    state: TaskState = TaskState.QUEUED
    step: int = 0
    # None at construction means "what intake asked for" (a copy of base_skills); an empty dict
    # is a real requirement (an escalation step dropped every skill).
    required_skills: dict[str, int] | None = None
    agent_id: str | None = None
    offer_id: str | None = None
    offer_expires_at: float | None = None
    step_started_at: float | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.required_skills is None:
            self.required_skills = dict(self.base_skills)
        if self.step_started_at is None:
            self.step_started_at = self.created_at
        if self.updated_at is None:
            self.updated_at = self.created_at

    def move(self, to: TaskState, now: float) -> None:
        """Change state, or raise IllegalTransition."""
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.id, self.state.value, to.value)
        self.state = to
        self.updated_at = now

    def snapshot(self) -> Task:
        """A copy that later changes to this task do not affect (for the store's batch)."""
        return replace(
            self,
            base_skills=dict(self.base_skills),
            attributes=copy.deepcopy(self.attributes) if self.attributes else {},
            required_skills=dict(self.required_skills),
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES
