"""Tests of dispatcher.service.supervision: the supervisors' live state on a virtual clock (what
it counts, today's service level from the log, the throttle that pushes at most once a second
and only on change) and the balancing actions, each audited with the supervisor as actor."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import (
    IllegalTransition,
    InvalidValue,
    NotEligible,
    UnknownAgent,
    UnknownQueue,
)
from dispatcher.domain.metrics import HOUR
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.reports import Reports, Today
from dispatcher.service.supervision import (
    AT_RISK_SHARE,
    PUSH_INTERVAL_SECONDS,
    Balancing,
    Supervision,
)
from tests.dispatcher.service.stacks import T0, build_stack, failure_of, support_queue

PHONE_TARGET = 20.0  # the support queue's phone service-level target (the default)
SUP = "supervisor:boss"


def live_stack(agents=(("a1", 6), ("a2", 6), ("a3", 2))):
    s = build_stack()
    s.put_queue(support_queue())
    s.put_queue(Queue("billing"))
    for agent_id, level in agents:
        s.put_agent(agent_id, level)
    today = Today(s.store, s.store, s.clock, HOUR, day_start=lambda now: T0 - 10 * HOUR)
    sup = Supervision(s.router, s.clock, today)
    s.assignment.listen(sup.on_outcome)
    s.wait(sup.start())
    balancing = Balancing(s.assignment, s.configuration, s.sessions)
    return s, sup, balancing


def row(state, queue="support", channel="phone"):
    (r,) = [q for q in state.queues if q.queue == queue and q.channel == channel]
    return r


def agent_row(state, agent_id):
    (a,) = [a for a in state.agents if a.id == agent_id]
    return a


# ---------------------------------------------------------------- what the state says


def test_waiting_tasks_their_age_deadline_and_risk():
    s, sup, _ = live_stack()
    first = s.call()
    s.advance(5)
    s.call()
    s.wait(s.intake.submit(Channel.EMAIL, "support", deadline=T0 + 4 * HOUR))
    state = sup.state()
    phone, email = row(state), row(state, channel="email")
    assert (phone.waiting, phone.offered, phone.oldest_arrival) == (2, 0, first.created_at)
    assert phone.oldest_deadline is None and phone.next_due == T0 + PHONE_TARGET
    assert (email.waiting, email.oldest_deadline, email.next_due) == (1, T0 + 4 * HOUR,
                                                                     T0 + 4 * HOUR)
    assert (phone.at_risk, phone.overdue) == (0, 0)
    # Past 1 - AT_RISK_SHARE of the 20 s the first call is at risk; past 20 s it is overdue.
    s.advance((1 - AT_RISK_SHARE) * PHONE_TARGET - 5 + 0.1)
    assert (row(sup.state()).at_risk, row(sup.state()).overdue) == (1, 0)
    s.advance(5)
    assert (row(sup.state()).at_risk, row(sup.state()).overdue) == (1, 1)
    assert [t.id for t in sup.state().waiting][:2] == [first.id, "t2"]  # most urgent first
    assert sup.state().waiting[0].overdue and sup.state().waiting[1].at_risk
    assert row(sup.state(), "billing").waiting == 0


def test_agents_eligible_and_what_they_are_doing_per_channel():
    s, sup, _ = live_stack(agents=(("a1", 6), ("a2", 6), ("a3", 6), ("a4", 6), ("a5", 6),
                                   ("low", 2)))
    for agent_id in ("a1", "a2", "a3", "a4"):
        s.login(agent_id)
    s.wait(s.sessions.set_status("a3", Presence.BREAK, "lunch"))
    s.wait(s.sessions.set_status("a4", Presence.BREAK, "training"))
    call = s.call()  # offered to a1 (longest idle)
    offer = s.router.tasks[call.id].offer_id
    holder = s.router.offers[offer].agent_id
    s.wait(s.sessions.accept(holder, offer))
    phone, email = row(sup.state()), row(sup.state(), channel="email")
    assert phone.eligible == email.eligible == 5  # "low" lacks support 5
    assert (phone.available, phone.busy, phone.on_break, phone.offline) == (1, 1, 2, 1)
    assert phone.breaks == {"lunch": 1, "training": 1}
    # On a call, the holder takes no e-mail either (the interruption matrix).
    assert (email.available, email.busy) == (1, 1)
    s.wait(s.sessions.wrap_up(holder, call.id))
    assert row(sup.state()).wrap_up == 1
    other = "a2" if holder == "a1" else "a1"
    s.call()
    s.advance(20)  # the offer to the other agent expires
    assert row(sup.state()).not_responding == 1
    assert agent_row(sup.state(), other).presence == Presence.NOT_RESPONDING.value


def test_each_agent_shows_presence_since_tasks_and_offer():
    s, sup, _ = live_stack()
    s.login("a1")
    s.advance(30)
    mail = s.wait(s.intake.submit(Channel.EMAIL, "support", attributes={"subject": "Refund?"}))
    a1 = agent_row(sup.state(), "a1")
    # An offer pending: nothing else comes, so the agent shows busy.
    assert (a1.presence, a1.offer.id, a1.offer.label) == ("busy", mail.id, "Refund?")
    s.advance(10)
    s.wait(s.sessions.accept("a1", s.router.tasks[mail.id].offer_id))
    assert agent_row(sup.state(), "a1").presence == "available"  # room for more e-mail
    s.call()  # offered to a1 at T0 + 40: busy from then on
    s.advance(3)
    a1 = agent_row(sup.state(), "a1")
    assert [t.id for t in a1.tasks] == [mail.id] and a1.tasks[0].state == "assigned"
    assert a1.offer is not None and a1.offer.channel == "phone"
    s.wait(s.sessions.accept("a1", s.router.tasks[a1.offer.id].offer_id))
    s.advance(4)
    a1 = agent_row(sup.state(), "a1")
    assert a1.presence == "busy" and a1.since == T0 + 40  # since the call was offered
    assert a1.queues == ("support",) and a1.skills == {"support": 6}
    assert agent_row(sup.state(), "a2").since is None  # never signed in


def test_service_level_today_comes_from_the_log_with_the_metrics_definition():
    s, sup, _ = live_stack()
    s.login("a1")
    quick = s.call()
    s.advance(5)
    s.wait(s.sessions.accept("a1", s.router.tasks[quick.id].offer_id))
    s.wait(s.sessions.complete("a1", quick.id, "done"))
    s.wait(s.sessions.logout("a1"))
    slow = s.call()
    s.advance(PHONE_TARGET + 10)
    s.login("a1")
    s.wait(s.sessions.accept("a1", s.router.tasks[slow.id].offer_id))
    s.wait(sup._refresh())
    phone = row(sup.state())
    assert (phone.sl_met, phone.sl_total, phone.service_level) == (1, 2, 0.5)
    assert (phone.sl_target, phone.sl_share) == (PHONE_TARGET, 0.8)
    assert row(sup.state(), channel="email").service_level is None  # nothing settled
    series = sup.state().series
    assert series.starts[0] == T0 - 10 * HOUR and len(series.starts) == 11
    assert series.service_level_phone[-1] == 0.5 and series.arrived[-1] == 2
    assert series.handled[-1] == 1 and series.depth[-1] >= 1
    assert series.wait_bins == (1, 0, 1, 0, 0, 0, 0)  # answered within 10 s, within 30 s
    assert series.response_bins == (0,) * 7 and len(series.wait_edges) == 6
    # The same figures as a report of the day folded from the log.
    assert sup.state().day_start == T0 - 10 * HOUR
    report = s.wait(Reports(s.store, s.store, s.clock).build(T0 - 10 * HOUR, T0 + HOUR))
    cell = report.figures.cell("queue_channel", "support/phone")
    assert (cell.counts["sl_met"], cell.counts["sl_total"]) == (phone.sl_met, phone.sl_total)


# ---------------------------------------------------------------- the throttle


def test_watchers_get_at_most_one_state_per_second_and_only_on_change():
    s, sup, _ = live_stack()
    heard = []
    first = sup.watch(heard.append)
    assert row(first).waiting == 0 and heard == []
    computed = sup.computed
    for _ in range(50):  # a burst of work within one second
        s.call()
        s.clock.advance(0.01)
    assert heard == [] and sup.computed == computed  # nothing computed per event
    s.advance(PUSH_INTERVAL_SECONDS)
    assert len(heard) == 1 and row(heard[0]).waiting == 50
    assert sup.computed == computed + 1 and sup.refreshes == 2  # start, then one tick
    # Nothing changes: no push, however long (timestamps, not ages, are sent).
    s.advance(3 * PUSH_INTERVAL_SECONDS)
    assert len(heard) == 1
    # A change of risk with time alone is pushed at the next tick.
    s.advance(PHONE_TARGET)
    assert len(heard) == 2 and row(heard[1]).overdue == 50
    sup.unwatch(heard.append)
    s.call()
    s.advance(5 * PUSH_INTERVAL_SECONDS)
    assert len(heard) == 2 and not sup.watched


def test_todays_figures_are_reread_at_least_every_few_seconds_while_watched():
    s, sup, _ = live_stack()
    sup.watch(lambda state: None)
    before = sup.refreshes
    s.advance(1)  # stale from the watch: re-read
    s.advance(1)
    s.advance(1)
    assert sup.refreshes == before + 1
    s.advance(sup.sl_refresh_seconds)
    assert sup.refreshes == before + 2


def test_a_failing_watcher_does_not_stop_the_others():
    s, sup, _ = live_stack()
    heard = []

    def broken(state):
        raise RuntimeError("boom")

    sup.watch(broken)
    sup.watch(heard.append)
    s.call()
    s.advance(1)
    assert len(heard) == 1


def test_bad_settings_are_refused():
    s = build_stack()
    with pytest.raises(InvalidValue):
        Supervision(s.router, s.clock, at_risk_share=1.5)


# ---------------------------------------------------------------- balancing


def audited(s, agent_id=None, task_id=None):
    """The stored events with the supervisor as actor."""
    if task_id is not None:
        return [e for e in s.events(task_id) if e.actor == SUP]
    return [e for e in s.store.agent_events if e.actor == SUP and e.agent_id == agent_id]


def test_moving_an_agent_to_another_queue_is_stored_audited_and_routed_at_once():
    s, sup, bal = live_stack()
    s.login("a1")
    bill = s.wait(s.intake.submit(Channel.EMAIL, "billing"))
    assert s.router.tasks[bill.id].state is TaskState.QUEUED
    out = s.wait(bal.configure_agent("boss", "a1", queues=["billing"],
                                     skills={"support": 6, "fr": 4}))
    assert [(o.task_id, o.agent_id) for o in out.offers] == [(bill.id, "a1")]
    (changed,) = audited(s, "a1")
    assert changed.kind == ev.AGENT_CHANGED
    assert changed.data["queues"] == ["billing"]  # the whole configuration: agent_config
    assert changed.data["skills"] == {"fr": 4, "support": 6}
    (stored,) = [a for a in s.wait(s.store.list_agents()) if a.id == "a1"]
    assert stored.queues == {"billing"} and stored.skills == {"support": 6, "fr": 4}
    assert agent_row(sup.state(), "a1").queues == ("billing",)
    assert isinstance(failure_of(bal.configure_agent("boss", "a1", queues=["nope"])).value,
                      UnknownQueue)
    assert isinstance(failure_of(bal.configure_agent("boss", "a1", skills={"x": 11})).value,
                      InvalidValue)
    assert isinstance(failure_of(bal.configure_agent("boss", "ghost", queues=[])).value,
                      UnknownAgent)
    assert s.router.agents["a1"].queues == {"billing"}


def test_signing_off_a_forgotten_session_gives_its_work_back():
    s, _, bal = live_stack()
    s.login("a1")
    s.login("a2")
    call = s.call()
    holder = s.router.offers[s.router.tasks[call.id].offer_id].agent_id
    s.wait(s.sessions.accept(holder, s.router.tasks[call.id].offer_id))
    s.wait(bal.set_presence("boss", holder, "offline"))
    assert s.router.agents[holder].status is Presence.OFFLINE
    status = [e for e in audited(s, holder) if e.kind == ev.AGENT_STATUS]
    assert status[-1].data["status"] == "offline"
    requeued = [e for e in audited(s, task_id=call.id) if e.kind == ev.TASK_REQUEUED]
    assert requeued and requeued[0].data["reason"] == "agent_offline"
    other = "a2" if holder == "a1" else "a1"
    assert s.router.tasks[call.id].agent_id == other  # offered to the other agent at once
    s.wait(bal.set_presence("boss", other, "break", "meeting"))
    assert s.router.agents[other].break_reason == "meeting"
    assert isinstance(failure_of(bal.set_presence("boss", other, "busy")).value, InvalidValue)
    assert isinstance(failure_of(bal.set_presence("boss", "ghost", "offline")).value,
                      UnknownAgent)


def test_priority_queue_agent_and_take_back_of_tasks():
    s, _, bal = live_stack()
    s.put_agent("b1", 0, queues=("billing",))
    first, second = s.call(), s.call()
    s.wait(bal.set_priority("boss", second.id, 7))
    (changed,) = audited(s, task_id=second.id)
    assert changed.data == {"priority": 7, "was": 0}
    s.login("a1")
    assert s.router.tasks[second.id].agent_id == "a1"  # served first now
    # Another queue: routed there afresh (b1 signs in and gets it).
    s.wait(bal.redirect("boss", first.id, queue="billing"))
    assert s.router.tasks[first.id].queue == "billing"
    s.login("b1")
    assert s.router.tasks[first.id].agent_id == "b1"
    # A named agent: the offer to a1 is withdrawn and a2 gets it.
    s.login("a2")
    s.wait(bal.redirect("boss", second.id, agent_id="a2"))
    task = s.router.tasks[second.id]
    assert (task.state, task.agent_id) == (TaskState.OFFERED, "a2")
    s.wait(s.sessions.accept("a2", task.offer_id))
    # Taken back from a2: never offered back to them; a1 is free and gets it.
    s.wait(bal.take_back("boss", second.id))
    assert s.router.tasks[second.id].agent_id == "a1"
    kinds = [e.kind for e in audited(s, task_id=second.id)]
    assert kinds == [ev.TASK_CHANGED, ev.OFFER_WITHDRAWN, ev.TASK_TRANSFERRED,
                     ev.TASK_REQUEUED]
    assert isinstance(failure_of(bal.take_back("boss", second.id)).value, IllegalTransition)
    assert isinstance(failure_of(bal.redirect("boss", second.id, agent_id="a3")).value,
                      NotEligible)  # a3 is offline
    assert isinstance(failure_of(bal.set_priority("boss", second.id, 101)).value,
                      InvalidValue)


def test_an_agent_keeps_status_and_work_when_moved():
    s, _, bal = live_stack()
    s.login("a1")
    call = s.call()
    s.wait(s.sessions.accept("a1", s.router.tasks[call.id].offer_id))
    s.wait(bal.configure_agent("boss", "a1", queues=["support", "billing"]))
    agent = s.router.agents["a1"]
    assert agent.status is Presence.AVAILABLE and call.id in agent.held
    assert agent.queues == {"support", "billing"} and agent.skills == {"support": 6}


class SlowToday:
    """Today's figures read from a log that answers later (the SQL store): the test fires."""

    def __init__(self, today) -> None:
        self.today = today
        self.pending = []

    def refresh(self):
        d = Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        while self.pending:
            self.pending.pop(0).callback(self.today.figures_now())


