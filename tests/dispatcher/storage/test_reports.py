"""The contract of `ports.ReportStore.fold_events`, on `MemoryStore`, `SqlReportStore` on SQLite
and on PostgreSQL: the context before the period, the period in time order from both logs,
chunks that are never the whole log at once. The SQL store reads only what the figures read
(`FOLDED` kinds, `DATA_KINDS`' data, `STATE_KINDS` in the context); the memory store gives every
event, so the order is compared on the folded kinds; the sets are held against `metrics.Tally`
here, and tests/dispatcher/service/test_supervision_restart.py compares the figures with those
of every event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.ports import Changes
from dispatcher.storage import reports as sql_reports
from dispatcher.storage.memory import MemoryStore
from dispatcher.storage.reports import SqlReportStore
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0
START, END = T0, T0 + 3600


@dataclass
class Both:
    store: Any  # the Store that writes
    reports: Any  # the ReportStore that reads
    wait: Any


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request) -> Iterator[Both]:
    if request.param == "memory":
        store = MemoryStore()
        yield Both(store, store, fired)
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    reports = SqlReportStore(url, w.reactor)
    reports.start()
    yield Both(w.store, reports, w.wait)
    reports.stop()
    w.close()


def task(task_id: str, at: float, state: TaskState = TaskState.QUEUED) -> Task:
    t = Task(id=task_id, channel=Channel.PHONE, queue="q", customer_id=None, created_at=at)
    t.state = state
    t.updated_at = at
    return t


def created(t: Task) -> list[Event]:
    return [Event(ev.TASK_CREATED, t.created_at, t.id, data={"channel": "phone", "queue": "q"}),
            Event(ev.TASK_QUEUED, t.created_at, t.id, data={"reason": "new"})]


def status(agent: str, at: float, value: str) -> Event:
    return Event(ev.AGENT_STATUS, at, None, agent, ev.agent_actor(agent), {"status": value})


def scenario(b: Both) -> None:
    s = b.store
    b.wait(s.record(Changes(events=[status("ann", T0 - 500, "available"),
                                    status("ann", T0 - 400, "break"),
                                    status("bob", T0 - 300, "offline")])))
    closed = task("closed", T0 - 200)
    b.wait(s.create_task(closed, None, "", created(closed)))
    closed.state, closed.updated_at = TaskState.ABANDONED, T0 - 150
    b.wait(s.record(Changes(tasks=[closed], events=[
        Event(ev.TASK_ABANDONED, T0 - 150, "closed", data={"waited": 50})])))
    waiting = task("waiting", T0 - 100)
    b.wait(s.create_task(waiting, None, "", created(waiting)))
    done = task("done", T0 - 90)
    b.wait(s.create_task(done, None, "", created(done)))
    done.state, done.updated_at, done.agent_id = TaskState.ASSIGNED, T0 - 50, "ann"
    b.wait(s.record(Changes(tasks=[done], events=[
        Event(ev.TASK_ASSIGNED, T0 - 50, "done", "ann", data={"via": "offer"})])))
    fresh = task("fresh", T0 + 5)
    b.wait(s.create_task(fresh, None, "", created(fresh)))
    done.state, done.updated_at = TaskState.COMPLETED, T0 + 10
    b.wait(s.record(Changes(tasks=[done], events=[
        Event(ev.TASK_COMPLETED, T0 + 10, "done", "ann", data={"disposition": "ok"}),
        status("cy", T0 + 10, "available"),
        status("cy", END, "offline"),  # at the end: outside the period
        Event(ev.TASK_CHANGED, END - 1, "waiting", data={"priority": 5})])))


def fold(b: Both, start=START, end=END) -> tuple[list[list[tuple]], int, list]:
    chunks: list[list[tuple]] = []
    seen: list[tuple[int, int]] = []

    def sink(rows):
        chunks.append([(r.kind, r.at, r.task_id, r.agent_id, dict(r.data)) for r in rows])

    n = b.wait(b.reports.fold_events(start, end, sink, lambda done, total: seen.append(
        (done, total))))
    return chunks, n, seen


def test_context_then_period_in_time_order(both: Both) -> None:
    scenario(both)
    chunks, n, progress = fold(both)
    rows = [r for c in chunks for r in c]
    got = [(k, at - T0, task_id, agent) for k, at, task_id, agent, _ in rows]
    assert [g for g in got if g[0] in sql_reports.FOLDED] == [
        # context: each agent's last status, the earlier events of tasks open at the start
        (ev.AGENT_STATUS, -400, None, "ann"),
        (ev.AGENT_STATUS, -300, None, "bob"),
        (ev.TASK_CREATED, -100, "waiting", None),
        (ev.TASK_CREATED, -90, "done", None),
        (ev.TASK_ASSIGNED, -50, "done", "ann"),
        # the period, both logs merged (ties: task events first)
        (ev.TASK_CREATED, 5, "fresh", None),
        (ev.TASK_COMPLETED, 10, "done", "ann"),
        (ev.AGENT_STATUS, 10, None, "cy"),
        (ev.TASK_CHANGED, 3599, "waiting", None),
    ]
    assert rows[0][4] == {"status": "break"}
    assert n == len([g for g in got if g[1] >= 0]) >= 4  # the period's events given
    assert progress[-1] == (n, n)


def test_the_context_is_streamed_in_chunks_in_the_same_order(both: Both, monkeypatch) -> None:
    """The events before the period come in chunks of CHUNK task events (each with the agent
    statuses of its time span), not in one list, and in the order of one list: a restart with
    many open tasks reads several events of each."""
    scenario(both)
    whole, _, _ = fold(both)
    monkeypatch.setattr(sql_reports, "CHUNK", 1)
    chunked, _, _ = fold(both)
    assert [r for c in chunked for r in c] == [r for c in whole for r in c]
    if isinstance(both.reports, SqlReportStore):
        context = [c for c in chunked if all(r[1] < START for r in c)]
        # three task events of the context, one a chunk; the agents' statuses joined the
        # first one's chunk (their times come before it)
        assert [len(c) for c in context] == [3, 1, 1]


def test_sql_reads_only_what_the_figures_read(sqlite_url) -> None:
    from dispatcher.storage import schema

    schema.upgrade(sqlite_url)
    w = wire(sqlite_url)
    reports = SqlReportStore(sqlite_url, w.reactor)
    reports.start()
    try:
        b = Both(w.store, reports, w.wait)
        scenario(b)
        w.wait(w.store.record(Changes(events=[
            Event(ev.TASK_OFFERED, T0 + 20, "fresh", "ann", data={"explanation": "long"}),
            Event(ev.TASK_NOTE, T0 + 21, "fresh", data={"text": "not a figure"})])))
        chunks, n, _ = fold(b)
        rows = [r for c in chunks for r in c]
        assert {k for k, *_ in rows} <= sql_reports.FOLDED
        assert n == 5  # created, completed, cy's status, offered, changed
        assert [d for k, *_, d in rows if k == ev.TASK_OFFERED] == [{}]  # data not read
        assert [d for k, *_, d in rows if k == ev.TASK_COMPLETED] == [{"disposition": "ok"}]
    finally:
        reports.stop()
        w.close()


class _Unread(dict):
    """Event data that no fold may read."""

    def get(self, *_: Any) -> Any:
        raise AssertionError("read")

    __getitem__ = get


def test_the_kind_sets_match_the_tally() -> None:
    """FOLDED is what the tally folds; a kind outside DATA_KINDS is folded without its data;
    a kind outside STATE_KINDS, before the period, leaves what the tally knows unchanged."""
    from dispatcher.domain import metrics

    assert set(metrics._FOLDS) == sql_reports.FOLDED
    assert sql_reports.DATA_KINDS <= sql_reports.FOLDED
    assert sql_reports.STATE_KINDS <= sql_reports.FOLDED

    def tally(start: float) -> metrics.Tally:
        t = metrics.Tally(start, None, 3600.0)
        for kind, data in ((ev.TASK_CREATED, {"channel": "email", "queue": "q"}),
                           (ev.AGENT_STATUS, {"status": "available"}),
                           (ev.TASK_ASSIGNED, {"agent_id": "ann"})):
            t.add(Event(kind, T0 - 10, "t", "ann", data=data))
        return t

    def known(t: metrics.Tally) -> tuple:
        task, agent = t.tasks["t"], t.agents["ann"]
        return (tuple(getattr(task, a) for a in task.__slots__),
                tuple(getattr(agent, a) for a in agent.__slots__), dict(t.depth))

    for kind in sql_reports.FOLDED - sql_reports.DATA_KINDS:
        t = tally(T0 - 100)
        t.add(Event(kind, T0 - 5, "t", "ann", data=_Unread()))
    for kind in sql_reports.FOLDED - sql_reports.STATE_KINDS - {ev.AGENT_STATUS}:
        t = tally(T0)
        before = known(t)
        t.add(Event(kind, T0 - 5, "t", "ann", data={"talk_seconds": 5, "score": 1,
                                                     "max_score": 2, "category": "c"}))
        assert known(t) == before, kind


def test_an_empty_period(both: Both) -> None:
    scenario(both)
    chunks, n, progress = fold(both, END + 100, END + 200)
    rows = [r for c in chunks for r in c]
    assert n == 0 and progress[-1] == (0, 0)
    # Context only: the last statuses (cy went offline) and the tasks still waiting.
    assert [(k, t) for k, _, t, _, _ in rows
            if k != ev.AGENT_STATUS and k in sql_reports.FOLDED] == [
        (ev.TASK_CREATED, "waiting"), (ev.TASK_CREATED, "fresh"), (ev.TASK_CHANGED, "waiting")]
    assert {a: d["status"] for k, _, _, a, d in rows if k == ev.AGENT_STATUS} == {
        "ann": "break", "bob": "offline", "cy": "offline"}


def test_sql_streams_in_chunks(sqlite_url, monkeypatch) -> None:
    from dispatcher.storage import schema

    schema.upgrade(sqlite_url)
    w = wire(sqlite_url)
    try:
        events = [Event(ev.TASK_CHANGED, T0 + i, f"t{i % 7}", data={"i": i}) for i in range(25)]
        events += [status("ann", T0 + i + 0.5, "available") for i in range(0, 25, 5)]
        w.wait(w.store.record(Changes(events=events)))
        monkeypatch.setattr(sql_reports, "CHUNK", 4)
        reports = SqlReportStore(sqlite_url, w.reactor)
        reports.start()
        sizes: list[int] = []
        ats: list[float] = []

        def sink(rows):
            sizes.append(len(rows))
            ats.extend(r.at for r in rows)

        assert reports.fold_events_now(T0, T0 + 100, sink) == 30
        reports.stop()
        # Chunks of 4 task events, each with the agent events of its time span (at most one
        # here): never the whole log at once.
        assert max(sizes) <= 5 and len(sizes) >= 7 and sum(sizes) == 30
        assert ats == sorted(ats)
    finally:
        w.close()


def test_without_context(both: Both) -> None:
    scenario(both)
    chunks: list = []
    n = both.wait(both.reports.fold_events(START, END, lambda rows: chunks.extend(
        (r.id, r.kind, r.task_id) for r in rows), None, False))
    assert n == len(chunks) >= 4  # the period only (the memory store gives task.queued too)
    assert len({(i, t is None) for i, _, t in chunks}) == n  # ids name one event per log


def test_merging_the_two_logs_chunk_by_chunk():
    from dispatcher.storage.reports import LogEvent, _merged

    def evs(log, *ats):
        return [LogEvent(i, log, at, "t" if log == "task" else None, None, "system", "{}")
                for i, at in enumerate(ats)]

    tasks = [evs("task", 1, 2, 3), evs("task", 3, 5), [], evs("task", 9)]
    agents = [evs("agent", 0, 3, 4), evs("agent", 4, 10, 11)]
    got = [[(e.kind, e.at) for e in c] for c in _merged(iter(tasks), iter(agents))]
    flat = [x for c in got for x in c]
    assert [at for _, at in flat] == [0, 1, 2, 3, 3, 3, 4, 4, 5, 9, 10, 11]
    # Ties: task events first, also across chunks (the agent event at 3 waits for the next).
    assert flat[3:6] == [("task", 3), ("task", 3), ("agent", 3)]
    assert got[0] == [("agent", 0), ("task", 1), ("task", 2), ("task", 3)]
    assert list(_merged(iter([]), iter(agents))) == agents


def test_a_read_event_shares_its_task_id_and_short_values():
    """A tally keeps a task's id and some short values (queue, channel) for every task it
    follows: read events give one string for equal ones, the loaded tasks' ids included."""
    from dispatcher.storage.reports import SHARED_VALUE_CHARS, LogEvent
    from dispatcher.storage.rows import TASK_COLUMNS, task_from_values

    def fresh(text: str) -> str:
        return "".join(list(text))  # equal, but another string

    long_value = "x" * (SHARED_VALUE_CHARS + 1)
    raw = json.dumps({"queue": "sales", "channel": "email", "subject": long_value, "n": 3})
    one, two = (LogEvent(i, ev.TASK_CREATED, 1.0, fresh("task-1"), None, "system", fresh(raw))
                for i in range(2))
    assert one.task_id is two.task_id
    assert one.data["queue"] is two.data["queue"] and one.data["channel"] is two.data["channel"]
    assert one.data["subject"] == long_value and one.data["subject"] is not two.data["subject"]
    assert one.data == {"queue": "sales", "channel": "email", "subject": long_value, "n": 3}
    row = dict.fromkeys(TASK_COLUMNS)
    row.update(id=fresh("task-1"), channel="email", queue="sales", created_at=1.0,
               base_skills="{}", priority=0, attributes="{}", state="queued", step=0,
               required_skills="{}")
    assert task_from_values(tuple(row[c] for c in TASK_COLUMNS)).id is one.task_id
