"""Report generation time for a month of a 200-agent centre (about 1 million events).

A benchmark, not a test: it prints figures and never fails on time. It writes a synthetic month
into a temporary SQLite file and a fresh PostgreSQL database (SWITCHBOARD_TEST_PG_URL, created
and dropped per run): 200 agents logging in and out with breaks; calls (offered, some missed or
rejected and re-offered, answered, talked, wrapped up; some abandoned) and e-mails (received,
acknowledged, answered, sent, completed; some follow-ups) at a steady daily load, sized to reach
`--events`. Then, per database, the median of `--runs` runs of:

- read: the log of the month streamed through `SqlReportStore` into a sink that only counts
  (the baseline: what reading costs);
- report 1d / 1h: the same read folded into `Tally`, then every figure taken and the report
  rendered as text (what `switchboard report` does), by day and by hour; JSON, CSV and HTML
  rendering timed apart;
with the ratio of each to the read, and the process's peak memory. Target: < 10 s for the
month's report on each database.

    .venv/bin/python bench/report.py [--events N] [--agents A] [--days D] [--runs R]
                                     [--only sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from admin.report_views import render
from dispatcher.domain import events as ev
from dispatcher.domain.metrics import DAY, HOUR, QueueTarget, Tally
from dispatcher.service.reports import Report
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from dispatcher.storage.reports import SqlReportStore

PG_URL = os.environ.get(
    "SWITCHBOARD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
MONTH_START = 1_790_812_800.0  # 2026-10-01 00:00 UTC
DEFAULT_EVENTS = 1_000_000
DEFAULT_AGENTS = 200
DEFAULT_DAYS = 30
DEFAULT_RUNS = 3
TARGET_SECONDS = 10.0
QUEUES = ("sales", "support", "billing", "tech")
TARGETS = {q: QueueTarget({"phone": 20.0, "email": 8 * 3600.0}, 0.8, "sliding") for q in QUEUES}
EVENTS_PER_TASK = 10.2  # measured on the generator below: calls ~9.7, e-mails ~11
CALL_SHARE = 0.6
INSERT_BATCH = 20_000


class Generator:
    """A synthetic month, in time order, as rows of the two logs."""

    def __init__(self, events: int, agents: int, days: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.days = days
        self.agents = [f"agent{i:03d}" for i in range(agents)]
        tasks = int(events / EVENTS_PER_TASK)
        self.tasks_per_day = max(1, tasks // days)
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return f"t{self.n:08d}"

    def day(self, d: int) -> list[tuple]:
        """(at, table, row) of day `d`, opening 08:00-20:00."""
        rng, out = self.rng, []
        day0 = MONTH_START + d * DAY
        for a in self.agents:
            start = day0 + 8 * HOUR + rng.uniform(-600, 4 * HOUR)
            end = min(start + 8 * HOUR, day0 + 21 * HOUR)
            out.append(self._status(start, a, "available"))
            pause = start + rng.uniform(2, 5) * HOUR
            out.append(self._status(pause, a, "break"))
            out.append(self._status(pause + 900, a, "available"))
            out.append(self._status(end, a, "offline"))
        for _ in range(self.tasks_per_day):
            at = day0 + 8 * HOUR + rng.random() * 12 * HOUR
            queue = rng.choice(QUEUES)
            agent = rng.choice(self.agents)
            if rng.random() < CALL_SHARE:
                out += self._call(self._id(), at, queue, agent)
            else:
                out += self._email(self._id(), at, queue, agent)
        return out

    def _status(self, at: float, agent: str, status: str) -> tuple:
        return (at, "a", {"agent_id": agent, "task_id": None, "kind": ev.AGENT_STATUS, "at": at,
                          "actor": ev.agent_actor(agent), "data": {"status": status}})

    def _ev(self, at: float, task: str, what: str, agent: str | None = None, **data) -> tuple:
        return (at, "t", {"task_id": task, "agent_id": agent, "kind": what, "at": at,
                          "actor": ev.agent_actor(agent) if agent else ev.SYSTEM, "data": data})

    def _offer(self, at: float, task: str, agent: str) -> list[tuple]:
        rng, out = self.rng, []
        if rng.random() < 0.1:  # missed first: another agent gets it
            other = rng.choice(self.agents)
            offer = uuid.UUID(int=rng.getrandbits(128)).hex
            out.append(self._ev(at, task, ev.TASK_OFFERED, other, offer_id=offer))
            at += 20
            out.append(self._ev(at, task, ev.OFFER_EXPIRED, other, offer_id=offer))
        offer = uuid.UUID(int=rng.getrandbits(128)).hex
        out.append(self._ev(at, task, ev.TASK_OFFERED, agent, offer_id=offer))
        at += rng.uniform(1, 8)
        out.append(self._ev(at, task, ev.OFFER_ACCEPTED, agent, offer_id=offer))
        out.append(self._ev(at, task, ev.TASK_ASSIGNED, agent, via="offer", offer_id=offer))
        return out

    def _call(self, task: str, at: float, queue: str, agent: str) -> list[tuple]:
        rng = self.rng
        out = [self._ev(at, task, ev.TASK_CREATED, channel="phone", queue=queue, deadline=None),
               self._ev(at, task, ev.TASK_QUEUED, reason="new")]
        wait = rng.expovariate(1 / 25)
        if rng.random() < 0.05:
            out.append(self._ev(at + wait, task, ev.TASK_ABANDONED, waited=wait))
            return out
        out += self._offer(at + wait, task, agent)
        answered = out[-1][0]
        out.append(self._ev(answered, task, ev.CALL_ANSWERED, agent, agent_id=agent))
        talk = rng.expovariate(1 / 180)
        out.append(self._ev(answered + talk, task, ev.CALL_ENDED, agent, by="caller",
                            talk_seconds=talk))
        out.append(self._ev(answered + talk, task, ev.TASK_WRAP_UP, agent))
        out.append(self._ev(answered + talk + 30, task, ev.TASK_COMPLETED, agent,
                            disposition="done"))
        return out

    def _email(self, task: str, at: float, queue: str, agent: str) -> list[tuple]:
        rng = self.rng
        ack, reply = f"m{task}a", f"m{task}r"
        out = [self._ev(at, task, ev.TASK_CREATED, channel="email", queue=queue,
                        deadline=at + 8 * HOUR),
               self._ev(at, task, "email.received", action="new", message=f"m{task}i"),
               self._ev(at, task, "email.queued", kind="ack", message=ack),
               self._ev(at, task, ev.TASK_QUEUED, reason="new"),
               self._ev(at + 5, task, "email.sent", message=ack, attempts=1)]
        out += self._offer(at + rng.expovariate(1 / 3600), task, agent)
        assigned = out[-1][0]
        answered = assigned + rng.expovariate(1 / 400)
        out.append((answered, "t", {**self._ev(answered, task, "email.queued", agent)[2],
                                    "data": {"kind": "reply", "message": reply,
                                             "mode": rng.choice(("free", "suggested"))}}))
        out.append(self._ev(answered + 5, task, "email.sent", message=reply, attempts=1))
        out.append(self._ev(answered + 60, task, ev.TASK_COMPLETED, agent, disposition="done"))
        return out


def populate(url: str, events: int, agents: int, days: int) -> int:
    """Write the month (in time order, so ids follow time as in production)."""
    schema.upgrade(url)
    engine = make_engine(url)
    gen = Generator(events, agents, days)
    written = 0
    carry: list[tuple] = []
    with engine.begin() as conn:
        for d in range(days + 1):
            rows = carry + (gen.day(d) if d < days else [])
            rows.sort(key=lambda r: r[0])
            cut = MONTH_START + (d + 1) * DAY
            now, carry = [r for r in rows if r[0] < cut], [r for r in rows if r[0] >= cut]
            for table, key in ((t.task_events, "t"), (t.agent_events, "a")):
                batch = [r[2] for r in now if r[1] == key]
                for i in range(0, len(batch), INSERT_BATCH):
                    conn.execute(table.insert(), batch[i:i + INSERT_BATCH])
            written += len(now)
    engine.dispose()
    return written


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield f"sqlite:///{Path(d) / 'report.db'}"


@contextmanager
def postgres_url() -> Iterator[str]:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _NoReactor:
    """What Pool needs of a reactor when only `run_in_thread` is used."""

    def callWhenRunning(self, *a, **k):
        return None

    def addSystemEventTrigger(self, *a, **k):
        return None

    def removeSystemEventTrigger(self, *a, **k):
        return None


def time_read(store: SqlReportStore, end: float) -> tuple[float, int, float]:
    count = [0]

    def sink(rows):
        count[0] += len(rows)

    started, cpu = time.perf_counter(), time.process_time()
    store.fold_events_now(MONTH_START, end, sink)
    return time.perf_counter() - started, count[0], time.process_time() - cpu


def time_report(store: SqlReportStore, end: float, interval: float) -> tuple[float, dict]:
    """What `switchboard report` does (fold, figures, the default text format); the other
    formats' rendering is timed apart."""
    started, cpu = time.perf_counter(), time.process_time()
    tally = Tally(MONTH_START, end, interval, TARGETS)
    n = store.fold_events_now(MONTH_START, end, tally.add_all)
    folded = time.perf_counter()
    report = Report(MONTH_START, end, interval, None, tally.figures(end, copy=False), n,
                    time.time())
    text = render(report, "text")
    done = time.perf_counter()
    cpu_used = time.process_time() - cpu
    renders = {}
    for fmt in ("json", "csv", "html"):
        t0 = time.perf_counter()
        renders[fmt] = (len(render(report, fmt)), time.perf_counter() - t0)
    return done - started, {"fold_seconds": folded - started, "render_seconds": done - folded,
                            "cpu_seconds": cpu_used, "events": n, "text_bytes": len(text),
                            "other_formats": renders,
                            "service_level": report.figures.cell().value("service_level")}


