"""Today's figures after a restart: the whole day's log folded, against a checkpoint and the log
after it (issue 15, item 3: "supervision starts from a daily summary").

A benchmark, not a test: it prints figures and never fails on time. For each database (a
temporary SQLite file; a fresh PostgreSQL database at SWITCHBOARD_TEST_PG_URL, created and
dropped) it

1. fills a day: bench/startup.py's fill (queues, agents, sample e-mails through the real intake
   and sessions, cloned in bulk) with H e-mails handled since the start of today (UTC; default
   100,000, nine events each) and N e-mails still open (default 20,000, over the last 24 h);
2. in a child process, folds the day and saves a checkpoint as `serve` does (`reports.Today`
   with checkpoints on: what the save costs, its size); then appends a tail to the log, the
   minute after the checkpoint (default 2,000 events: offers made and rejected);
3. times, each run in a fresh child process (alternated, medians of R runs), what `serve`
   waits for before today's figures are ready: `Today.refresh()` on a new `SqlReportStore`
   - "full": no checkpoint: the day's log read from its start (with its context);
   - "checkpoint": today's checkpoint loaded, the log checked against it (`count_events`), and
     only the log after it read;
   and checks, in each "checkpoint" run, that the figures equal a full fold's, every one.

    .venv/bin/python bench/today.py [--handled H] [--open N] [--tail T] [--runs R]
                                    [--only sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import startup  # noqa: E402 - after the path above

DEFAULT_HANDLED = 100_000
DEFAULT_OPEN = 20_000
DEFAULT_TAIL = 2_000
DEFAULT_RUNS = 5


def child(*args: str) -> dict[str, Any]:
    """Run this file as a child with `args` (bench/startup.py's way)."""
    return startup.child(*args, script=__file__)


def fill(url: str, open_tasks: int, handled: int) -> dict[str, Any]:
    """bench/startup.py's fill: the day's rows through the real intake, then cloned."""
    return startup.child("fill", url, str(open_tasks), str(handled))


def measure(name: str, database: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    import sqlalchemy as sa

    out: dict[str, Any] = {}
    try:
        with database() as url:
            started = time.perf_counter()
            filled = fill(url, args.open, args.handled)
            out["fill_seconds"] = round(time.perf_counter() - started, 1)
            out["events"] = filled["events"]
            saved = child("save", url)
            out.update({k: saved[k] for k in ("day_events", "save_seconds", "checkpoint_bytes",
                                              "fold_seconds")})
            out["tail_events"] = append_tail(url, args.tail, saved["last_at"])
            full, resumed = [], []
            for _ in range(args.runs):  # alternated: load changes hit both alike
                full.append(child("ready", url, "full"))
                resumed.append(child("ready", url, "checkpoint"))
            if not all(r["resumed"] == "checkpoint" and r["equal"] for r in resumed):
                raise RuntimeError(f"a run did not resume or differed: {resumed}")
            out["full_seconds"] = statistics.median(r["seconds"] for r in full)
            out["checkpoint_seconds"] = statistics.median(r["seconds"] for r in resumed)
            out["full_runs"] = [round(r["seconds"], 3) for r in full]
            out["checkpoint_runs"] = [round(r["seconds"], 3) for r in resumed]
            out["checkpoint_phases"] = {
                k: round(statistics.median(r["phases"][k] for r in resumed), 3)
                for k in resumed[0]["phases"]}
            out["speedup"] = out["full_seconds"] / out["checkpoint_seconds"]
            out["figures_equal"] = True
    except sa.exc.OperationalError as exc:
        print(f"{name}: not available ({exc.orig})", file=sys.stderr)
        return None
    if not args.json:
        print(f"{name}: {out['day_events']:,} events today ({out['events']:,} in the log), "
              f"filled in {out['fill_seconds']:.0f} s")
        print(f"  checkpoint: {out['checkpoint_bytes'] / 1e6:.1f} MB JSON, saved in "
              f"{out['save_seconds']:.2f} s (off the reactor); the day folded in "
              f"{out['fold_seconds']:.2f} s before it")
        print(f"  today's figures ready after a restart: full fold {out['full_seconds']:.2f} s "
              f"(runs {', '.join(f'{s:.2f}' for s in out['full_runs'])}); checkpoint + "
              f"{out['tail_events']:,} events of tail {out['checkpoint_seconds']:.2f} s (runs "
              f"{', '.join(f'{s:.2f}' for s in out['checkpoint_runs'])}): "
              f"{out['speedup']:.1f}x; figures equal in every run")
        print("  checkpoint phases (median s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in out["checkpoint_phases"].items()))
    return out


def append_tail(url: str, count: int, after: float) -> int:
    """`count` events over the minute after `after`: offers of open tasks, half rejected."""
    import sqlalchemy as sa

    from dispatcher.domain import events as ev
    from dispatcher.storage import tables as t

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(
            sa.select(t.tasks.c.id).where(t.tasks.c.state == "queued").limit(max(1, count)))]
        rows = []
        for i in range(count):
            at = after + 60.0 * i / max(1, count)
            agent = f"agent{random.randrange(200):03d}"
            rows.append({"kind": ev.TASK_OFFERED if i % 2 == 0 else ev.OFFER_REJECTED,
                         "at": at, "task_id": ids[i % len(ids)], "agent_id": agent,
                         "actor": "system", "data": {"offer_id": f"tail{i // 2}"}})
        if rows:
            conn.execute(t.task_events.insert(), rows)
    engine.dispose()
    return count


def main(argv: list[str]) -> None:
    from bench.intake import postgres_database, sqlite_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handled", type=int, default=DEFAULT_HANDLED)
    parser.add_argument("--open", type=int, default=DEFAULT_OPEN)
    parser.add_argument("--tail", type=int, default=DEFAULT_TAIL)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    before = startup.load()
    if not args.json:
        print(f"today's figures after a restart: {args.handled:,} e-mails handled today, "
              f"{args.open:,} open, a tail of {args.tail:,} events, {args.runs} runs; load "
              f"average {before}")
    result: dict[str, Any] = {"load_before": before}
    for name, database in (("sqlite", sqlite_database), ("postgres", postgres_database)):
        if args.only in (None, name):
            result[name] = measure(name, database, args)
    result["load_after"] = startup.load()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"load average after: {result['load_after']}")


# --- the children ------------------------------------------------------------------------------


class Queues:
    """What `Today` reads of the Store: the queues (for their targets), read once."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        from dispatcher.storage.queues import thd_list_queues

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            self.queues = thd_list_queues(conn)
        engine.dispose()

    def list_queues(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(self.queues)


def timed(obj: Any, name: str, phases: dict[str, float]) -> None:
    """Add the time from each call of `obj.name` to its Deferred's firing to `phases[name]`."""
    fn = getattr(obj, name)

    def wrapper(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()

        def done(result: Any) -> Any:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
            return result
        return fn(*a, **kw).addBoth(done)
    setattr(obj, name, wrapper)


async def run_save(reactor: Any, url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from dispatcher.service.reports import Today
    from dispatcher.storage import tables as t
    from dispatcher.storage.reports import SqlReportStore

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the fill's own server saved one before the bulk rows
        conn.execute(t.report_checkpoints.delete())
    engine.dispose()
    events = SqlReportStore(url, reactor)
    events.start()
    try:
        today = Today(events, Queues(url), reactor, checkpoint_seconds=60.0)
        t0 = time.perf_counter()
        figures = await today.refresh()
        fold = time.perf_counter() - t0
        t0 = time.perf_counter()
        size = await today.checkpoint()
        save = time.perf_counter() - t0
        assert today.tally is not None
        return {"fold_seconds": fold, "save_seconds": save, "checkpoint_bytes": size,
                "day_events": figures.events, "last_at": today.tally.last_at}
    finally:
        events.stop()


async def run_ready(reactor: Any, url: str, how: str) -> dict[str, Any]:
    from dispatcher.service.reports import Today
    from dispatcher.storage.reports import SqlReportStore

    events = SqlReportStore(url, reactor)
    events.start()
    phases: dict[str, float] = {}
    for name in ("load_checkpoint", "count_events", "fold_events"):
        timed(events, name, phases)
    try:
        store = Queues(url)
        today = Today(events, store, reactor,
                      checkpoint_seconds=60.0 if how == "checkpoint" else 0.0)
        t0 = time.perf_counter()
        figures = await today.refresh()
        seconds = time.perf_counter() - t0
        out: dict[str, Any] = {"seconds": seconds, "resumed": today.resumed,
                               "phases": dict(phases)}
        if how == "checkpoint":  # the same figures as a full fold, both up to the same time
            full = Today(events, store, reactor)
            await full.refresh()
            now = reactor.seconds()
            assert today.tally is not None and full.tally is not None
            out["equal"] = (today.tally.figures(now).rows() == full.tally.figures(now).rows()
                            and figures.events == full.tally.events)
        return out
    finally:
        events.stop()


def child_main(argv: list[str]) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    import logging

    from twisted.internet import defer, task

    logging.basicConfig(level=logging.WARNING)

    async def go(reactor: Any) -> None:
        if argv[0] == "save":
            out = await run_save(reactor, argv[1])
        else:
            out = await run_ready(reactor, argv[1], argv[2])
        print(json.dumps(out))

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
