"""`SqlStore`: the `dispatcher.service.ports.Store` port on SQLite or PostgreSQL, through
SQLAlchemy Core on a thread pool (buildbot's `db/` pattern).

Sits under `dispatcher.storage`; the runtime builds it from a `Pool` and a `GroupCommit`. One
module per noun holds that noun's `thd_*` functions and its part of the port, as a mixin:
tasks.py (`SqlTasks`: intake, state changes, task queries), queues.py (`SqlQueues`: queues and
calendars), agents.py (`SqlAgents`), customers.py (`SqlCustomers`), mail.py (`SqlMail`: the mail
store); statements.py holds what they share. `SqlStore` composes the mixins (they share its
pool, group commit and clock) and loads the state at start-up. The writes of intake and routing
go through the group commit; configuration writes and reads run in a transaction of their own.

The database work is done by the module-level `thd_*` functions: each takes a Connection and
plain values (rows snapshotted in the reactor thread by `rows.py`) and returns plain values or
dataclasses. The names other modules and tests imported from here still are (re-exported).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.domain.tasks import Task
from dispatcher.service.ports import State

from . import tables as t
from .agents import SqlAgents, thd_list_agents
from .commit import GroupCommit
from .customers import CustomerEdit, SqlCustomers, thd_customer_histories
from .mail import (
    OUTBOX_DEAD,
    OUTBOX_EMAIL,
    OUTBOX_SENT,
    MailAddition,
    MailIntake,
    MailMark,
    SqlMail,
    mail_rows,
    thd_add_mail,
    thd_add_mails,
    thd_mark_mail,
)
from .pool import Pool
from .queues import SqlQueues, thd_list_calendars, thd_list_queues
from .reads import TurnReads
from .rows import TASK_COLUMNS, task_from_values
from .statements import IN_CHUNK, storable
from .tasks import (
    FINAL,
    ChangeRows,
    Intake,
    SqlTasks,
    new_customer_id,
    thd_create_task,
    thd_open_declines,
    thd_record,
    thd_record_many,
)

__all__ = [
    "FINAL", "IN_CHUNK", "OUTBOX_DEAD", "OUTBOX_EMAIL", "OUTBOX_SENT", "ChangeRows",
    "CustomerEdit", "Intake", "MailAddition", "MailIntake", "MailMark", "SqlStore", "mail_rows",
    "new_customer_id", "storable", "thd_add_mail", "thd_add_mails", "thd_create_task",
    "thd_load_open_tasks", "thd_load_state", "thd_mark_mail", "thd_record", "thd_record_many",
]


# Open tasks read per fetch at start-up; the JSON columns of `tasks`, read as text (the
# attributes on SQLite: its UTF-8 bytes).
LOAD_CHUNK = 5_000
_JSON_COLUMNS = frozenset({"base_skills", "attributes", "required_skills"})
_RAW = sa.types.NullType()  # a column's value as the driver gives it


def thd_load_state(conn: sa.Connection) -> State:
    return State(
        queues=thd_list_queues(conn),
        agents=thd_list_agents(conn),
        open_tasks=thd_load_open_tasks(conn),
        declines=thd_open_declines(conn),
        calendars=thd_list_calendars(conn),
    )


def thd_load_open_tasks(conn: sa.Connection) -> list[Task]:
    """Every open task, as `tasks.thd_open_tasks` reads them, for a start-up with many: the rows
    are streamed (`LOAD_CHUNK` at a time; a server-side cursor on PostgreSQL, so the driver
    never holds them all); each row is a plain tuple and its JSON columns text, decoded by
    `rows.task_from_values` (which shares the strings many tasks repeat, a customer's id among
    their tasks included), not by the driver."""
    k = t.tasks.c
    columns: list[Any] = [sa.cast(k[name], sa.Text) if name in _JSON_COLUMNS else k[name]
                          for name in TASK_COLUMNS]
    if conn.dialect.name == "sqlite" and _utf8(conn):
        # The attributes' text as SQLite holds it, UTF-8 bytes: kept packed, 16 bytes less a
        # task than a str (PostgreSQL gives bytea as a buffer that would be copied: text there).
        columns[TASK_COLUMNS.index("attributes")] = sa.type_coerce(
            sa.cast(k.attributes, sa.LargeBinary), _RAW)
    result = conn.execution_options(yield_per=LOAD_CHUNK).execute(
        sa.select(*columns).where(k.state.not_in(FINAL)))
    out: list[Task] = []
    customers: dict[str, str] = {}
    for part in result.partitions():
        out.extend([task_from_values(row, customers) for row in part])
    return out


def _utf8(conn: sa.Connection) -> bool:
    """Whether this SQLite database holds its text as UTF-8 (CAST AS BLOB gives the text's
    bytes in the database's encoding; UTF-8 is the default, UTF-16 must be asked for)."""
    return conn.exec_driver_sql("PRAGMA encoding").scalar() == "UTF-8"


class SqlStore(SqlTasks, SqlQueues, SqlAgents, SqlCustomers, SqlMail):
    """The `Store` port on SQL, composed of one mixin per noun. `clock` stamps
    `agents.created_at` (configuration has no time of its own); every other time comes from
    the caller."""

    def __init__(
        self, pool: Pool, group_commit: GroupCommit, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
        self._commit = group_commit
        self._clock = clock
        self._histories = TurnReads(pool, thd_customer_histories)

    def load_state(self) -> Deferred[State]:
        return self._pool.run(thd_load_state)