def measure(url: str, runs: int, end: float) -> dict:
    store = SqlReportStore(url, _NoReactor())
    out: dict = {}
    try:
        reads = [time_read(store, end) for _ in range(runs)]
        out["read_seconds"] = statistics.median(r[0] for r in reads)
        out["events"] = reads[0][1]
        out["read_cpu_seconds"] = statistics.median(r[2] for r in reads)
        for name, interval in (("report_1d", DAY), ("report_1h", HOUR)):
            runs_ = [time_report(store, end, interval) for _ in range(runs)]
            out[f"{name}_seconds"] = statistics.median(r[0] for r in runs_)
            out[f"{name}_detail"] = runs_[len(runs_) // 2][1]
            out[f"{name}_ratio_to_read"] = out[f"{name}_seconds"] / out["read_seconds"]
    finally:
        store.pool.engine.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    p.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    p.add_argument("--days", type=int, default=DEFAULT_DAYS)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    p.add_argument("--only", choices=["sqlite", "postgres"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    end = MONTH_START + args.days * DAY
    results = {}
    load_before = os.getloadavg()
    for name, make in (("sqlite", sqlite_url), ("postgres", postgres_url)):
        if args.only and args.only != name:
            continue
        with make() as url:
            started = time.perf_counter()
            written = populate(url, args.events, args.agents, args.days)
            load = time.perf_counter() - started
            if not args.json:
                print(f"{name}: wrote {written:,} events in {load:.1f} s", file=sys.stderr)
            results[name] = measure(url, args.runs, end)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = (load_before[0], os.getloadavg()[0])
    if args.json:
        print(json.dumps({"results": results, "peak_rss_mb": peak_mb, "load_average": load,
                          "cpus": os.cpu_count(), "target_seconds": TARGET_SECONDS}, indent=1))
        return 0
    print(f"report of {args.days} days, {args.agents} agents (median of {args.runs}; "
          f"target < {TARGET_SECONDS:g} s)")
    print(f"{'':10}{'events':>11}{'read':>9}{'report 1d':>11}{'x read':>8}"
          f"{'report 1h':>11}{'x read':>8}")
    for name, r in results.items():
        print(f"{name:10}{r['events']:>11,}{r['read_seconds']:>8.2f}s"
              f"{r['report_1d_seconds']:>10.2f}s{r['report_1d_ratio_to_read']:>8.2f}"
              f"{r['report_1h_seconds']:>10.2f}s{r['report_1h_ratio_to_read']:>8.2f}")
        print(f"  read: {r['read_cpu_seconds']:.2f} s of this process's CPU")
        for k in ("report_1d_detail", "report_1h_detail"):
            d = r[k]
            others = ", ".join(f"{fmt} {size:,} B in {secs:.2f} s"
                               for fmt, (size, secs) in d["other_formats"].items())
            print(f"  {k[:9]}: fold {d['fold_seconds']:.2f} s, figures+text "
                  f"{d['render_seconds']:.2f} s, {d['cpu_seconds']:.2f} s CPU; service level "
                  f"{d['service_level']:.3f}; also {others}")
    print(f"peak memory {peak_mb:.0f} MB; load average {load[0]:.1f} before, {load[1]:.1f} "
          f"after, on {os.cpu_count()} CPUs (other work on the machine stretches the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
