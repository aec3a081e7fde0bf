"""Tests of the router's explanations (dispatcher.domain.routing): every `task.offered` names the
agent offered and, bounded, the members passed over with the reason for each (declined, let an
offer expire, busy, on break, offline, not eligible, ...), and counts that cover the rest."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, InterruptionMatrix, Presence
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import EXPLAIN_SAMPLE, MAX_EXPLAINED, Outcome, Router
from dispatcher.domain.tasks import Channel, Task

T0 = 1_000_000.0
PHONE, EMAIL = Channel.PHONE, Channel.EMAIL
AVAILABLE, OFFLINE, BREAK = Presence.AVAILABLE, Presence.OFFLINE, Presence.BREAK


def router(*queues: Queue, matrix: InterruptionMatrix | None = None) -> Router:
    r = Router(matrix) if matrix is not None else Router()
    for q in queues or (Queue("q"),):
        r.put_queue(q, T0)
    return r


def add(r: Router, agent_id: str, status: Presence = AVAILABLE, idle_since: float = T0,
        queues=("q",), **kw) -> Outcome:
    return r.put_agent(Agent(id=agent_id, queues=set(queues), status=status,
                             idle_since=idle_since, **kw), T0)


def task(task_id: str, channel: Channel = PHONE, queue: str = "q", skills=None) -> Task:
    return Task(id=task_id, channel=channel, queue=queue, customer_id=None, created_at=T0,
                base_skills=dict(skills or {}))


def why_of(out: Outcome) -> dict:
    (offered,) = [e for e in out.events if e.kind == ev.TASK_OFFERED]
    return offered.data["explanation"]


def passed(why: dict) -> dict[str, dict]:
    return {p["agent"]: p for p in why["passed"]}


# ---------------------------------------------------------------- declines


def test_the_agent_who_just_declined_is_named_in_skipped_and_passed() -> None:
    """The bug: `skipped` was empty when the agent who had just declined was not listed in the
    bucket (an agent with an offer pending is listed again only after the decision)."""
    r = router()
    add(r, "a1", idle_since=T0 - 20)
    add(r, "a2", idle_since=T0 - 10)
    out = r.submit(task("t1"), T0)
    assert out.offers[0].agent_id == "a1"
    out = r.reject("a1", out.offers[0].id, T0 + 1)
    assert out.offers[0].agent_id == "a2"
    why = why_of(out)
    assert why["skipped"] == {"a1": "declined"}
    assert why["offered"] == "a2"
    assert passed(why)["a1"]["reason"] == "declined"
    assert why["counts"]["declined"] == 1


def test_an_agent_who_let_an_offer_expire_is_named() -> None:
    r = router()
    add(r, "a1", idle_since=T0 - 20)
    add(r, "a2", idle_since=T0 - 10)
    out = r.submit(task("t1"), T0)
    out = r.expire(out.offers[0].id, T0 + 20)
    why = why_of(out)
    assert why["offered"] == "a2"
    assert passed(why)["a1"] == {"agent": "a1", "reason": "expired"}
    assert why["counts"]["expired"] == 1 and why["skipped"] == {}


# ---------------------------------------------------------------- each reason


def _offline(r: Router) -> None:
    add(r, "x", status=OFFLINE)


def _on_break(r: Router) -> None:
    add(r, "x")
    r.set_status("x", BREAK, T0, "lunch")


def _disabled(r: Router) -> None:
    add(r, "x", disabled=True)


def _paused(r: Router) -> None:
    add(r, "x")
    r.set_channels("x", [EMAIL], T0)


def _unreachable(r: Router) -> None:
    add(r, "x")
    r.set_device("x", PHONE, T0, reachable=False)


def _engaged(r: Router) -> None:
    add(r, "x")
    r.set_device("x", PHONE, T0, engaged=True)


def _on_a_call(r: Router) -> None:
    add(r, "x", idle_since=T0 - 200)  # takes the first call and holds it
    first = r.submit(task("first"), T0)
    r.accept("x", first.offers[0].id, T0)


def _not_responding(r: Router) -> None:
    add(r, "x", idle_since=T0 - 300)  # misses an offer of another task
    other = r.submit(task("other"), T0)
    r.expire(other.offers[0].id, T0 + 1)
    r.cancel("other", T0 + 1, "test")  # (it went to win meanwhile)


@pytest.mark.parametrize(("setup", "entry"), [
    (_offline, {"reason": "offline"}),
    (_on_break, {"reason": "break", "break_reason": "lunch"}),
    (_disabled, {"reason": "disabled"}),
    (_paused, {"reason": "paused", "channel": "phone"}),
    (_unreachable, {"reason": "unreachable", "channel": "phone"}),
    (_engaged, {"reason": "engaged", "channel": "phone"}),
    (_on_a_call, {"reason": "no_capacity", "channel": "phone", "held": 1, "capacity": 1}),
    (_not_responding, {"reason": "not_responding"}),
])
def test_each_reason_an_eligible_agent_is_not_available(setup, entry) -> None:
    r = router()
    add(r, "win", idle_since=T0 - 100)
    setup(r)
    why = why_of(r.submit(task("t1"), T0 + 2))
    assert why["offered"] == "win"
    assert why["passed"] == [{"agent": "x", **entry}]
    counts = why["counts"]
    assert (counts["eligible"], counts["available"], counts["more_unavailable"]) == (2, 1, 0)


def test_another_offer_pending_and_the_interruption_matrix() -> None:
    r = router()
    add(r, "win", idle_since=T0 - 10)
    add(r, "pend", idle_since=T0 - 100)  # is offered the first e-mail, does not answer yet
    add(r, "oncall", idle_since=T0 - 200)
    call = r.submit(task("call"), T0)
    r.accept("oncall", call.offers[0].id, T0)
    r.submit(task("first", EMAIL), T0)
    assert r.agents["pend"].offer_task_id == "first"
    why = why_of(r.submit(task("t1", EMAIL), T0 + 1))
    assert why["offered"] == "win"
    got = passed(why)
    assert got["pend"] == {"agent": "pend", "reason": "offer_pending", "channel": "email"}
    assert got["oncall"] == {"agent": "oncall", "reason": "interruption", "channel": "email",
                             "holding": "phone"}


@pytest.mark.parametrize(("kw", "detail"), [
    ({"skills": {"french": 2}}, "skill french 2 < 4"),
    ({"skills": {"german": 9}}, "skill french missing (4 required)"),
    ({"skills": {"french": 9}, "channels": {EMAIL}}, "does not handle phone"),
    ({"skills": {"french": 9}, "capacity": {PHONE: 0, EMAIL: 3}}, "no phone capacity"),
])
def test_members_not_eligible_say_which_skill_and_both_levels(kw, detail) -> None:
    r = router(Queue("q", requirement={"french": 4}))
    add(r, "win", skills={"french": 5})
    add(r, "x", **kw)
    why = why_of(r.submit(task("t1", skills={"french": 4}), T0))
    assert why["passed"] == [{"agent": "x", "reason": "not_eligible", "detail": detail}]
    assert why["counts"] == {"members": 2, "eligible": 1, "available": 1, "declined": 0,
                             "expired": 0, "more_available": 0, "more_unavailable": 0,
                             "more_not_eligible": 0}


def test_ineligible_reason_is_none_for_one_who_meets_the_requirement() -> None:
    reason = Router._ineligible_reason
    agent = Agent(id="a", skills={"french": 4, "billing": 1})
    assert reason(agent, PHONE, {"french": 4, "billing": 1}) is None
    assert reason(agent, PHONE, {"french": 4, "billing": 2}) == "skill billing 1 < 2"
    assert reason(agent, EMAIL, {}) is None


# ---------------------------------------------------------------- the bound and the counts


def test_many_members_a_bounded_sample_is_named_and_the_counts_cover_the_rest() -> None:
    r = router(Queue("q", requirement={"french": 1}))
    add(r, "win", skills={"french": 1})
    for i in range(40):
        add(r, f"off{i}", status=OFFLINE, skills={"french": 3})
    for i in range(30):
        add(r, f"new{i}", skills={})
    for i in range(5):
        add(r, f"free{i}", skills={"french": 1}, idle_since=T0 + 1)
    why = why_of(r.submit(task("t1", skills={"french": 1}), T0 + 2))
    assert why["offered"] == "win"
    reasons = [p["reason"] for p in why["passed"]]
    # A bounded look (EXPLAIN_LOOK entries of each set, in the set's order) names at most
    # EXPLAIN_SAMPLE of each kind, the unavailable first; the counts cover whom it did not name.
    away, out = reasons.count("offline"), reasons.count("not_eligible")
    assert reasons == ["offline"] * away + ["not_eligible"] * out
    assert 1 <= away <= EXPLAIN_SAMPLE and 1 <= out <= EXPLAIN_SAMPLE
    assert len(why["passed"]) <= MAX_EXPLAINED
    assert why["counts"] == {"members": 76, "eligible": 46, "available": 6, "declined": 0,
                             "expired": 0, "more_available": 5,
                             "more_unavailable": 40 - away,
                             "more_not_eligible": 30 - out}


def test_declines_come_first_and_the_skipped_ones_stay_bounded() -> None:
    r = router()
    for i in range(MAX_EXPLAINED + 3):
        add(r, f"a{i:02}", idle_since=T0 - 100 + i)
    add(r, "last", idle_since=T0)
    out = r.submit(task("t1"), T0)
    for _ in range(MAX_EXPLAINED + 3):
        out = r.reject(out.offers[0].agent_id, out.offers[0].id, T0 + 1)
    why = why_of(out)
    assert why["offered"] == "last"
    assert [p["reason"] for p in why["passed"]] == ["declined"] * MAX_EXPLAINED
    assert len(why["skipped"]) == MAX_EXPLAINED
    assert why["counts"]["declined"] == MAX_EXPLAINED + 3
    # The 3 decliners not named (which ones: the set's order) are counted: all are listed again
    # but the last one, not listed yet.
    counts = why["counts"]
    assert counts["more_available"] + counts["more_unavailable"] == 3
    assert counts["more_unavailable"] == (0 if "a12" in passed(why) else 1)


class _CountingAgents(dict):
    """The router's agents, counting the look-ups of one agent by id."""

    looked = 0

    def __getitem__(self, key):
        type(self).looked += 1
        return super().__getitem__(key)


