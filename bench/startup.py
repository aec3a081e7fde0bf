"""Start-up with many open tasks, and memory per queued task: `switchboard serve`'s start path.

A benchmark, not a test: it prints figures and never fails on time. For each database (a
temporary SQLite file, a fresh PostgreSQL database at SWITCHBOARD_TEST_PG_URL, created and
dropped), it

1. fills the database: queues and agents through the Configuration service, a few sample
   e-mails through the real e-mail intake (`Mail.receive`, as the SMTP edge calls it) and a few
   of them offered, accepted and completed through the real Sessions; then clones those rows
   in bulk (straight into `tasks`, `task_events`, `agent_events`) into N open e-mails (default
   100,000) spread over the last 24 hours, and a day of handled e-mails (default 20,000) since
   the start of today (UTC), each with the events the real path wrote, times shifted;
2. times `App.start()` (what `serve` awaits before any edge listens: schema check, state
   loaded, router restored and timers re-armed, today's supervision figures ready) in a child
   process per run, several runs, medians; the peer in the same command is the same start-up on
   an empty database (queues and agents only: the fixed cost); a reactor-lag probe (`LagProbe`:
   a LoopingCall every 10 ms) gives the longest reactor block during `App.start()` (target:
   ~50 ms, the lease's renewals must not wait), with when the longest few ended and when each
   phase ran, and the longest after it until today's figures are ready;
3. measures memory per open task after start-up (tracemalloc, in a run of its own, and RSS)
   against the empty database, and the same after live intake (M e-mails, default 20,000,
   through `Mail.receive` into a started App on an empty database) for comparison.

Targets (issue 15): start-up with 100 k open tasks <= 2 s; memory per queued task after a
restart <= 1 KiB; no reactor block over ~50 ms during start-up. `--no-memory`: the start-up
runs only (no traced runs, no live intake). `--answers A`: both databases hold a library of A
answers (imported through the Library service), whose index the start begins to build in a
thread (it does not wait for it: docs/answers.md).

    .venv/bin/python bench/startup.py [--tasks N] [--handled H] [--live M] [--runs R]
                                      [--only sqlite|postgres] [--json] [--checkpoint]
                                      [--no-memory] [--answers A]

`--checkpoint`: today's figures resumed from the checkpoint the previous start saved at its
stop (docs/metrics.md); without it checkpoints are off and each start reads the whole day.
bench/today.py compares the two on today's figures alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402

DEFAULT_TASKS = 100_000
DEFAULT_HANDLED = 20_000
DEFAULT_LIVE = 20_000
DEFAULT_RUNS = 3
QUEUES = 20
AGENTS = 200
SAMPLE_MAILS = 40  # through the real intake; the rows cloned
SAMPLE_HANDLED = 4  # of them offered, accepted and completed
DAY = 86_400.0
TARGET_SECONDS = 2.0
# [reports] checkpoint_seconds of the children's App (set by `--checkpoint`; 0: off).
CHECKPOINT_ENV = "SB_BENCH_CHECKPOINT_SECONDS"
CHECKPOINT_SECONDS = 60.0
TARGET_BYTES_PER_TASK = 1024
TRACE_LEASE_SECONDS = 120.0  # the traced start's lease (run_start)
PROBE_SECONDS = 0.010  # the reactor-lag probe's interval (LagProbe)
LOREM = ("Hello, I ordered a pair of shoes last week and they still have not arrived. The "
         "tracking number you sent does not work on the carrier's site. Could you tell me "
         "when the parcel will be delivered, or refund me if it is lost? Thanks in advance. ")


# --- the parent: databases, children, figures -------------------------------------------------


def child(*args: str, script: str = __file__) -> dict[str, Any]:
    """Run `script` (this file unless told) as a child with `args`; its last stdout line is
    JSON."""
    done = subprocess.run([sys.executable, script, "--child", *args], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"child {args[0]} failed ({done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(name: str, database: Callable, args: argparse.Namespace) -> dict[str, Any] | None:
    import sqlalchemy as sa

    out: dict[str, Any] = {}
    try:
        with database() as full, database() as empty, database() as live:
            started = time.perf_counter()
            filled = child("fill", full, str(args.tasks), str(args.handled), str(args.answers))
            child("fill", empty, "0", "0", str(args.answers))
            out["fill_seconds"] = round(time.perf_counter() - started, 1)
            out["open_tasks"] = filled["open_tasks"]
            out["events"] = filled["events"]
            if args.checkpoint:  # a start that stops cleanly saves today's checkpoint
                child("start", full)
            full_runs, empty_runs = [], []
            for _ in range(args.runs):  # alternated, so that load changes hit both alike
                full_runs.append(child("start", full))
                empty_runs.append(child("start", empty))
            out["start_seconds"] = statistics.median(r["seconds"] for r in full_runs)
            out["start_seconds_empty"] = statistics.median(r["seconds"] for r in empty_runs)
            out["start_runs"] = [round(r["seconds"], 3) for r in full_runs]
            out["start_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in full_runs)
            out["start_cpu_runs"] = [round(r["cpu_seconds"], 3) for r in full_runs]
            out["longest_block"] = statistics.median(r["longest_block"] for r in full_runs)
            out["longest_block_runs"] = [round(r["longest_block"], 3) for r in full_runs]
            out["longest_block_empty"] = statistics.median(
                r["longest_block"] for r in empty_runs)
            out["blocks"] = [r["blocks"] for r in full_runs]
            out["longest_block_seeding"] = statistics.median(
                r["longest_block_seeding"] for r in full_runs)
            out["spans"] = full_runs[0]["spans"]
            out["seeded_seconds"] = statistics.median(r["seeded_seconds"] for r in full_runs)
            out["today_from"] = sorted({str(r.get("resumed")) for r in full_runs})
            out["phases"] = {k: round(statistics.median(r["phases"].get(k, 0.0)
                                                        for r in full_runs), 3)
                             for k in full_runs[0]["phases"]}
            out["ratio_to_empty"] = out["start_seconds"] / out["start_seconds_empty"]
            n = max(1, filled["open_tasks"])
            if args.no_memory:
                raise _Skip
            traced, traced_empty = child("start", full, "trace"), child("start", empty, "trace")
            out["bytes_per_task_traced"] = (traced["traced"] - traced_empty["traced"]) / n
            out["bytes_per_task_rss"] = statistics.median(
                r["rss"] for r in full_runs) / n - statistics.median(
                r["rss"] for r in empty_runs) / n
            out["bytes_per_task_router"] = traced.get("router_bytes", 0) / n
            if args.live:
                try:
                    child("fill", live, "0", "0", "0")
                    got = child("live", live, str(args.live))
                except RuntimeError as exc:  # reported, the start-up figures still printed
                    print(f"{name}: live intake failed: {exc}", file=sys.stderr)
                else:
                    out["live_tasks"] = got["tasks"]
                    out["live_bytes_per_task_traced"] = got["traced_delta"] / max(
                        1, got["tasks"])
                    out["live_bytes_per_task_rss"] = got["rss_delta"] / max(1, got["tasks"])
    except _Skip:
        pass
    except sa.exc.OperationalError as exc:
        print(f"{name}: not available ({exc.orig})", file=sys.stderr)
        return None
    if not args.json:
        report(name, out, args)
    return out


class _Skip(Exception):
    """`--no-memory`: the start-up figures only."""


def report(name: str, out: dict[str, Any], args: argparse.Namespace) -> None:
    secs, empty = out["start_seconds"], out["start_seconds_empty"]
    runs = ", ".join(f"{s:.2f}" for s in out["start_runs"])
    mark = "meets" if secs <= TARGET_SECONDS else "above"
    print(f"{name}: filled {out['open_tasks']:,} open tasks, {out['events']:,} events in "
          f"{out['fill_seconds']:.0f} s")
    print(f"  start-up: {secs:.2f} s (median of {args.runs}: {runs}); empty database "
          f"{empty:.2f} s; ratio {out['ratio_to_empty']:.1f}x; {mark} the "
          f"{TARGET_SECONDS:.0f} s target")
    cpu = ", ".join(f"{s:.2f}" for s in out["start_cpu_runs"])
    print(f"  start-up CPU time (the process's, all threads): {out['start_cpu_seconds']:.2f} s "
          f"(median; runs: {cpu})")
    blocks = ", ".join(f"{s * 1000:.0f}" for s in out["longest_block_runs"])
    print(f"  longest reactor block during start-up: {out['longest_block'] * 1000:.0f} ms "
          f"(median; runs: {blocks} ms); empty database "
          f"{out['longest_block_empty'] * 1000:.0f} ms; after it, until today's figures are "
          f"ready: {out['longest_block_seeding'] * 1000:.0f} ms")
    print("  longest blocks per run [ms, ended at s]: " + "; ".join(
        " ".join(f"{g * 1000:.0f}@{at:.2f}" for g, at in run) for run in out["blocks"]))
    print("  phases of the first run [began, ended s]: " + ", ".join(
        f"{k} {a:.2f}-{b:.2f}" for k, (a, b) in sorted(out["spans"].items(),
                                                       key=lambda kv: kv[1])))
    print("  phases (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in out["phases"].items())
          + " (supervision: today's figures, read after start-up, not waited for)")
    print(f"  today's figures ready {out['seeded_seconds']:.2f} s after the start began "
          f"({'from a checkpoint' if args.checkpoint else 'the whole day read'}: "
          f"{', '.join(out['today_from'])})")
    if "bytes_per_task_traced" not in out:  # --no-memory
        return
    b = out["bytes_per_task_traced"]
    mark = "meets" if b <= TARGET_BYTES_PER_TASK else "above"
    print(f"  memory per open task after start-up: {b:,.0f} B traced "
          f"({out['bytes_per_task_rss']:,.0f} B RSS; router's tasks alone "
          f"{out['bytes_per_task_router']:,.0f} B); {mark} the 1 KiB target")
    if "live_tasks" in out:
        print(f"  after live intake of {out['live_tasks']:,} e-mails: "
              f"{out['live_bytes_per_task_traced']:,.0f} B traced "
              f"({out['live_bytes_per_task_rss']:,.0f} B RSS) per task")


def main(argv: list[str]) -> None:
    from bench.intake import postgres_database, sqlite_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--handled", type=int, default=DEFAULT_HANDLED)
    parser.add_argument("--live", type=int, default=DEFAULT_LIVE)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--answers", type=int, default=0,
                        help="answers in the library, imported through the Library service "
                             "(in both databases: the start begins to build their index)")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-memory", action="store_true",
                        help="start-up times and reactor blocks only (no traced runs, no "
                             "live intake)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="today's figures from a checkpoint saved at the previous stop "
                             "([reports] checkpoint_seconds, as serve does; without it: off, "
                             "the whole day's log read at each start)")
    args = parser.parse_args(argv)
    os.environ[CHECKPOINT_ENV] = str(CHECKPOINT_SECONDS if args.checkpoint else 0.0)
    sys.stdout.reconfigure(line_buffering=True)  # each database's figures as soon as known
    before = machine.now()
    if not args.json:
        print(f"start-up: {args.tasks:,} open e-mails, {args.handled:,} handled today, "
              f"{args.answers:,} answers in the library, {args.runs} runs; "
              f"{machine.said(before)}")
    result: dict[str, Any] = {"machine_before": before}
    for name, database in (("sqlite", sqlite_database), ("postgres", postgres_database)):
        if args.only in (None, name):
            result[name] = measure(name, database, args)
    result["machine_after"] = machine.now()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"after: {machine.said(result['machine_after'])}")


# --- the children ------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def new_app(url: str, reactor: Any, lease_seconds: float = 10.0) -> Any:
    from dispatcher.runtime.app import App
    from dispatcher.runtime.config import (
        ClusterConfig,
        Config,
        DatabaseConfig,
        ReportsConfig,
        WebhooksConfig,
    )

    checkpoint = float(os.environ.get(CHECKPOINT_ENV, "0"))
    return App(Config(database=DatabaseConfig(url=url), webhooks=WebhooksConfig(enabled=False),
                      reports=ReportsConfig(checkpoint_seconds=checkpoint),
                      cluster=ClusterConfig(lease_seconds=lease_seconds)), reactor)


def inbound(i: int, queue: str) -> Any:
    from dispatcher.service.mail import InboundMail

    sender = f"customer{i}@example.org"
    subject = f"Order {100000 + i}: parcel not delivered ({uuid.uuid4().hex[:6]})"
    text = f"{LOREM}Order {100000 + i}.\n\n-- \nCustomer {i}\n"
    raw = (f"From: Customer {i} <{sender}>\r\nTo: {queue}@example.com\r\nSubject: {subject}\r\n"
           f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\n{text}").encode()
    return InboundMail(raw=raw, queue=queue, envelope_from=sender, recipients=(
        f"{queue}@example.com",), from_address=sender, from_name=f"Customer {i}",
        to_addrs=(f"{queue}@example.com",), subject=subject,
        message_id=f"<{uuid.uuid4().hex}@example.org>", text=text)


async def configure(app: Any) -> None:
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.tasks import Channel

    for q in range(QUEUES):
        await app.configuration.put_queue(Queue(f"q{q:02d}"), "operator")
    for a in range(AGENTS):
        await app.configuration.put_agent(Agent(
            f"agent{a:03d}", name=f"Agent {a}", queues={f"q{a % QUEUES:02d}",
                                                        f"q{(a + 7) % QUEUES:02d}"},
            capacity={Channel.EMAIL: 3, Channel.PHONE: 1},
            channels={Channel.EMAIL, Channel.PHONE}), "operator")


WORDS = ("parcel", "delivery", "refund", "invoice", "password", "account", "order", "shipping",
         "return", "exchange", "broken", "damaged", "late", "tracking", "address", "payment",
         "card", "bank", "transfer", "subscription", "cancel", "renew", "upgrade", "discount",
         "coupon", "warranty", "repair", "size", "colour", "store", "opening", "hours")


def library_lines(count: int) -> list[str]:
    """`count` answers as JSON Lines (docs/answers.md), each a title and a text of 80 words."""
    import random

    rnd = random.Random(count)
    return [json.dumps({"id": f"answer-{i:05d}", "title": " ".join(rnd.sample(WORDS, 4)),
                        "text": "Hello {{customer_name}}, " + " ".join(
                            rnd.choice(WORDS) for _ in range(80)),
                        "queues": [f"q{i % QUEUES:02d}"]}) for i in range(count)]


async def run_fill(reactor: Any, url: str, tasks: int, handled: int,
                   answers: int = 0) -> dict[str, Any]:
    """Queues and agents, `answers` in the library; with `tasks`, the sample through the real
    services, then the clones."""
    from dispatcher.storage import schema

    schema.upgrade(url)
    app = new_app(url, reactor)
    await app.start()
    try:
        await configure(app)
        if answers:
            await app.library.import_answers(library_lines(answers), "bench")
        if tasks or handled:
            try:
                await sample(app)
            except Exception as exc:  # noqa: BLE001 - a change under way may break it
                print(f"bench: the real intake failed ({exc!r}); sample rows built by hand, "
                      "as service/mail.py writes them", file=sys.stderr)
                handmade = True
            else:
                handmade = False
    finally:
        await app.stop()
    if not (tasks or handled):
        return {"open_tasks": 0, "events": 0}
    if handmade:
        handmade_sample(url)
    return clone(url, tasks, handled)


def handmade_sample(url: str) -> None:
    """What `sample` stores, written by hand (tasks rows with the attributes `Mail._new` gives a
    new e-mail, and its events), for when the real path cannot run."""
    from dispatcher.domain import events as ev
    from dispatcher.storage import tables as t
    from dispatcher.storage.engine import make_engine

    now = time.time() - 3600
    tasks, events, agent_events = [], [], []
    for i in range(SAMPLE_MAILS):
        mail = inbound(i, "q00" if i < SAMPLE_HANDLED else f"q{i % QUEUES:02d}")
        task_id, at, number = uuid.uuid4().hex, now + i, i + 1
        done = i < SAMPLE_HANDLED
        tasks.append({
            "id": task_id, "channel": "email", "queue": mail.queue, "customer_id": None,
            "created_at": at, "base_skills": {}, "priority": 0, "deadline": None,
            "preview": mail.text[:200],
            "attributes": {"request_number": number, "request": f"SB-{number:06d}",
                           "subject": mail.subject, "from": mail.from_address},
            "state": "completed" if done else "queued", "step": 0, "required_skills": {},
            "agent_id": None, "offer_id": None, "offer_expires_at": None,
            "step_started_at": at, "updated_at": at + (60 if done else 0)})
        log = [(ev.TASK_CREATED, at, None, "system", {"channel": "email", "queue": mail.queue,
                                                      "priority": 0, "deadline": None}),
               (ev.EMAIL_RECEIVED, at, None, f"email:{mail.from_address}", {
                   "message": uuid.uuid4().hex, "message_id": mail.message_id,
                   "from": mail.from_address, "subject": mail.subject, "action": "new",
                   "request": f"SB-{number:06d}", "source": None, "malformed": False,
                   "attachments": 0, "authenticated": False, "auth": None}),
               (ev.EMAIL_QUEUED, at, None, "system", {"kind": "ack", "to": mail.from_address,
                                                      "message": uuid.uuid4().hex}),
               (ev.TASK_QUEUED, at, None, "system", {"reason": "new"})]
        if done:
            offer = uuid.uuid4().hex
            log += [(ev.TASK_OFFERED, at + 5, "agent000", "system", {
                        "offer_id": offer, "agent_id": "agent000", "expires_at": at + 65,
                        "explanation": {"rule": "longest_idle", "candidates": 1}}),
                    (ev.OFFER_ACCEPTED, at + 10, "agent000", "agent:agent000",
                     {"offer_id": offer}),
                    (ev.TASK_ASSIGNED, at + 10, "agent000", "agent:agent000",
                     {"agent_id": "agent000", "via": "offer"}),
                    (ev.EMAIL_QUEUED, at + 50, "agent000", "agent:agent000", {
                        "kind": "reply", "to": mail.from_address, "mode": "free",
                        "message": uuid.uuid4().hex}),
                    (ev.TASK_COMPLETED, at + 60, "agent000", "agent:agent000",
                     {"disposition": ""})]
        events += [{"kind": k, "at": a, "task_id": task_id, "agent_id": ag, "actor": actor,
                    "data": d} for k, a, ag, actor, d in log]
    for status, at in (("available", now - 10), ("offline", now + 3000)):
        agent_events.append({"kind": ev.AGENT_STATUS, "at": at, "task_id": None,
                             "agent_id": "agent000", "actor": "agent:agent000",
                             "data": {"status": status, "reason": None}})
    engine = make_engine(url)  # JSON columns as the product writes them (compact)
    with engine.begin() as conn:
        conn.execute(t.tasks.insert(), tasks)
        conn.execute(t.task_events.insert(), sorted(events, key=lambda e: e["at"]))
        conn.execute(t.agent_events.insert(), [
            {k: v for k, v in e.items() if k != "task_id"} for e in agent_events])
    engine.dispose()


async def sample(app: Any) -> None:
    """A few e-mails through intake; agent000 signs in and handles SAMPLE_HANDLED of them."""
    for i in range(SAMPLE_MAILS):
        await app.mail.receive(inbound(i, "q00" if i < SAMPLE_HANDLED else f"q{i % QUEUES:02d}"))
    agent = "agent000"
    await app.sessions.login(agent)
    for _ in range(SAMPLE_HANDLED):
        offer = next((t for t in app.router.tasks.values()
                      if t.agent_id == agent and t.offer_id), None)
        if offer is None:
            break
        await app.sessions.accept(agent, offer.offer_id)
        await app.sessions.complete(agent, offer.id)
    await app.sessions.set_status(agent, "offline")


def clone(url: str, tasks: int, handled: int) -> dict[str, Any]:  # noqa: C901 - one pass
    """The sample's rows, cloned: `tasks` open e-mails over the last day, `handled` completed
    ones since the start of today, each task's events shifted with it; agents' events once
    per agent at the start of today."""
    import sqlalchemy as sa

    from dispatcher.service.reports import utc_day_start
    from dispatcher.storage import tables as t
    from dispatcher.storage.engine import make_engine

    now = time.time()
    day = utc_day_start(now)
    engine = make_engine(url)  # JSON columns as the product writes them (compact)
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t.tasks))]
        events = [dict(r._mapping) for r in conn.execute(
            sa.select(t.task_events).order_by(t.task_events.c.id))]
        agent_events = [dict(r._mapping) for r in conn.execute(
            sa.select(t.agent_events).order_by(t.agent_events.c.id))]
    by_task: dict[str, list[dict]] = {}
    for e in events:
        by_task.setdefault(e["task_id"], []).append(e)
    open_tpl = [r for r in rows if r["state"] == "queued"]
    done_tpl = [r for r in rows if r["state"] == "completed"]
    new_tasks: list[dict] = []
    new_events: list[dict] = []
    number = 1_000_000

    def add(tpl: dict, at: float, i: int) -> None:
        nonlocal number
        number += 1
        task_id = uuid.uuid4().hex
        shift = at - tpl["created_at"]
        attrs = dict(tpl["attributes"])
        if "request_number" in attrs:
            attrs["request_number"] = number
            attrs["request"] = f"SB-{number:07d}"
        if "subject" in attrs:  # every mail has its own words
            attrs["subject"] = f"{attrs['subject']} #{i}"
        preview = tpl.get("preview")
        if preview:
            preview = f"#{i} {preview}"[: len(preview)]
        row = {**tpl, "id": task_id, "attributes": attrs, "preview": preview, "created_at": at,
               "updated_at": at + ((tpl["updated_at"] or tpl["created_at"])
                                   - tpl["created_at"])}
        for key in ("deadline", "offer_expires_at", "step_started_at"):
            if row[key] is not None:
                row[key] = row[key] + shift
        new_tasks.append(row)
        for e in by_task.get(tpl["id"], ()):
            new_events.append({"kind": e["kind"], "at": e["at"] + shift, "task_id": task_id,
                               "agent_id": e["agent_id"], "actor": e["actor"],
                               "data": e["data"]})

    for i in range(tasks):
        add(open_tpl[i % len(open_tpl)], now - DAY + (DAY - 60) * i / max(1, tasks), i)
    span = max(60.0, now - day - 60)
    for i in range(handled):
        add(done_tpl[i % len(done_tpl)], day + span * i / max(1, handled), tasks + i)
    new_agent_events = []
    for a in range(AGENTS):
        for e in agent_events:
            if e["agent_id"] == "agent000":
                new_agent_events.append({**e, "agent_id": f"agent{a:03d}", "id": None,
                                         "at": day + 1 + (e["at"] - agent_events[0]["at"])})
    for e in new_agent_events:
        del e["id"]
    new_events.sort(key=lambda e: e["at"])
    new_agent_events.sort(key=lambda e: e["at"])
    with engine.begin() as conn:
        for table, batch in ((t.tasks, new_tasks), (t.task_events, new_events),
                             (t.agent_events, new_agent_events)):
            for k in range(0, len(batch), 5000):
                conn.execute(table.insert(), batch[k:k + 5000])
    engine.dispose()
    return {"open_tasks": tasks + len(open_tpl), "events": len(events) + len(new_events)
            + len(agent_events) + len(new_agent_events)}


async def run_start(reactor: Any, url: str, trace: bool) -> dict[str, Any]:
    """Time `App.start()`, phase by phase; then memory (RSS, or tracemalloc when `trace`)."""
    import tracemalloc

    from twisted.internet import defer

    if trace:
        tracemalloc.start()
    # Traced, the start runs several times slower: restoring 100 k tasks blocks the reactor
    # for ~5 s on a loaded machine, longer than the default lease allows without a renewal
    # (PostgreSQL), so the memory run takes a long lease; the timed runs keep the default.
    app = new_app(url, reactor, lease_seconds=TRACE_LEASE_SECONDS if trace else 10.0)
    phases: dict[str, float] = {}
    spans: list[tuple[str, float, float]] = []  # (phase, began, ended): where the blocks were

    def timed(obj: Any, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            d = defer.maybeDeferred(fn, *a, **kw)
            def done(result: Any) -> Any:
                if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
                    return defer.ensureDeferred(result).addBoth(done)
                t1 = time.perf_counter()
                phases[name] = phases.get(name, 0.0) + t1 - t0
                spans.append((name, t0, t1))
                return result
            return d.addBoth(done)
        setattr(obj, attr, wrapper)

    seeding: list[Any] = []
    seed = app.supervision.start

    def start_seed() -> Any:  # the App does not wait for it: seeded_seconds says when it is
        d = seed()
        seeding.append(d)
        return d
    app.supervision.start = start_seed
    timed(app.supervision, "start", "supervision")
    timed(app.store, "load_state", "load_state")
    timed(app.recovery, "restore", "restore")
    timed(app.library, "load", "library")
    timed(app.codification, "start", "codification")
    timed(app.calls, "start", "calls")
    timed(app.collaboration, "start", "collaboration")
    timed(app.collector, "start", "collector")
    timed(app.today, "start", "today")
    gc.collect()
    base = rss()
    probe = LagProbe(reactor)
    started, cpu = time.perf_counter(), time.process_time()
    probe.start()
    await app.start()
    probe.mark()  # before the clock is read: the step that ends the start counts in the start
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu  # every thread's: the day's figures read meanwhile too
    phases["other"] = seconds - sum(v for k, v in phases.items() if k != "supervision")
    spans_at = {name: [round(t0 - started, 3), round(t1 - started, 3)] for name, t0, t1 in spans}
    for d in seeding:
        await d
    seeded = time.perf_counter() - started
    probe.stop()
    gc.collect()
    out: dict[str, Any] = {"seconds": seconds, "cpu_seconds": cpu, "seeded_seconds": seeded,
                           "phases": phases,
                           "longest_block": probe.longest(seconds),
                           "longest_block_seeding": probe.longest(seeded, after=seconds),
                           "blocks": probe.top(),
                           "spans": spans_at,
                           "rss": rss() - base,
                           "tasks": len(app.router.tasks), "resumed": app.today.resumed}
    if trace:
        gc.collect()
        out["traced"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    # The App stops (its lease given up) before the slow walk of the objects below: a walk on
    # the reactor longer than the lease would depose the router mid-measure (PostgreSQL).
    await app.stop()
    if trace:
        out["router_bytes"] = deep_size(list(app.router.tasks.values()))
        tally = app.today.tally
        out["tally_bytes"] = deep_size([tally.tasks, tally._due]) if tally else 0
    return out


class LagProbe:
    """A reactor-lag probe: a LoopingCall every PROBE_SECONDS that records the gaps between its
    ticks. A gap much longer than the interval is a reactor step that ran in one piece (the
    lease's renewals, timers and sockets wait for it). The longest gap is the figure; the
    longest few, with when they ended (s after the start began), say where they were."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet.task import LoopingCall

        self.reactor = reactor
        self.loop = LoopingCall(self._tick)
        self.loop.clock = reactor
        self.gaps: list[tuple[float, float]] = []  # (gap, ended at)
        self.started = self.last = 0.0

    def start(self) -> None:
        self.started = self.last = time.perf_counter()
        self.loop.start(PROBE_SECONDS, now=False)

    def _tick(self) -> None:
        t = time.perf_counter()
        self.gaps.append((t - self.last, t - self.started))
        self.last = t

    def mark(self) -> None:
        """A tick now (the step that ends the start counts in the start)."""
        self._tick()

    def stop(self) -> None:
        self._tick()  # the last step: from the last tick to now
        if self.loop.running:
            self.loop.stop()

    def longest(self, until: float, after: float = 0.0) -> float:
        """The longest gap among those that ended after `after` and by `until` (s)."""
        return max((g for g, at in self.gaps if after < at <= until + 1e-9), default=0.0)

    def top(self, n: int = 5) -> list[list[float]]:
        return [[round(g, 3), round(at, 3)] for g, at in sorted(self.gaps, reverse=True)[:n]]


def deep_size(objs: list[Any]) -> int:
    """Bytes of the objects and everything they hold, each object counted once (strings and
    enums shared between tasks counted once, as they are)."""
    from dispatcher.domain import tasks

    seen: set[int] = set()
    total = 0
    stack = list(objs)
    packed = tasks._ATTRIBUTES.__get__  # a task's attributes as held (reading them decodes)
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, (bool, type)):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, tasks.Task):
            stack.extend(packed(o) if s == "attributes" else getattr(o, s)
                         for s in o.__slots__)
        elif hasattr(o, "__slots__") and not isinstance(o, (str, int, float)):
            stack.extend(getattr(o, s, None) for s in o.__slots__)
        elif hasattr(o, "__dict__") and not callable(o):
            stack.append(vars(o))
    return total


