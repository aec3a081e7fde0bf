"""A task's priority is its own: the router adds its queue's priority when it orders tasks, and
intake no longer copies the queue's priority into the task (it was counted twice: a task of a
priority-5 queue sorted as 10, above an explicit priority-8 task).

Data only, no table changes. Open tasks stored before this revision whose priority equals
their queue's (non-zero) priority were given it by intake as a default: their own priority
becomes 0, so they sort as they would had they arrived now (queue priority + 0), and each change
is logged as a `task.changed` event (actor `system`). A task given an explicit priority equal
to its queue's cannot be told apart from a default one and is treated the same way. Closed
tasks keep their priority (history is not rewritten). Downgrading gives the changed tasks their
queue's priority back (those whose priority is still 0).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATES = ("queued", "offered", "assigned", "wrap_up")
REASON = "a queue's priority is no longer copied into its tasks (revision 0007)"

_tasks = sa.table("tasks", sa.column("id", sa.String), sa.column("queue", sa.String),
                  sa.column("priority", sa.Integer), sa.column("state", sa.String))
_queues = sa.table("queues", sa.column("name", sa.String), sa.column("priority", sa.Integer))
_events = sa.table("task_events", sa.column("task_id", sa.String),
                   sa.column("agent_id", sa.String), sa.column("kind", sa.String),
                   sa.column("at", sa.Float), sa.column("actor", sa.String),
                   sa.column("data", sa.JSON))


def _open_tasks_at(conn: sa.Connection, own: bool) -> list[tuple[str, int]]:
    """(task id, queue priority) of the open tasks of a queue with a non-zero priority whose
    priority is the queue's (`own` False) or 0 (`own` True)."""
    stmt = (sa.select(_tasks.c.id, _queues.c.priority)
            .select_from(_tasks.join(_queues, _queues.c.name == _tasks.c.queue))
            .where(_tasks.c.state.in_(OPEN_STATES), _queues.c.priority != 0,
                   _tasks.c.priority == (0 if own else _queues.c.priority))
            .order_by(_tasks.c.id))
    return [(r[0], int(r[1])) for r in conn.execute(stmt)]


def _change(conn: sa.Connection, found: list[tuple[str, int]], to_queue: bool) -> None:
    now = time.time()
    for task_id, queue_priority in found:
        new, was = (queue_priority, 0) if to_queue else (0, queue_priority)
        conn.execute(sa.update(_tasks).where(_tasks.c.id == task_id).values(priority=new))
        conn.execute(sa.insert(_events).values(
            task_id=task_id, agent_id=None, kind="task.changed", at=now, actor="system",
            data={"priority": new, "was": was, "reason": REASON}))


def upgrade() -> None:
    conn = op.get_bind()
    _change(conn, _open_tasks_at(conn, own=False), to_queue=False)


def downgrade() -> None:
    conn = op.get_bind()
    _change(conn, _open_tasks_at(conn, own=True), to_queue=True)
