"""Tasks: one unit of customer work (an e-mail conversation or a phone call) and its state machine.

    queued -> offered -> assigned -> wrap_up -> completed
    queued | offered | assigned -> cancelled;  queued | offered -> abandoned

An offer that ends without an accept puts the task back to `queued`; `created_at` never changes,
so a re-offered task keeps its age. Times are seconds since the epoch, passed in by the caller.

The router holds every open task in memory, so a task loaded in bulk (a restart) may keep its
`attributes` packed, as the JSON text of their column (a str, or its UTF-8 bytes: 16 bytes
less a task), until they are first read: whoever reads `task.attributes` gets a plain dict,
decoded then and kept (`Task.packed`). Its skills maps may be `SharedSkills`: one read-only
map for many equal ones (nobody changes a skills map in place; a task gets a new one when its
requirement changes).
"""

from __future__ import annotations

import copy
import enum
import json
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
    # Derived by the router (never stored): the queue's requirement expression at `step`,
    # bound to this task's attributes (an expressions.Condition), or None.
    condition: Any = field(default=None, compare=False, repr=False)
    # Kept by the router (never stored): the bucket the task waits in (a routing.Bucket), or
    # None; a slot rather than an entry of a map by id (~30 bytes less a waiting task).
    bucket: Any = field(default=None, compare=False, repr=False)

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
            bucket=None,
            base_skills=dict(self.base_skills),
            attributes=copy.deepcopy(self.attributes) if self.attributes else {},
            required_skills=dict(self.required_skills),
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def packed(self) -> bool:
        """Whether the attributes are still the JSON text they were loaded as (not read yet)."""
        return type(_ATTRIBUTES.__get__(self, Task)) in _PACKED

    def may_hold(self, key: str) -> bool:
        """False only when the attributes surely lack `key`; packed attributes are searched
        as text (their JSON names keys as `"key"`), not decoded."""
        value = _ATTRIBUTES.__get__(self, Task)
        kind = type(value)
        if kind is str:
            return f'"{key}"' in value
        if kind is bytes:  # UTF-8: a key's text is in the text exactly when its bytes are
            needle = _NEEDLES.get(key)
            if needle is None:
                needle = f'"{key}"'.encode()
                if len(_NEEDLES) < _NEEDLES_KEPT:
                    _NEEDLES[key] = needle
            # find, not `in`: `bytes in bytes` first tries the needle as an int, and the
            # exception that raises and clears costs more than the search
            return value.find(needle) >= 0
        return key in value


# `Task.attributes` as the dataclass made it: the slot itself. The attribute seen from outside
# is a property over it that decodes packed attributes on first read (see the module docstring).
_ATTRIBUTES: Any = Task.__dict__["attributes"]
_PACKED = (str, bytes)
# `may_hold`'s keys as searched in UTF-8 packed attributes (the router asks for a few, at every
# task of a restore: encoded once each).
_NEEDLES: dict[str, bytes] = {}
_NEEDLES_KEPT = 256
_scan = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 - untyped in typeshed


def _attributes(task: Task) -> dict[str, Any]:
    value = _ATTRIBUTES.__get__(task, Task)
    if type(value) is dict:  # read already (or never packed): the usual case, one test
        return value
    if type(value) in _PACKED:
        value = unpack_attributes(value)
        _ATTRIBUTES.__set__(task, value)
    return value


def unpack_attributes(text: str | bytes) -> dict[str, Any]:
    """Packed attributes (JSON text, or its UTF-8 bytes) decoded: `{}` when the text is not a
    JSON object."""
    try:
        if type(text) is bytes:
            text = text.decode()
        value = _scan(text, 0)[0]  # the C scanner alone: the text is what json.dumps wrote
    except (StopIteration, ValueError):
        try:
            value = json.loads(text)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


setattr(Task, "attributes", property(  # noqa: B010 - a slot swapped for a property
    _attributes, _ATTRIBUTES.__set__,
    doc="The task's attributes (a dict); packed ones are decoded on this first read."))


class SharedSkills(dict[str, int]):
    """A skills map many tasks share (tasks loaded in bulk with equal requirements): read-only,
    so that a change to one task's map can never reach another's. A copy (`dict(m)`,
    `copy.copy`, `copy.deepcopy`, pickling) is a plain dict."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a shared skills map is read-only: give the task a new one")

    __setitem__ = __delitem__ = _read_only  # type: ignore[assignment]
    update = pop = popitem = clear = setdefault = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __copy__(self) -> dict[str, int]:
        return dict(self)

    def __deepcopy__(self, memo: Any) -> dict[str, int]:
        return dict(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


_SHARED_MAPS: dict[tuple[tuple[str, int], ...], SharedSkills] = {}
_SHARED_MAPS_KEPT = 1024


def shared_skills(skills: dict[str, int]) -> dict[str, int]:
    """The one `SharedSkills` equal to `skills` (itself when it is one already; a plain dict
    beyond _SHARED_MAPS_KEPT distinct maps): what a waiting task keeps, as a restore gives it."""
    if type(skills) is SharedSkills:
        return skills
    key = tuple(sorted(skills.items()))
    known = _SHARED_MAPS.get(key)
    if known is None:
        if len(_SHARED_MAPS) >= _SHARED_MAPS_KEPT:
            return skills
        known = _SHARED_MAPS[key] = SharedSkills(skills)
    return known


def pack_attributes(attributes: dict[str, Any]) -> bytes | None:
    """Attributes packed as a restore loads them (their JSON's UTF-8 bytes, what the column
    holds), or None when they are not JSON (they then stay a dict)."""
    try:
        return json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None


def compact(task: Task) -> None:
    """Keep a waiting task as a restore loads it: its attributes packed until first read (a
    dict is ~2x their JSON) and its skills maps shared. For a task committed as it is, whose
    attributes therefore are JSON; a reader gets the same values as after a restart."""
    value = _ATTRIBUTES.__get__(task, Task)
    if type(value) is dict and value:
        packed = pack_attributes(value)
        if packed is not None:
            _ATTRIBUTES.__set__(task, packed)
    task.base_skills = shared_skills(task.base_skills)
    task.required_skills = shared_skills(task.required_skills)  # type: ignore[arg-type]
