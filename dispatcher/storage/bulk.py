"""Bulk writes of the routing hot path at the driver's level: appends to the logs and updates of
task rows, a whole group commit's worth in a few statements.

Sits under `dispatcher.storage`, beside statements.py (which every other write goes through);
runs on the database thread only, inside the caller's transaction (`conn.connection` is that
transaction's own DB-API connection). SQLAlchemy's executemany costs about 30 µs of Python per
row (parameter processing, JSON bind processors), and psycopg2's quoting of a 17-column task row
another 20 µs, while the database thread holds the GIL the reactor needs. Here:

- PostgreSQL through psycopg2 or psycopg (3): a page of rows (PAGE) is one JSON array,
  encoded by the `json` module's C encoder and sent as one parameter; the server makes rows of
  it with `json_populate_recordset(NULL::table, ...)`, typed as the table's columns, bytes sent
  as bytea's hex text (`INSERT ... SELECT ... FROM json_populate_recordset(...)`; `UPDATE tasks
  ... FROM json_populate_recordset(...) WHERE tasks.id = v.id`). The statements of one write go
  in one round trip (`round_trip`).
- SQLite: each row made a tuple once; appends as multi-row INSERTs (`_sqlite_runs`: a run of
  rows is one statement, one step, where `executemany` takes a step a row, and the sqlite3
  module lets the GIL go and takes it back around every step, each time behind the reactor);
  updates of task rows likewise, a run of rows one `UPDATE ... FROM (VALUES ...)` (SQLite 3.33
  and later; before, the sqlite3 module's `executemany`, a step a row).
- Any other driver: the SQLAlchemy statements of statements.py, unchanged.

What it promises, the same as statements.py: text is made storable first (`storable`), JSON
columns hold what SQLAlchemy's JSON type would store (engine.py `compact_json`), and the effect
equals the SQLAlchemy statements': `append` inserts every row in order; `update_tasks` writes
every column of each whole task row but the preview (`WRITE_ONCE`) and inserts the rows that
are not stored yet (a task recorded before it was created, as the MemoryStore allows), and
writes only the hot columns of a stored task from a row that has only those (the slim rows of
`SqlTasks.record`: no attributes sent or parsed).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from . import fence as fencing
from . import rows as r
from . import tables as t
from .engine import compact_json
from .statements import chunks, insert_ignore, storable, storable_rows, upsert

PAGE = 5000  # rows per statement on PostgreSQL
Encoder = Callable[[r.Row], tuple[Any, ...]]


# The PostgreSQL drivers whose DB-API cursors the JSON pages go through: psycopg2, and psycopg
# (3) in its synchronous form (`postgresql+psycopg://`).
PG_DRIVERS = frozenset({"psycopg2", "psycopg"})


def _driver(conn: sa.Connection) -> str:
    """"psycopg2" or "psycopg" (PostgreSQL through that driver), "sqlite3", else "sqlalchemy"
    (any other driver: the SQLAlchemy statements)."""
    dialect = conn.dialect
    if dialect.name == "postgresql" and dialect.driver in PG_DRIVERS:
        return str(dialect.driver)
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return "sqlite3"
    return "sqlalchemy"


def round_trip(conn: sa.Connection, statements: Sequence[tuple[str, tuple[Any, ...]]]
               ) -> list[tuple[Any, ...]]:
    """Run `statements` ((SQL with `%s` placeholders, parameters) pairs, in order) in one round
    trip on PostgreSQL, inside the caller's transaction; the rows of the last one (empty when it
    returns none). psycopg2 binds on the client: the statements go in one execute, `;` between
    them. psycopg (3) binds on the server, one statement an execute: they go in one pipeline
    (psycopg's pipeline mode), sent together, their results read at its end. An error of any of
    them is raised as SQLAlchemy's (`_driver_errors`), the transaction then failed. The lease's
    fence, when the transaction still owes it (fence.py), goes first in the same round trip:
    every statement this module sends to PostgreSQL goes through here. Through another driver,
    one after the other."""
    if not statements:
        return []
    driver = _driver(conn)
    if driver not in PG_DRIVERS:  # another driver: one statement after the other
        rows: list[tuple[Any, ...]] = []
        for sql, params in statements:
            result = conn.exec_driver_sql(sql, params)
            rows = [tuple(row) for row in result] if result.returns_rows else []
        return rows
    debt = fencing.owed(conn)  # the transaction's first statement: the fence goes in front
    if debt is not None:
        statements = [(debt.sql, ()), *statements]
        debt.state = fencing.SENT
    text = ";\n".join(sql for sql, _ in statements)
    with _driver_errors(conn, text) as cursor:
        if driver == "psycopg2":
            cursor.execute(text, tuple(p for _, params in statements for p in params))
        else:
            with conn.connection.driver_connection.pipeline():
                for sql, params in statements:
                    cursor.execute(sql, params)
        rows = list(cursor.fetchall()) if cursor.description is not None else []
    if debt is not None:
        debt.state = fencing.PASSED
    return rows


_unescaped_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(value: Any) -> str:
    """`compact_json(storable(value))`, what SQLAlchemy's JSON type stores (engine.py), without
    walking the value when there is nothing to fix: an ASCII encoding without an escaped NUL is
    the same whether `ensure_ascii` is set or not, and holds no lone surrogate (those stay
    raw)."""
    text = _unescaped_dumps(value)
    if text.isascii() and "\\u0000" not in text:
        return text
    return compact_json(storable(value))


def _plain(value: Any) -> Any:
    """`storable(value)` for a column that is not JSON, checked cheaply."""
    if type(value) is str and (not value.isascii() or "\x00" in value):
        return storable(value)
    return value


@functools.cache
def _encoder(table: sa.Table, names: tuple[str, ...]) -> Encoder:
    """A row (dict) -> the tuple of `names`, storable, JSON columns encoded."""
    pairs = tuple((n, _json if isinstance(table.c[n].type, sa.JSON) else _plain) for n in names)
    return lambda row: tuple([fn(row.get(name)) for name, fn in pairs])


_compact_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                 separators=(",", ":")).encode


def _json_pages(table: sa.Table, rows: Sequence[r.Row]) -> Iterator[str]:
    """`rows` of `table` as JSON arrays of PAGE objects, for PostgreSQL's
    `json_populate_recordset`: what the columns get is what SQLAlchemy would bind (text made
    storable, JSON columns as JSON, bytes as bytea's hex text `\\x...`, which the column's
    input reads back as the same bytes). The whole page is encoded in one C call; it is walked
    (`storable`) only when its text shows something to clean (an escaped NUL, or text that is
    not UTF-8: a lone surrogate). A float that JSON cannot hold (NaN, infinity) is a
    ValueError: no column takes one."""
    binary = _binary_columns(table)
    for start in range(0, len(rows), PAGE):
        page = rows[start:start + PAGE]
        if binary:
            page = [_hex(row, binary) for row in page]
        text = _compact_dumps(page)
        if "\\u0000" in text or not (text.isascii() or _utf8(text)):
            text = _compact_dumps(storable_rows(list(page)))
        yield text


@functools.cache
def _binary_columns(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if isinstance(c.type, sa.LargeBinary))


def _hex(row: r.Row, names: tuple[str, ...]) -> r.Row:
    """`row` with its bytes (`names`) as bytea's hex input text."""
    out = dict(row)
    for name in names:
        value = out.get(name)
        if value is not None:
            out[name] = "\\x" + bytes(value).hex()
    return out


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def _driver_errors(conn: sa.Connection, statement: str) -> Iterator[Any]:
    """The transaction's DB-API cursor; a driver error is raised as SQLAlchemy's (an
    `IntegrityError`...), without the parameters, as the engine would."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield conn.connection.driver_connection.cursor()
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, dbapi.Error, hide_parameters=True, dialect=conn.dialect
        ) from exc


def _pg_insert(table: sa.Table, rows: Sequence[r.Row]) -> str:
    """PostgreSQL's insert of one JSON page of `rows` (its parameter): the columns they name."""
    columns = ", ".join(c.name for c in table.columns if c.name in rows[0])
    return (f"INSERT INTO {table.name} ({columns}) SELECT {columns}"
            f" FROM json_populate_recordset(NULL::{table.name}, %s)")


_SQLITE_VARIABLES = 999  # a statement's parameters: the least any SQLite build allows
_SQLITE_LARGEST_RUN = 256  # rows


@functools.cache
def _sqlite_insert(table: str, names: tuple[str, ...], count: int) -> str:
    """SQLite's INSERT of `count` rows in one statement (`count` a power of two: few texts, so
    the sqlite3 module's statement cache keeps them prepared)."""
    one = f"({', '.join('?' * len(names))})"
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([one] * count)}"


