"""Reading an event log after a cursor without missing a late commit: the one gap rule of every
reader of `task_events` / `agent_events` by id (webhook fan-out, the configuration watch).

Sits under `dispatcher.storage`, used on the database thread (and by the memory twins). Ids come
from a sequence: on PostgreSQL a transaction may commit a lower id after a higher one is already
visible, and a rolled-back transaction leaves an id that never appears. So a reader takes rows
in id order only while they follow each other; at a missing id it stops (and keeps its cursor
just before it) until the row after the gap is `settle` seconds old: by then the missing id was
rolled back, or has committed and is read. A row's age is its event time (`at`), as the writer
stamped it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

SETTLE_SECONDS = 5.0  # how long a reader waits at a missing id


class LogRow(Protocol):
    id: Any
    at: Any


R = TypeVar("R", bound=LogRow)


def readable(rows: Iterable[R], cursor: int, now: float,
             settle: float = SETTLE_SECONDS) -> tuple[list[R], int]:
    """The rows (read in id order after `cursor`) that may be taken now, and the new cursor:
    stop at a missing id unless the row after it is older than `settle` (the id was then
    rolled back)."""
    taken: list[R] = []
    for row in rows:
        if row.id != cursor + 1 and row.at > now - settle:
            break
        taken.append(row)
        cursor = int(row.id)
    return taken, cursor
