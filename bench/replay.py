"""Benchmark of `switchboard replay` (dispatcher/runtime/replay.py): the wall time to replay one
recorded day on the real router. A benchmark, not a test: it prints figures and never fails
on time.

The day is recorded by the scenario simulator (centre.py) on the example centre of
docs/scenarios/blended-centre.toml, one day, with its agents and traffic multiplied by
`--scale` (30: 180 agents, about 19,000 tasks): every event the services log is kept, with an
id in log order, and the replay is fed those events as `switchboard replay` is fed the
database's. It also says which share of the tasks went to the same agent as recorded (1.0 when
the replay reproduces the day). With `--database`, the events, the tasks and the configuration
are also written to a SQLite file first (bulk inserts, not the dispatcher's path: only the
read is timed) and `read_period` (storage/day_log.py) is timed reading them back.

    .venv/bin/python bench/replay.py                   # scale 30, 3 repeats
    .venv/bin/python bench/replay.py --scale 10 --repeats 1
    .venv/bin/python bench/replay.py --database        # and the read from SQLite
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatcher.runtime import scenario  # noqa: E402
from dispatcher.runtime.centre import CentreRun  # noqa: E402
from dispatcher.runtime.replay import Setup, replay  # noqa: E402
from dispatcher.runtime.replay_day import day_from_events  # noqa: E402

EXAMPLE = ROOT / "docs" / "scenarios" / "blended-centre.toml"


class Logged:
    """An event as the log holds it: with its id."""

    __slots__ = ("id", "kind", "at", "task_id", "agent_id", "actor", "data")

    def __init__(self, id: int, e) -> None:
        self.id, self.kind, self.at, self.task_id = id, e.kind, e.at, e.task_id
        self.agent_id, self.actor, self.data = e.agent_id, e.actor, dict(e.data)


def recorded_day(scale: int):
    data = tomllib.loads(EXAMPLE.read_text())
    data["scenario"]["days"] = 1
    for group in data["agents"]:
        group["count"] *= scale
    for traffic in data["traffic"]:
        traffic["per_interval"] = [n * scale for n in traffic["per_interval"]]
    run = CentreRun(scenario.parse(data))
    ids = itertools.count(1)
    events: list[Logged] = []
    store = run.assignment.store
    create_task = store.create_task

    def logged_create(task, identity, name, created):
        events.extend(Logged(next(ids), e) for e in created)
        return create_task(task, identity, name, created)

    store.create_task = logged_create
    run.assignment.listen(lambda o: events.extend(Logged(next(ids), e) for e in o.events))
    run.run()
    setup = Setup(list(run.router.queues.values()), list(run.router.agents.values()))
    return run.scenario.start, run.scenario.start + scenario.DAY, events, setup


def write_database(url: str, start: float, events: list[Logged], setup) -> None:
    """The day as a database holds it: configuration, tasks (closed), both logs."""
    import sqlalchemy as sa

    from dispatcher.storage import rows, schema
    from dispatcher.storage import tables as t
    from dispatcher.storage.agents import thd_put_agent
    from dispatcher.storage.engine import make_engine
    from dispatcher.storage.queues import thd_put_queue

    schema.upgrade(url)
    engine = make_engine(url)
    tasks = {}
    for e in events:
        if e.kind == "task.created":
            d = e.data
            tasks[e.task_id] = {
                "id": e.task_id, "channel": d["channel"], "queue": d["queue"],
                "customer_id": None, "created_at": e.at, "base_skills": d["skills"],
                "priority": d["priority"], "deadline": d["deadline"], "attributes": {},
                "state": "completed", "step": 0, "required_skills": d["skills"],
                "updated_at": e.at}
    log = [{"task_id": e.task_id, "agent_id": e.agent_id, "kind": e.kind, "at": e.at,
            "actor": e.actor, "data": json.loads(json.dumps(e.data))} for e in events]
    with engine.begin() as conn:
        for q in setup.queues:
            thd_put_queue(conn, rows.queue_row(q))
        for a in setup.agents:
            thd_put_agent(conn, *rows.agent_rows(a, start))
        conn.execute(sa.insert(t.tasks), list(tasks.values()))
        conn.execute(sa.insert(t.task_events), [r for r in log if r["task_id"] is not None])
        conn.execute(sa.insert(t.agent_events), [r for r in log if r["task_id"] is None])
    engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--database", action="store_true", help="also time reading it from SQLite")
    args = p.parse_args()
    start, end, events, setup = recorded_day(args.scale)
    if args.database:
        from dispatcher.storage.day_log import read_period

        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/day.db"
            write_database(url, start, events, setup)
            reads = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                period = read_period(url, start, end)
                reads.append(time.perf_counter() - began)
            print(f"read_period from SQLite: {len(period.task_events)} task events, "
                  f"{len(period.agent_events)} agent events, {statistics.median(reads):.2f} s "
                  f"wall (median of {len(reads)}: {min(reads):.2f}-{max(reads):.2f} s)")
    tasks = [e for e in events if e.task_id is not None]
    agents = [e for e in events if e.task_id is None]
    times, share, arrivals = [], None, 0
    for _ in range(args.repeats):
        began = time.perf_counter()
        day = day_from_events(start, end, tasks, agents, {})
        result = replay(day, setup, sorted(events, key=lambda e: e.at))
        times.append(time.perf_counter() - began)
        share, arrivals = result.same_agent_share(), len(day.arrivals)
    print(f"{len(setup.agents)} agents, {arrivals} tasks, {len(events)} events: replay "
          f"{statistics.median(times):.2f} s wall (median of {len(times)}: "
          f"{min(times):.2f}-{max(times):.2f} s); same agent as recorded: {share}")


if __name__ == "__main__":
    main()