def test_the_cost_does_not_grow_with_the_members() -> None:
    """Naming those passed over looks at a bounded number of agents, not at every member."""
    r = router(Queue("q", requirement={"french": 1}))
    for i in range(2000):
        add(r, f"off{i}", status=OFFLINE, skills={"french": 3})
    for i in range(2000):
        add(r, f"new{i}", skills={})
    add(r, "win", skills={"french": 1})
    r.submit(task("warm", skills={"french": 1}), T0)  # its bucket is made (once) here
    r.cancel("warm", T0, "test")
    r.agents = _CountingAgents(r.agents)
    _CountingAgents.looked = 0
    why = why_of(r.submit(task("t1", skills={"french": 1}), T0))
    assert len(why["passed"]) == 2 * EXPLAIN_SAMPLE
    assert _CountingAgents.looked <= 2 * EXPLAIN_SAMPLE + 2


# ---------------------------------------------------------------- the other rules


def test_a_freed_agent_names_only_who_declined_and_counts_the_rest() -> None:
    """`best_task_for_agent`: nobody else was weighed (none was free), so only the declines are
    named; the counts say how many are not available or not eligible."""
    r = router(Queue("q", requirement={"french": 1}))
    add(r, "a1", skills={"french": 2}, idle_since=T0 - 10)
    add(r, "a2", skills={"french": 2}, idle_since=T0 - 5)
    add(r, "off", skills={"french": 2}, status=OFFLINE)
    add(r, "new", skills={})
    one = r.submit(task("one", skills={"french": 1}), T0)
    r.accept("a1", one.offers[0].id, T0)
    two = r.submit(task("two", skills={"french": 1}), T0)
    r.reject("a2", two.offers[0].id, T0 + 1)  # a2 declines "two": it waits
    assert r.tasks["two"].agent_id is None
    out = r.complete("a1", "one", T0 + 2)
    why = why_of(out)
    assert (why["rule"], why["offered"]) == ("best_task_for_agent", "a1")
    assert why["passed"] == [{"agent": "a2", "reason": "declined"}]
    assert why["counts"]["more_unavailable"] == 1  # off
    assert why["counts"]["more_not_eligible"] == 1  # new
    assert why["counts"]["more_available"] == 0


def test_a_named_agent_and_a_sticky_task_name_who_was_offered() -> None:
    r = router()
    add(r, "a1", idle_since=T0 - 10)
    add(r, "a2")
    t = task("t1")
    t.attributes = {"preferred_agent": "a2", "preferred_until": T0 + 3600}
    why = why_of(r.submit(t, T0))
    assert (why["rule"], why["offered"]) == ("sticky", "a2")
    assert why["counts"]["members"] == 2
    r.accept("a2", r.agents["a2"].offer_id, T0)
    out = r.transfer("t1", T0 + 1, "agent:a2", agent_id="a1")
    why = why_of(out)
    assert (why["rule"], why["offered"], why["passed"]) == ("transfer", "a1", [])
    assert why["counts"] == {"members": 2}
