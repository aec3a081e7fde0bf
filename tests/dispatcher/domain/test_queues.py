"""Tests of dispatcher.domain.queues: validation, escalation steps, the ordering key."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import (
    DEFAULT_OFFER_TIMEOUT,
    DEFAULT_SL_TARGET,
    AgentChoice,
    EscalationStep,
    Mode,
    Queue,
)
from dispatcher.domain.tasks import Channel, Task

T0 = 1_000.0


def task(channel=Channel.PHONE, **kw) -> Task:
    return Task(id="t", channel=channel, queue="q", customer_id=None, created_at=T0, **kw)


def test_defaults():
    q = Queue("q")
    assert q.mode is Mode.PUSH
    assert q.agent_choice is AgentChoice.LONGEST_IDLE
    assert q.offer_timeout == DEFAULT_OFFER_TIMEOUT
    assert q.offer_timeout[Channel.PHONE] == 20.0 and q.offer_timeout[Channel.EMAIL] == 60.0
    assert q.sl_target == DEFAULT_SL_TARGET
    assert q.steps == ()


def test_validation():
    with pytest.raises(InvalidValue):
        Queue("")
    with pytest.raises(InvalidValue):
        Queue("q", requirement={"fr": 11})
    with pytest.raises(InvalidValue):
        Queue("q", steps=(EscalationStep(-1, {}),))
    with pytest.raises(InvalidValue):
        Queue("q", steps=(EscalationStep(10, {"fr": 12}),))
    for share in (0, -0.1, 1.5):
        with pytest.raises(InvalidValue):
            Queue("q", sl_share=share)
    Queue("q", sl_share=1)
    Queue("q", steps=(EscalationStep(10, {"fr": None}),))  # None drops a skill: valid


def test_steps_are_sorted_by_time():
    late, early = EscalationStep(60, {"fr": 1}), EscalationStep(30, {"fr": 3})
    assert Queue("q", steps=(late, early)).steps == (early, late)


def test_escalation_step_overrides_adds_and_drops():
    step = EscalationStep(30, {"fr": 3, "de": None, "en": 2})
    assert step.apply({"fr": 7, "de": 5}) == {"fr": 3, "en": 2}
    base = {"fr": 7}
    step.apply(base)
    assert base == {"fr": 7}


def test_requirement_at_and_step_due():
    q = Queue("q", steps=(EscalationStep(30, {"fr": 5}), EscalationStep(90, {"fr": None})))
    base = {"fr": 8, "en": 2}
    assert q.requirement_at(base, 0) == base and q.requirement_at(base, 0) is not base
    assert q.requirement_at(base, 1) == {"fr": 5, "en": 2}
    # Steps are not cumulative: step i applies steps[i-1] on top of the base.
    assert q.requirement_at(base, 2) == {"en": 2}
    t = task(base_skills=base)
    assert q.step_due(t) == T0 + 30
    t.step = 1
    assert q.step_due(t) == T0 + 90
    t.step = 2
    assert q.step_due(t) is None
    assert Queue("plain").step_due(task()) is None


def test_due_calls_by_age_emails_by_deadline():
    q = Queue("q", sl_target={Channel.PHONE: 20.0, Channel.EMAIL: 3600.0})
    assert q.due(task(Channel.PHONE)) == T0 + 20
    assert q.due(task(Channel.PHONE, deadline=T0 + 5)) == T0 + 20  # a call has no deadline
    assert q.due(task(Channel.EMAIL)) == T0 + 3600
    assert q.due(task(Channel.EMAIL, deadline=T0 + 99)) == T0 + 99


def test_due_falls_back_to_the_default_target():
    q = Queue("q", sl_target={})
    assert q.due(task(Channel.PHONE)) == T0 + DEFAULT_SL_TARGET[Channel.PHONE]


# ---------------------------------------------------------------- disposition codes


def test_dispositions_are_code_label_pairs_kept_in_order():
    q = Queue("q", dispositions=[["solved", " Solved "], ("call.back-2", "Call back later")])
    assert q.dispositions == (("solved", "Solved"), ("call.back-2", "Call back later"))
    q.check_disposition("solved")
    with pytest.raises(InvalidValue, match="not a code of queue q"):
        q.check_disposition("wrong_queue")
    Queue("open").check_disposition("anything at all")  # no codes: any code


@pytest.mark.parametrize("pairs", [
    [("", "Empty code")], [("has space", "x")], [("_lead", "x")], [("x" * 41, "x")],
    [("ok", "")], [("ok", "   ")], [("ok", "x" * 101)], [("ok", "A"), ("ok", "B")],
    [("ok",)], ["ok"], [("ok", "A", "extra")], [(1, "One")], [("ok", None)],
    [(f"c{i}", "x") for i in range(51)],
])
def test_invalid_dispositions_are_refused(pairs):
    with pytest.raises(InvalidValue):
        Queue("q", dispositions=pairs)