def test_a_slow_read_of_todays_figures_shows_at_the_next_tick_never_in_between():
    s, fast, _ = live_stack()
    s.login("a1")
    call = s.call()
    s.wait(s.sessions.accept("a1", s.router.tasks[call.id].offer_id))
    slow = SlowToday(fast.today)
    fast.today.figures_now = lambda: s.wait(fast.today.refresh())
    sup = Supervision(s.router, s.clock, slow)
    s.assignment.listen(sup.on_outcome)
    heard = []
    sup.watch(heard.append)
    s.advance(1)
    assert len(heard) == 1 and row(heard[0]).sl_total == 0  # the read is still out
    slow.answer()
    assert len(heard) == 1  # nothing pushed between ticks
    s.advance(1)
    assert len(heard) == 2 and row(heard[1]).sl_total == 1
    s.advance(1)
    assert len(heard) == 2 and len(slow.pending) == 0  # nothing stale: no read, no push


# ---------------------------------------------------------------- why tasks wait, and the lists


def test_a_task_nobody_signed_in_meets_the_expression_of_waits_for_that_reason():
    s, sup, _ = live_stack()
    s.put_queue(support_queue(expression="languages HAS task.language"))
    s.put_agent("a1", 6, attributes={"languages": ["en"]})
    s.login("a1")
    s.call(attributes={"language": "fr"})
    phone = row(sup.state())
    assert (phone.why, phone.hint) == ("skill_missing",
                                       'No agent signed in meets languages HAS "fr"')


