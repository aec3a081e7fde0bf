"""A `metrics.Tally`'s whole state as plain JSON data, and the same tally back from it.

Sits in the pure domain beside metrics.py (stdlib only; no I/O: the caller stores the data).
Today's figures are checkpointed with it (`service.reports.Today`, docs/metrics.md), so that a
restart folds only the log after the checkpoint instead of the whole day.
What it promises:
- `load(dump(tally))` is a tally that folds every later event exactly as `tally` would: the same
  cells (counts, series, spans, histograms, depths), the same tasks and agents remembered, the
  same unanswered e-mails (those that can still count: `_pending`), the same position (`last_at`, `events`,
  the depth's bucket). Float values survive JSON exactly (Python writes the shortest repr that
  reads back the same double); dicts keep their order, so sums over cells add in the same order;
- the data is lists and dicts of str / int / float / bool / None only (`json.dumps` takes it
  without a default), compact (a task is one list of eleven values: ~100-150 bytes of JSON);
- `load` checks `VERSION`, the fold that made the data (`FOLD`: the kinds folded, the figures,
  the fields kept; a release that folds differently refuses it) and the shape as it goes: data
  of another version or fold or a broken shape raises `ValueError` (the caller folds the whole
  day instead), never a half-built tally.
Bump `VERSION` whenever the format here changes; a field added to the tally must be added here
(`dump` refuses a tally with fields it does not know, and a test says so).
"""

from __future__ import annotations

import zlib
from sys import intern
from typing import Any

from .metrics import (
    _FOLDS,
    ANSWERED,
    COUNTED,
    METRICS,
    OPEN,
    SETTLED,
    STAT_EDGES,
    WAITING,
    Cell,
    QueueTarget,
    Stat,
    Tally,
    _Agent,
    _Due,
    _Task,
)

VERSION = 1

# A task is one list: [id, kind, created_at, due, flags, pending_since, inbound, replies, agent,
# assigned_at, last_mode]; `kind` indexes "kinds" ([channel, queue, deadline type]: a day has
# few), `agent` and `last_mode` index "strings" (None: None), `flags` holds the booleans
# (waiting 1, answered 2, settled 4, open 8, counted 16: `_Task.flags` itself). Two thirds of
# the tokens of a list of every field: the day's tasks are most of a checkpoint, and reading it
# back most of a restart's wait.
_TASK_FIELDS = ("kind", "created_at", "due", "pending_since", "inbound", "replies", "agent",
                "assigned_at", "last_mode", "flags")
_FLAGS = WAITING | ANSWERED | SETTLED | OPEN | COUNTED
_TALLY_FIELDS = ("start", "end", "interval", "targets", "queue", "cells", "agent_cells", "tasks",
                 "agents", "depth", "_depth_bucket", "_due", "events", "last_at", "_kinds")
# What the fold is: the kinds it folds, the figures it names, the state it keeps. A checkpoint
# made by another fold (a release that folds one more kind, keeps one more field) would resume
# into figures that a fold of the whole day would not give: it is refused, as another VERSION.
FOLD = format(zlib.crc32(repr((
    sorted(_FOLDS), sorted(METRICS), sorted(STAT_EDGES.items()), sorted(_Task.__slots__),
    sorted(_Agent.__slots__), sorted(_TALLY_FIELDS))).encode()), "08x")


def _check_fields(tally: Tally) -> None:
    """The fields this module writes are the tally's (tests/dispatcher/domain hold it too)."""
    if set(_TASK_FIELDS) != set(_Task.__slots__) or set(vars(tally)) != set(_TALLY_FIELDS):
        raise ValueError("metrics_state does not know every field of metrics.Tally: update it "
                         "(and VERSION)")


def dump(tally: Tally) -> dict[str, Any]:
    """The tally's state (see the module docstring); does not change the tally. ValueError
    if the tally has fields this module does not know."""
    _check_fields(tally)
    return {
        "version": VERSION, "fold": FOLD,
        "start": tally.start, "end": tally.end, "interval": tally.interval,
        "queue": tally.queue, "events": tally.events, "last_at": tally.last_at,
        "depth_bucket": tally._depth_bucket,
        "targets": [[name, dict(t.sl_target), t.sl_share, t.deadline_type]
                    for name, t in tally.targets.items()],
        "cells": [[list(key), _cell(c)] for key, c in tally.cells.items()],
        "agent_cells": [[list(key), _cell(c)] for key, c in tally.agent_cells.items()],
        **_tasks(tally),
        "agents": [[agent_id, a.status, a.since, a.busy_since, sorted(a.held)]
                   for agent_id, a in tally.agents.items()],
        "depth": [[*key, n] for key, n in tally.depth.items()],
        "due": [[due, task_id] for due, task_id in _pending(tally)],
    }


def _pending(tally: Tally) -> list[tuple[float, str]]:
    """The e-mails awaiting their first answer without the entries that can no longer count
    (answered or settled: both stay so; `_overdue` and `figures` skip them), sorted: a heap
    (what VERSION 1 says "due" is), one layout whatever the tally's own (a tally and the same
    one resumed write the same data), and what `_load` keeps as it is. They are taken in
    (due, task id) order, so the tally folds on exactly as before; most of the day's e-mails
    are answered, and each entry is ~50 bytes."""
    tasks = tally.tasks
    kept = [(due, task_id) for due, task_id in tally._due
            if (t := tasks.get(task_id)) is not None and not t.flags & (ANSWERED | SETTLED)]
    kept.sort()
    return kept