async def run_live(reactor: Any, url: str, count: int) -> dict[str, Any]:
    """A started App on a configured, empty database takes `count` e-mails through intake."""
    import tracemalloc

    app = new_app(url, reactor)
    await app.start()
    gc.collect()
    tracemalloc.start()
    base_rss, base_traced = rss(), tracemalloc.get_traced_memory()[0]
    pending = []
    for i in range(count):
        pending.append(app.mail.receive(inbound(i, f"q{i % QUEUES:02d}")))
        if len(pending) >= 200:
            for d in pending:
                await d
            pending = []
    for d in pending:
        await d
    gc.collect()
    out = {"tasks": len(app.router.tasks), "rss_delta": rss() - base_rss,
           "traced_delta": tracemalloc.get_traced_memory()[0] - base_traced}
    tracemalloc.stop()
    await app.stop()
    return out


def child_main(argv: list[str]) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    import logging

    from twisted.internet import defer, task

    logging.basicConfig(level=logging.WARNING)
    what = argv[0]

    async def go(reactor: Any) -> None:
        if what == "fill":
            out = await run_fill(reactor, argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
        elif what == "start":
            out = await run_start(reactor, argv[1], len(argv) > 2 and argv[2] == "trace")
        else:
            out = await run_live(reactor, argv[1], int(argv[2]))
        print(json.dumps(out))

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
