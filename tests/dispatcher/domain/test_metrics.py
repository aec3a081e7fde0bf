"""Metrics from a scripted day of events on a virtual clock; every expected value is computed by
hand in the comments next to it."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain import metrics as m
from dispatcher.domain.events import Event
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel

DAY0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def T(hh: int, mm: int = 0, ss: int = 0) -> float:  # noqa: N802 - reads as a clock time: T(9, 30)
    return DAY0 + hh * 3600 + mm * 60 + ss


TARGETS = {
    "sales": m.QueueTarget({"phone": 20.0, "email": 86_400.0}, 0.8, "sliding"),
    "support": m.QueueTarget({"phone": 30.0, "email": 4 * 3600.0}, 0.8, None),
}


class Script:
    """Builds events in time order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.n = 0

    def add(self, what, at, task=None, agent=None, actor=ev.SYSTEM, **data):
        self.events.append(Event(what, at, task, agent, actor, data))

    def email(self, task, at, deadline=None, queue="sales", ack=False):
        self.add(ev.TASK_CREATED, at, task, channel="email", queue=queue, deadline=deadline)
        self.add(m.EMAIL_RECEIVED, at, task, action="new")
        if ack:
            self.n += 1
            self.add(m.EMAIL_QUEUED, at, task, kind="ack", message=f"m{self.n}")
        self.add(ev.TASK_QUEUED, at, task, reason="new")

    def reply(self, task, at, agent="ann", mode=None):
        self.n += 1
        data = {"kind": "reply", "message": f"m{self.n}"}
        if mode:
            data["mode"] = mode
        self.add(m.EMAIL_QUEUED, at, task, None, ev.agent_actor(agent), **data)
        return f"m{self.n}"

    def call(self, task, at, queue="sales"):
        self.add(ev.TASK_CREATED, at, task, channel="phone", queue=queue, deadline=None)
        self.add(ev.TASK_QUEUED, at, task, reason="new")

    def status(self, agent, at, status):
        self.add(ev.AGENT_STATUS, at, None, agent, ev.agent_actor(agent), status=status)

    def take(self, task, agent, at):
        self.add(ev.OFFER_ACCEPTED, at, task, agent)
        self.add(ev.TASK_ASSIGNED, at, task, agent, via="offer")


