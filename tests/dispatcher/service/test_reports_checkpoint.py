"""Today's figures resumed from a checkpoint equal a fold of the whole day, figure by figure, on
SQLite and PostgreSQL: the day's work of test_supervision_restart through the real services on
a SqlStore, today's figures followed live and checkpointed in the middle of the day (a call
held across the checkpoint and completed after it, offers rejected and expired after it, agents
on a break across it), more work after the checkpoint — with events the checkpoint folded in the
overlap window the resumed read starts from (read again, not counted twice) and one committed
late, out of id order, with a time inside the window — then the process stops without saving again (a crash) and a new `Today` over the
same database loads the checkpoint and folds the rest.

Its figures must equal those of a `Today` that folds the whole day (no checkpoint) and those of
every event of the log folded in order (test_supervision_restart.every_event). A checkpoint of
yesterday, of another format, unreadable, or saved before the log changed under it (an event
written afterwards with a time before the overlap window) is ignored: the day is folded in
full, with the same figures. The MemoryStore keeps checkpoints too (the last test)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.metrics import HOUR
from dispatcher.domain.tasks import Channel
from dispatcher.service.reports import CHECKPOINT_NAME, Today
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.reports import SqlReportStore
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import build_stack, support_queue
from tests.dispatcher.service.test_supervision_restart import (
    DAY_START,
    WORK_FROM,
    _day_start,
    a_day,
    every_event,
)
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for


class Server:
    """One dispatcher process as far as today's figures go: the services over the database,
    and a `Today` with checkpoints on, read at each `refresh()` of the day's script;
    `checkpoint_at` says after which of those reads (1 = the first) a checkpoint is saved."""

    def __init__(self, url: str, now: float, checkpoint_at: tuple[int, ...] = (),
                 checkpoint_seconds: float = 60.0) -> None:
        self.url = url
        self.wiring, self.stack = sql_stack(url, start=now)
        self.events = SqlReportStore(url, self.wiring.reactor)
        self.events.start()
        self.today = self.new_today(checkpoint_seconds)
        self.checkpoint_at = checkpoint_at
        self.reads = 0
        self.saved: list[int] = []

    def new_today(self, checkpoint_seconds: float = 60.0) -> Today:
        return Today(self.events, self.stack.store, self.stack.clock, HOUR,
                     day_start=_day_start, checkpoint_seconds=checkpoint_seconds)

    def refresh(self) -> Any:
        figures = self.stack.wait(self.today.refresh())
        self.reads += 1
        if self.reads in self.checkpoint_at:
            self.saved.append(self.stack.wait(self.today.checkpoint()))
        return figures

    def close(self) -> None:
        self.events.stop()
        self.wiring.close()


def late_event(url: str, at: float, task_id: str, kind: str = ev.OFFER_REJECTED) -> None:
    """An event committed after the others with an earlier time (a commit of the batch before,
    landing late): a higher id, an older `at`."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(t.task_events.insert().values(
                kind=kind, at=at, task_id=task_id, agent_id="a2", actor="agent:a2",
                data={"offer_id": "late", "reason": "busy"}))
    finally:
        engine.dispose()


def restarted(url: str, now: float) -> tuple[Any, str | None, Any]:
    """A new process's figures from the checkpoint (and why it did not resume, if it did not),
    and the figures of a `Today` that folds the whole day, both at `now`."""
    server = Server(url, now)
    try:
        figures = server.stack.wait(server.today.refresh())
        full = server.stack.wait(server.new_today(checkpoint_seconds=0).refresh())
        return figures, server.today.resumed, full
    finally:
        server.close()


