"""`read_period` (dispatcher/storage/day_log.py) on SQLite: which tasks and events a replay of a
period reads, with rows written straight into the tables (the dispatcher's own path is
tests/dispatcher/runtime/test_replay.py's)."""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.service.ports import STATUS_LOOKBACK_SECONDS
from dispatcher.storage import rows, schema
from dispatcher.storage import tables as t
from dispatcher.storage.agents import thd_put_agent
from dispatcher.storage.day_log import read_period
from dispatcher.storage.engine import make_engine
from dispatcher.storage.queues import thd_put_queue

START = 1_772_496_000.0  # 2026-03-03 00:00 UTC
END = START + 86_400.0
TAIL = 3600.0


def _task(task_id: str, created: float, state: str, updated: float, **attributes) -> dict:
    return {"id": task_id, "channel": "phone", "queue": "q", "customer_id": None,
            "created_at": created, "base_skills": {}, "priority": 0, "deadline": None,
            "attributes": attributes, "state": state, "step": 0, "required_skills": {},
            "updated_at": updated}


def _event(kind: str, at: float, task_id: str | None = None, agent_id: str | None = None,
           **data) -> dict:
    return {"task_id": task_id, "agent_id": agent_id, "kind": kind, "at": at,
            "actor": "system", "data": data}


def test_the_period_is_the_tasks_that_arrived_in_it_and_the_agents_presence(sqlite_url):
    schema.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        thd_put_queue(conn, rows.queue_row(Queue("q")))
        thd_put_agent(conn, *rows.agent_rows(Agent("a1", queues={"q"}), START))
        conn.execute(sa.insert(t.tasks), [
            _task("before-open", START - 60, "assigned", START - 30),
            _task("before-closed", START - 600, "completed", START - 300),
            _task("in", START + 100, "completed", END + 60, caller="+331234"),
            _task("after", END + 10, "queued", END + 10)])
        conn.execute(sa.insert(t.task_events), [
            _event(ev.TASK_CREATED, START - 60, "before-open", channel="phone", queue="q"),
            _event(ev.TASK_CREATED, START + 100, "in", channel="phone", queue="q"),
            _event(ev.TASK_ASSIGNED, END - 5, "in", "a1"),
            _event(ev.TASK_COMPLETED, END + 60, "in", "a1"),  # after the end, within the tail
            _event(ev.TASK_NOTE, END + TAIL + 1, "in", "a1"),  # beyond the tail
            _event(ev.TASK_CREATED, END + 10, "after", channel="phone", queue="q")])
        conn.execute(sa.insert(t.agent_events), [
            _event(ev.AGENT_STATUS, START - STATUS_LOOKBACK_SECONDS - 1, None, "a1",
                   status="break"),
            _event(ev.AGENT_STATUS, START - 7200, None, "a1", status="offline"),
            _event(ev.AGENT_STATUS, START - 3600, None, "a1", status="available"),
            _event(ev.AGENT_CHANGED, START + 5, None, "a1"),
            _event(ev.AGENT_CHANNELS, START + 10, None, "a1", channels=["phone"]),
            _event(ev.AGENT_STATUS, END - 1, None, "a1", status="offline"),
            _event(ev.AGENT_STATUS, END + 1, None, "a1", status="available")])
    engine.dispose()

    period = read_period(sqlite_url, START, END, tail=TAIL)

    assert [(e.task_id, e.kind) for e in period.task_events] == [
        ("in", ev.TASK_CREATED), ("in", ev.TASK_ASSIGNED), ("in", ev.TASK_COMPLETED)]
    assert period.task_events[0].data == {"channel": "phone", "queue": "q"}
    assert [(e.kind, e.at - START) for e in period.agent_events] == [
        (ev.AGENT_STATUS, -3600), (ev.AGENT_CHANNELS, 10), (ev.AGENT_STATUS, 86_399)]
    assert period.attributes == {"in": {"caller": "+331234"}}
    assert period.open_before == 1
    assert [q.name for q in period.queues] == ["q"] and [a.id for a in period.agents] == ["a1"]
