"""Durable intake rate: tasks per second through `SqlStore.create_task` with group commit.

A benchmark, not a test: it prints figures and never fails on time. On the real Twisted reactor,
N tasks (default 20,000) are submitted with up to 500 in flight, each with its two events, half
from returning customers (an identity already known) and half from new ones; a task counts once
its Deferred fired, that is once it is committed. Run on a temporary SQLite file and on a fresh
PostgreSQL database (SWITCHBOARD_TEST_PG_URL, created and dropped per run); the figure is the
median of 3 runs. Target: 2,000 tasks/s on each. The store is the runtime's `Storage`
(dispatcher/runtime/app.py: its group commit, as many batches in flight as `serve` has), and on
PostgreSQL the run holds the router's lease and commits behind its fence, as `serve` does
(`--unfenced`: without).

    .venv/bin/python bench/intake.py [--tasks N] [--runs R] [--in-flight K] [--unfenced] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from twisted.internet import defer, task

from dispatcher.domain import events as ev
from dispatcher.domain.tasks import Channel, Task
from dispatcher.runtime.app import Storage
from dispatcher.service.ports import Identity
from dispatcher.storage import schema

DEFAULT_TASKS = 20_000
DEFAULT_IN_FLIGHT = 500
DEFAULT_RUNS = 3
RETURNING_CUSTOMERS = 1_000  # known before the timed part starts
TARGET_TASKS_PER_SECOND = 2_000
PG_URL = os.environ.get(
    "SWITCHBOARD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
T0 = 1_700_000_000.0


@dataclass
class Run:
    seconds: float
    tasks: int
    commits: int

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        yield f"sqlite:///{tmp}/intake.db"


@contextmanager
def postgres_database() -> Iterator[str]:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"sb_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


BENCH_LEASE_SECONDS = 3600.0  # held for the run; the fence checks the epoch, not the time


async def hold_lease(storage: Any, fenced: bool = True) -> None:
    """PostgreSQL: hold the router's lease and commit behind its fence, as under `serve`
    (`storage`: dispatcher/runtime/app.py's `Storage`; on SQLite it has no leases)."""
    if fenced and storage.leases is not None:
        claim = await storage.leases.claim("bench", BENCH_LEASE_SECONDS)
        storage.commit.fence_with(storage.leases.fence(claim.lease.epoch), lambda f: None)


def new_task(task_id: str, at: float) -> tuple[Task, list[ev.Event]]:
    t = Task(
        id=task_id,
        channel=Channel.EMAIL,
        queue="support",
        customer_id=None,
        created_at=at,
        base_skills={"french": 3},
        attributes={"subject": f"Question {task_id}", "message_id": f"<{task_id}@example.org>"},
    )
    events = [
        ev.Event(ev.TASK_CREATED, at, task_id, data={"channel": "email", "queue": "support"}),
        ev.Event(ev.TASK_QUEUED, at, task_id, data={"reason": "new"}),
    ]
    return t, events


def pump(count: int, in_flight: int, submit: Callable[[int], defer.Deferred]) -> defer.Deferred:
    """Call submit(0..count-1), keeping at most `in_flight` unfired; fire when all have fired."""
    done: defer.Deferred[None] = defer.Deferred()
    state = {"next": 0, "finished": 0}

    def start_one() -> None:
        i = state["next"]
        state["next"] += 1
        submit(i).addCallbacks(finished, failed)

    def finished(_: object) -> None:
        state["finished"] += 1
        if state["next"] < count:
            start_one()
        elif state["finished"] == count and not done.called:
            done.callback(None)

    def failed(failure) -> None:
        if not done.called:
            done.errback(failure)

    if count == 0:
        done.callback(None)
    for _ in range(min(in_flight, count)):
        start_one()
    return done


async def one_run(reactor, url: str, tasks: int, in_flight: int, fenced: bool = True) -> Run:
    schema.upgrade(url)
    storage = Storage(url, reactor)  # as serve: its group commit, batches in flight and all
    storage.start()
    try:
        await hold_lease(storage, fenced)
        store, commit = storage.store, storage.commit
        known = [Identity("email", f"known-{i}@example.org") for i in range(RETURNING_CUSTOMERS)]

        def seed(i: int) -> defer.Deferred:
            t, events = new_task(f"seed-{i}", T0)
            return store.create_task(t, known[i], f"Known {i}", events)

        await pump(len(known), in_flight, seed)
        commits_before = commit.commits

        def submit(i: int) -> defer.Deferred:
            t, events = new_task(f"task-{i}", T0 + i)
            if i % 2 == 0:
                identity = known[(i // 2) % len(known)]
            else:
                identity = Identity("email", f"new-{i}@example.org")
            return store.create_task(t, identity, "", events)

        started = time.perf_counter()
        await pump(tasks, in_flight, submit)
        seconds = time.perf_counter() - started
        return Run(seconds, tasks, commit.commits - commits_before)
    finally:
        await storage.stop()


async def measure(reactor, name: str, database, args) -> float | None:
    runs: list[Run] = []
    for _ in range(args.runs):
        try:
            with database() as url:
                runs.append(await one_run(reactor, url, args.tasks, args.in_flight,
                                          not args.unfenced))
        except sa.exc.OperationalError as exc:
            print(f"{name}: not available ({exc.orig})", file=sys.stderr)
            return None
    median = statistics.median(r.rate for r in runs)
    if not args.json:
        each = ", ".join(f"{r.rate:,.0f}" for r in runs)
        batch = statistics.mean(r.tasks / max(r.commits, 1) for r in runs)
        mark = "meets" if median >= TARGET_TASKS_PER_SECOND else "below"
        print(
            f"{name:>8}: {median:>8,.0f} tasks/s  (median of {len(runs)}: {each}; "
            f"{batch:.0f} tasks per commit; {mark} the {TARGET_TASKS_PER_SECOND:,}/s target)"
        )
    return median


async def main(reactor, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--unfenced", action="store_true",
                        help="PostgreSQL: commit without the router's lease and its fence")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.json:
        print(f"intake: {args.tasks:,} tasks, {args.in_flight} in flight, half returning")
    result = {"sqlite_tasks_per_second": None, "postgres_tasks_per_second": None}
    if args.only in (None, "sqlite"):
        result["sqlite_tasks_per_second"] = await measure(reactor, "sqlite", sqlite_database, args)
    if args.only in (None, "postgres"):
        result["postgres_tasks_per_second"] = await measure(
            reactor, "postgres", postgres_database, args
        )
    if args.json:
        print(json.dumps({k: None if v is None else round(v, 1) for k, v in result.items()}))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