def scripted_day() -> list[Event]:
    s = Script()
    s.status("ann", T(9), "available")
    s.status("bob", T(9), "available")
    # Five e-mails in "sales" (sliding deadlines) and one in "support" (no deadline).
    s.email("e1", T(9), deadline=T(13), ack=True)
    s.call("c1", T(9))
    s.add(ev.TASK_OFFERED, T(9), "c1", "bob")
    s.take("c1", "bob", T(9, 0, 10))  # answered after 10 s: within 20 s
    s.add(ev.TASK_COMPLETED, T(9, 5, 10), "c1", "bob")  # handled in 300 s
    s.email("e2", T(9, 10), deadline=T(13, 10), ack=True)
    s.add(ev.TASK_OFFERED, T(9, 20), "e1", "ann")
    s.take("e1", "ann", T(9, 20))
    s.reply("e1", T(9, 30))  # first answer after 1800 s, before its deadline
    s.call("c2", T(9, 30))
    s.add(ev.TASK_OFFERED, T(9, 30), "c2", "bob")
    s.add(ev.OFFER_EXPIRED, T(9, 30, 20), "c2", "bob")
    s.status("bob", T(9, 30, 20), "not_responding")
    s.status("bob", T(9, 30, 30), "available")
    s.add(ev.TASK_OFFERED, T(9, 30, 30), "c2", "bob")
    s.take("c2", "bob", T(9, 30, 35))  # answered after 35 s: late
    s.add(ev.TASK_COMPLETED, T(9, 40), "c2", "bob")  # handled in 565 s
    s.email("e3", T(10), deadline=T(11), ack=True)
    s.add(m.EMAIL_RECEIVED, T(10), "e1", action="joined")  # the customer writes again
    s.call("c3", T(10))
    s.add(ev.TASK_ABANDONED, T(10, 0, 45), "c3", waited=45)
    s.call("c4", T(10, 10))
    s.add(ev.TASK_ABANDONED, T(10, 10, 5), "c4", waited=5)
    s.reply("e1", T(10, 20))  # answers the 10:00 message after 1200 s
    s.add(ev.TASK_COMPLETED, T(10, 30), "e1", "ann")  # 2 in + 2 out; handled 09:20-10:30
    s.email("e4", T(10, 30), deadline=T(16, 30))
    s.reply("e4", T(10, 45), mode="suggested")  # 900 s
    s.email("e5", T(11), deadline=T(17))
    s.call("c5", T(11))
    s.add(ev.TASK_OFFERED, T(11), "c5", "ann")
    s.add(ev.OFFER_REJECTED, T(11, 0, 5), "c5", "ann")
    s.add(ev.TASK_OFFERED, T(11, 0, 6), "c5", "bob")
    s.take("c5", "bob", T(11, 0, 15))
    s.add(m.CALL_ANSWERED, T(11, 0, 15), "c5", agent_id="bob")  # same answer, not twice
    s.add(m.CALL_ENDED, T(11, 2, 15), "c5", by="customer", talk_seconds=120)
    s.add(ev.TASK_COMPLETED, T(11, 2, 30), "c5", "bob")  # handled 135 s
    s.take("e2", "ann", T(11))
    sent = s.reply("e2", T(11, 10))  # 7200 s, before 13:10
    s.add(m.EMAIL_SENT, T(11, 11), "e2", message=sent)
    s.add(ev.TASK_COMPLETED, T(11, 30), "e2", "ann")  # 1 in + 1 out; handled 1800 s
    s.status("ann", T(12), "break")
    s.status("bob", T(12), "offline")
    s.reply("e3", T(12))  # 7200 s, after its 11:00 deadline: missed (counted at 11:00)
    s.email("e6", T(12), queue="support")
    s.add(ev.TASK_CANCELLED, T(12, 30), "e6", reason="spam")  # closed without a reply
    s.status("ann", T(12, 30), "available")
    s.add(m.REPLY_REVIEWED, T(13), "e2", score=8, max_score=10, reviewer="sup", agent_id="ann")
    s.add(m.TASK_CATEGORISED, T(13), "e2", category="billing")
    s.add(m.EMAIL_REOPENED, T(14), "e4")  # the customer was not satisfied (suggested answer)
    s.add(m.EMAIL_RECEIVED, T(14), "e4", action="reopened")
    s.reply("e5", T(15))  # 14400 s, before 17:00
    s.status("ann", T(17), "offline")
    return s.events


START, END = T(8), T(18)


def tally(events, start=START, end=END, interval=m.HOUR, queue=None) -> m.Figures:
    t = m.Tally(start, end, interval, TARGETS, queue=queue)
    t.add_all(events)
    return t.figures()


def test_email_response_times_and_sla():
    f = tally(scripted_day())
    email = f.cell("channel", "email")
    # First answers: e1 1800, e2 7200, e3 7200, e4 900, e5 14400 -> avg 31500/5 = 6300.
    assert email.value("first_response_n") == 5
    assert email.value("first_response_avg") == pytest.approx(6300)
    assert email.value("first_response_min") == 900
    assert email.value("first_response_max") == 14400
    # Every answer adds e1's second one (1200 s): avg 32700/6 = 5450.
    assert email.value("response_n") == 6
    assert email.value("response_avg") == pytest.approx(5450)
    # Only e3 missed its deadline (e6 was cancelled before being due): 4 of 5.
    assert email.value("sl_total") == 5
    assert email.value("service_level") == pytest.approx(0.8)
    assert f.cell("deadline", "sliding").value("service_level") == pytest.approx(0.8)
    assert f.cell("deadline", "none").value("sl_total") is None  # nothing settled
    assert email.value("emails_received") == 8  # 6 new + e1 follow-up + e4 reopening
    assert email.value("email_requests") == 6
    assert email.value("acks") == 3
    assert email.value("ack_share") == pytest.approx(0.5)
    assert email.value("emails_sent") == 1
    assert email.value("replies") == 6
    assert email.value("closed_without_reply") == 1  # e6
    # Completed e-mails: e1 with 4 interactions, e2 with 2.
    assert email.value("interactions_avg") == pytest.approx(3)
    # Distribution of first answers: <=1 h: 1800, 900; <=4 h: 7200, 7200, 14400.
    assert email.value("first_response_le_3600") == 2
    assert email.value("first_response_le_14400") == 3


