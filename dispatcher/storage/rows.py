"""Conversions between domain objects and table rows (plain dicts), both ways.

Sits under `dispatcher.storage`, used by `sql.py`. The `*_row` functions run in the reactor thread
at call time: they snapshot what the caller handed over (callers keep mutating their Task
objects while the write waits for its batch), so nothing the database thread reads is shared.
The `*_from_row` functions run in the database thread and build fresh domain objects; a task's
immutable strings that many tasks repeat (queue, agent, attribute names) are shared instead
(`task_from_row`, `task_from_values`: the router holds every open task).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from sys import intern
from typing import Any

from dispatcher.domain.agents import Agent, interruptions
from dispatcher.domain.events import Event
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue
from dispatcher.domain.tasks import Channel, SharedSkills, Task, TaskState, shared_skills
from dispatcher.service.ports import Calendar, OutboxItem, StoredEvent, TaskSummary

Row = dict[str, Any]

# Defaults of the query methods of `ports.Store`, shared by both stores.
DEFAULT_LIST_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 50


_SCALARS = frozenset({str, int, float, bool, type(None)})


def snapshot(value: Any) -> Any:
    """A copy of a JSON-like value that shares no container with it (tuples become lists, as
    they would after a trip through JSON). Runs for every change recorded, in the reactor
    thread: plain dicts, lists and scalars take the short way."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else snapshot(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _SCALARS else snapshot(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [snapshot(v) for v in value]
    return value


def _value(member: Any, enum: Any) -> Any:
    """The value of an enum member, or of the name a caller passed for one (`_value_`, the
    member's own attribute: `value` is a descriptor, a call each time)."""
    return member._value_ if type(member) is enum else enum(member)._value_


def _channels(mapping: Mapping[Any, float]) -> dict[str, float]:
    return {Channel(k).value: v for k, v in mapping.items()}


# --- tasks -----------------------------------------------------------------------------------


def task_row(task: Task) -> Row:
    """Every column of the task's row, in the table's order: the cold ones, then
    `task_hot_row`'s."""
    return {
        "id": task.id,
        "channel": _value(task.channel, Channel),
        "queue": task.queue,
        "customer_id": task.customer_id,
        "created_at": task.created_at,
        "base_skills": dict(task.base_skills),
        "priority": task.priority,
        "deadline": task.deadline,
        "attributes": snapshot(task.attributes),
        **task_hot_row(task),
    }


def intake_row(task: Task, preview: str | None = None) -> Row:
    """The first row of a task, as its intake inserts it: `task_row`, and the e-mail's preview,
    which only this row writes (the router's task does not hold it: tables.py)."""
    return {**task_row(task), "preview": preview}


# Where a stored task's preview is shown: among its attributes, as before it had a column.
PREVIEW_ATTRIBUTE = "preview"


def stored_attributes(r: Any) -> dict[str, Any]:
    """A stored task's attributes as readers are shown them (a new dict): those of its row,
    with its preview (the column, when the row has one) among them."""
    attributes = dict(r.attributes or {})
    preview = r._mapping.get("preview")
    if preview is not None:
        attributes[PREVIEW_ATTRIBUTE] = preview
    return attributes


# The columns of `tasks` that routing changes (offers, accepts, completions...), and the others,
# which a change writes only when one of them differs from what was written before
# (`SqlTasks.record`, storage/tasks.py): a task's attributes are most of its row.
HOT_TASK_COLUMNS = ("id", "state", "step", "required_skills", "agent_id", "offer_id",
                    "offer_expires_at", "step_started_at", "updated_at")
COLD_TASK_COLUMNS = ("channel", "queue", "customer_id", "created_at", "base_skills", "priority",
                     "deadline", "attributes")


def task_hot_row(task: Task) -> Row:
    """The HOT_TASK_COLUMNS of `task_row(task)`."""
    return {
        "id": task.id,
        "state": _value(task.state, TaskState),
        "step": task.step,
        "required_skills": dict(task.required_skills),
        "agent_id": task.agent_id,
        "offer_id": task.offer_id,
        "offer_expires_at": task.offer_expires_at,
        "step_started_at": task.step_started_at,
        "updated_at": task.updated_at,
    }


