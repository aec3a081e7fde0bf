"""Tests of dispatcher.domain.agents: skills, capacity, the interruption matrix, presence."""

from __future__ import annotations

import pytest

from dispatcher.domain.agents import (
    CHOSEN,
    DEFAULT_CAPACITY,
    DEFAULT_INTERRUPTIONS,
    Agent,
    InterruptionMatrix,
    Presence,
    check_skills,
    meets,
)
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.tasks import Channel

PHONE, EMAIL = Channel.PHONE, Channel.EMAIL


def available(**kw) -> Agent:
    return Agent(id="a1", status=Presence.AVAILABLE, **kw)


# ---------------------------------------------------------------- skills


@pytest.mark.parametrize("level", [0, 1, 5, 10])
def test_skill_levels_0_to_10_are_valid(level):
    assert check_skills({"fr": level}) == {"fr": level}
    assert Agent(id="a", skills={"fr": level}).skills == {"fr": level}


@pytest.mark.parametrize("level", [-1, 11, 100, 2.5, "5", None])
def test_skill_levels_outside_0_to_10_are_refused(level):
    with pytest.raises(InvalidValue) as info:
        check_skills({"fr": level})
    assert info.value.code == "invalid_value"
    with pytest.raises(InvalidValue):
        Agent(id="a", skills={"fr": level})


def test_a_skill_needs_a_name():
    with pytest.raises(InvalidValue):
        check_skills({"": 3})


def test_check_skills_returns_a_copy():
    src = {"fr": 3}
    out = check_skills(src)
    out["fr"] = 9
    assert src == {"fr": 3}


def test_meets():
    assert meets({"fr": 5, "de": 2}, {"fr": 5})
    assert meets({"fr": 5}, {})
    assert meets({"fr": 0}, {"fr": 0})
    assert not meets({"fr": 4}, {"fr": 5})
    assert not meets({}, {"fr": 0})  # a skill not held at all is below level 0
    assert not meets({"fr": 9}, {"fr": 1, "de": 1})


# ---------------------------------------------------------------- capacity


def test_default_capacity_is_one_call_and_three_emails():
    assert DEFAULT_CAPACITY == {PHONE: 1, EMAIL: 3}
    assert Agent(id="a").capacity == {PHONE: 1, EMAIL: 3}


def test_negative_capacity_is_refused():
    with pytest.raises(InvalidValue):
        Agent(id="a", capacity={PHONE: -1, EMAIL: 3})


def test_an_agent_with_three_emails_gets_no_fourth():
    a = available()
    for i in range(3):
        assert a.can_take(EMAIL)
        a.held[f"e{i}"] = EMAIL
    assert a.count(EMAIL) == 3
    assert not a.can_take(EMAIL)


def test_a_pending_offer_counts_against_capacity_and_blocks_any_other_offer():
    a = available()
    a.held["e1"] = EMAIL
    a.held["e2"] = EMAIL
    a.offer_id, a.offer_task_id, a.offer_channel = "o1", "e3", EMAIL
    assert a.count(EMAIL) == 3
    assert a.held_channels() == {EMAIL}
    assert not a.can_take(EMAIL)
    assert not a.can_take(PHONE)  # one offer at a time


def test_capacity_zero_or_channel_not_handled():
    assert not available(capacity={PHONE: 0, EMAIL: 3}).can_take(PHONE)
    assert not available(channels={EMAIL}).can_take(PHONE)
    assert available(channels={EMAIL}).can_take(EMAIL)


@pytest.mark.parametrize("status", [s for s in Presence if s is not Presence.AVAILABLE])
def test_only_an_available_agent_can_take_work(status):
    assert not Agent(id="a", status=status).can_take(EMAIL)
    assert not Agent(id="a", status=status).can_take(PHONE)


# ---------------------------------------------------------------- interruption matrix


def test_a_call_may_interrupt_email_work():
    a = available()
    a.held.update({"e1": EMAIL, "e2": EMAIL, "e3": EMAIL})
    assert a.can_take(PHONE)
    assert DEFAULT_INTERRUPTIONS.permits([EMAIL], PHONE)


def test_an_agent_on_a_call_is_offered_nothing_else():
    a = available()
    a.held["p1"] = PHONE
    assert not a.can_take(PHONE)
    assert not a.can_take(EMAIL)
    a.capacity[PHONE] = 2  # even with room for a second call
    assert not a.can_take(PHONE)
    assert not DEFAULT_INTERRUPTIONS.permits([PHONE], EMAIL)
    assert not DEFAULT_INTERRUPTIONS.permits([EMAIL, PHONE], EMAIL)


def test_nothing_held_permits_everything():
    assert DEFAULT_INTERRUPTIONS.permits([], PHONE)
    assert DEFAULT_INTERRUPTIONS.permits([], EMAIL)


def test_a_custom_matrix():
    strict = InterruptionMatrix({EMAIL: frozenset({EMAIL}), PHONE: frozenset()})
    a = available()
    a.held["e1"] = EMAIL
    assert a.can_take(EMAIL, strict)
    assert not a.can_take(PHONE, strict)


# ---------------------------------------------------------------- presence


def test_chosen_statuses():
    assert {Presence.OFFLINE, Presence.AVAILABLE, Presence.BREAK} == CHOSEN


def test_presence_is_derived_from_the_work_held():
    a = available()
    assert a.presence() is Presence.AVAILABLE
    a.held["e1"] = EMAIL
    assert a.presence() is Presence.AVAILABLE  # still room for e-mails and a call
    a.held["p1"] = PHONE
    assert a.presence() is Presence.BUSY
    del a.held["p1"]
    a.wrapping.add("e1")
    assert a.presence() is Presence.WRAP_UP
    a.status = Presence.BREAK
    assert a.presence() is Presence.BREAK
    assert Agent(id="b").presence() is Presence.OFFLINE
