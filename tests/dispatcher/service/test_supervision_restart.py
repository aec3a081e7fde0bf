"""Supervision across a restart, on SQLite and PostgreSQL: a day's work through the real services
(intake, offers accepted, rejected and expired, calls answered and abandoned, e-mails waiting
past their deadline, breaks, tasks completed) on a SqlStore, today's figures followed live as a
server does (refreshed as the work goes); then new services over the same database (a new
router restored from it, a new `Today` and `Supervision` that seed from the log as `serve`
does at start) must show the same figures and the same waiting tasks.

What a restart loses by design is not compared: agents' presence (not stored: everyone is
offline after a restart), hence the per-queue counts of agents by what they are doing.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain.metrics import DAY, HOUR, QueueTarget, Tally
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import Calls
from dispatcher.service.ports import StoredEvent
from dispatcher.service.recovery import Recovery
from dispatcher.service.reports import Today
from dispatcher.service.supervision import Supervision
from dispatcher.storage import schema
from dispatcher.storage import tables as tables
from dispatcher.storage.phones import MemoryPhones
from dispatcher.storage.queues import thd_list_queues
from dispatcher.storage.reports import SqlReportStore
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import T0, support_queue
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for

DAY_START = T0  # the day the figures are of; work starts an hour before it (the context)
WORK_FROM = T0 - HOUR


def _day_start(now: float) -> float:
    return DAY_START if now >= DAY_START else DAY_START - DAY


class Server:
    """One dispatcher process: the services over the database, today's figures and the live
    view on them, as `runtime/app.py` wires them."""

    def __init__(self, url: str, now: float, restore: bool) -> None:
        self.wiring, self.stack = sql_stack(url, start=now)
        s = self.stack
        if restore:
            calls = Calls(s.assignment, s.intake, MemoryPhones())
            s.wait(Recovery(s.assignment, calls, s.store).restore(s.wait(s.store.load_state())))
        self.events = SqlReportStore(url, self.wiring.reactor)
        self.events.start()
        self.today = Today(self.events, s.store, s.clock, HOUR, day_start=_day_start)
        self.supervision = Supervision(s.router, s.clock, self.today)
        s.assignment.listen(self.supervision.on_outcome)
        s.wait(self.supervision.start())

    def refresh(self) -> Any:
        """Today's figures read again, as the live view's ticks do while someone watches."""
        self.stack.wait(self.supervision.start())
        return self.supervision.figures

    def close(self) -> None:
        self.supervision.stop()
        self.events.stop()
        self.wiring.close()


def answer(s: Any, task_id: str | None = None) -> str:
    """The agent offered the task (or any offered task) accepts it; returns who."""
    task = (s.router.tasks[task_id] if task_id else
            next(t for t in s.router.tasks.values() if t.offer_id))
    agent_id = s.router.offers[task.offer_id].agent_id
    s.wait(s.sessions.accept(agent_id, task.offer_id))
    return agent_id


def a_day(server: Server) -> None:
    """A day's work, an hour of it before the day starts; everyone signs out at the end."""
    s = server.stack
    s.put_queue(support_queue())
    s.put_queue(Queue("billing"))
    for agent_id, level in (("a1", 6), ("a2", 6), ("a3", 6)):
        s.put_agent(agent_id, level)  # support only: billing's tasks wait
    # Before the day starts: waiting e-mails (one due within the day), a call answered.
    s.wait(s.intake.submit(Channel.EMAIL, "billing", deadline=T0 + 2 * HOUR,
                           attributes={"subject": "Where is my parcel?"}))
    s.wait(s.intake.submit(Channel.EMAIL, "billing", attributes={"subject": "Invoice"}))
    s.login("a1")
    s.call()
    s.advance(8)
    answer(s)
    s.advance(HOUR + 60)  # into the day; the call is still held
    server.refresh()
    held = next(t for t in s.router.tasks.values() if t.agent_id == "a1")
    s.wait(s.sessions.complete("a1", held.id, "sold"))
    for agent_id in ("a2", "a3"):
        s.login(agent_id)
    # Calls: answered quickly, answered late, an offer rejected, one expired, one abandoned.
    call = s.call()
    s.advance(5)
    holder = answer(s, call.id)
    s.advance(120)
    s.wait(s.sessions.complete(holder, call.id, "sold"))
    for agent_id in ("a1", "a2", "a3"):
        s.wait(s.sessions.set_status(agent_id, "break", "meeting"))
    call = s.call()
    s.advance(45)  # nobody free: answered late
    s.wait(s.sessions.set_status("a2", "available"))
    answer(s, call.id)
    s.advance(120)
    s.wait(s.sessions.complete("a2", call.id, "sold"))
    s.wait(s.sessions.set_status("a1", "available"))
    server.refresh()
    s.wait(s.sessions.set_status("a3", "break", "lunch"))
    call = s.call()
    offer = s.router.tasks[call.id].offer_id
    s.wait(s.sessions.reject(s.router.offers[offer].agent_id, offer, "busy"))
    s.advance(30)  # offered to the other free agent, who lets it expire
    server.refresh()
    waiting = s.call("billing")
    s.advance(3)
    s.wait(s.sessions.abandon(waiting.id))
    # E-mails of the day: one taken and completed, others left waiting (one past its due).
    s.wait(s.intake.submit(Channel.EMAIL, "support", deadline=T0 + HOUR + 600,
                           attributes={"subject": "Late"}))
    s.advance(60)
    for agent_id in ("a1", "a2", "a3"):
        s.wait(s.sessions.set_status(agent_id, "available"))
    s.advance(30)
    for task in list(s.router.tasks.values()):
        if task.offer_id:
            answer(s, task.id)
    s.advance(300)
    for task in list(s.router.tasks.values()):
        if task.state.value == "assigned":
            s.wait(s.sessions.complete(task.agent_id, task.id, "done"))
    server.refresh()
    for agent_id in ("a1", "a2", "a3"):
        s.wait(s.sessions.logout(agent_id))
    for i in range(3):  # arrivals nobody takes
        s.wait(s.intake.submit(Channel.EMAIL, "billing", attributes={"subject": f"Q{i}"}))
        s.call("support")
        s.advance(7)
    s.advance(HOUR)  # past the "Late" e-mail's deadline: overdue