def task_cold(task: Task) -> tuple[Any, ...]:
    """The COLD_TASK_COLUMNS of `task`, not copied: to compare with `cold_of` a row written
    before (equal as Python values, as `==` says: `1 == 1.0 == True`)."""
    return (_value(task.channel, Channel), task.queue, task.customer_id, task.created_at,
            task.base_skills, task.priority, task.deadline, task.attributes)


def cold_of(row: Row) -> tuple[Any, ...]:
    """The COLD_TASK_COLUMNS of a `task_row`, in order."""
    return (row["channel"], row["queue"], row["customer_id"], row["created_at"],
            row["base_skills"], row["priority"], row["deadline"], row["attributes"])


def task_from_row(r: Any) -> Task:
    """A task from its row. The JSON columns may come decoded or as their text (decoded here:
    `storage/sql.py` loads the open tasks so). Strings that many tasks repeat are shared
    (`sys.intern`): the queue, the agent, every attribute name, and the values of
    REPEATED_ATTRIBUTES and of nested objects up to SHARED_VALUE_CHARS, since the router keeps
    every open task in memory."""
    return Task(
        id=r.id,
        channel=_CHANNELS[r.channel],
        queue=intern(r.queue),
        customer_id=r.customer_id,
        created_at=r.created_at,
        base_skills=_skills(r.base_skills),
        priority=r.priority,
        deadline=r.deadline,
        attributes=attributes_from(r.attributes),
        state=_STATES[r.state],
        step=r.step,
        required_skills=_skills(r.required_skills),  # may be {}: a step dropped every skill
        agent_id=None if r.agent_id is None else intern(r.agent_id),
        offer_id=r.offer_id,
        offer_expires_at=r.offer_expires_at,
        step_started_at=r.step_started_at,
        updated_at=r.updated_at,
    )


# `task_from_values` takes a row of `tasks` as a plain tuple, its columns in this order.
TASK_COLUMNS = ("id", "channel", "queue", "customer_id", "created_at", "base_skills", "priority",
                "deadline", "attributes", "state", "step", "required_skills", "agent_id",
                "offer_id", "offer_expires_at", "step_started_at", "updated_at")


def task_from_values(values: Any, customers: dict[str, str] | None = None) -> Task:
    """`task_from_row` of a tuple in TASK_COLUMNS order (no attribute lookups on a Row: the
    start-up reads every open task this way), kept compact, since the router holds every open
    task: attributes given as text (or its UTF-8 bytes) stay packed (decoded on first read:
    `Task.attributes`), and skills maps given as text are `SharedSkills`, one for every equal
    text. With `customers` (the load's own map, customer id -> the string kept), a customer's
    open tasks share one customer id."""
    (id_, channel, queue, customer_id, created_at, base_skills, priority, deadline, attributes,
     state, step, required_skills, agent_id, offer_id, offer_expires_at, step_started_at,
     updated_at) = values
    if customers is not None and customer_id is not None:
        # Not sys.intern: most customers have one open task, and an interned string costs an
        # entry in the interpreter's table for as long as it lives; this map ends with the load.
        customer_id = customers.setdefault(customer_id, customer_id)
    # Times equal to the creation share its float (a waiting task's usually are).
    if step_started_at == created_at:
        step_started_at = created_at
    if updated_at == created_at:
        updated_at = created_at
    # The id interned: today's figures (storage/reports.py) keep the same string, not a copy.
    return Task(intern(id_), _CHANNELS[channel], intern(queue), customer_id, created_at,
                _shared_skills(base_skills), priority, deadline,
                attributes if isinstance(attributes, str | bytes)  # type: ignore[arg-type]
                else attributes_from(attributes),
                _STATES[state], step, _shared_skills(required_skills),
                None if agent_id is None else intern(agent_id), offer_id, offer_expires_at,
                step_started_at, updated_at)