def test_calls_service_level_and_abandonment():
    f = tally(scripted_day())
    phone = f.cell("channel", "phone")
    assert phone.value("calls_offered") == 5
    assert phone.value("calls_answered") == 3  # c1, c2, c5 (c5 not counted twice)
    # Waits 10, 35, 15 s: avg 20.
    assert phone.value("answer_wait_avg") == pytest.approx(20)
    assert phone.value("answer_wait_min") == 10
    assert phone.value("answer_wait_max") == 35
    assert phone.value("calls_abandoned") == 2
    assert phone.value("abandon_wait_avg") == pytest.approx(25)  # (45 + 5) / 2
    assert phone.value("abandon_wait_max") == 45
    assert phone.value("abandon_rate") == pytest.approx(0.4)
    # Within 20 s: c1 and c5, out of 3 answered + 2 abandoned.
    assert phone.value("service_level") == pytest.approx(0.4)
    assert phone.value("talk_avg") == 120
    assert phone.value("ended_by:customer") == 1
    assert phone.value("answer_wait_le_10") == 1 and phone.value("answer_wait_le_20") == 1
    # Both channels of the queue together: (2 + 4) / (5 + 5).
    assert f.cell("queue", "sales").value("service_level") == pytest.approx(0.6)
    assert f.cell("all").value("service_level") == pytest.approx(0.6)
    assert f.cell("queue_channel", "sales/phone").value("service_level") == pytest.approx(0.4)


def test_by_interval():
    f = tally(scripted_day())
    assert len(f.buckets) == 10  # 08:00-18:00 by hour
    nine, ten, eleven = 1, 2, 3
    assert f.cell("channel", "phone", nine).value("calls_offered") == 2
    assert f.cell("channel", "phone", nine).value("service_level") == pytest.approx(0.5)
    assert f.cell("channel", "phone", ten).value("service_level") == 0  # both abandoned
    # 11:00-12:00: e2 answered in time, e3 counted missed at its 11:00 deadline.
    assert f.cell("channel", "email", eleven).value("service_level") == pytest.approx(0.5)
    assert f.cell("channel", "email", 7).value("sl_met") == 1  # e5 at 15:00
    # The intervals add up to the period.
    total = sum(f.cell("all", "", b).counts.get("sl_total", 0) for b in f.buckets)
    assert total == f.cell().value("sl_total") == 10


def test_agents():
    f = tally(scripted_day())
    ann = f.cell("agent", "ann")
    # Logged in 09:00-17:00 (28800 s) with a 30 min break; held e1 09:20-10:30 and e2
    # 11:00-11:30 (4200 + 1800 s); two tasks handled.
    assert ann.value("logged_in") == 28800
    assert ann.value("on_break") == 1800
    assert ann.value("occupied") == 6000
    assert ann.value("occupancy") == pytest.approx(6000 / 27000)
    assert ann.value("tasks_handled") == 2
    assert ann.value("tasks_per_hour") == pytest.approx(0.25)
    assert ann.value("handle_avg") == pytest.approx(3000)
    assert ann.value("offers_rejected") == 1
    assert ann.value("review_score_avg") == pytest.approx(80)
    assert ann.value("replies") == 6
    bob = f.cell("agent", "bob")
    # 09:00-12:00; held c1 300 s, c2 565 s, c5 135 s.
    assert bob.value("logged_in") == 10800
    assert bob.value("occupied") == 1000
    assert bob.value("handle_avg") == pytest.approx(1000 / 3)
    assert bob.value("offers_made") == 4 and bob.value("offers_accepted") == 3
    assert bob.value("offers_expired") == 1


