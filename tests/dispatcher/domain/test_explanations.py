"""Tests of a decision's explanation in words (dispatcher.domain.explanations): every reason code
reads as words, the counts not named are told, older explanations (no `passed`) and unknown
codes still read, and a real router's explanation reads as the issue asked."""

from __future__ import annotations

import pytest

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.explanations import explain_in_words, passed_in_words
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel, Task

T0 = 1_000_000.0


@pytest.mark.parametrize(("entry", "words"), [
    ({"reason": "declined"}, "bob declined it"),
    ({"reason": "expired"}, "bob let an offer of it expire"),
    ({"reason": "break", "break_reason": "lunch"}, "bob on a break (lunch)"),
    ({"reason": "break", "break_reason": ""}, "bob on a break"),
    ({"reason": "offline"}, "bob offline"),
    ({"reason": "not_responding"}, "bob not responding"),
    ({"reason": "disabled"}, "bob disabled"),
    ({"reason": "offer_pending", "channel": "email"}, "bob has another offer pending (email)"),
    ({"reason": "paused", "channel": "phone"}, "bob has phone paused"),
    ({"reason": "unreachable", "channel": "phone"}, "bob unreachable (no phone registered)"),
    ({"reason": "engaged", "channel": "phone"}, "bob in a call outside routing (PBX)"),
    ({"reason": "no_capacity", "channel": "phone", "held": 1, "capacity": 1},
     "bob on a call (phone, 1/1)"),
    ({"reason": "no_capacity", "channel": "email", "held": 3, "capacity": 3},
     "bob has no free email slot (3/3)"),
    ({"reason": "interruption", "channel": "email", "holding": "phone"},
     "bob on a call (no email on top of it)"),
    ({"reason": "not_eligible", "detail": "skill french 2 < 4"}, "bob: skill french 2 < 4"),
    ({"reason": "something_new"}, "bob: something_new"),
])
def test_each_reason_in_words(entry, words) -> None:
    assert passed_in_words({"agent": "bob", **entry}) == words


def test_the_issue_s_example() -> None:
    why = {
        "rule": "longest_idle", "requirement": {"french": 4}, "eligible": 5, "available": 2,
        "skipped": {"bob": "declined"}, "offered": "ann",
        "passed": [{"agent": "bob", "reason": "declined"},
                   {"agent": "carl", "reason": "no_capacity", "channel": "phone", "held": 1,
                    "capacity": 1},
                   {"agent": "dana", "reason": "not_eligible", "detail": "skill french 2 < 4"}],
        "counts": {"members": 9, "eligible": 5, "available": 2, "declined": 1, "expired": 0,
                   "more_available": 1, "more_unavailable": 1, "more_not_eligible": 3},
    }
    assert explain_in_words(why) == (
        "offered to ann (longest idle of 2 available out of 5 eligible); passed over: bob "
        "declined it; carl on a call (phone, 1/1); dana: skill french 2 < 4; 1 more available, "
        "lower in the order; 1 more not available; 3 more members not eligible")


def test_the_other_rules() -> None:
    assert explain_in_words({"rule": "transfer", "by": "agent:ann", "from_agent": "ann",
                             "offered": "bob", "passed": [], "counts": {"members": 3}}) == (
        "offered to bob (transferred by agent:ann from ann)")
    assert explain_in_words({"rule": "supervisor", "by": "supervisor:boss", "offered": "bob",
                             "passed": []}) == "offered to bob (sent to them by supervisor:boss)"
    sticky = explain_in_words({"rule": "sticky", "eligible": 3, "available": 1, "offered": "ann",
                               "waited_for_agent": True, "passed": []})
    assert sticky == ("offered to ann (they handled the customer before; kept for them until "
                      "they were free; 1 available out of 3 eligible)")
    mine = explain_in_words({"rule": "best_task_for_agent", "eligible": 4, "available": 1,
                             "skipped": {"t9": "declined"}, "offered": "ann", "passed": [],
                             "counts": {"more_unavailable": 3}})
    assert mine == ("offered to ann (their best waiting task by priority, due time and arrival; "
                    "1 available out of 4 eligible); ahead of it, declined by them: t9; passed "
                    "over: 3 more not available")


def test_an_explanation_recorded_before_agents_were_named() -> None:
    old = {"rule": "longest_idle", "requirement": {}, "eligible": 2, "available": 1,
           "skipped": {"bob": "declined"}}
    assert explain_in_words(old, agent="ann") == (
        "offered to ann (longest idle of 1 available out of 2 eligible); passed over: bob "
        "declined it")
    assert explain_in_words({}) == "offered to ? (routed)"


def test_a_real_decision_reads_in_words() -> None:
    r = Router()
    r.put_queue(Queue("q", requirement={"french": 4}), T0)
    for agent_id, skills, idle in (("ann", 5, T0 - 30), ("bob", 5, T0 - 60), ("dana", 2, T0)):
        r.put_agent(Agent(id=agent_id, queues={"q"}, skills={"french": skills},
                          status=Presence.AVAILABLE, idle_since=idle), T0)
    out = r.submit(Task(id="t1", channel=Channel.PHONE, queue="q", customer_id=None,
                        created_at=T0, base_skills={"french": 4}), T0)
    out = r.reject("bob", out.offers[0].id, T0 + 1)
    (offered,) = [e for e in out.events if e.kind == "task.offered"]
    assert explain_in_words(offered.data["explanation"]) == (
        "offered to ann (longest idle of 1 available out of 2 eligible); passed over: bob "
        "declined it; dana: skill french 2 < 4")
