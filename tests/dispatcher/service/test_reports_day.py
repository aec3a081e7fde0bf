"""A day of a small contact centre driven through the real service layer — `Mail` (e-mails in,
acknowledgements, replies, a reopened request), `Calls` (answered and abandoned calls),
`Sessions` (sign-ins, a break, a sign-off in the middle of the day), the real router and its
timers on a virtual clock — then `Reports.build` over the whole working day, asked for at 14:10
while the period runs to 20:00. No event is written by hand: the log is what the services
wrote. Every figure is worked out by hand in the comments next to it.

Run on the MemoryStore, and on SQLite and PostgreSQL (the SqlStore for the services, the
SqlReportStore reading the log as `switchboard report` does)."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import ensureDeferred

from admin.report_views import render
from dispatcher.domain.agents import Agent
from dispatcher.domain.metrics import HOUR
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import Calls, call_task_id
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.service.reports import Report, Reports
from dispatcher.storage import schema
from dispatcher.storage.phones import MemoryPhones
from dispatcher.storage.reports import SqlReportStore
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import T0, Stack, build_stack
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for

DAY = T0 - 10 * HOUR  # 2026-03-03 00:00 UTC (T0 is 10:00)
EMAIL_TARGET = 4 * HOUR  # the e-mail queue answers within 4 h (no deadline rule)
PHONE_TARGET = 20.0  # calls answered within 20 s
WRAP_UP = 60.0  # a call's wrap-up ends by itself after 60 s (agents complete sooner here)


def at(hh: int, mm: int = 0, ss: int = 0) -> float:
    return DAY + hh * HOUR + mm * 60 + ss


START, END, NOW = at(8), at(20), at(14, 10)  # the report: 08:00-20:00, asked for at 14:10


class Day:
    """The centre: queue "support" (e-mail) served by ann, "hotline" (phone) by bob."""

    def __init__(self, stack: Stack) -> None:
        self.s = stack
        self.mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
        self.calls = Calls(stack.assignment, stack.intake, MemoryPhones())
        stack.wait(self.calls.start())
        stack.put_queue(Queue("support", sl_target={Channel.EMAIL: EMAIL_TARGET,
                                                    Channel.PHONE: PHONE_TARGET},
                              wrap_up_seconds=WRAP_UP))
        stack.put_queue(Queue("hotline", sl_target={Channel.PHONE: PHONE_TARGET,
                                                    Channel.EMAIL: EMAIL_TARGET},
                              wrap_up_seconds=WRAP_UP))
        stack.wait(ensureDeferred(stack.configuration.change_agent(Agent("ann", queues={"support"},
                                                capacity={"email": 1}, channels={Channel.EMAIL}))))
        stack.wait(ensureDeferred(stack.configuration.change_agent(Agent("bob", queues={"hotline"},
                                                capacity={"phone": 1}, channels={Channel.PHONE}))))

    def to(self, t: float) -> None:
        """Move the clock to `t` (the timers due meanwhile fire and commit)."""
        now = self.s.clock.seconds()
        assert t >= now, "the script goes forward"
        self.s.advance(t - now)

    def email(self, sender: str, subject: str, message_id: str, **kw) -> str:
        got = self.s.wait(self.mail.receive(InboundMail(
            raw=b"raw", queue="support", from_address=sender, envelope_from=sender,
            subject=subject, text="Hello, ...", message_id=message_id, **kw)))
        self.s.settle()
        return got.task_id

    def take(self, agent: str, task_id: str) -> None:
        offer = self.s.last_offer(agent)
        assert offer.task_id == task_id
        self.s.wait(self.s.sessions.accept(agent, offer.id))

    def reply(self, agent: str, task_id: str) -> None:
        self.s.wait(self.mail.reply(task_id, agent, "Here is the answer."))

    def done(self, agent: str, task_id: str) -> None:
        self.s.wait(self.s.sessions.complete(agent, task_id))
        self.s.settle()

    def call(self, call_id: str, caller: str) -> str:
        task = self.s.wait(self.calls.arrived(call_id, caller, "hotline", source="cti"))
        self.s.settle()
        return task.id


def play(day: Day) -> dict[str, str]:
    """The day (times UTC). Returns the task ids by name."""
    s, ids = day.s, {}
    day.to(at(9))
    s.login("ann")
    s.login("bob")
    # e1: alice writes; acknowledged (ack 1); offered to ann at once, taken 30 s later.
    ids["e1"] = day.email("alice@customer.org", "Printer on fire", "m1@customer.org")
    day.to(at(9, 0, 30))
    day.take("ann", ids["e1"])
    day.to(at(9, 20))
    day.reply("ann", ids["e1"])  # first answer 1200 s after arrival
    day.to(at(9, 30))
    day.done("ann", ids["e1"])  # handled 09:00:30-09:30 = 1770 s
    # c1: answered by bob's phone after 5 s, talk 300 s, completed 30 s into the wrap-up.
    day.to(at(9, 40))
    ids["c1"] = day.call("c1@pbx", "+3225550101")
    day.to(at(9, 40, 5))
    s.wait(day.calls.answered("c1@pbx", "bob"))
    day.to(at(9, 45, 5))
    s.wait(day.calls.ended("c1@pbx", "customer"))
    day.to(at(9, 45, 35))
    day.done("bob", ids["c1"])  # handled 09:40:05-09:45:35 = 330 s
    # e2: alice again, another subject: a new request, not acknowledged again (one ack per
    # sender per day); ann takes it after 10 s.
    day.to(at(10))
    ids["e2"] = day.email("alice@customer.org", "Toner", "m2@customer.org")
    day.to(at(10, 0, 10))
    day.take("ann", ids["e2"])
    # e3: bernard (ack 2); ann is full (one e-mail at a time): it waits.
    day.to(at(10, 5))
    ids["e3"] = day.email("bernard@customer.org", "Invoice", "m3@customer.org")
    # c2: offered to bob, who lets the offer run out (20 s): not responding; the caller hangs
    # up after 60 s.
    day.to(at(10, 30))
    ids["c2"] = day.call("c2@pbx", "+3225550102")
    day.to(at(10, 31))
    s.wait(day.calls.abandoned("c2@pbx"))
    day.to(at(10, 35))
    s.wait(s.sessions.set_status("bob", "available"))
    # c3: answered after 15 s, talk 600 s; c4 arrives while bob talks and hangs up after 40 s.
    day.to(at(10, 40))
    ids["c3"] = day.call("c3@pbx", "+3225550103")
    day.to(at(10, 40, 15))
    s.wait(day.calls.answered("c3@pbx", "bob"))
    day.to(at(10, 45))
    ids["c4"] = day.call("c4@pbx", "+3225550104")
    day.to(at(10, 45, 40))
    s.wait(day.calls.abandoned("c4@pbx"))
    day.to(at(10, 50, 15))
    s.wait(day.calls.ended("c3@pbx", "agent"))
    day.to(at(10, 50, 45))
    day.done("bob", ids["c3"])  # handled 10:40:15-10:50:45 = 630 s
    # e2 answered and done; e3 is offered to ann then.
    day.to(at(11))
    day.reply("ann", ids["e2"])  # first answer after 3600 s
    day.to(at(11, 5))
    day.done("ann", ids["e2"])  # handled 10:00:10-11:05 = 3890 s
    day.to(at(11, 5, 20))
    day.take("ann", ids["e3"])
    # bob signs off in the middle of the day.
    day.to(at(11, 30))
    s.wait(s.sessions.logout("bob"))
    day.to(at(11, 45))
    day.reply("ann", ids["e3"])  # first answer after 6000 s (11:45 - 10:05)
    day.to(at(12))
    day.done("ann", ids["e3"])  # handled 11:05:20-12:00 = 3280 s
    # alice answers e1's reply: the completed request is reopened and goes back to ann.
    day.to(at(12, 30))
    reopened = day.email("alice@customer.org", "Re: Printer on fire [#SB-000001]",
                         "m4@customer.org", in_reply_to="m1@customer.org",
                         authenticated=True)  # her domain signs with DKIM
    assert reopened == ids["e1"]
    day.to(at(12, 30, 10))
    day.take("ann", ids["e1"])
    day.to(at(12, 50))
    day.reply("ann", ids["e1"])  # answers the 12:30 message after 1200 s (not a first answer)
    day.to(at(12, 55))
    day.done("ann", ids["e1"])  # handled 12:30:10-12:55 = 1490 s
    day.to(at(13))
    s.wait(s.sessions.set_status("ann", "break", "lunch"))
    day.to(at(13, 30))
    s.wait(s.sessions.set_status("ann", "available"))
    # e4: carol (ack 3); ann takes it and still holds it when the report is asked for.
    day.to(at(13, 40))
    ids["e4"] = day.email("carol@customer.org", "Delivery", "m5@customer.org")
    day.to(at(13, 40, 10))
    day.take("ann", ids["e4"])
    day.to(NOW)
    return ids


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.fixture(params=["memory", *SQL_BACKENDS])
def built(request) -> tuple[Report, dict[str, str]]:
    """The day played on a store, and the report of 08:00-20:00 built at 14:10."""
    if request.param == "memory":
        stack = build_stack(start=at(8))
        ids = play(Day(stack))
        report = stack.wait(Reports(stack.store, stack.store, stack.clock).build(
            START, END, HOUR))
        return report, ids
    url = url_for(request.param, request)
    schema.upgrade(url)
    w, stack = sql_stack(url, start=at(8))
    events = SqlReportStore(url, w.reactor)
    events.start()
    try:
        ids = play(Day(stack))
        stack.assignment.stop()
        report = w.wait(Reports(events, w.store, stack.clock).build(START, END, HOUR))
    finally:
        events.stop()
        w.close()
    return report, ids


def test_the_log_is_what_the_services_wrote(built):
    report, ids = built
    assert ids["c1"] == call_task_id("c1@pbx")
    # 8 tasks; per task: created, received/queued/... — at least one event each, and the
    # agents' statuses: the report read the services' own log.
    assert report.events > 8


def test_e_mail_figures_of_the_day(built):
    report, _ = built
    email = report.figures.cell("channel", "email").values()
    expected = {
        "tasks_arrived": 4,  # e1 e2 e3 e4
        "email_requests": 4,
        "emails_received": 5,  # e1 e2 e3 e4, and alice's answer that reopened e1
        "acks": 3,  # alice (e1), bernard (e3), carol (e4); e2 not: alice was acked today
        "ack_share": 0.75,  # 3 / 4
        "replies": 4,  # e1, e2, e3, e1 again
        "reopened": 1,  # e1 at 12:30
        "tasks_handled": 4,  # e1, e2, e3, e1 again (e4 is held at 14:10)
        "offers_made": 5,  # e1 e2 e3 e1 e4, all to ann
        "offers_accepted": 5,
        # First answers: e1 1200, e2 3600, e3 6000 -> avg 3600; all within the 4 h target.
        "first_response_n": 3, "first_response_avg": 3600.0,
        "first_response_min": 1200.0, "first_response_max": 6000.0,
        "first_response_le_3600": 2, "first_response_le_14400": 1,  # 1200, 3600 | 6000
        "first_response_le_28800": 0, "first_response_le_86400": 0,
        "first_response_le_172800": 0, "first_response_le_259200": 0,
        "first_response_gt_259200": 0,
        # Every answer: 1200, 3600, 6000 and e1's second, 1200 s after alice's 12:30 message:
        # 12000 / 4 = 3000.
        "response_n": 4, "response_avg": 3000.0, "response_min": 1200.0,
        "response_max": 6000.0,
        # Interactions when completed: e1 2 (1 in, 1 out), e2 2, e3 2, e1 again 4 (2 + 2).
        "interactions_n": 4, "interactions_avg": 2.5, "interactions_min": 2.0,
        "interactions_max": 4.0,
        # Handle: e1 1770, e2 3890, e3 3280, e1 again 1490 = 10430 / 4 = 2607.5.
        "handle_n": 4, "handle_avg": 2607.5, "handle_min": 1490.0, "handle_max": 3890.0,
        # Service level: the three first answers, all in time. e4 (due 17:40) is not overdue
        # at 14:10: its deadline has not happened yet.
        "sl_total": 3, "sl_met": 3, "service_level": 1.0,
        "abandon_rate": None,
        "depth_max": 1, "depth_end": 0,  # e3 waited 10:05-11:05:20; nothing waits at 14:10
    }
    assert email == expected


def test_phone_figures_of_the_day(built):
    report, _ = built
    phone = report.figures.cell("channel", "phone").values()
    expected = {
        "tasks_arrived": 4, "calls_offered": 4,  # c1 c2 c3 c4
        "calls_answered": 2,  # c1 after 5 s, c3 after 15 s
        "answer_wait_n": 2, "answer_wait_avg": 10.0, "answer_wait_min": 5.0,
        "answer_wait_max": 15.0,
        "answer_wait_le_10": 1, "answer_wait_le_20": 1, "answer_wait_le_30": 0,
        "answer_wait_le_60": 0, "answer_wait_le_120": 0, "answer_wait_le_300": 0,
        "answer_wait_gt_300": 0,
        "calls_abandoned": 2,  # c2 after 60 s, c4 after 40 s
        "abandon_wait_n": 2, "abandon_wait_avg": 50.0, "abandon_wait_min": 40.0,
        "abandon_wait_max": 60.0,
        "abandon_rate": 0.5,  # 2 / (2 + 2)
        "talk_n": 2, "talk_avg": 450.0, "talk_min": 300.0, "talk_max": 600.0,
        "ended_by:customer": 1, "ended_by:agent": 1,
        "tasks_handled": 2,  # c1, c3
        "handle_n": 2, "handle_avg": 480.0, "handle_min": 330.0, "handle_max": 630.0,
        "offers_made": 3, "offers_accepted": 2, "offers_expired": 1,  # c1 c3 | c2 (bob)
        # Service level: both answers within 20 s, both abandoned calls missed: 2 / 4.
        "sl_total": 4, "sl_met": 2, "service_level": 0.5,
        "ack_share": None,
        "depth_max": 1, "depth_end": 0,  # one call waiting at a time
    }
    assert phone == expected


def test_agents_figures_stop_at_now(built):
    report, _ = built
    ann = report.figures.cell("agent", "ann").values()
    # Signed in 09:00 and still at 14:10: 5 h 10 min = 18600 s (not 11 h to 20:00).
    # On a break 13:00-13:30: 1800 s. Holding a task: e1 1770, e2 3890, e3 3280, e1 again
    # 1490, e4 13:40:10-14:10 = 1790: 12220 s. Occupancy 12220 / (18600 - 1800) = 0.72738.
    # 4 tasks handled in 18600 s: 4 / 5.1667 h = 0.77419 per hour.
    assert ann == pytest.approx({
        "logged_in": 18600.0, "on_break": 1800.0, "occupied": 12220.0,
        "occupancy": 12220 / 16800, "tasks_handled": 4, "tasks_per_hour": 4 * 3600 / 18600,
        "handle_n": 4, "handle_avg": 2607.5, "handle_min": 1490.0, "handle_max": 3890.0,
        "offers_made": 5, "offers_accepted": 5, "replies": 4,
        "service_level": None, "ack_share": None, "abandon_rate": None,
    })
    bob = report.figures.cell("agent", "bob").values()
    # Signed in 09:00-11:30 (not responding 10:30:20-10:35 counts as signed in): 9000 s.
    # Holding a call: c1 330 + c3 630 = 960 s. 2 handled in 2.5 h: 0.8 per hour.
    assert bob == pytest.approx({
        "logged_in": 9000.0, "occupied": 960.0, "occupancy": 960 / 9000,
        "tasks_handled": 2, "tasks_per_hour": 0.8,
        "handle_n": 2, "handle_avg": 480.0, "handle_min": 330.0, "handle_max": 630.0,
        "talk_n": 2, "talk_avg": 450.0, "talk_min": 300.0, "talk_max": 600.0,
        "offers_made": 3, "offers_accepted": 2, "offers_expired": 1,
        "service_level": None, "ack_share": None, "abandon_rate": None,
    })


def test_the_whole_centre_and_its_queues(built):
    report, _ = built
    f = report.figures
    email = f.cell("channel", "email").values()
    phone = f.cell("channel", "phone").values()
    # The e-mail and the phone figures side by side (each worked out above), plus:
    assert f.cell().values() == pytest.approx({
        **{k: v for k, v in email.items() if k.startswith(("first_response", "response",
                                                              "interactions"))},
        **{k: v for k, v in phone.items() if k.startswith(("answer_wait", "abandon_wait",
                                                              "talk", "ended_by"))},
        "tasks_arrived": 8, "email_requests": 4, "calls_offered": 4, "emails_received": 5,
        "acks": 3, "replies": 4, "reopened": 1, "calls_answered": 2, "calls_abandoned": 2,
        "tasks_handled": 6,  # e1 twice, e2, e3; c1, c3
        "offers_made": 8, "offers_accepted": 7, "offers_expired": 1,
        # Handle: 1770 3890 3280 1490 330 630 = 11390 / 6.
        "handle_n": 6, "handle_avg": 11390 / 6, "handle_min": 330.0, "handle_max": 3890.0,
        "sl_total": 7, "sl_met": 5, "service_level": 5 / 7,  # 3 + 4 settled; 3 + 2 met
        "ack_share": 0.75, "abandon_rate": 0.5,
        # At most two waiting at once per hour, summed over the queues (an upper bound):
        # 09h e1 then c1, 10h e3 with c2; nothing at 14:10.
        "depth_max": 2, "depth_end": 0,
    })
    # SLA: support answered 3 of 3 in time (09h 1/1, 11h 2/2): met, both intervals met.
    support = f.cell("queue", "support").values()
    assert (support["sla_met"], support["sla_compliance"], support["sl_target"]) == (1, 1.0, 0.8)
    assert support["acks"] == 3 and support == {**email, "sl_target": 0.8, "sla_met": 1,
                                                "sla_compliance": 1.0}
    # hotline: 2 of 4 (09h c1 1/1 met; 10h c2 missed, c3 met, c4 missed: 1/3): not met, one
    # interval of two.
    hotline = f.cell("queue", "hotline").values()
    assert (hotline["sla_met"], hotline["sla_compliance"]) == (0, 0.5)


def test_the_intervals_stop_at_now(built):
    report, _ = built
    f = report.figures
    # Intervals 08h..14h: the one holding 14:10 is the last; 15h-19h have not begun.
    assert f.buckets == list(range(7))
    assert report.until == NOW and report.end == END
    doc = json.loads(render(report, "json"))
    assert [i["from"][11:16] for i in doc["intervals"]] == [
        "08:00", "09:00", "10:00", "11:00", "12:00", "13:00", "14:00"]
    assert doc["report"]["until_epoch"] == NOW
    by_hour = [(f.cell("all", "", b).value("tasks_arrived"),
                f.cell("all", "", b).value("depth_end")) for b in f.buckets]
    # 08h nothing; 09h e1 c1; 10h e2 e3 c2 c3 c4 (e3 waits at 11:00); 11h-12h none (12:30 is a
    # reopening, not an arrival); 13h e4; 14h none.
    assert by_hour == [(None, None), (2, 0), (5, 1), (None, 0), (None, 0), (1, 0), (None, 0)]
    text = render(report, "text")
    assert "counted up to 2026-03-03T14:10:00+00:00" in text
    assert "2026-03-03 15:00" not in text  # no row for an interval that has not begun