def assert_same(figures: Any, full: Any, url: str, now: float) -> None:
    rows = figures.rows()
    assert rows == full.rows()
    assert rows == every_event(url, now).rows()
    assert figures.events == full.events
    assert len(rows) > 100


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.mark.parametrize("backend", SQL_BACKENDS)
@pytest.mark.parametrize("checkpoint_at", [(1,), (3, 5)])
def test_resumed_from_a_checkpoint_mid_day_the_figures_are_a_full_folds(
        backend: str, checkpoint_at: tuple[int, ...], request) -> None:
    url = url_for(backend, request)
    schema.upgrade(url)
    before = Server(url, WORK_FROM, checkpoint_at)
    try:
        a_day(before)  # its first read is at 01:01 of the day, while a1 holds a call
        s = before.stack
        figures = before.refresh()
        last_at = before.today.tally.last_at
        # After the last read: more work, and a commit landing late (a higher id, a time
        # inside the overlap window the next read starts from, beside events it folded).
        s.wait(s.intake.submit(Channel.EMAIL, "support", attributes={"subject": "Same time"}))
        s.call("billing")
        task_id = next(iter(s.router.tasks))
        now = s.clock.seconds()
    finally:
        before.close()
    assert before.saved and all(n > 500 for n in before.saved)
    late_event(url, last_at - 3, task_id)
    again, resumed, full = restarted(url, now)
    assert resumed == "checkpoint"
    assert_same(again, full, url, now)
    assert again.rows() != figures.rows()  # what came after the checkpoint is counted
    assert again.cell().value("offers_rejected") == figures.cell().value("offers_rejected") + 1


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_checkpoint_saved_at_stop_leaves_nothing_to_fold_but_the_overlap(
        backend: str, request) -> None:
    url = url_for(backend, request)
    schema.upgrade(url)
    before = Server(url, WORK_FROM)
    try:
        a_day(before)
        before.today.start()
        now = before.stack.clock.seconds()
        before.stack.wait(before.today.stop())
    finally:
        before.close()
    assert before.today.saved_bytes > 500
    again, resumed, full = restarted(url, now)
    assert resumed == "checkpoint"
    assert_same(again, full, url, now)


def checkpoint_row(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(t.report_checkpoints)).one()._mapping)
    finally:
        engine.dispose()


def rewrite(url: str, **values: Any) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(t.report_checkpoints.update()
                         .where(t.report_checkpoints.c.name == CHECKPOINT_NAME).values(**values))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_checkpoint_that_cannot_be_resumed_from_is_ignored(backend: str, request,
                                                            caplog) -> None:
    url = url_for(backend, request)
    schema.upgrade(url)
    before = Server(url, WORK_FROM)
    s = before.stack

    def check(expected: str) -> None:
        caplog.clear()
        with caplog.at_level("INFO", logger="dispatcher.service.reports"):
            again, resumed, full = restarted(url, now)
        assert resumed is not None and resumed.startswith(expected)
        if expected != "checkpoint":
            assert caplog.text.count("checkpoint ignored") == 1
            assert f"checkpoint ignored ({expected}" in caplog.text
        assert_same(again, full, url, now)

    try:
        before.refresh()  # read and saved before the day began: yesterday's
        assert before.today.tally.start == DAY_START - 86_400
        assert s.wait(before.today.checkpoint()) > 0
        a_day(before)
        now = s.clock.seconds()
        task_id = next(iter(s.router.tasks))
        check("other day")
        assert s.wait(before.today.checkpoint()) > 500  # today's, as it stands
        row = checkpoint_row(url)
        check("checkpoint")
        rewrite(url, version=1)  # of an older release
        check("other version")
        text = row["data"]
        rewrite(url, version=row["version"], data=text[: len(text) // 2])  # cut short
        check("unreadable")
        rewrite(url, data=text.replace('"tasks":[[', '"tasks":[[1,', 1))  # not a tally
        check("unreadable")
        rewrite(url, data=text)
        late_event(url, DAY_START + 120, task_id)  # after the checkpoint, long before it
        check("log changed")
    finally:
        before.close()


def test_the_memory_store_keeps_checkpoints() -> None:
    s = build_stack(start=DAY_START + 60)
    s.put_queue(support_queue())
    s.put_agent("a1", 6)
    s.login("a1")
    call = s.call()
    s.advance(10)
    s.wait(s.sessions.accept("a1", s.router.tasks[call.id].offer_id))

    def today(seconds: float = 60.0) -> Today:
        return Today(s.store, s.store, s.clock, HOUR, day_start=_day_start,
                     checkpoint_seconds=seconds)

    live = today()
    live.start()
    s.wait(live.refresh())
    s.advance(60)  # the loop saves a checkpoint while a1 holds the call
    assert live.saved_bytes > 0
    s.advance(20)
    s.wait(s.sessions.complete("a1", call.id, "sold"))  # after the checkpoint
    s.call()
    resumed = today()
    figures = s.wait(resumed.refresh())
    assert resumed.resumed == "checkpoint"
    full = s.wait(today(0).refresh())
    assert figures.rows() == full.rows() and figures.events == full.events
    assert figures.cell().value("calls_offered") == 2
    assert figures.cell().value("tasks_handled") == 1
    s.wait(live.stop())