def test_why_a_queue_s_tasks_wait_is_read_from_the_router():
    s, sup, _ = live_stack()  # a1, a2 (support 6) and a3 (support 2), all signed off
    s.call()
    phone = row(sup.state())
    assert (phone.why, phone.hint) == ("nobody_signed_in",
                                       "No agent signed in (3 members offline)")
    assert row(sup.state(), channel="email").why is None  # nothing waits there
    s.login("a3")  # signed in, but the call needs support >= 5
    phone = row(sup.state())
    assert phone.why == "skill_missing"
    assert phone.hint == "Skill missing: needs support ≥ 5 (best signed in: 2)"
    s.login("a1")  # a1 takes it (offered), then a second call finds a1 busy
    assert row(sup.state()).why == "offered"
    s.wait(s.sessions.accept("a1", s.last_offer("a1").id))
    s.call()
    phone = row(sup.state())
    assert (phone.why, phone.hint) == ("all_busy",
                                       "The one agent who could take it is occupied: 1 busy")
    s.login("a2")
    s.wait(s.sessions.reject("a2", s.last_offer("a2").id, "not now"))
    s.wait(s.sessions.set_status("a2", "break", "lunch"))
    assert row(sup.state()).hint == ("All 2 agents who could take it are occupied: 1 busy, "
                                     "1 on a break")
    # The escalation step (support >= 1 after 300 s) lets a3 take it: offered.
    s.advance(300)
    assert row(sup.state()).why == "offered"
    s.wait(s.intake.submit(Channel.EMAIL, "billing"))  # billing has no member at all
    assert row(sup.state(), "billing", "email").hint == "Nobody in billing takes e-mails"


