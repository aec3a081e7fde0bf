"""Tests of the router for the agent's desk (dispatcher.domain.routing): the pull list an agent
picks from (order and eligibility), a pick that comes second, and the wrap-up window with its
extension (bounded, by the holder only)."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import Forbidden, InvalidValue, NotEligible, TaskTaken
from dispatcher.domain.queues import MAX_WRAP_UP_EXTENSION, Mode, Queue
from dispatcher.domain.routing import WRAP_UP_ATTRIBUTE
from dispatcher.domain.tasks import TaskState
from tests.dispatcher.domain.test_routing import (
    BREAK,
    EMAIL,
    PHONE,
    T0,
    add_agent,
    check,
    events_of,
    make_router,
    submit,
    take,
)

WRAP = 30.0


def pull_router():
    """Two pull queues ("back", priority 0; "vip", priority 5) and a push queue ("sales")."""
    return make_router(Queue("back", mode=Mode.PULL), Queue("vip", mode=Mode.PULL, priority=5),
                       Queue("sales", wrap_up_seconds=WRAP))


def ids(r, agent_id: str, limit: int = 50) -> list[str]:
    tasks, _ = r.pull_list(agent_id, limit)
    return [t.id for t in tasks]


# ---------------------------------------------------------------- the pull list


def test_the_pull_list_is_in_the_order_the_router_serves_across_queues():
    r = pull_router()
    add_agent(r, "a1", queues=("back", "vip"))
    submit(r, "old-mail", queue="back", channel=EMAIL, at=T0, deadline=T0 + 7200)
    submit(r, "urgent", queue="back", channel=EMAIL, at=T0 + 5, priority=9)
    submit(r, "soon", queue="back", channel=EMAIL, at=T0 + 10, deadline=T0 + 600)
    submit(r, "vip-mail", queue="vip", channel=EMAIL, at=T0 + 20)  # queue priority 5
    submit(r, "call", queue="back", channel=PHONE, at=T0 + 30)  # due at +20 s (phone target)
    assert ids(r, "a1") == ["urgent", "vip-mail", "call", "soon", "old-mail"]
    tasks, total = r.pull_list("a1", 2)
    assert [t.id for t in tasks] == ["urgent", "vip-mail"] and total == 5
    assert ids(r, "a1", 0) == []


def test_the_pull_list_shows_only_what_the_agent_could_pick():
    r = pull_router()
    add_agent(r, "fr", queues=("back",), skills={"fr": 5})
    add_agent(r, "novice", queues=("back",), skills={"fr": 2})
    add_agent(r, "mail-only", queues=("back",), skills={"fr": 9}, channels={EMAIL})
    add_agent(r, "pusher", queues=("sales",), skills={"fr": 9})
    submit(r, "m1", queue="back", channel=EMAIL, skills={"fr": 3})
    submit(r, "c1", queue="back", channel=PHONE, skills={"fr": 3})
    assert ids(r, "fr") == ["c1", "m1"]
    assert ids(r, "novice") == []  # below the requirement
    assert ids(r, "mail-only") == ["m1"]  # does not handle phone
    assert ids(r, "pusher") == []  # a push queue has no list
    check(r.set_channels("fr", {EMAIL}, T0 + 1))  # phone switched off for now
    assert ids(r, "fr") == ["m1"]
    check(r.set_channels("fr", {EMAIL, PHONE}, T0 + 2))
    check(r.set_status("fr", BREAK, T0 + 3, "lunch"))  # status aside: the list stays
    assert ids(r, "fr") == ["c1", "m1"]


def test_the_pull_list_follows_capacity_and_the_interruption_matrix():
    r = pull_router()
    add_agent(r, "a1", queues=("back",), capacity={EMAIL: 1, PHONE: 1})
    for i in range(3):
        submit(r, f"m{i}", queue="back", channel=EMAIL, at=T0 + i)
    submit(r, "c1", queue="back", channel=PHONE, at=T0 + 10)
    check(r.pick("a1", "m0", T0 + 20))
    assert ids(r, "a1") == ["c1"]  # e-mail full; a call may interrupt e-mail work
    tasks, total = r.pull_list("a1", 50)
    assert total == 1
    check(r.pick("a1", "c1", T0 + 21))
    assert ids(r, "a1") == []  # on a call: nothing else
    check(r.complete("a1", "c1", T0 + 22))
    check(r.complete("a1", "m0", T0 + 23))
    assert ids(r, "a1") == ["m1", "m2"]


def test_a_pick_of_a_task_someone_else_picked_first_is_task_taken():
    r = pull_router()
    add_agent(r, "a1", queues=("back",))
    add_agent(r, "a2", queues=("back",))
    submit(r, "m1", queue="back", channel=EMAIL)
    check(r.pick("a1", "m1", T0 + 1))
    assert ids(r, "a2") == []
    with pytest.raises(TaskTaken) as info:
        r.pick("a2", "m1", T0 + 2)
    assert info.value.code == "task_taken" and isinstance(info.value, NotEligible)
    assert "someone else took it first" in str(info.value)


def test_a_pick_while_not_available_says_so():
    r = pull_router()
    add_agent(r, "a1", queues=("back",), status=BREAK)
    submit(r, "m1", queue="back", channel=EMAIL)
    with pytest.raises(NotEligible, match="be available to pick"):
        r.pick("a1", "m1", T0 + 1)


# ---------------------------------------------------------------- wrap-up


def wrapping(r=None):
    """a1 on a call of "sales", now in wrap-up since T0 + 10."""
    r = r or pull_router()
    add_agent(r, "a1")
    add_agent(r, "a2", idle_since=T0 + 1)
    submit(r, "c1", queue="sales")
    task_id, _ = take(r, "a1", T0 + 1)
    out = check(r.wrap_up("a1", task_id, T0 + 10))
    return r, out


def test_wrap_up_records_its_window():
    r, out = wrapping()
    window = {"until": T0 + 10 + WRAP, "limit": T0 + 10 + WRAP + MAX_WRAP_UP_EXTENSION}
    assert events_of(out, ev.TASK_WRAP_UP)[0].data == window
    assert r.tasks["c1"].attributes[WRAP_UP_ATTRIBUTE] == window
    assert r.wrap_up_window("c1") == (window["until"], window["limit"])
    assert out.tasks["c1"] is r.tasks["c1"]  # written with the task


def test_extending_a_wrap_up_moves_its_end_up_to_the_limit():
    r, _ = wrapping()
    out = check(r.extend_wrap_up("a1", "c1", 60, T0 + 20))
    (e,) = events_of(out, ev.TASK_WRAP_UP_EXTENDED)
    assert e.data == {"seconds": 60, "until": T0 + 100, "was": T0 + 40}
    assert e.actor == "agent:a1" and out.tasks["c1"] is r.tasks["c1"]
    until, limit = r.wrap_up_window("c1")
    assert until == T0 + 100 and limit == T0 + 40 + MAX_WRAP_UP_EXTENSION
    # Its time already up: counted from now.
    check(r.extend_wrap_up("a1", "c1", 10, T0 + 200))
    assert r.wrap_up_window("c1")[0] == T0 + 210
    # Never beyond the limit: what is left is said.
    left = limit - (T0 + 210)
    with pytest.raises(InvalidValue, match=f"by {left:.0f} s more at most"):
        r.extend_wrap_up("a1", "c1", left + 1, T0 + 200)
    check(r.extend_wrap_up("a1", "c1", left, T0 + 200))
    assert r.wrap_up_window("c1")[0] == limit
    with pytest.raises(InvalidValue, match="by 0 s more"):
        r.extend_wrap_up("a1", "c1", 1, T0 + 201)


@pytest.mark.parametrize("seconds", [0, -5, MAX_WRAP_UP_EXTENSION + 1, float("nan"), True, "60"])
def test_an_extension_is_a_bounded_positive_number(seconds):
    r, _ = wrapping()
    with pytest.raises(InvalidValue):
        r.extend_wrap_up("a1", "c1", seconds, T0 + 20)
    assert r.wrap_up_window("c1")[0] == T0 + 40


def test_only_the_holder_extends_and_only_a_wrap_up():
    r, _ = wrapping()
    with pytest.raises(Forbidden):
        r.extend_wrap_up("a2", "c1", 60, T0 + 20)
    submit(r, "c2", queue="sales", at=T0 + 20)
    task_id, _ = take(r, "a2", T0 + 21)
    with pytest.raises(InvalidValue, match="only a wrap-up can be extended"):
        r.extend_wrap_up("a2", task_id, 60, T0 + 22)
    assert r.wrap_up_window(task_id) is None


def test_a_new_wrap_up_starts_a_new_window_whatever_the_attributes_carried():
    """A task whose attributes came with an old window (a reopened conversation copies them)
    gets its own when it enters wrap-up."""
    r = pull_router()
    add_agent(r, "a1")
    submit(r, "c1", queue="sales")
    r.tasks["c1"].attributes = {WRAP_UP_ATTRIBUTE: {"until": T0 - 500, "limit": T0 - 100}}
    take(r, "a1", T0 + 1)
    check(r.wrap_up("a1", "c1", T0 + 2))
    assert r.wrap_up_window("c1") == (T0 + 2 + WRAP, T0 + 2 + WRAP + MAX_WRAP_UP_EXTENSION)


def test_a_wrap_up_begun_without_a_window_ends_from_its_last_change():
    r, _ = wrapping()
    task = r.tasks["c1"]
    task.attributes = {}  # stored by an earlier version
    assert r.wrap_up_window("c1") == (task.updated_at + WRAP,
                                      task.updated_at + WRAP + MAX_WRAP_UP_EXTENSION)
    assert task.state is TaskState.WRAP_UP and r.agents["a1"].presence() is Presence.WRAP_UP
