"""Tests of dispatcher.domain.tasks: the task state machine."""

from __future__ import annotations

import itertools

import pytest

from dispatcher.domain.errors import IllegalTransition
from dispatcher.domain.tasks import (
    FINAL_STATES,
    OPEN_STATES,
    TRANSITIONS,
    Channel,
    Task,
    TaskState,
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
