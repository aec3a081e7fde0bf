"""What `day_from_events` reads of a log and what `Tally` counts (dispatcher/runtime/
replay_day.py), on hand-made events; the whole replay is tests/dispatcher/runtime/
test_replay.py's."""

from __future__ import annotations

import itertools

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel
from dispatcher.runtime.replay_day import ACCEPTED, EXPIRED, REJECTED, Tally, day_from_events

START, END = 1_000_000.0, 1_000_000.0 + 8 * 3600


class Logged(Event):
    """An event with a log id, as read back from the log."""

    __slots__ = ("id",)


_ids = itertools.count(1)


def e(kind: str, at: float, task_id=None, agent_id=None, **data) -> Logged:
    out = Logged(kind, START + at, task_id, agent_id, data=data)
    out.id = next(_ids)
    return out


def created(at: float, task_id: str, channel: str = "phone", queue: str = "q", **more):
    return e(ev.TASK_CREATED, at, task_id, channel=channel, queue=queue, priority=0,
             deadline=more.get("deadline"), skills=more.get("skills", {"s": 1}))


CALL = [
    created(100, "t1"),
    e(ev.TASK_OFFERED, 100, "t1", "a1", offer_id="o1"),
    e(ev.OFFER_REJECTED, 104, "t1", "a1", offer_id="o1", reason="busy"),
    e(ev.TASK_OFFERED, 104, "t1", "a2", offer_id="o2"),
    e(ev.OFFER_EXPIRED, 124, "t1", "a2", offer_id="o2"),
    e(ev.TASK_OFFERED, 130, "t1", "a3", offer_id="o3"),
    e(ev.OFFER_ACCEPTED, 133, "t1", "a3", offer_id="o3"),
    e(ev.TASK_ASSIGNED, 133, "t1", "a3", via="offer"),
    e(ev.TASK_WRAP_UP, 333, "t1", "a3"),
    e(ev.TASK_COMPLETED, 353, "t1", "a3", disposition="solved"),
]
ABANDONED = [created(200, "t2"), e(ev.TASK_ABANDONED, 290, "t2", waited=90)]
MAIL = [created(300, "t3", "email", deadline=START + 7200),
        e(ev.TASK_ASSIGNED, 900, "t3", "a3", via="pick"),
        e(ev.TASK_COMPLETED, 1500, "t3", "a3", disposition="")]
EARLIER = [e(ev.TASK_CREATED, -50, "t0", channel="phone", queue="q"),
           e(ev.TASK_ASSIGNED, 10, "t0", "a1")]
PRESENCE = [e(ev.AGENT_STATUS, -600, None, "a3", status="available"),
            e(ev.AGENT_STATUS, 124, None, "a2", status="not_responding"),
            e(ev.AGENT_CHANNELS, 1000, None, "a3", channels=["email"]),
            e(ev.AGENT_STATUS, 1800, None, "a3", status="break", reason="lunch"),
            e(ev.AGENT_STATUS, 2400, None, "a3", status="available")]


def test_the_day_holds_arrivals_answers_work_patience_and_presence():
    day = day_from_events(START, END, [*EARLIER, *CALL, *ABANDONED, *MAIL], PRESENCE,
                          {"t1": {"caller": "+33", "wrap_up": {"until": 1}}})
    assert [a.task_id for a in day.arrivals] == ["t1", "t2", "t3"]  # t0 came before
    t1 = day.arrivals[0]
    assert (t1.channel, t1.queue, t1.skills, t1.attributes) == (
        Channel.PHONE, "q", {"s": 1}, {"caller": "+33"})
    assert day.arrivals[2].deadline == START + 7200
    assert [(a.kind, a.delay) for a in day.answers[("t1", "a1")]] == [(REJECTED, 4.0)]
    assert [(a.kind, a.delay) for a in day.answers[("t1", "a2")]] == [(EXPIRED, 20.0)]
    assert [(a.kind, a.delay) for a in day.answers[("t1", "a3")]] == [(ACCEPTED, 3.0)]
    assert day.answers[("t1", "a1")][0].reason == "busy"
    assert (day.work["t1"].handle, day.work["t1"].wrap) == (200.0, 20.0)
    assert (day.work["t3"].handle, day.work["t3"].wrap) == (600.0, None)
    assert day.picks["t3"][:2] == ("a3", 600.0)
    assert day.patience["t2"][0] == 90.0
    # Chosen statuses only (not_responding is the router's), the one before the start at it.
    assert [(p.agent_id, p.at - START, p.status, p.channels) for p in day.presence] == [
        ("a3", 0.0, "available", None), ("a3", 1000.0, None, ("email",)),
        ("a3", 1800.0, "break", None), ("a3", 2400.0, "available", None)]
    assert day.accept_delays() == {"a3": 3.0}
    assert day.handle_times()[("q", Channel.PHONE)] == 200.0
    assert day.handle_times()[("", Channel.EMAIL)] == 600.0


def test_the_tally_counts_answers_abandons_and_occupancy_within_the_period():
    tally = Tally(START, END)
    log = sorted([*EARLIER, *CALL, *ABANDONED, *MAIL, *PRESENCE], key=lambda x: x.at)
    for event in log:
        tally.fold(event)
    tally.close()
    assert set(tally.records) == {"t1", "t2", "t3"}
    assert tally.records["t1"].answered == START + 133 and tally.records["t1"].done == START + 353
    assert tally.records["t2"].abandoned and tally.records["t2"].answered is None
    assert tally.agent_of == {"t1": "a3", "t3": "a3"}
    a3 = tally.agents()["a3"]
    # Signed in and not on break: 0-1800 and 2400-END; working: 133-353 and 900-1500.
    staffed = 1800 + (END - START - 2400)
    assert a3["handled"] == 2 and a3["staffed_hours"] == pytest.approx(staffed / 3600)
    assert a3["occupancy"] == pytest.approx((220 + 600) / staffed)
    assert tally.agents()["a2"]["staffed_hours"] == pytest.approx((END - START - 124) / 3600)
