"""Checkpoints of a report fold (`ports.ReportCheckpoint`: today's figures) in the database: the
SQL side of `ReportStore.save_checkpoint` / `load_checkpoint` (table `report_checkpoints`,
migration 0019).

Sits under `dispatcher.storage`; its `thd_` functions run on `SqlReportStore`'s reading thread
(storage/reports.py), one after another with the folds, each in a transaction of its own. What
it promises:
- a save replaces the row of its name (delete and insert in one transaction: the old row or the
  new one, never none or both); the JSON is made on that thread, not on the reactor; on SQLite
  the write waits for the write lock like any writer (busy timeout), and takes it only once the
  JSON is made;
- a load returns the row with its JSON decoded, `data` None when the text is not JSON as
  `dumps` writes it (a truncated or hand-edited row: the caller then folds the whole day), and
  runs the caller's `decode` on the same thread (rebuilding a tally of 100 k tasks is not done
  on the reactor);
- the reactor is not starved meanwhile: `json.dumps` / `json.loads` of a whole 20 MB checkpoint
  would each hold the interpreter lock for half a second in one C call (a routing stall; under
  load, long enough to lose the router's lease). `dumps` writes long lists `PIECE` items per
  call and `loads` reads lists an item per call, so the lock changes hands between them. The
  text is ordinary compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from dispatcher.service.ports import ReportCheckpoint

from . import tables as t

PIECE = 2_000  # list items per `json.dumps` call (~0.3 MB of a checkpoint's tasks, ~5 ms)

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_raw_decode = json.JSONDecoder().raw_decode


def dumps(value: Any) -> str:
    """`json.dumps(value, separators=(",", ":"), allow_nan=False)`, in pieces (see above)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_encode(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple) and len(value) > PIECE:
        return "[" + ",".join(_encode(list(value[i:i + PIECE]))[1:-1]
                              for i in range(0, len(value), PIECE)) + "]"
    return _encode(value)


def loads(text: str) -> Any:
    """What `dumps` wrote, back; ValueError if the text is not JSON as it writes it."""
    try:
        value, end = _value(text, 0)
    except IndexError:
        raise ValueError("cut short") from None
    if end != len(text):
        raise ValueError(f"extra data at {end}")
    return value


def _value(text: str, i: int) -> tuple[Any, int]:
    """The value at `i` and where it ends: objects and arrays item by item (each item one
    `raw_decode` call), anything else in one call."""
    c = text[i]
    if c == "{":
        obj: dict[str, Any] = {}
        i += 1
        if text[i] == "}":
            return obj, i + 1
        while True:
            key, i = _raw_decode(text, i)
            if not isinstance(key, str) or text[i] != ":":
                raise ValueError(f"not an object's key at {i}")
            obj[key], i = _value(text, i + 1)
            if text[i] == "}":
                return obj, i + 1
            if text[i] != ",":
                raise ValueError(f"expected , or }} at {i}")
            i += 1
    if c == "[":
        items: list[Any] = []
        i += 1
        if text[i] == "]":
            return items, i + 1
        while True:
            item, i = _raw_decode(text, i)
            items.append(item)
            if text[i] == "]":
                return items, i + 1
            if text[i] != ",":
                raise ValueError(f"expected , or ] at {i}")
            i += 1
    return _raw_decode(text, i)


def thd_save_checkpoint(conn: sa.Connection, make: Callable[[], ReportCheckpoint]) -> int:
    cp = make()
    text = dumps(cp.data)
    c = t.report_checkpoints.c
    conn.execute(t.report_checkpoints.delete().where(c.name == cp.name))
    conn.execute(t.report_checkpoints.insert().values(
        name=cp.name, day_start=cp.day_start, version=cp.version, saved_at=cp.saved_at,
        data=text))
    return len(text)


def thd_load_checkpoint(conn: sa.Connection, name: str,
                        decode: Callable[[ReportCheckpoint | None], Any]) -> Any:
    c = t.report_checkpoints.c
    row = conn.execute(sa.select(c.day_start, c.version, c.saved_at, c.data)
                       .where(c.name == name)).first()
    if row is None:
        return decode(None)
    try:
        data = loads(row.data)
    except ValueError:
        data = None
    return decode(ReportCheckpoint(name, float(row.day_start), int(row.version),
                                   float(row.saved_at), data))
