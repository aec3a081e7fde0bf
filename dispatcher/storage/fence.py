"""The lease's fence on PostgreSQL, sent in the same round trip as a transaction's first
statement instead of in one of its own.

Sits under `dispatcher.storage`, below lease.py (which owns the lease, its rule and `Deposed`)
and bulk.py (whose `round_trip` sends statements past SQLAlchemy). The fence is one statement,
`SELECT switchboard_fence(...)` (migration 0022): it takes the lease's fence lock shared, reads
the epoch on a fresh snapshot and raises SQLSTATE `REFUSED` when the epoch moved on. What it
promises:

- `owe(conn, sql)` makes the transaction on `conn` owe the fence. The first statement the
  transaction then runs pays it: through psycopg2, the fence goes in front of that statement,
  in the same execute (psycopg2 binds on the client and sends several statements at once);
  through psycopg (3), or in front of an executemany or a server-side cursor, it is executed
  just before, on its own; the bulk writes, which reach the driver past SQLAlchemy, all go
  through `round_trip` (bulk.py), which puts it first in the same round trip. Either
  way it runs before anything else of the transaction, at its top level (never inside a
  savepoint, whose rollback would let the fence lock go), so a transaction never holds a row
  while it waits for the fence lock.
- `settle(conn, debt)`, before the commit: a fence not paid yet (the transaction ran no
  statement, or the one that carried it failed and the error was caught) is executed then, and
  fails in a transaction that is aborted. No transaction that owed the fence commits without a
  fence that passed. `forget(debt)` when the transaction has ended, whichever way.
- `refused(exc)`: the error is the fence's own refusal (SQLSTATE `REFUSED`).

The engine listens once for every statement (`listen`, from engine.py, PostgreSQL only); a
transaction that owes nothing costs the listener a lookup in its connection's `info`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

REFUSED = "SB001"  # SQLSTATE of switchboard_fence's refusal
FUNCTION = "switchboard_fence"
_KEY = "switchboard.fence"  # in the connection's `info`: what the transaction owes

OWED, SENT, PASSED = range(3)


@dataclass(slots=True)
class Debt:
    """The fence one transaction owes: its statement, whether it was sent or passed, and the
    statement that carries it while sent."""

    sql: str
    info: dict[Any, Any]  # the connection's, where the debt is kept (`forget` needs no
    # connection: one that was invalidated raises at any use)
    state: int = OWED
    carrier: str | None = None


def statement(name: str, high: int, low: int, epoch: int) -> str:
    """The fence's statement, with its values written in (no placeholder: it goes in front of
    statements of any parameter style). `name` is the lease's, one of ours: quoted anyway."""
    quoted = name.replace("'", "''")
    return f"SELECT {FUNCTION}('{quoted}', {int(high)}, {int(low)}, {int(epoch)})"


def owe(conn: sa.Connection, sql: str) -> Debt:
    """The transaction on `conn` owes the fence `sql` from now on (module doc)."""
    debt = Debt(sql, conn.info)
    debt.info[_KEY] = debt
    return debt


def owed(conn: sa.Connection) -> Debt | None:
    """The fence the transaction owes and has not sent yet, if any."""
    debt: Debt | None = conn.info.get(_KEY)
    return debt if debt is not None and debt.state == OWED else None


def settle(conn: sa.Connection, debt: Debt) -> None:
    """Before the commit: run the fence now unless a statement carried it and succeeded."""
    if debt.state != PASSED:
        debt.state = SENT  # the listener leaves this statement alone
        conn.exec_driver_sql(debt.sql)
        debt.state = PASSED


def forget(debt: Debt) -> None:
    """The transaction ended (committed or not): it owes nothing more."""
    if debt.info.get(_KEY) is debt:
        del debt.info[_KEY]


def refused(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's error or the driver's) is the fence's refusal."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return code == REFUSED


def reason(exc: BaseException) -> str:
    """The refusal's own words ("lease router is at epoch 3, this node routed at 2")."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    return str(getattr(diag, "message_primary", None) or orig).strip()


def _before(conn: sa.Connection, cursor: Any, sql: str, parameters: Any, _context: Any,
            executemany: bool) -> tuple[str, Any]:
    debt = conn.info.get(_KEY)
    if debt is None or debt.state != OWED:
        return sql, parameters
    debt.state = SENT
    if (conn.dialect.driver == "psycopg2" and not executemany
            and getattr(cursor, "name", None) is None):  # not a server-side cursor
        debt.carrier = f"{debt.sql};\n{sql}"
        return debt.carrier, parameters
    fence_cursor = conn.connection.driver_connection.cursor()
    try:
        fence_cursor.execute(debt.sql)
    finally:
        fence_cursor.close()
    debt.state = PASSED
    return sql, parameters


def _after(conn: sa.Connection, _cursor: Any, sql: str, _parameters: Any, _context: Any,
           _executemany: bool) -> None:
    debt = conn.info.get(_KEY)
    if debt is not None and debt.state == SENT and sql is debt.carrier:
        debt.state = PASSED


def listen(engine: sa.Engine) -> None:
    """Let the statements of `engine` (PostgreSQL) pay the fence their transaction owes."""
    sa.event.listen(engine, "before_cursor_execute", _before, retval=True)
    sa.event.listen(engine, "after_cursor_execute", _after)