# Attributes whose values few distinct strings repeat across tasks (shared when loaded).
REPEATED_ATTRIBUTES = frozenset({"category", "preferred_agent", "link_reason", "source",
                                 "language", "linked_to"})
# Strings inside an attribute's nested object (a spam verdict, a form) up to this length are
# shared; longer ones are taken to be the task's own.
SHARED_VALUE_CHARS = 64

_CHANNELS = {c.value: c for c in Channel}
_STATES = {s.value: s for s in TaskState}
_scan = json.JSONDecoder().scan_once
_SKILLS: dict[str, dict[str, int]] = {}  # a skills map's JSON text -> its value (few differ)
_SKILLS_KEPT = 1024


def _json(value: Any) -> Any:
    """A JSON column's value: decoded already, or its text (the C scanner alone: the text is
    what json.dumps wrote)."""
    if not isinstance(value, str):
        return value
    try:
        return _scan(value, 0)[0]
    except (StopIteration, ValueError):
        return json.loads(value)


def _skills(value: Any) -> dict[str, int]:
    """A fresh skills dict (callers change theirs), its names shared."""
    if isinstance(value, str):
        known = _SKILLS.get(value)
        if known is None:
            known = {intern(k): v for k, v in _json(value).items()}
            if len(_SKILLS) < _SKILLS_KEPT:
                _SKILLS[value] = known
        return dict(known)
    return {intern(k): v for k, v in value.items()}


# A skills map's JSON text -> its shared map (the domain's `shared_skills`, which new tasks
# share too), so that a restore finds it without decoding the text.
_SHARED_SKILLS: dict[str, SharedSkills] = {}


def _shared_skills(value: Any) -> dict[str, int]:
    """The one `SharedSkills` of a skills map's JSON text (a fresh dict beyond _SKILLS_KEPT
    distinct texts or the domain's bound, or when the column came decoded)."""
    if isinstance(value, str):
        known = _SHARED_SKILLS.get(value)
        if known is not None:
            return known
        if len(_SHARED_SKILLS) < _SKILLS_KEPT:
            shared = shared_skills(_skills(value))
            if type(shared) is SharedSkills:
                _SHARED_SKILLS[value] = shared
            return shared
    return _skills(value)


def attributes_from(value: Any) -> dict[str, Any]:
    """A task's attributes from their column (decoded or text), repeated strings shared."""
    attrs = _json(value)
    if not isinstance(attrs, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, str):
            if k in REPEATED_ATTRIBUTES:
                v = intern(v)
        elif isinstance(v, (dict, list)):
            v = _shared(v)
        out[intern(k)] = v
    return out


