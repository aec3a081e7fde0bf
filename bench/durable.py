"""Durable routing end to end, against a naive SQL assigner in the same run (issue 15, point 6).

A benchmark, not a test: it prints figures and never fails on time.

Switchboard side: the real `Storage` (engine, Pool, GroupCommit, SqlStore) of
dispatcher/runtime/app.py behind the history cache's `WatchedStore`, the Router (with serve's offer
ids), Assignment, Intake and Sessions wired as `serve` wires them, on a fresh SQLite file and on a
fresh PostgreSQL database (SWITCHBOARD_TEST_PG_URL's server, created and dropped per run). Model: N
agents (default 500) in Q queues (default 20), each queue requiring one of S skills (default 10) at
a level 1-5; each agent has 2-4 skills and belongs to every queue whose requirement they meet (every
queue has members); capacity 3 e-mails. D tasks (default 10,000, e-mails, queues at random) are
submitted through Intake up front while every agent is offline: about two seconds of timed work on
PostgreSQL, where 2,000 (half a second, a few dozen commits) gave pair ratios that spread 2.9-4.1x
in one command. The timed part starts when every agent logs in and ends when the D tasks are
completed: simulated agents, in process, call the Sessions use cases as the console would, accepting
each offer once it is committed and completing each task once its accept is committed. Every step is
committed before the next one. The garbage collector runs as under `serve` (runtime/collector.py:
everything frozen once the state is restored, no automatic full pass). On PostgreSQL the run holds
the router's lease and every commit passes its fence, as under `serve` (`--unfenced`: without).
Decisions = offers made (committed), assignments = accepts committed. Also printed: the CPU time of
this process (every thread) per task completed in the timed part, which says more than the rate on a
loaded machine (the database server's own CPU is not in it), and the part of it spent in the
reactor's thread (the router, the services, the rows made at call time: what one process can do at
most; the rest is the database threads').

Baseline: a helpdesk-style SQL assigner on the same model (tables agents, skills, tasks in their
own fresh database or file), 4 worker threads, one transaction per assignment: the oldest queued
task, then `SELECT ... FOR UPDATE SKIP LOCKED ... ORDER BY last_idle LIMIT 1` for a free agent
with the skill (on SQLite: `BEGIN IMMEDIATE` and the same query without the locking clauses;
WAL, synchronous=FULL as Switchboard's engine), update task and agent, commit; then the worker
completes it in a second transaction (task completed, agent freed, last_idle set). Each of its
assignments is one decision. The ratio is Switchboard's decisions/s over the assigner's.

    .venv/bin/python bench/durable.py [--agents N] [--queues Q] [--skills S] [--depth D]
        [--runs R] [--workers W] [--only sqlite|postgres] [--unfenced] [--json] [--profile N]

`--profile N`: cProfile of the reactor's thread in the timed part of every Switchboard run
(summed), its N costliest functions by own time printed on stderr (it slows the runs: read the
shares, not the rates).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import random
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from twisted.internet import defer, task

from bench import machine
from bench.intake import hold_lease, postgres_database, pump, sqlite_database
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel
from dispatcher.runtime.app import Storage, offer_ids
from dispatcher.runtime.collector import Collector
from dispatcher.service.assignment import Assignment
from dispatcher.service.history_cache import HISTORY_CACHE_CUSTOMERS, HistoryCache, WatchedStore
from dispatcher.service.intake import Intake
from dispatcher.service.sessions import Sessions
from dispatcher.storage import schema
from dispatcher.storage.sql import SqlStore

DEFAULT_AGENTS = 500
DEFAULT_QUEUES = 20
DEFAULT_SKILLS = 10
DEFAULT_DEPTH = 10_000
DEFAULT_RUNS = 3
DEFAULT_WORKERS = 4
EMAIL_CAPACITY = 3  # the default capacity (dispatcher.domain.agents.DEFAULT_CAPACITY)
IN_FLIGHT = 500  # submissions in flight while the queue fills up (not timed)
SEED = 15


# ---------------------------------------------------------------------------- the model


@dataclass
class Model:
    requirement: dict[str, tuple[str, int]]  # queue -> (skill, level)
    agents: dict[str, dict[str, int]]  # agent -> skills
    tasks: list[str]  # the queue of each task, in submission order

    def queues_of(self, skills: dict[str, int]) -> set[str]:
        return {q for q, (s, lvl) in self.requirement.items() if skills.get(s, -1) >= lvl}


def make_model(args: argparse.Namespace) -> Model:
    rng = random.Random(SEED)
    skills = [f"s{i:02d}" for i in range(args.skills)]
    requirement = {f"q{i:03d}": (rng.choice(skills), rng.randint(1, 5))
                   for i in range(args.queues)}
    names = sorted(requirement)
    agents: dict[str, dict[str, int]] = {}
    for i in range(args.agents):
        have = {s: rng.randint(0, 10) for s in rng.sample(skills, min(len(skills),
                                                                     rng.randint(2, 4)))}
        skill, level = requirement[names[i % len(names)]]  # every queue has members
        have[skill] = max(have.get(skill, 0), rng.randint(level, 10))
        agents[f"a{i:05d}"] = have
    tasks = [rng.choice(names) for _ in range(args.depth)]
    return Model(requirement, agents, tasks)


@dataclass
class Run:
    seconds: float
    decisions: int
    assignments: int
    completions: int
    commits: int = 0
    cpu_seconds: float | None = None  # this process's CPU (all threads) in the timed part
    reactor_cpu_seconds: float | None = None  # of which the reactor's thread

    @property
    def cpu_per_task_us(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds / self.completions * 1e6

    @property
    def reactor_cpu_per_task_us(self) -> float | None:
        return (None if self.reactor_cpu_seconds is None
                else self.reactor_cpu_seconds / self.completions * 1e6)

    @property
    def decision_rate(self) -> float:
        return self.decisions / self.seconds

    @property
    def assignment_rate(self) -> float:
        return self.assignments / self.seconds


# ---------------------------------------------------------------------------- Switchboard


async def configure(store: SqlStore, model: Model) -> None:
    """The queues, and the agents offline (they log in when the timed part starts)."""
    for name, (skill, level) in sorted(model.requirement.items()):
        await store.put_queue(Queue(name, requirement={skill: level}))
    for agent_id, skills in sorted(model.agents.items()):
        await store.put_agent(Agent(agent_id, skills=dict(skills), queues=model.queues_of(skills),
                                    channels={Channel.EMAIL}, status=Presence.OFFLINE))


async def switchboard_run(reactor, url: str, model: Model, fenced: bool = True,
                          profile: cProfile.Profile | None = None) -> Run:
    schema.upgrade(url)
    storage = Storage(url, reactor)
    storage.start()
    await hold_lease(storage, fenced)
    assignment: Assignment | None = None
    collector = Collector(reactor)
    try:
        store = storage.store
        await configure(store, model)
        # As App.__init__ and App._start: the services over the store (wrapped, as serve wraps
        # it, so that every write keeps the offers' history cache fresh), the router rebuilt.
        cache = HistoryCache(customers=HISTORY_CACHE_CUSTOMERS)
        store = WatchedStore(store, cache)
        router = Router(new_offer_id=offer_ids())
        assignment = Assignment(router, store, reactor)
        intake = Intake(assignment, store, reactor)
        sessions = Sessions(assignment)
        await assignment.restore(await store.load_state())
        collector.start()  # as App._start: full collections on schedule (runtime/collector.py)
        await pump(len(model.tasks), IN_FLIGHT,
                   lambda i: intake.submit(Channel.EMAIL, model.tasks[i]))
        if len(router.tasks) != len(model.tasks):
            raise RuntimeError(f"{len(router.tasks)} open tasks, {len(model.tasks)} submitted")
        while cache.reading:  # the customer cards intake prefetched: part of intake, untimed
            await task.deferLater(reactor, 0.01, lambda: None)

        finished: defer.Deferred[None] = defer.Deferred()
        count = {"offers": 0, "accepts": 0, "completes": 0}

        def failed(failure) -> None:
            if not finished.called:
                finished.errback(failure)

        def accepted(_: Outcome, agent_id: str, task_id: str) -> None:
            count["accepts"] += 1
            sessions.complete(agent_id, task_id).addCallbacks(completed, failed)

        def completed(_: Outcome) -> None:
            count["completes"] += 1
            if count["completes"] == len(model.tasks) and not finished.called:
                finished.callback(None)

        def on_outcome(outcome: Outcome) -> None:  # after its commit, as the console's push
            for offer in outcome.offers:
                count["offers"] += 1
                d = sessions.accept(offer.agent_id, offer.id)
                d.addCallback(accepted, offer.agent_id, offer.task_id).addErrback(failed)

        assignment.listen(on_outcome)
        commits_before = getattr(storage.commit, "commits", 0)
        started, cpu_started = time.perf_counter(), time.process_time()
        reactor_started = time.thread_time()  # this coroutine runs in the reactor's thread
        with profile or contextlib.nullcontext():  # enabled in the timed part only
            for agent_id in sorted(model.agents):
                sessions.login(agent_id).addErrback(failed)
            await finished
        seconds = time.perf_counter() - started
        return Run(seconds, count["offers"], count["accepts"], count["completes"],
                   getattr(storage.commit, "commits", 0) - commits_before,
                   time.process_time() - cpu_started, time.thread_time() - reactor_started)
    finally:
        if assignment is not None:
            assignment.stop()  # its offer and wrap-up timers
        collector.stop()
        await storage.stop()


# ---------------------------------------------------------------------------- the assigner

ASSIGNER_SCHEMA = [
    "CREATE TABLE agents (id VARCHAR(16) PRIMARY KEY, active INTEGER NOT NULL,"
    " capacity INTEGER NOT NULL, last_idle DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE skills (agent_id VARCHAR(16) NOT NULL REFERENCES agents(id),"
    " skill VARCHAR(16) NOT NULL, level INTEGER NOT NULL, PRIMARY KEY (agent_id, skill))",
    "CREATE INDEX skills_by_level ON skills (skill, level)",
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, queue VARCHAR(16) NOT NULL,"
    " skill VARCHAR(16) NOT NULL, level INTEGER NOT NULL, state VARCHAR(16) NOT NULL,"
    " agent_id VARCHAR(16) REFERENCES agents(id), created_at DOUBLE PRECISION NOT NULL,"
    " assigned_at DOUBLE PRECISION, completed_at DOUBLE PRECISION)",
    "CREATE INDEX tasks_queued ON tasks (state, created_at)",
]
NEXT_TASK = ("SELECT id, skill, level FROM tasks WHERE state = 'queued'"
             " ORDER BY created_at, id LIMIT 1{lock}")
FREE_AGENT = ("SELECT a.id FROM agents a JOIN skills s ON s.agent_id = a.id"
              " WHERE s.skill = ? AND s.level >= ? AND a.active < a.capacity"
              " ORDER BY a.last_idle LIMIT 1{lock}")
ASSIGN_TASK = "UPDATE tasks SET state = 'assigned', agent_id = ?, assigned_at = ? WHERE id = ?"
TAKE_AGENT = "UPDATE agents SET active = active + 1 WHERE id = ?"
COMPLETE_TASK = "UPDATE tasks SET state = 'completed', completed_at = ? WHERE id = ?"
FREE_AGENT_UPDATE = "UPDATE agents SET active = active - 1, last_idle = ? WHERE id = ?"


class Assigner:
    """The naive assigner over DB-API connections: `connect()` gives a new one; `begin(conn)`
    opens a transaction (psycopg2 opens one by itself; SQLite needs BEGIN IMMEDIATE)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self.url = parsed
        task_lock = "" if self.sqlite else " FOR UPDATE SKIP LOCKED"
        agent_lock = "" if self.sqlite else " FOR UPDATE OF a SKIP LOCKED"
        self.next_task = self._sql(NEXT_TASK.format(lock=task_lock))
        self.free_agent = self._sql(FREE_AGENT.format(lock=agent_lock))
        self.assign_task, self.take_agent = self._sql(ASSIGN_TASK), self._sql(TAKE_AGENT)
        self.complete_task = self._sql(COMPLETE_TASK)
        self.free_agent_update = self._sql(FREE_AGENT_UPDATE)

    def _sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def connect(self):
        if self.sqlite:
            conn = sqlite3.connect(self.url.database, isolation_level=None,
                                   check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        import psycopg2

        u = self.url
        return psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username,
                                password=u.password, dbname=u.database)

    def begin(self, cur) -> None:
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")

    def load(self, model: Model, now: float) -> None:
        conn = self.connect()
        cur = conn.cursor()
        self.begin(cur)
        for statement in ASSIGNER_SCHEMA:
            cur.execute(statement)
        rng = random.Random(SEED)
        cur.executemany(self._sql("INSERT INTO agents VALUES (?, 0, ?, ?)"), [
            (a, EMAIL_CAPACITY, now - rng.random() * 600) for a in sorted(model.agents)])
        cur.executemany(self._sql("INSERT INTO skills VALUES (?, ?, ?)"), [
            (a, s, lvl) for a, skills in sorted(model.agents.items())
            for s, lvl in sorted(skills.items())])
        cur.executemany(self._sql(
            "INSERT INTO tasks (id, queue, skill, level, state, created_at)"
            " VALUES (?, ?, ?, ?, 'queued', ?)"), [
            (i, q, *model.requirement[q], now + i * 1e-3) for i, q in enumerate(model.tasks)])
        conn.commit()
        if not self.sqlite:
            cur.execute("ANALYZE")
            conn.commit()
        conn.close()

    def work(self, counts: dict[str, int], lock: threading.Lock) -> None:
        conn = self.connect()
        cur = conn.cursor()
        try:
            while True:
                self.begin(cur)
                cur.execute(self.next_task)
                row = cur.fetchone()
                if row is None:
                    conn.rollback()
                    return
                task_id, skill, level = row
                cur.execute(self.free_agent, (skill, level))
                agent = cur.fetchone()
                if agent is None:  # every qualified agent is full or locked: try again
                    conn.rollback()
                    with lock:
                        counts["retries"] += 1
                    time.sleep(0.001)
                    continue
                cur.execute(self.assign_task, (agent[0], time.time(), task_id))
                cur.execute(self.take_agent, (agent[0],))
                conn.commit()
                self.begin(cur)
                cur.execute(self.complete_task, (time.time(), task_id))
                cur.execute(self.free_agent_update, (time.time(), agent[0]))
                conn.commit()
                with lock:
                    counts["assignments"] += 1
        finally:
            conn.close()