def test_modes_reviews_categories():
    f = tally(scripted_day())
    c = f.cell()
    assert c.value("mode:suggested") == 1
    assert c.value("reopened:suggested") == 1
    assert c.value("reopen_rate:suggested") == 1.0
    assert c.value("review_score_avg") == pytest.approx(80)
    assert c.value("category:billing") == 1


def test_queue_filter():
    f = tally(scripted_day(), queue="support")
    c = f.cell()
    assert c.value("email_requests") == 1
    assert c.value("calls_offered") is None
    assert f.keys("queue") == ["support"]


def test_live_equals_report_at_end_of_day():
    events = scripted_day()
    live = m.Tally(T(8), None, m.HOUR, TARGETS)
    report = tally(events)
    for e in events:
        live.add(e)
    assert live.figures(T(18)).rows(intervals=False) == report.rows(intervals=False)


def test_snapshot_does_not_change_the_tally_and_counts_open_spans():
    events = scripted_day()
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    for e in events:
        if e.at > T(10):
            break
        t.add(e)
    # At 10:00 ann has been logged in for one hour and holds e1 since 09:20.
    first = t.figures(T(10)).cell("agent", "ann")
    assert first.value("logged_in") == 3600 and first.value("occupied") == 2400
    again = t.figures(T(10)).cell("agent", "ann")
    assert again.value("logged_in") == 3600
    # e3 is due at 11:00: at 11:30 with no answer it counts as missed in the snapshot only.
    assert t.figures(T(11, 30)).cell("channel", "email").value("overdue") == 1
    assert t.figures(T(10, 59)).cell("channel", "email").value("overdue") is None


def test_context_before_the_period_counts_nothing_but_sets_state():
    s = Script()
    s.status("ann", T(7), "available")
    s.email("old", T(7), deadline=T(9))
    s.take("old", "ann", T(7, 30))
    s.reply("old", T(8, 30))  # in the period: 5400 s after arrival, in time
    s.add(ev.TASK_COMPLETED, T(9), "old", "ann")
    f = tally(s.events)
    c = f.cell()
    assert c.value("email_requests") is None  # arrived before the period
    assert c.value("first_response_avg") == 5400
    assert c.value("service_level") == 1.0
    ann = f.cell("agent", "ann")
    assert ann.value("logged_in") == 10 * 3600  # the whole period, logged in before it began
    assert ann.value("occupied") == 3600  # 08:00-09:00 (held since 07:30)
    assert ann.value("handle_avg") == 5400


def test_depth_through_the_day():
    s = Script()
    s.call("a", T(8, 10))
    s.call("b", T(8, 20))
    s.take("a", "bob", T(9, 5))
    f = tally(s.events, end=T(11))
    depth = [f.cell("all", "", b).value("depth_end") for b in f.buckets]
    assert depth == [2, 1, 1]  # 08h ends with 2 waiting, 09h with 1, 10h inherits 1
    assert f.cell("all", "", 1).value("depth_max") == 2
    assert f.cell().value("depth_end") == 1 and f.cell().value("depth_max") == 2


def test_transfer_moves_the_task_to_the_new_queue():
    s = Script()
    s.call("a", T(9))
    s.take("a", "bob", T(9, 0, 5))
    s.add(ev.TASK_TRANSFERRED, T(9, 1), "a", "bob", from_agent="bob", from_queue="sales",
          to_queue="support")
    s.take("a", "cy", T(9, 2))
    s.add(ev.TASK_COMPLETED, T(9, 3), "a", "cy")
    f = tally(s.events)
    assert f.cell("queue", "support").value("tasks_handled") == 1
    assert f.cell("queue", "sales").value("calls_answered") == 1
    assert f.cell("agent", "bob").value("tasks_handled") is None
    assert f.cell("agent", "cy").value("handle_avg") == 60


def test_queue_target_from_queue():
    q = Queue("x", sl_target={Channel.PHONE: 15.0, Channel.EMAIL: 3600.0},
              deadline_rule="scheduled 12:00 +1")
    t = m.QueueTarget.from_queue(q)
    assert t.seconds("phone") == 15.0 and t.deadline_type == "scheduled"