def _sqlite_runs(rows: int, columns: int) -> Iterator[int]:
    """`rows` as runs of powers of two, largest first: 7 rows are 3 statements (4, 2, 1)."""
    largest = _SQLITE_LARGEST_RUN
    while largest > 1 and largest * columns > _SQLITE_VARIABLES:
        largest //= 2
    while rows:
        run = min(largest, 1 << (rows.bit_length() - 1))
        yield run
        rows -= run


def append(conn: sa.Connection, table: sa.Table, rows: Sequence[r.Row]) -> None:
    """Insert `rows`: dicts with the same keys, the columns they set (as SQLAlchemy's
    executemany: a column no row names takes its default; a log's id is the database's)."""
    if not rows:
        return
    driver = _driver(conn)
    if driver == "sqlalchemy":
        conn.execute(table.insert(), storable_rows(list(rows)))
        return
    names = tuple(c.name for c in table.columns if c.name in rows[0])
    if driver == "sqlite3":
        encode = _encoder(table, names)
        values = [encode(row) for row in rows]
        statement = _sqlite_insert(table.name, names, 1)
        with _driver_errors(conn, statement) as cursor:
            start = 0
            for count in _sqlite_runs(len(values), len(names)):
                cursor.execute(_sqlite_insert(table.name, names, count),
                               [v for value in values[start:start + count] for v in value])
                start += count
        return
    statement = _pg_insert(table, rows)
    round_trip(conn, [(statement, (page,)) for page in _json_pages(table, rows)])