def _shared(value: Any) -> Any:
    if isinstance(value, dict):
        return {intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_VALUE_CHARS:
        return intern(value)
    return value


def summary_from_row(r: Any) -> TaskSummary:
    return TaskSummary(
        id=r.id,
        channel=r.channel,
        queue=r.queue,
        state=r.state,
        customer_id=r.customer_id,
        created_at=r.created_at,
        deadline=r.deadline,
        agent_id=r.agent_id,
        priority=r.priority,
        attributes=stored_attributes(r),
    )


# --- events and the outbox -------------------------------------------------------------------


def event_row(event: Event) -> Row:
    return {
        "task_id": event.task_id,
        "agent_id": event.agent_id,
        "kind": event.kind,
        "at": event.at,
        "actor": event.actor,
        "data": snapshot(event.data),
    }


def stored_event_from_row(r: Any) -> StoredEvent:
    return StoredEvent(
        id=r.id,
        kind=r.kind,
        at=r.at,
        task_id=r.task_id,
        agent_id=r.agent_id,
        actor=r.actor,
        data=r.data,
    )


def outbox_row(item: OutboxItem) -> Row:
    return {
        "kind": item.kind,
        "task_id": item.task_id,
        "payload": snapshot(item.payload),
        "created_at": item.created_at,
        "next_attempt_at": item.created_at,  # due at once
    }


# --- configuration ---------------------------------------------------------------------------


def queue_row(queue: Queue) -> Row:
    return {
        "name": queue.name,
        "requirement": dict(queue.requirement),
        "steps": [
            {"after_seconds": s.after_seconds, "requirement": dict(s.requirement)}
            | ({} if s.expression is None else {"expression": s.expression})
            for s in queue.steps
        ],
        "mode": Mode(queue.mode).value,
        "agent_choice": AgentChoice(queue.agent_choice).value,
        "priority": queue.priority,
        "sl_target": _channels(queue.sl_target),
        "sl_share": queue.sl_share,
        "offer_timeout": _channels(queue.offer_timeout),
        "wrap_up_seconds": queue.wrap_up_seconds,
        "calendar": queue.calendar,
        "deadline_rule": queue.deadline_rule,
        "dispositions": [{"code": c, "label": label} for c, label in queue.dispositions],
        "disabled": bool(queue.disabled),
        "expression": queue.expression,
        "reserve": queue.reserve,
    }


def queue_from_row(r: Any) -> Queue:
    return Queue(
        name=r.name,
        requirement=dict(r.requirement),
        steps=tuple(EscalationStep(s["after_seconds"], s["requirement"], s.get("expression"))
                    for s in r.steps),
        mode=Mode(r.mode),
        agent_choice=AgentChoice(r.agent_choice),
        priority=r.priority,
        sl_target={Channel(k): v for k, v in r.sl_target.items()},
        sl_share=r.sl_share,
        offer_timeout={Channel(k): v for k, v in r.offer_timeout.items()},
        wrap_up_seconds=r.wrap_up_seconds,
        calendar=r.calendar,
        deadline_rule=r.deadline_rule,
        dispositions=tuple((d["code"], d["label"]) for d in r.dispositions or ()),
        disabled=bool(r.disabled),
        expression=r.expression or "",
        reserve=r.reserve or 0,
    )


def agent_rows(agent: Agent, now: float) -> tuple[Row, list[Row], list[Row]]:
    """The agents row (a capacity the agent lacks is stored as 0, which is what it means), its
    agent_skills rows and its agent_queues rows. Presence is not stored."""
    row = {
        "id": agent.id,
        "name": agent.name,
        "capacity_email": agent.capacity.get(Channel.EMAIL, 0),
        "capacity_phone": agent.capacity.get(Channel.PHONE, 0),
        "channels": sorted(Channel(c).value for c in agent.channels),
        "created_at": now,
        "disabled": bool(agent.disabled),
        "attributes": dict(agent.attributes),
        "interruptions": None if agent.interruptions is None else agent.interruptions.as_dict(),
    }
    skills = [{"agent_id": agent.id, "skill": s, "level": lv} for s, lv in agent.skills.items()]
    queues = [{"agent_id": agent.id, "queue": q} for q in sorted(agent.queues)]
    return row, skills, queues


def agent_from_rows(r: Any, skills: dict[str, int], queues: set[str]) -> Agent:
    return Agent(
        id=r.id,
        name=r.name,
        skills=skills,
        queues=queues,
        capacity={Channel.EMAIL: r.capacity_email, Channel.PHONE: r.capacity_phone},
        channels={Channel(c) for c in r.channels},
        disabled=bool(r.disabled),
        attributes=dict(r.attributes or {}),
        interruptions=None if r.interruptions is None else interruptions(r.interruptions),
    )


def calendar_row(calendar: Calendar) -> Row:
    return {
        "name": calendar.name,
        "timezone": calendar.timezone,
        "hours": snapshot(calendar.hours),
        "holidays": list(calendar.holidays),
    }


def calendar_from_row(r: Any) -> Calendar:
    return Calendar(name=r.name, timezone=r.timezone, hours=r.hours, holidays=tuple(r.holidays))