def test_a_free_agent_who_declined_and_a_pull_queue():
    from dispatcher.domain.queues import Mode

    s, sup, _ = live_stack(agents=(("a1", 6),))
    s.login("a1")
    s.call()
    s.wait(s.sessions.reject("a1", s.last_offer("a1").id, "not mine"))
    assert (row(sup.state()).why, row(sup.state()).hint) == (
        "declined", "Declined by every agent free to take it")
    pulled, psup, _ = live_stack(agents=(("a1", 6),))
    pulled.put_queue(support_queue(mode=Mode.PULL))
    pulled.login("a1")
    pulled.call()
    assert (row(psup.state()).why, row(psup.state()).hint) == (
        "pull", "Pull queue: waits for an agent to pick it")


def test_oldest_tasks_per_queue_with_request_numbers_and_the_total():
    from dispatcher.service.mail import InboundMail, Mail

    s, sup, _ = live_stack()
    mail = Mail(s.assignment, s.store, s.clock, s.intake)
    for i in range(8):
        s.wait(mail.receive(InboundMail(
            raw=b"raw", queue="support", from_address=f"c{i}@customer.org",
            envelope_from=f"c{i}@customer.org", subject=f"Question {i}", text="?",
            message_id=f"q{i}@customer.org")))
        s.advance(60)
    s.call(identity=None, attributes={"caller": "+3225550100"})
    state = sup.state()
    email = row(state, channel="email")
    assert email.waiting == 8 and state.waiting_total == 9
    assert [(t.request, t.label) for t in email.oldest] == [
        (f"SB-{i:06d}", f"Question {i - 1}") for i in range(1, 6)]  # the five oldest
    assert [t.label for t in row(state).oldest] == ["+3225550100"]
    assert row(state).oldest[0].request == ""


def test_each_task_shows_its_latest_routing_decision_in_words_until_it_closes():
    s, sup, _ = live_stack()  # a1, a2 (support 6) and a3 (support 2), all signed off
    s.login("a1")
    s.login("a3")
    call = s.call()
    state = sup.state()
    (a1,) = [a for a in state.agents if a.id == "a1"]
    words = ("offered to a1 (longest idle of 1 available out of 2 eligible); passed over: a2 "
             "offline; a3: skill support 2 < 5")
    assert a1.offer is not None and a1.offer.id == call.id and a1.offer.decision == words
    assert [t.decision for t in state.waiting if t.id == call.id] == [words]
    s.wait(s.sessions.cancel(call.id, "test", "operator"))
    assert sup._decisions == {}  # dropped with the task: the map holds open tasks only