def append_all(conn: sa.Connection, appends: Sequence[tuple[sa.Table, Sequence[r.Row]]]) -> None:
    """`append(conn, table, rows)` for each pair, in order. On PostgreSQL, in one round trip
    (`round_trip`). A round trip on the database thread waits for the GIL behind a busy
    reactor, up to 5 ms each: an intake's customers, identities, task rows and events are one
    wait, not four."""
    appends = [(table, rows) for table, rows in appends if rows]
    if _driver(conn) not in PG_DRIVERS:
        for table, rows in appends:
            append(conn, table, rows)
        return
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for table, rows in appends:
        one = _pg_insert(table, rows)
        statements.extend((one, (page,)) for page in _json_pages(table, rows))
    round_trip(conn, statements)


def event_logs(events: Sequence[r.Row]) -> list[tuple[sa.Table, list[r.Row]]]:
    """Events by their log, for `append_all`: about a task to task_events, about an agent
    alone to agent_events."""
    return [(t.task_events, [e for e in events if e["task_id"] is not None]),
            (t.agent_events, [e for e in events if e["task_id"] is None])]


def append_events(conn: sa.Connection, events: Sequence[r.Row]) -> None:
    """Events to their log (`event_logs`), both in one round trip on PostgreSQL."""
    append_all(conn, event_logs(events))


# What a whole task row writes: every column but those its first row alone writes (the
# preview: `rows.intake_row`), which no change touches.
WRITE_ONCE = ("preview",)
TASK_COLUMNS = tuple(c.name for c in t.tasks.columns if c.name not in WRITE_ONCE)
_CHANGED = tuple(name for name in TASK_COLUMNS if name != "id")
HOT_COLUMNS = r.HOT_TASK_COLUMNS
_HOT_CHANGED = tuple(name for name in HOT_COLUMNS if name != "id")


def _pg_update(changed: tuple[str, ...]) -> str:
    return (f"UPDATE tasks SET {', '.join(f'{n} = v.{n}' for n in changed)}"
            " FROM json_populate_recordset(NULL::tasks, %s) AS v"
            " WHERE tasks.id = v.id RETURNING tasks.id")


def _sqlite_update(changed: tuple[str, ...]) -> str:
    return f"UPDATE tasks SET {', '.join(f'{n} = ?' for n in changed)} WHERE id = ?"


