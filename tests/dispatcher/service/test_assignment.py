"""Assignment: the server-side timers (offer expiry, escalation steps, end of wrap-up) on a
virtual clock, and listeners told only after the commit."""

from __future__ import annotations

import logging

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import (
    NOT_BACK_REASON,
    RESTART_GRACE_SECONDS,
    WRAP_UP_TIMEOUT_DISPOSITION,
)
from tests.dispatcher.service.stacks import (
    EMAIL_OFFER_TIMEOUT,
    PHONE_OFFER_TIMEOUT,
    STEP_AFTER,
    WRAP_UP_SECONDS,
    HeldStore,
    build_stack,
    result,
    support_queue,
)


def completed_event(stack, task_id):
    [done] = [e for e in stack.events(task_id) if e.kind == ev.TASK_COMPLETED]
    return done


# ---------------------------------------------------------------------- offer timer


def test_an_unanswered_offer_moves_on_to_the_next_agent(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    stack.clock.advance(1)
    stack.login("bob")
    task = stack.call()
    assert stack.last_offer("ann").task_id == task.id  # longest idle first

    stack.clock.advance(PHONE_OFFER_TIMEOUT - 0.5)
    assert stack.router.tasks[task.id].agent_id == "ann", "expired too early"

    stack.clock.advance(1)

    offer = stack.last_offer("bob")
    assert offer.task_id == task.id
    assert stack.router.agents["ann"].status is Presence.NOT_RESPONDING
    assert stack.queries.agent_presence()["ann"] == "not_responding"
    t = stack.router.tasks[task.id]
    assert (t.state, t.agent_id, t.created_at) == (TaskState.OFFERED, "bob", task.created_at)
    kinds = stack.kinds(task.id)
    assert kinds.count(ev.TASK_OFFERED) == 2 and ev.OFFER_EXPIRED in kinds
    stored = {t.id: t for t in result(stack.store.list_tasks())}[task.id]
    assert (stored.state, stored.agent_id) == ("offered", "bob")


def test_email_offers_use_the_email_timeout(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    mail = result(stack.intake.submit(Channel.EMAIL, "support"))
    stack.clock.advance(PHONE_OFFER_TIMEOUT + 1)
    assert stack.router.tasks[mail.id].state is TaskState.OFFERED
    stack.clock.advance(EMAIL_OFFER_TIMEOUT - PHONE_OFFER_TIMEOUT)
    assert stack.router.tasks[mail.id].state is TaskState.QUEUED
    assert stack.router.agents["ann"].status is Presence.NOT_RESPONDING


def test_accept_cancels_the_offer_timer(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    stack.clock.advance(1)
    stack.login("bob")
    task = stack.call()
    offer = stack.last_offer("ann")
    stack.clock.advance(PHONE_OFFER_TIMEOUT / 2)

    result(stack.sessions.accept("ann", offer.id))
    before = len(stack.heard)
    stack.clock.advance(10 * PHONE_OFFER_TIMEOUT)

    assert stack.router.tasks[task.id].state is TaskState.ASSIGNED
    assert stack.router.tasks[task.id].agent_id == "ann"
    assert stack.router.agents["ann"].status is Presence.AVAILABLE
    assert len(stack.heard) == before, "a cancelled timer still changed something"
    assert ev.OFFER_EXPIRED not in stack.kinds(task.id)
    assert stack.clock.getDelayedCalls() == [], "timers left armed for an assigned task"


def test_reject_cancels_the_timer_and_never_offers_the_task_again(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.reject("ann", stack.last_offer("ann").id, "busy"))
    assert stack.router.tasks[task.id].state is TaskState.QUEUED
    stack.clock.advance(PHONE_OFFER_TIMEOUT * 3)
    assert stack.router.agents["ann"].status is Presence.AVAILABLE, "expired after a reject"
    assert [o.task_id for o in stack.offers_made()] == [task.id]


# ---------------------------------------------------------------------- escalation timer


def test_a_task_nobody_can_take_gets_an_agent_when_its_step_comes(stack):
    stack.put_agent("ann", 8)  # qualifies at step 0, but stays offline
    stack.put_agent("cy", 2)  # qualifies only after the step
    stack.login("cy")
    task = stack.call()
    assert stack.router.tasks[task.id].state is TaskState.QUEUED
    assert stack.router.tasks[task.id].step == 0

    stack.clock.advance(STEP_AFTER - 1)
    assert stack.offers_made() == []

    stack.clock.advance(1)

    t = stack.router.tasks[task.id]
    assert (t.step, t.required_skills) == (1, {"support": 1})
    assert t.state is TaskState.OFFERED and t.agent_id == "cy"
    kinds = stack.kinds(task.id)
    assert kinds.index(ev.TASK_ESCALATED) < kinds.index(ev.TASK_OFFERED)


def test_a_step_nobody_could_ever_take_is_skipped_at_once(stack):
    stack.put_agent("cy", 2)  # the only member: nobody could take step 0
    stack.login("cy")
    task = stack.call()
    t = stack.router.tasks[task.id]
    assert (t.step, t.state, t.agent_id) == (1, TaskState.OFFERED, "cy")
    [escalated] = [e for e in stack.events(task.id) if e.kind == ev.TASK_ESCALATED]
    assert escalated.data["skipped_unmatchable"] == [0]


def test_the_step_timer_is_disarmed_when_the_task_is_taken(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    stack.clock.advance(STEP_AFTER * 2)
    assert stack.router.tasks[task.id].step == 0
    assert ev.TASK_ESCALATED not in stack.kinds(task.id)


# ---------------------------------------------------------------------- wrap-up timer


def test_wrap_up_ends_by_itself_after_the_queue_wrap_up_time(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    first = stack.call()
    second = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    result(stack.sessions.wrap_up("ann", first.id))
    assert stack.queries.agent_presence()["ann"] == "wrap_up"

    stack.clock.advance(WRAP_UP_SECONDS - 1)
    assert stack.router.tasks[first.id].state is TaskState.WRAP_UP

    stack.clock.advance(1)

    assert first.id not in stack.router.tasks
    done = completed_event(stack, first.id)
    assert done.data["disposition"] == WRAP_UP_TIMEOUT_DISPOSITION
    assert done.actor == ev.SYSTEM and done.agent_id == "ann"
    stored = {t.id: t.state for t in result(stack.store.list_tasks())}
    assert stored[first.id] == "completed"
    assert stack.last_offer("ann").task_id == second.id, "the freed agent was not served"


def test_completing_during_wrap_up_cancels_the_timer(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    result(stack.sessions.wrap_up("ann", task.id))
    result(stack.sessions.complete("ann", task.id, "solved"))
    stack.clock.advance(WRAP_UP_SECONDS * 2)
    assert completed_event(stack, task.id).data["disposition"] == "solved"


# ---------------------------------------------------------------------- listeners


def test_listeners_hear_an_outcome_only_after_it_is_committed():
    store = HeldStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    heard_at_commit = []
    s.assignment.listen(lambda outcome: heard_at_commit.append(len(store.held)))
    before = len(s.heard)

    d = s.sessions.login("ann")

    assert not d.called
    assert len(s.heard) == before and heard_at_commit == []
    assert len(store.held) == 1

    store.release()

    outcome = result(d)
    assert s.heard[before:] == [outcome]
    assert heard_at_commit == [0], "a listener ran before the commit fired"
    assert [e.kind for e in outcome.events] == [ev.AGENT_STATUS]


def test_a_timer_outcome_is_announced_only_after_its_commit():
    store = HeldStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    result_of_login = s.sessions.login("ann")
    store.release()
    result(result_of_login)
    submitted = s.intake.submit(Channel.PHONE, "support")
    store.release()
    result(submitted)
    before = len(s.heard)

    s.clock.advance(PHONE_OFFER_TIMEOUT)  # the offer expires: an outcome to commit

    assert len(s.heard) == before
    store.release()
    [expired] = s.heard[before:]
    assert [o.id for o in expired.ended] == ["o1"]


def test_a_failing_listener_does_not_stop_the_others(stack, caplog):
    stack.put_agent("ann", 8)
    calls = []

    def broken(outcome):
        calls.append("broken")
        raise RuntimeError("listener bug")

    stack.assignment.listen(broken)
    stack.assignment.listen(lambda outcome: calls.append("after"))

    with caplog.at_level(logging.ERROR, logger="dispatcher.service.assignment"):
        outcome = stack.login("ann")

    assert calls == ["broken", "after"]
    assert stack.heard[-1] is outcome
    assert any("listener" in r.getMessage() for r in caplog.records)


def test_a_failed_commit_fails_the_deferred_and_tells_nobody():
    store = HeldStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    before = len(s.heard)
    d = s.sessions.login("ann")
    _, held = store.held.pop()
    held.errback(RuntimeError("disk full"))
    errors = []
    d.addErrback(errors.append)
    assert errors and errors[0].check(RuntimeError)
    assert len(s.heard) == before


# ---------------------------------------------------------------------- stop


def test_stop_cancels_every_timer(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("cy", 2)
    stack.login("ann")
    stack.call()  # offered to ann: an offer timer and a step timer
    stack.call()  # waits: a step timer
    assert stack.clock.getDelayedCalls()

    stack.assignment.stop()

    assert stack.clock.getDelayedCalls() == []


# ---------------------------------------------------------------------- restore


def restart(old, later: float = 100.0):
    """A second dispatcher on the same store, started `later` seconds after the first stopped."""
    old.assignment.stop()
    state = result(old.store.load_state())
    new = build_stack(old.store, start=old.clock.seconds() + later)
    result(new.assignment.restore(state))
    return new, state


def serve_in_turn(s, agent_id: str, n: int) -> list[str]:
    """Let the agent accept and complete the next `n` offers; the task ids in offer order."""
    order = []
    for _ in range(n):
        offer = s.last_offer(agent_id)
        order.append(offer.task_id)
        result(s.sessions.accept(agent_id, offer.id))
        result(s.sessions.complete(agent_id, offer.task_id, "done"))
    return order


def test_restore_rebuilds_the_queues_and_rearms_the_timers(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.put_agent("cy", 2)
    ids = {}
    for name, prio in (("t1", 0), ("t2", 0), ("t3", 10), ("t4", 0), ("t5", 0)):
        ids[name] = stack.call(priority=prio).id
        stack.clock.advance(1)
    stack.login("ann")  # takes the priority call, then wraps it up
    assert stack.last_offer("ann").task_id == ids["t3"]
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    result(stack.sessions.wrap_up("ann", ids["t3"]))
    stack.login("bob")  # offered t1, declines it; offered t2, leaves it pending
    result(stack.sessions.reject("bob", stack.last_offer("bob").id, "not mine"))
    assert stack.last_offer("bob").task_id == ids["t2"]
    before = {t: stack.router.tasks[t].state for t in ids.values()}

    new, state = restart(stack)

    # Nothing lost: every open task is back, the offered one queued again with its age.
    assert set(new.router.tasks) == set(ids.values())
    assert {t.id for t in state.open_tasks} == set(ids.values())
    assert before[ids["t2"]] is TaskState.OFFERED
    t2 = new.router.tasks[ids["t2"]]
    assert (t2.state, t2.agent_id, t2.offer_id) == (TaskState.QUEUED, None, None)
    assert t2.created_at == stack.router.tasks[ids["t2"]].created_at
    assert ev.OFFER_EXPIRED in new.kinds(ids["t2"])
    assert new.router.tasks[ids["t3"]].state is TaskState.WRAP_UP
    assert all(a.status is Presence.OFFLINE for a in new.router.agents.values())
    assert new.router.declined == {ids["t1"]: {"bob"}}

    # The wrap-up timer was re-armed: the call completes by itself.
    new.clock.advance(WRAP_UP_SECONDS)
    assert ids["t3"] not in new.router.tasks
    assert completed_event(new, ids["t3"]).data["disposition"] == WRAP_UP_TIMEOUT_DISPOSITION

    # Queued tasks kept their order (priority, then age), declines included: bob skips t1.
    new.login("bob")
    assert serve_in_turn(new, "bob", 2) == [ids["t2"], ids["t4"]]
    new.login("ann")
    assert serve_in_turn(new, "ann", 1) == [ids["t1"]]
    result(new.sessions.logout("ann"))
    result(new.sessions.logout("bob"))

    # The escalation timer was re-armed: t5 reaches step 1 on time, and cy can take it.
    t5 = new.router.tasks[ids["t5"]]
    due = t5.created_at + STEP_AFTER
    assert new.clock.seconds() < due
    new.clock.advance(due - new.clock.seconds())
    assert t5.step == 1 and ev.TASK_ESCALATED in new.kinds(ids["t5"])
    new.login("cy")
    offer = new.last_offer("cy")
    assert offer.task_id == ids["t5"]

    # The offer timer works in the new dispatcher too.
    new.clock.advance(PHONE_OFFER_TIMEOUT)
    assert new.router.agents["cy"].status is Presence.NOT_RESPONDING
    assert new.router.tasks[ids["t5"]].state is TaskState.QUEUED

    # A third start from what the second one wrote sees the same open work.
    third, state = restart(new)
    assert set(third.router.tasks) == {ids["t5"]}
    assert third.router.tasks[ids["t5"]].step == 1


def test_restore_catches_up_steps_that_fell_due_while_stopped(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("cy", 2)
    task = stack.call()

    new, _ = restart(stack, later=STEP_AFTER * 2)
    new.clock.advance(0)  # the overdue step timer fires at once
    assert new.router.tasks[task.id].step == 1
    new.login("cy")
    assert new.last_offer("cy").task_id == task.id


def test_restore_keeps_assigned_work_with_its_agent(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))

    new, _ = restart(stack)

    t = new.router.tasks[task.id]
    assert (t.state, t.agent_id) == (TaskState.ASSIGNED, "ann")
    assert task.id in new.router.agents["ann"].held
    new.login("ann")
    result(new.sessions.complete("ann", task.id, "after restart"))
    assert task.id not in new.router.tasks


def test_a_restart_keeps_what_was_left_of_a_wrap_up(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    result(stack.sessions.wrap_up("ann", task.id))
    stack.clock.advance(10)

    new, _ = restart(stack, later=5)  # 15 s of the 30 s wrap-up are gone

    new.clock.advance(WRAP_UP_SECONDS - 15 - 1)
    assert new.router.tasks[task.id].state is TaskState.WRAP_UP
    new.clock.advance(1)
    assert task.id not in new.router.tasks
    assert completed_event(new, task.id).data["disposition"] == WRAP_UP_TIMEOUT_DISPOSITION


def test_work_held_by_an_agent_who_never_comes_back_returns_to_its_queue(stack):
    """The demo's jam: robots holding calls when the process stopped never come back after the
    restart; their tasks must not stay assigned for good."""
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))

    new, _ = restart(stack)
    new.login("bob")
    new.advance(RESTART_GRACE_SECONDS - 1)
    assert new.router.tasks[task.id].state is TaskState.ASSIGNED  # ann may still come back

    new.advance(1)

    requeued = [e for e in new.events(task.id) if e.kind == ev.TASK_REQUEUED]
    assert [(e.agent_id, e.actor, e.data["reason"]) for e in requeued] == [
        ("ann", ev.SYSTEM, NOT_BACK_REASON)]
    assert task.id not in new.router.agents["ann"].held
    offer = new.last_offer("bob")  # the next agent gets it, with its original age
    assert offer.task_id == task.id
    assert new.router.tasks[task.id].created_at == task.created_at
    result(new.sessions.accept("bob", offer.id))
    result(new.sessions.complete("bob", task.id, "done"))
    assert task.id not in new.router.tasks


def test_an_agent_back_within_the_restart_grace_keeps_their_work(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))

    new, _ = restart(stack)
    new.advance(RESTART_GRACE_SECONDS / 2)
    new.login("ann")
    new.advance(RESTART_GRACE_SECONDS)

    t = new.router.tasks[task.id]
    assert (t.state, t.agent_id) == (TaskState.ASSIGNED, "ann")
    assert ev.TASK_REQUEUED not in new.kinds(task.id)


def test_an_agent_whose_desk_reconnects_keeps_their_work_whatever_their_presence(stack):
    """A console that reconnects after a restart (the agent still offline, in the middle of a
    reply) is the agent back: the desk's own grace rules take over, nothing is taken."""
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))

    new, _ = restart(stack)
    new.advance(5)
    new.sessions.connected("ann")
    new.advance(RESTART_GRACE_SECONDS * 2)

    t = new.router.tasks[task.id]
    assert (t.state, t.agent_id) == (TaskState.ASSIGNED, "ann")
    assert ev.TASK_REQUEUED not in new.kinds(task.id)


def test_stop_cancels_the_restart_grace(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    task = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    new, _ = restart(stack)

    new.assignment.stop()

    assert new.clock.getDelayedCalls() == []
    assert new.router.tasks[task.id].state is TaskState.ASSIGNED


# ---------------------------------------------------------------------- stickiness timer


def prefer(agent_id: str, until: float) -> dict:
    return {"attributes": {"preferred_agent": agent_id, "preferred_until": until}}


def ended_preferences(s, task_id: str) -> list[str]:
    return [e.data["reason"] for e in s.events(task_id)
            if e.kind == ev.TASK_CHANGED and e.data.get("preference") == "ended"]


def test_a_task_waits_for_its_preferred_agent_until_the_stickiness_timer_fires(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))  # ann is on a call
    stack.login("bob")
    until = stack.clock.seconds() + 120
    task = stack.call(**prefer("ann", until))
    assert stack.router.reserved_for(task.id) == "ann"
    assert [o for o in stack.offers_made() if o.agent_id == "bob"] == []  # bob stays idle

    stack.clock.advance(119)
    assert stack.router.reserved_for(task.id) == "ann"

    stack.clock.advance(1)

    assert stack.last_offer("bob").task_id == task.id
    assert ended_preferences(stack, task.id) == ["timeout"]
    assert stack.assignment._sticky_timers == {}


def test_the_stickiness_timer_is_disarmed_when_the_preferred_agent_takes_the_task(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.login("ann")
    call = stack.call()
    result(stack.sessions.accept("ann", stack.last_offer("ann").id))
    stack.login("bob")
    task = stack.call(**prefer("ann", stack.clock.seconds() + 120))
    assert task.id in stack.assignment._sticky_timers
    assert [o.task_id for o in stack.offers_made() if o.agent_id == "bob"] == []

    result(stack.sessions.complete("ann", call.id, "done"))
    offer = stack.last_offer("ann")
    assert offer.task_id == task.id
    [offered] = [e for e in stack.events(task.id) if e.kind == ev.TASK_OFFERED]
    assert offered.data["explanation"]["rule"] == "sticky"
    result(stack.sessions.accept("ann", offer.id))

    assert stack.assignment._sticky_timers == {}
    stack.clock.advance(200)
    assert ended_preferences(stack, task.id) == []
    assert stack.router.tasks[task.id].agent_id == "ann"


def test_restore_keeps_a_reservation_and_rearms_its_timer(stack):
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    until = stack.clock.seconds() + 2 * STEP_AFTER
    task = stack.call(**prefer("ann", until))  # nobody is logged in: reserved for ann

    new, _ = restart(stack)

    assert new.router.reserved_for(task.id) == "ann"
    assert new.router.sticky_until(task.id) == until
    new.login("bob")
    new.clock.advance(STEP_AFTER)  # the step comes; ann still qualifies: still hers
    assert new.router.tasks[task.id].step == 1
    assert new.router.reserved_for(task.id) == "ann" and new.offers_made() == []
    new.clock.advance(until - new.clock.seconds())
    assert new.last_offer("bob").task_id == task.id
    assert ended_preferences(new, task.id) == ["timeout"]
