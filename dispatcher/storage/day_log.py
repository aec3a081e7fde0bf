"""Reading a recorded period for `switchboard replay`: the configuration as stored now and the
event log of the tasks that arrived in the period.

Sits under `dispatcher.storage`; read-only (a deferred `BEGIN` on SQLite, REPEATABLE READ on
PostgreSQL: reports.make_read_engine), with no reactor: the command blocks anyway. What it
promises (`thd_read_period`, on one connection, so one snapshot):
- `queues`, `agents`, `calendars`: the configuration tables as the router loads them at start;
- `task_events`: every event, with its data, of the tasks created in [start, end), from their
  creation up to `end + tail` (so a call answered before the end and finished after it still
  has its handle time), in log order (time, then id);
- `agent_events`: the agents' `agent.status` and `agent.channels` events in [start, end), and
  each agent's last status before `start` (within STATUS_LOOKBACK_SECONDS), in time order;
- `attributes`: each of those tasks' attributes as stored now;
- `open_before`: how many tasks created before `start` were still open at it (not replayed).
Events are returned as `LogEvent`s (reports.py), the reports' read form of a log row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import OPEN_STATES
from dispatcher.service.ports import STATUS_LOOKBACK_SECONDS, Calendar

from . import tables as t
from .agents import thd_list_agents
from .queues import thd_list_calendars, thd_list_queues
from .reports import LogEvent

PRESENCE_KINDS = (ev.AGENT_STATUS, ev.AGENT_CHANNELS)
DEFAULT_TAIL_SECONDS = 24 * 3600.0


@dataclass
class RecordedPeriod:
    start: float
    end: float
    queues: list[Queue]
    agents: list[Agent]
    calendars: list[Calendar]
    task_events: list[LogEvent]
    agent_events: list[LogEvent]
    attributes: dict[str, dict[str, Any]]
    open_before: int


def _columns(table: sa.Table) -> list[Any]:
    c = table.c
    return [c.id, c.kind, c.at, c.task_id, c.agent_id, c.actor, sa.cast(c.data, sa.Text)]


def thd_read_period(conn: sa.Connection, start: float, end: float,
                    tail: float = DEFAULT_TAIL_SECONDS) -> RecordedPeriod:
    tk, te, ae = t.tasks, t.task_events, t.agent_events
    arrived = sa.select(tk.c.id).where(tk.c.created_at >= start, tk.c.created_at < end)
    task_events = [LogEvent(*row) for row in conn.execute(
        sa.select(*_columns(te))
        .where(te.c.task_id.in_(arrived), te.c.at < end + tail)
        .order_by(te.c.at, te.c.id))]
    attributes = {
        task_id: dict(value or {}) for task_id, value in conn.execute(
            sa.select(tk.c.id, tk.c.attributes).where(tk.c.id.in_(arrived)))}
    last = (sa.select(sa.func.max(ae.c.id))
            .where(ae.c.kind == ev.AGENT_STATUS, ae.c.at < start,
                   ae.c.at >= start - STATUS_LOOKBACK_SECONDS)
            .group_by(ae.c.agent_id))
    agent_events = [LogEvent(*row) for row in conn.execute(
        sa.select(*_columns(ae))
        .where(sa.or_(ae.c.id.in_(last),
                      sa.and_(ae.c.kind.in_(PRESENCE_KINDS), ae.c.at >= start,
                              ae.c.at < end)))
        .order_by(ae.c.at, ae.c.id))]
    open_before = conn.execute(
        sa.select(sa.func.count()).select_from(tk)
        .where(tk.c.created_at < start,
               sa.or_(tk.c.state.in_([s.value for s in OPEN_STATES]),
                      tk.c.updated_at >= start))).scalar_one()
    return RecordedPeriod(start, end, thd_list_queues(conn), thd_list_agents(conn),
                          thd_list_calendars(conn), task_events, agent_events, attributes,
                          int(open_before))


def read_period(url: str | sa.URL, start: float, end: float,
                tail: float = DEFAULT_TAIL_SECONDS) -> RecordedPeriod:
    """`thd_read_period` on a read-only engine of its own, in the calling thread."""
    from .reports import make_read_engine

    engine = make_read_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            return thd_read_period(conn, start, end, tail)
    finally:
        engine.dispose()