# SQLite updates rows from a list of values in one statement (UPDATE ... FROM) since 3.33: one
# step for a run of rows. Behind a reactor that keeps the GIL busy, each step of an executemany
# waited for the GIL once more: 32 rows 120 ms, against 13 ms in one statement (measured).
SQLITE_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


@functools.cache
def _sqlite_update_from(names: tuple[str, ...], count: int) -> str:
    """SQLite's UPDATE of `count` task rows in one statement, each row's values in `names`
    order, `id` first (`count` a power of two: few texts, kept prepared)."""
    one = f"({', '.join('?' * len(names))})"
    sets = ", ".join(f"{name} = v.column{i + 1}" for i, name in enumerate(names) if name != "id")
    return (f"UPDATE tasks SET {sets} FROM (VALUES {', '.join([one] * count)}) AS v"
            " WHERE tasks.id = v.column1")


def _sqlite_updated(conn: sa.Connection, names: tuple[str, ...],
                    values: Sequence[tuple[Any, ...]]) -> int:
    """Update the stored task rows of `values` (tuples in `names` order, `id` first, one per
    id); how many rows were updated."""
    if not SQLITE_UPDATE_FROM:
        changed = names[1:]
        statement = _sqlite_update(changed)
        with _driver_errors(conn, statement) as cursor:
            cursor.executemany(statement, [(*v[1:], v[0]) for v in values])
            return int(cursor.rowcount)
    updated = start = 0
    with _driver_errors(conn, _sqlite_update_from(names, 1)) as cursor:
        for count in _sqlite_runs(len(values), len(names)):
            cursor.execute(_sqlite_update_from(names, count),
                           [v for value in values[start:start + count] for v in value])
            updated += cursor.rowcount
            start += count
    return updated


