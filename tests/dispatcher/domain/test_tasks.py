"""Tests of dispatcher.domain.tasks: the task state machine, packed attributes and shared
skills maps."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import pickle

import pytest

from dispatcher.domain.errors import IllegalTransition
from dispatcher.domain.tasks import (
    FINAL_STATES,
    OPEN_STATES,
    TRANSITIONS,
    Channel,
    SharedSkills,
    Task,
    TaskState,
    compact,
    shared_skills,
)

T0 = 1_000.0

LEGAL = sorted(
    ((src, dst) for src, dsts in TRANSITIONS.items() for dst in dsts),
    key=lambda p: (p[0].value, p[1].value),
)
ILLEGAL = sorted(
    (
        (src, dst)
        for src, dst in itertools.product(TaskState, TaskState)
        if dst not in TRANSITIONS[src]
    ),
    key=lambda p: (p[0].value, p[1].value),
)


def task(state: TaskState = TaskState.QUEUED, **kw) -> Task:
    return Task(id="t1", channel=Channel.PHONE, queue="q", customer_id=None, created_at=T0,
                state=state, **kw)


def test_the_documented_state_machine():
    assert TRANSITIONS[TaskState.QUEUED] == {
        TaskState.OFFERED, TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.ABANDONED}
    assert TRANSITIONS[TaskState.OFFERED] == {
        TaskState.QUEUED, TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.ABANDONED}
    assert TRANSITIONS[TaskState.ASSIGNED] == {
        TaskState.WRAP_UP, TaskState.COMPLETED, TaskState.QUEUED, TaskState.CANCELLED}
    assert TRANSITIONS[TaskState.WRAP_UP] == {TaskState.COMPLETED}
    for final in FINAL_STATES:
        assert TRANSITIONS[final] == frozenset()
    assert set(TaskState) == OPEN_STATES | FINAL_STATES
    assert not OPEN_STATES & FINAL_STATES


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=lambda s: s.value)
def test_legal_transition(src, dst):
    t = task(src)
    t.move(dst, T0 + 5)
    assert t.state is dst
    assert t.updated_at == T0 + 5
    assert t.created_at == T0


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transition_raises_and_changes_nothing(src, dst):
    t = task(src)
    with pytest.raises(IllegalTransition) as info:
        t.move(dst, T0 + 5)
    assert (info.value.task_id, info.value.current, info.value.wanted) == (
        "t1", src.value, dst.value)
    assert info.value.code == "illegal_transition"
    assert t.state is src
    assert t.updated_at == T0


def test_full_life_of_a_task():
    t = task()
    for i, state in enumerate(
        [TaskState.OFFERED, TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED,
         TaskState.WRAP_UP, TaskState.COMPLETED], start=1
    ):
        t.move(state, T0 + i)
    assert t.state is TaskState.COMPLETED
    assert not t.is_open
    assert t.created_at == T0  # age never resets on re-offer


def test_is_open():
    for state in TaskState:
        assert task(state).is_open is (state in OPEN_STATES)


def test_defaults():
    t = task(base_skills={"fr": 5})
    assert t.required_skills == {"fr": 5}
    assert t.required_skills is not t.base_skills
    assert t.step == 0
    assert t.step_started_at == T0
    assert t.updated_at == T0
    assert t.priority == 0
    assert t.agent_id is None and t.offer_id is None


def test_explicit_requirement_is_kept():
    t = task(base_skills={"fr": 5}, required_skills={"fr": 3}, step=1)
    assert t.required_skills == {"fr": 3}


def test_an_empty_requirement_is_a_requirement():
    # An escalation step may drop every skill; a task rebuilt from its row keeps that.
    t = task(base_skills={"fr": 5}, required_skills={}, step=2)
    assert t.required_skills == {}


ATTRS = {"subject": "Où est mon colis ?", "request_number": 7, "spam": {"scored": False},
         "preferred_agent": "ann", "list": [1, "two"]}


def packed(attrs=ATTRS) -> Task:
    return task(attributes=json.dumps(attrs))


def test_packed_attributes_are_a_plain_dict_once_read_and_kept_so():
    t = packed()
    assert t.packed
    got = t.attributes
    assert type(got) is dict and got == ATTRS
    assert not t.packed and t.attributes is got  # decoded once
    got["category"] = "billing"  # changed in place, as services do
    assert t.attributes["category"] == "billing"


def test_a_packed_task_reads_as_the_same_task_everywhere():
    t, plain = packed(), task(attributes=copy.deepcopy(ATTRS))
    assert packed() == plain and packed() != task(attributes={})
    assert dataclasses.replace(packed(), priority=3).attributes == ATTRS
    assert dataclasses.asdict(packed())["attributes"] == ATTRS
    assert packed().snapshot().attributes == ATTRS
    assert pickle.loads(pickle.dumps(packed())) == plain
    assert copy.deepcopy(packed()) == plain
    assert json.dumps(t.attributes) == json.dumps(ATTRS)
    assert {**packed().attributes} == ATTRS
    assert "Où" in repr(packed())


def test_packed_attributes_set_again_are_the_new_value():
    t = packed()
    t.attributes = {"x": 1}
    assert not t.packed and t.attributes == {"x": 1}
    t.attributes = {**t.attributes, "y": 2}
    assert t.attributes == {"x": 1, "y": 2}


def test_may_hold_reads_packed_attributes_as_text():
    t = packed()
    assert t.may_hold("preferred_agent") and t.may_hold("spam")
    assert not t.may_hold("preferred_until") and not t.may_hold("agent")
    assert t.packed  # not decoded to answer
    assert task(attributes={"a": 1}).may_hold("a") and not task().may_hold("a")
    # A value spelled as the key: "may", and reading tells; quoted inside a value: escaped.
    t = packed({"note": "preferred_agent"})
    assert t.may_hold("preferred_agent") and "preferred_agent" not in t.attributes
    assert not packed({"subject": 'about "preferred_agent"'}).may_hold("preferred_agent")


@pytest.mark.parametrize("text", ["[1, 2]", "null", "not json", ""])
def test_packed_text_that_is_no_object_reads_as_no_attributes(text):
    assert task(attributes=text).attributes == {}


@pytest.mark.parametrize("ascii_only", [True, False])
def test_attributes_packed_as_utf8_bytes_read_as_the_same_text_would(ascii_only):
    """Packed attributes may be the UTF-8 bytes of their JSON text (16 bytes less a task than a
    str): the same task, the same answers, decoded on first read as a str is."""
    def as_bytes(attrs=ATTRS) -> Task:
        return task(attributes=json.dumps(attrs, ensure_ascii=ascii_only).encode())

    t = as_bytes()
    assert t.packed
    assert t.may_hold("preferred_agent") and t.may_hold("spam") and not t.may_hold("agent")
    assert t.packed  # not decoded to answer
    assert as_bytes({"sujet": "Où"}).may_hold("sujet") and not as_bytes().may_hold("Où")
    assert as_bytes() == packed() == task(attributes=copy.deepcopy(ATTRS))
    assert pickle.loads(pickle.dumps(as_bytes())) == task(attributes=copy.deepcopy(ATTRS))
    got = t.attributes
    assert type(got) is dict and got == ATTRS and got["subject"] == "Où est mon colis ?"
    assert not t.packed and t.attributes is got
    for text in (b"[1, 2]", b"null", b"not json", b"", b"\xff{"):
        assert task(attributes=text).attributes == {}


def test_a_shared_skills_map_is_read_only_and_copies_are_plain_dicts():
    m = SharedSkills({"french": 3})
    assert m == {"french": 3} and json.dumps(m) == '{"french": 3}'
    for change in (lambda: m.__setitem__("french", 5), lambda: m.__delitem__("french"),
                   lambda: m.update(german=1), lambda: m.pop("french"), m.popitem, m.clear,
                   lambda: m.setdefault("german", 1)):
        with pytest.raises(TypeError):
            change()
    with pytest.raises(TypeError):
        m |= {"german": 1}
    assert m == {"french": 3}
    for c in (dict(m), copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m)), {**m}):
        assert type(c) is dict and c == {"french": 3}
        c["german"] = 1  # a copy is the task's own
    t = task(base_skills=m, required_skills=m)
    snap = t.snapshot()
    assert type(snap.base_skills) is dict and type(snap.required_skills) is dict


def test_a_compacted_task_reads_as_its_json_would_and_shares_its_skills_maps():
    """`compact`: a waiting task kept as a restore loads it. Its attributes become their JSON's
    bytes (read back as the store would give them: a tuple as a list), its skills maps the one
    shared map of their value; equal maps of other tasks are the same object."""
    attrs = {"subject": "Où est ma commande ?", "spam": {"scored": False, "rules": ("A", "B")},
             "request_number": 7}
    one = task(attributes=copy.deepcopy(attrs), base_skills={"french": 3})
    other = task(base_skills={"french": 3}, required_skills={"french": 3})
    compact(one)
    compact(other)
    assert one.packed and not other.packed  # nothing to pack: {} stays a dict
    import dispatcher.domain.tasks as tasks

    raw = tasks._ATTRIBUTES.__get__(one, Task)  # the slot, not decoded
    assert type(raw) is bytes and len(raw) == len(json.dumps(
        attrs, ensure_ascii=False, separators=(",", ":")).encode())
    assert one.attributes == json.loads(json.dumps(attrs)) and not one.packed
    assert type(one.base_skills) is SharedSkills and one.base_skills == {"french": 3}
    assert one.base_skills is one.required_skills is other.base_skills is other.required_skills
    with pytest.raises(TypeError):
        one.required_skills["french"] = 5  # a change gives the task a new map
    assert one.snapshot().base_skills == {"french": 3}


def test_attributes_that_are_no_json_stay_a_dict():
    t = task(attributes={"when": object()})
    compact(t)
    assert not t.packed and set(t.attributes) == {"when"}


def test_shared_skills_maps_are_bounded(monkeypatch):
    import dispatcher.domain.tasks as tasks

    monkeypatch.setattr(tasks, "_SHARED_MAPS", {})
    monkeypatch.setattr(tasks, "_SHARED_MAPS_KEPT", 2)
    first = shared_skills({"a": 1})
    assert shared_skills({"a": 1}) is first and shared_skills(first) is first
    assert type(shared_skills({"b": 1})) is SharedSkills
    beyond = {"c": 1}
    assert shared_skills(beyond) is beyond  # past the bound: the task keeps its own