def load(data: Any) -> Tally:
    """A tally from `dump`'s data; ValueError if it is of another VERSION or not its shape."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"not a tally of version {VERSION}")
    if data.get("fold") != FOLD:
        raise ValueError("a tally of another fold (another release's metrics)")
    try:
        tally = _load(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a tally's state: {exc!r}") from exc
    _check_fields(tally)
    return tally


def _load(data: dict[str, Any]) -> Tally:
    targets = {str(name): QueueTarget({str(c): float(s) for c, s in sl.items()}, float(share),
                                      None if dtype is None else str(dtype))
               for name, sl, share, dtype in data["targets"]}
    end = data["end"]
    tally = Tally(_float(data["start"]), None if end is None else _float(end),
                  _float(data["interval"]), targets, data["queue"])
    tally.events = int(data["events"])
    tally.last_at = _float(data["last_at"])
    b = data["depth_bucket"]
    tally._depth_bucket = None if b is None else int(b)
    tally.cells = {(int(k[0]), str(k[1]), str(k[2]), str(k[3])): _uncell(c)
                   for k, c in data["cells"]}
    tally.agent_cells = {(int(k[0]), str(k[1])): _uncell(c) for k, c in data["agent_cells"]}
    # A task's kind is (queue, channel, deadline type), one tuple for all of its tasks.
    kinds = [(intern(str(q)), intern(str(c)), intern(str(d))) for c, q, d in data["kinds"]]
    kinds = [tally._kinds.setdefault(k, k) for k in kinds]  # one tuple each, even if listed twice
    strings = [intern(str(x)) for x in data["strings"]]
    tally.tasks = {intern(row[0]): _task(row, kinds, strings) for row in data["tasks"]}
    agents: dict[str, _Agent] = {}
    for agent_id, status, since, busy_since, held in data["agents"]:
        a = _Agent()
        a.status, a.since = str(status), _float(since)
        a.busy_since = None if busy_since is None else _float(busy_since)
        a.held = {str(h) for h in held}
        agents[str(agent_id)] = a
    tally.agents = agents
    tally.depth = {(str(q), str(ch), str(dt)): int(n) for q, ch, dt, n in data["depth"]}
    # The unanswered e-mails, in (due, id) order (as dump writes them: a heap that the load
    # need not sort again), each with the very float its task holds when it is the same time
    # (one id, one float per e-mail: the tally keeps every e-mail of the day, the router its
    # open ones).
    tasks, pending = tally.tasks, []
    for due, task_id in data["due"]:
        due, task_id = _float(due), intern(str(task_id))
        t = tasks.get(task_id)
        if t is not None and t.due == due and type(t.due) is float:
            due = t.due
        pending.append((due, task_id))
    pending.sort()
    tally._due = _Due(pending)
    return tally


def _tasks(tally: Tally) -> dict[str, list[Any]]:
    kinds: dict[tuple[str, str, str], int] = {}
    strings: dict[str, int] = {}
    rows = []
    for task_id, t in tally.tasks.items():
        queue, channel, dtype = t.kind
        kind = kinds.setdefault((channel, queue, dtype), len(kinds))
        agent = None if t.agent is None else strings.setdefault(t.agent, len(strings))
        mode = None if t.last_mode is None else strings.setdefault(t.last_mode, len(strings))
        rows.append([task_id, kind, t.created_at, t.due, t.flags, t.pending_since, t.inbound,
                     t.replies, agent, t.assigned_at, mode])
    return {"kinds": [list(k) for k in kinds], "strings": list(strings), "tasks": rows}


def _task(row: list[Any], kinds: list[tuple[str, str, str]], strings: list[str]) -> _Task:
    """A task's list back, its strings shared (`sys.intern`: every task repeats its channel,
    queue and deadline type; the id is shared with the log's events, storage/reports.py)."""
    (_, kind, created_at, due, flags, pending_since, inbound, replies, agent, assigned_at,
     mode) = row
    if kind < 0 or (agent is not None and agent < 0) or (mode is not None and mode < 0):
        raise ValueError(f"a task's index is negative: {row!r}")
    t = _Task.__new__(_Task)
    t.kind = kinds[kind]
    if type(pending_since) is type(created_at) and pending_since == created_at:
        pending_since = created_at  # one float (an e-mail pending since it came)
    t.created_at, t.due, t.pending_since, t.assigned_at = created_at, due, pending_since, \
        assigned_at
    t.inbound, t.replies = inbound, replies
    t.flags = int(flags & _FLAGS)  # TypeError if not a number (bool: as 0 or 1)
    t.agent = None if agent is None else strings[agent]
    t.last_mode = None if mode is None else strings[mode]
    return t


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def _cell(c: Cell) -> list[Any]:
    """[counts, stats, spans, depth_max, depth_end]; a stat is [n, total, low, high, bins]."""
    return [c.counts, {k: [s.n, s.total, s.low, s.high, s.bins] for k, s in c.stats.items()},
            c.spans, c.depth_max, c.depth_end]


def _uncell(data: list[Any]) -> Cell:
    counts, stats, spans, depth_max, depth_end = data
    c = Cell()
    c.counts = {str(k): int(v) for k, v in counts.items()}
    for k, (n, total, low, high, bins) in stats.items():
        s = c.stats[str(k)] = Stat()
        s.n, s.total = int(n), _float(total)
        s.low = None if low is None else _float(low)
        s.high = None if high is None else _float(high)
        s.bins = None if bins is None else [int(x) for x in bins]
    c.spans = {str(k): _float(v) for k, v in spans.items()}
    c.depth_max = None if depth_max is None else int(depth_max)
    c.depth_end = None if depth_end is None else int(depth_end)
    return c