def test_unknown_kinds_and_missing_tasks_are_ignored():
    t = m.Tally(T(8), T(9))
    t.add(Event("something.new", T(8, 1), "zz", data={"x": 1}))
    t.add(Event(ev.TASK_COMPLETED, T(8, 2), "unknown", "ann"))
    t.add(Event(m.EMAIL_QUEUED, T(8, 3), "unknown", data={"kind": "reply"}))
    assert t.figures().cell().value("service_level") is None


def test_bad_period():
    with pytest.raises(ValueError):
        m.Tally(T(9), T(8))
    with pytest.raises(ValueError):
        m.Tally(T(8), T(9), interval=0)


def test_a_snapshot_without_copies_gives_the_same_figures():
    t = m.Tally(START, END, m.HOUR, TARGETS)
    t.add_all(scripted_day())
    copied, shared = t.figures(), t.figures(copy=False)
    assert copied.rows() == shared.rows()
    assert t.figures().rows() == copied.rows()  # taking a snapshot changed nothing


def test_a_live_tally_counts_events_at_now_on_an_interval_boundary():
    t = m.Tally(START, None, m.HOUR, TARGETS)
    s = Script()
    s.call("a", T(10))  # exactly on a boundary, and exactly now
    t.add_all(s.events)
    f = t.figures(T(10))
    assert f.buckets == [0, 1, 2]
    assert f.cell().value("calls_offered") == 1


def test_sla_compliance_of_a_queue():
    f = tally(scripted_day())
    sales = f.cell("queue", "sales")
    assert sales.value("sl_target") == 0.8
    assert sales.value("sla_met") == 0.0  # 60 % over the day
    # Intervals with settled requests: 09h 2/3, 10h 1/3, 11h 2/3, 15h 1/1: one of four met.
    assert [f.cell("queue", "sales", b).value("sla_met") for b in f.buckets] == [
        None, 0.0, 0.0, 0.0, None, None, None, 1.0, None, None]
    assert sales.value("sla_compliance") == pytest.approx(0.25)
    # Calls only: 09h 1/2, 10h 0/2, 11h 1/1.
    assert f.cell("queue_channel", "sales/phone").value("sla_compliance") == pytest.approx(1 / 3)
    assert f.cell("channel", "phone").value("sla_met") is None  # queues only


def test_a_reminder_sets_a_task_aside_without_resolving_it():
    s = Script()
    s.email("r", T(9), deadline=T(17))
    s.take("r", "ann", T(9, 5))
    s.add(ev.TASK_COMPLETED, T(9, 10), "r", "ann", disposition=m.REMINDER_DISPOSITION)
    s.add(m.REMINDER_DUE, T(11), "r", "ann", reminder="x")
    s.add(ev.TASK_QUEUED, T(11), "r", reason="reminder")
    s.take("r", "ann", T(11, 5))
    s.reply("r", T(11, 10))
    s.add(ev.TASK_COMPLETED, T(11, 20), "r", "ann")
    cell = tally(s.events).cell("all", "all")
    assert cell.value("closed_without_reply") is None  # set aside, then answered
    assert cell.value("reopened") is None  # its return is not a customer's reopening
    assert cell.value("interactions_avg") == 2  # one message in, one answer out


def test_a_period_that_runs_into_the_future_stops_at_now():
    t = m.Tally(START, END, m.HOUR, TARGETS)  # 08:00-18:00, looked at 12:30
    t.add_all([e for e in scripted_day() if e.at < T(12, 30)])
    f = t.figures(T(12, 30))
    assert f.buckets == [0, 1, 2, 3, 4] and f.until == T(12, 30)  # 08h..12h; 13h-17h not yet
    ann = f.cell("agent", "ann")
    # Signed in 09:00, on a break from 12:00: 3.5 h, not up to 18:00.
    assert ann.value("logged_in") == 3.5 * 3600 and ann.value("on_break") == 1800
    # e5 (due 17:00) is not overdue at 12:30; e3 (due 11:00, answered 12:00) was missed.
    assert f.cell("channel", "email").value("overdue") == 1
    # Depth is not carried into the intervals that have not begun.
    assert f.cell("all", "", 5).value("depth_end") is None
    assert t.figures().buckets == list(range(10))  # with no `now`: the whole period