_PG_UPDATE, _PG_UPDATE_HOT = _pg_update(_CHANGED), _pg_update(_HOT_CHANGED)
_STORED = sa.select(t.tasks.c.id).where(t.tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
_UPDATE_HOT = (t.tasks.update().where(t.tasks.c.id == sa.bindparam("v_id"))
               .values({n: sa.bindparam(f"v_{n}") for n in _HOT_CHANGED}))


class TaskNotStored(LookupError):
    """A row of hot columns only names a task that is not stored: it cannot be inserted."""


def _hot_and_whole(rows: Sequence[r.Row]) -> tuple[list[r.Row], list[r.Row]]:
    """Task rows of HOT_COLUMNS only (SqlTasks.record's slim rows), and whole rows."""
    hot = [row for row in rows if len(row) == len(HOT_COLUMNS)]
    return hot, [row for row in rows if len(row) != len(HOT_COLUMNS)] if hot else list(rows)


def update_tasks(conn: sa.Connection, rows: Sequence[r.Row]) -> None:
    """Write each task row (one row per id at most): a whole row (every column) is an UPDATE of
    the stored ones in bulk, then the upsert of statements.py for those not stored yet; a row
    of HOT_COLUMNS only (storage/tasks.py `SqlTasks.record`) updates those columns of a stored
    task, and is a TaskNotStored error for a task not stored."""
    if not rows:
        return
    hot, whole = _hot_and_whole(rows)
    if whole:
        _update_whole(conn, whole)
    if hot:
        _update_hot(conn, hot)


def _update_whole(conn: sa.Connection, rows: Sequence[r.Row]) -> None:
    driver = _driver(conn)
    if driver == "sqlalchemy":
        _upsert(conn, rows)
        return
    if driver == "sqlite3":
        encode = _encoder(t.tasks, TASK_COLUMNS)
        if _sqlite_updated(conn, TASK_COLUMNS, [encode(row) for row in rows]) == len(rows):
            return
        stored: set[str] = set()
        for chunk in chunks([row["id"] for row in rows]):
            stored.update(conn.execute(_STORED, {"ids": list(chunk)}).scalars())
    else:
        stored = _pg_updated(conn, _PG_UPDATE, rows)
    missing = [row for row in rows if row["id"] not in stored]
    if missing:
        _upsert(conn, missing)


def _update_hot(conn: sa.Connection, rows: Sequence[r.Row]) -> None:
    driver = _driver(conn)
    if driver == "sqlite3":
        encode = _encoder(t.tasks, HOT_COLUMNS)
        if _sqlite_updated(conn, HOT_COLUMNS, [encode(row) for row in rows]) == len(rows):
            return
    elif driver in PG_DRIVERS:
        if len(_pg_updated(conn, _PG_UPDATE_HOT, rows)) == len(rows):
            return
    else:
        params = [{f"v_{n}": row[n] for n in HOT_COLUMNS} for row in storable_rows(list(rows))]
        if conn.execute(_UPDATE_HOT, params).rowcount == len(rows):
            return
    _refuse_unstored(conn, [row["id"] for row in rows])


def _refuse_unstored(conn: sa.Connection, ids: Sequence[str]) -> None:
    """TaskNotStored naming those of `ids` that are not stored (hot rows the UPDATE missed)."""
    stored: set[str] = set()
    for chunk in chunks(ids):
        stored.update(conn.execute(_STORED, {"ids": list(chunk)}).scalars())
    missing = [task_id for task_id in ids if task_id not in stored]
    if missing:
        raise TaskNotStored(f"tasks not stored: {', '.join(missing)}")


def record_rows(conn: sa.Connection, tasks: Sequence[r.Row], declines: Sequence[r.Row],
                appends: Sequence[tuple[sa.Table, Sequence[r.Row]]]) -> None:
    """A change's writes: `update_tasks(tasks)`, the declines inserted unless stored already,
    then `append_all(appends)`. On PostgreSQL, when each fits a page, in one round trip
    (`append_all`'s reason): the inserts, then the task UPDATEs, whose RETURNING
    tells what was not stored (no foreign key ties a log to its task, so the order within the
    transaction is free); the rare rest (inserting whole rows not stored yet, naming hot rows
    of tasks not stored) follows as in `update_tasks`."""
    appends = [(table, rows) for table, rows in appends if rows]
    if (not tasks or _driver(conn) not in PG_DRIVERS or len(tasks) > PAGE
            or len(declines) > PAGE
            or any(len(rows) > PAGE for _, rows in appends)):
        update_tasks(conn, tasks)
        if declines:
            conn.execute(insert_ignore(conn.dialect.name, t.task_declines), list(declines))
        append_all(conn, appends)
        return
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if declines:
        statements.append((_pg_insert(t.task_declines, declines) + " ON CONFLICT DO NOTHING",
                           (next(_json_pages(t.task_declines, declines)),)))
    for table, rows in appends:
        statements.append((_pg_insert(table, rows), (next(_json_pages(table, rows)),)))
    hot, whole = _hot_and_whole(tasks)
    updates = [(_PG_UPDATE_HOT, hot), (_PG_UPDATE, whole)]
    updates = [(statement, rows) for statement, rows in updates if rows]
    pages = tuple(next(_json_pages(t.tasks, rows)) for _, rows in updates)
    if len(updates) == 1:
        statements.append((updates[0][0], pages))
    else:  # both kinds of rows: one statement still, whose result lists both (disjoint ids)
        statements.append((f"WITH h AS ({_PG_UPDATE_HOT}), w AS ({_PG_UPDATE})"
                           " SELECT id FROM h UNION ALL SELECT id FROM w", pages))
    stored = {row[0] for row in round_trip(conn, statements)}
    missing = [row for row in whole if row["id"] not in stored]
    if missing:
        _upsert(conn, missing)
    _refuse_unstored(conn, [row["id"] for row in hot if row["id"] not in stored])


def _pg_updated(conn: sa.Connection, statement: str, rows: Sequence[r.Row]) -> set[str]:
    """Run an UPDATE ... FROM json_populate_recordset of `rows`; the ids it updated."""
    stored: set[str] = set()
    for page in _json_pages(t.tasks, rows):
        stored.update(row[0] for row in round_trip(conn, [(statement, (page,))]))
    return stored


def _upsert(conn: sa.Connection, rows: Sequence[r.Row]) -> None:
    # RETURNING makes SQLAlchemy send the rows as multi-row statements (insertmanyvalues).
    stmt = upsert(conn.dialect.name, t.tasks, WRITE_ONCE).returning(t.tasks.c.id)
    conn.execute(stmt, storable_rows(list(rows))).close()