def assigner_run(url: str, model: Model, workers: int) -> Run:
    assigner = Assigner(url)
    assigner.load(model, time.time())
    counts = {"assignments": 0, "retries": 0}
    lock = threading.Lock()
    with ThreadPoolExecutor(workers, thread_name_prefix="assigner") as threads:
        started = time.perf_counter()
        futures = [threads.submit(assigner.work, counts, lock) for _ in range(workers)]
        for f in futures:
            f.result()  # a worker's error is raised here
        seconds = time.perf_counter() - started
    n = counts["assignments"]
    if n != len(model.tasks):
        raise RuntimeError(f"the assigner assigned {n} of {len(model.tasks)} tasks")
    return Run(seconds, n, n, n, commits=2 * n)


# ---------------------------------------------------------------------------- runs


async def measure(reactor, name: str, database: Callable, model: Model,
                  args: argparse.Namespace) -> dict | None:
    pairs: list[tuple[Run, Run]] = []
    cores: list[float] = []  # the core's speed before each pair (bench/machine.py)
    for _ in range(args.runs):
        cores.append(machine.core_ms())
        try:
            with database() as url:
                ours = await switchboard_run(reactor, url, model, not args.unfenced,
                                             args.profiler)
            with database() as url:
                theirs = assigner_run(url, model, args.workers)
        except sa.exc.OperationalError as exc:
            print(f"{name}: not available ({exc.orig})", file=sys.stderr)
            return None
        pairs.append((ours, theirs))
    ours_rate = statistics.median(o.decision_rate for o, _ in pairs)
    ours_assign = statistics.median(o.assignment_rate for o, _ in pairs)
    theirs_rate = statistics.median(t.decision_rate for _, t in pairs)
    ratios = [o.decision_rate / t.decision_rate for o, t in pairs]
    result = {
        "switchboard_decisions_per_second": round(ours_rate, 1),
        "switchboard_assignments_per_second": round(ours_assign, 1),
        "switchboard_tasks_per_commit": round(statistics.mean(
            o.completions / max(o.commits, 1) for o, _ in pairs), 2),
        "switchboard_cpu_us_per_task": round(statistics.median(
            o.cpu_per_task_us for o, _ in pairs), 1),
        "switchboard_reactor_cpu_us_per_task": round(statistics.median(
            o.reactor_cpu_per_task_us for o, _ in pairs), 1),
        "assigner_decisions_per_second": round(theirs_rate, 1),
        "ratio_of_medians": round(ours_rate / theirs_rate, 3),
        "pair_ratios": [round(r, 3) for r in ratios],
        "median_pair_ratio": round(statistics.median(ratios), 3),
        "core_ms_before_pairs": cores,
    }
    if not args.json:
        each = ", ".join(f"{o.decision_rate:,.0f}" for o, _ in pairs)
        their_each = ", ".join(f"{t.decision_rate:,.0f}" for _, t in pairs)
        print(f"{name:>8}: switchboard {ours_rate:>7,.0f} decisions/s, {ours_assign:,.0f} "
              f"assignments/s (runs: {each}; "
              f"{result['switchboard_tasks_per_commit']} tasks completed per commit; process CPU "
              f"{result['switchboard_cpu_us_per_task']:,.0f} us per task, of which the reactor's "
              f"thread {result['switchboard_reactor_cpu_us_per_task']:,.0f} us; database server "
              f"apart)")
        print(f"{'':>8}  assigner    {theirs_rate:>7,.0f} decisions/s "
              f"({args.workers} workers; runs: {their_each})")
        print(f"{'':>8}  ratio {result['ratio_of_medians']:.2f}x (pairs: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; median "
              f"{result['median_pair_ratio']:.2f}x; core before each pair: "
              f"{', '.join(f'{c} ms' for c in cores)})")
    return result