def every_event(url: str, now: float) -> Any:
    """Today's figures from every event of both logs since the first, in time order (ties:
    task events first, then log order): the definition the reads must keep, whatever they
    leave out."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = [(r.at, 0, r.id, r) for r in conn.execute(sa.select(tables.task_events))]
            rows += [(r.at, 1, r.id, r) for r in conn.execute(sa.select(tables.agent_events))]
            queues = thd_list_queues(conn)
    finally:
        engine.dispose()
    tally = Tally(DAY_START, None, HOUR, {q.name: QueueTarget.from_queue(q) for q in queues})
    for _, _, _, r in sorted(rows, key=lambda x: x[:3]):
        tally.add(StoredEvent(r.id, r.kind, r.at, getattr(r, "task_id", None), r.agent_id,
                              r.actor, r.data))
    return tally.figures(now)


def figures_shown(server: Server, now: float) -> dict[str, Any]:
    """What supervisors see that a restart must keep (see the module docstring)."""
    state = server.supervision.state(now)
    queues = [(q.queue, q.channel, q.waiting, q.offered, q.oldest_arrival, q.oldest_deadline,
               q.next_due, q.at_risk, q.overdue, q.service_level, q.sl_met, q.sl_total,
               tuple(t.id for t in q.oldest), q.why)
              for q in state.queues]
    return {"day_start": state.day_start, "queues": queues, "series": state.series,
            "waiting": [(t.id, t.state, t.due, t.label) for t in state.waiting],
            "waiting_total": state.waiting_total}


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_figures_after_a_restart_equal_those_before(backend: str, request) -> None:
    url = url_for(backend, request)
    schema.upgrade(url)
    before = Server(url, WORK_FROM, restore=False)
    try:
        a_day(before)
        now = before.stack.clock.seconds()
        figures = before.refresh()
        shown = figures_shown(before, now)
    finally:
        before.close()
    after = Server(url, now, restore=True)
    try:
        again = after.supervision.figures
        # Every figure of the day, not only those the board shows, as folded live before the
        # restart, as seeded after it, and as every event of the log gives them.
        assert again.rows() == figures.rows()
        assert again.rows() == every_event(url, now).rows()
        assert figures_shown(after, now) == shown
        # The day had what the comparison needs to mean something.
        assert shown["waiting_total"] >= 6
        support_phone = next(q for q in shown["queues"] if q[:2] == ("support", "phone"))
        assert support_phone[11] >= 3 and 0 < support_phone[9] < 1  # met and missed calls
        assert any(q[8] for q in shown["queues"])  # an e-mail overdue
    finally:
        after.close()
