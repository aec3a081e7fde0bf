"""Agents on SQL: put (with skills and queues), remove, list (configuration: each write in a
transaction of its own on the pool, with its audit events).

Sits under `dispatcher.storage`; `SqlAgents` is a mixin of `SqlStore` (sql.py). The store's
clock stamps `agents.created_at` (configuration has no time of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.events import Event

from . import rows as r
from . import tables as t
from .bulk import append_events
from .commit import GroupCommit
from .pool import Pool
from .statements import insert_rows, upsert


def thd_put_agent(
    conn: sa.Connection, row: r.Row, skills: list[r.Row], queues: list[r.Row],
    events: list[r.Row] | None = None,
) -> None:
    conn.execute(upsert(conn.dialect.name, t.agents, ("created_at",)), [row])
    conn.execute(t.agent_skills.delete().where(t.agent_skills.c.agent_id == row["id"]))
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.agent_id == row["id"]))
    insert_rows(conn, t.agent_skills, skills)
    insert_rows(conn, t.agent_queues, queues)
    append_events(conn, events or [])


def thd_remove_agent(conn: sa.Connection, agent_id: str, events: list[r.Row]) -> bool:
    if conn.execute(sa.select(t.agents.c.id).where(t.agents.c.id == agent_id)).first() is None:
        return False
    conn.execute(t.agent_skills.delete().where(t.agent_skills.c.agent_id == agent_id))
    conn.execute(t.agent_queues.delete().where(t.agent_queues.c.agent_id == agent_id))
    conn.execute(t.agents.delete().where(t.agents.c.id == agent_id))
    append_events(conn, events)
    return True


def thd_list_agents(conn: sa.Connection) -> list[Agent]:
    skills: dict[str, dict[str, int]] = {}
    for agent_id, skill, level in conn.execute(sa.select(t.agent_skills)):
        skills.setdefault(agent_id, {})[skill] = level
    queues: dict[str, set[str]] = {}
    for agent_id, queue in conn.execute(sa.select(t.agent_queues)):
        queues.setdefault(agent_id, set()).add(queue)
    result = conn.execute(sa.select(t.agents).order_by(t.agents.c.id))
    return [
        r.agent_from_rows(row, skills.get(row.id, {}), queues.get(row.id, set())) for row in result
    ]


class SqlAgents:
    """Agents: part of the `Store` port. A mixin of `SqlStore` (dispatcher/storage/sql.py): it uses the store's `_pool`, `_commit`
    and `_clock`."""

    _pool: Pool
    _commit: GroupCommit
    _clock: Callable[[], float]

    def put_agent(self, agent: Agent, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_agent, *r.agent_rows(agent, self._clock()),
                              [r.event_row(e) for e in events])

    def remove_agent(self, agent_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_agent, agent_id, [r.event_row(e) for e in events])

    def list_agents(self) -> Deferred[list[Agent]]:
        return self._pool.run(thd_list_agents)