async def main(reactor, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    parser.add_argument("--queues", type=int, default=DEFAULT_QUEUES)
    parser.add_argument("--skills", type=int, default=DEFAULT_SKILLS)
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH,
                        help="tasks submitted up front, all routed and completed")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="threads of the SQL assigner")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--unfenced", action="store_true",
                        help="PostgreSQL: commit without the lease's fence (to measure its cost)")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="print the N costliest functions of the reactor's thread (stderr)")
    args = parser.parse_args(argv)
    args.profiler = cProfile.Profile() if args.profile > 0 else None
    if min(args.agents, args.queues, args.skills, args.depth, args.runs, args.workers) < 1:
        parser.error("every size must be at least 1")
    model = make_model(args)
    result: dict = {"agents": args.agents, "queues": args.queues, "skills": args.skills,
                    "depth": args.depth, "runs": args.runs, "machine_before": machine.now()}
    if not args.json:
        print(f"durable: {args.agents} agents, {args.queues} queues, {args.skills} skills, "
              f"{args.depth:,} tasks up front, {args.runs} runs; before: "
              f"{machine.said(result['machine_before'])}")
    if args.only in (None, "sqlite"):
        result["sqlite"] = await measure(reactor, "sqlite", sqlite_database, model, args)
    if args.only in (None, "postgres"):
        result["postgres"] = await measure(reactor, "postgres", postgres_database, model, args)
    result["machine_after"] = machine.now()
    if args.profiler is not None:
        stats = pstats.Stats(args.profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(args.profile)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"after: {machine.said(result['machine_after'])}")


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
