"""Offer push latency: from a task's submission to its offer frame at the agent's socket.

A benchmark, not a test: it prints figures and never fails on time. A server process runs the
dispatcher on the asyncio reactor (service layer on the chosen store, with the customer history
service, so every offer carries its customer card and timeline) and the console edge built by
its plugin. `--store memory` (the default) runs on the MemoryStore; `--store sqlite` on a fresh
temporary SQLite file and `--store postgresql` on a fresh database of the server of
SWITCHBOARD_TEST_PG_URL (created and dropped per run), both with the real `Storage` of
`switchboard serve` (dispatcher/runtime/app.py: engine, Pool, GroupCommit, SqlStore) and, as
`serve` wires it, the history cache (service/history_cache.py) watching every write; on
PostgreSQL the server holds the router's lease and every commit passes its fence, as under
`serve` (`--unfenced`: without, to measure the fence's cost). A second
process (this one) opens N agent connections (default 2,000, one client process) which go
available, accept every offer and complete the task at once. The server submits phone tasks at
R per second (default 500) through `Intake.submit`, stamping the wall time just before the call
into the task; each client measures receipt time minus that stamp. Both processes share the
machine's clock. Target: p99 <= 20 ms. Garbage collection runs as in `switchboard serve` (one
scheduled full pass every 300 s, dispatcher/runtime/collector.py); the run measures the steady
state after the pass that follows sign-in and reports that pass's own pause; `--no-refreeze`
leaves collection to the interpreter, for comparison. Each run also reports the CPU time per
submitted task of the timed part, of the reactor thread and of the whole server process (the
database threads too): a figure the machine's load changes less than the latencies; the client
process's CPU time per task (the agents' sockets share the machine with the server) and the
share of the whole machine's CPU that was busy (/proc/stat: every process, the database's too;
near 100 % the latencies are queueing for a core, not the server's own); on SQLite
and PostgreSQL also the group commit's transactions per second and calls per transaction (an
offer waits for one of them: its task's intake, which holds its routing).

The peer in the same command is the same server without the history cache (every offer and
assigned frame reads the card and timeline from the store, as before the cache): each of
`--repeats` rounds runs both, one after the other; the figures are the medians of the rounds and
the ratio of the peer's p99 to ours. `--channel email` submits e-mails through `Mail.receive` (the
service the SMTP edge hands a message to once read: threading, request number, the mail's rows,
then the task routed and committed with them in one transaction) instead of calls through
`Intake.submit`; the latency then runs from that call to the offer frame. `--no-cache` runs the
peer alone, `--cache-only` ours alone. Tasks come from `--customers` callers in turn (default 5,000). They are first contacts (the
intake creates the customer, whose card the cache then holds without a read), unless
`--known K`: the first K callers are then in the database before the run, each with one
completed call, and the cache starts without them (as after a restart), so that their first
offer is preceded by a read of their history.

    .venv/bin/python bench/push.py [--store memory|sqlite|postgresql] [--channel phone|email]
        [--agents N] [--rate R] [--seconds S] [--repeats K] [--customers C] [--known K]
        [--no-cache | --cache-only] [--unfenced] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402

WARMUP_SECONDS = 2.0
TICK = 0.005  # the server submits what is due every TICK seconds
SUBJECT = "Parcel not delivered, sent at"  # an e-mail's subject: then its submission's time
CUSTOMERS = 5000
REPEATS = 3
AGENTS_AT_ONCE = 200  # agents configured side by side at start-up
KNOWN_AT_ONCE = 500  # known callers stored side by side before the run
DAY = 86400.0
STORES = ("memory", "sqlite", "postgresql")
REFREEZE_SECONDS = 300.0  # the production default ([server] gc_refreeze_seconds)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server process ----------------------------------------------------------------------


@contextmanager
def database(store: str):
    """A fresh database URL for one run (None for the MemoryStore), removed afterwards."""
    if store == "memory":
        yield None
    elif store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sb-push-") as tmp:
            yield f"sqlite:///{tmp}/push.db"
    else:
        from bench.intake import postgres_database

        with postgres_database() as url:
            yield url


def commit_counts(storage) -> tuple[int, int]:
    """The group commit's transactions so far and the calls they carried ((0, 0) without one:
    the MemoryStore)."""
    commit = getattr(storage, "commit", None)
    return (commit.commits, commit.calls) if commit is not None else (0, 0)


def submitter(channel: str, intake: Any, store: Any, reactor: Any, customers: int
              ) -> Callable[[int], object]:
    """`submit(n)`: the n-th task, stamped with the wall time of its submission. A call through
    `Intake.submit` (the time in its attributes), or an e-mail through `Mail.receive` as the
    SMTP edge hands it over once read (the time in its subject, the one field of a new mail's
    task that comes from the mail), with `Mail`'s default policy."""
    from dispatcher.domain.tasks import Channel
    from dispatcher.service.intake import phone_identity
    from dispatcher.service.mail import InboundMail, Mail

    if channel == "phone":
        return lambda n: intake.submit(Channel.PHONE, "support",
                                       identity=phone_identity(f"+3220{n % customers:06d}"),
                                       attributes={"submitted_at": time.time()})
    mail = Mail(intake.assignment, store, reactor, intake)

    def submit(n: int) -> object:
        sender = f"customer{n % customers}@example.org"
        return mail.receive(InboundMail(
            raw=b"", queue="support", envelope_from=sender, recipients=("support@example.com",),
            from_address=sender, subject=f"{SUBJECT} {time.time()!r}", text="Where is it?",
            message_id=f"<bench-{n}-{os.getpid()}@example.org>"))

    return submit


def serve(agents: int, rate: float, seconds: float, secret: str, history: bool,
          refreeze: bool = True, url: str | None = None, cache: bool = True,
          customers: int = CUSTOMERS, profile: str | None = None, known: int = 0,
          channel: str = "phone", fenced: bool = True) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList, ensureDeferred
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread
    from twisted.web.resource import Resource

    from agent_console.plugin import EDGE
    from bench.intake import hold_lease
    from dispatcher import net
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.routing import Router
    from dispatcher.domain.tasks import Channel, Task, TaskState
    from dispatcher.runtime.collector import Collector
    from dispatcher.service.assignment import Assignment
    from dispatcher.service.configuration import Configuration
    from dispatcher.service.edges import EdgeContext
    from dispatcher.service.history import History
    from dispatcher.service.history_cache import HistoryCache, WatchedStore
    from dispatcher.service.intake import Intake, phone_identity
    from dispatcher.service.queries import Queries
    from dispatcher.service.sessions import Sessions
    from dispatcher.storage.memory import MemoryStore

    async def main() -> None:
        storage = None
        if url is None:
            inner = MemoryStore()
        else:  # as `switchboard serve`: the schema upgraded, then App's Storage
            from dispatcher.runtime.app import Storage
            from dispatcher.storage import schema

            schema.upgrade(url)
            storage = Storage(url, reactor)
            storage.start()
            await hold_lease(storage, fenced)  # PostgreSQL: commits behind the router's fence
            inner = storage.store
        # As App wires it: every write passes the history cache (or, for the peer, none).
        history_cache = HistoryCache() if cache and history else None
        store = WatchedStore(inner, history_cache) if history_cache is not None else inner
        router = Router()
        assignment = Assignment(router, store, reactor)
        intake, sessions = Intake(assignment, store, reactor), Sessions(assignment)
        queries = Queries(router, store)
        configuration = Configuration(store, assignment.clock, assignment=assignment)
        await configuration.change_queue(Queue("support", requirement={"support": 1}))
        for first in range(0, agents, AGENTS_AT_ONCE):  # side by side: a few group commits
            await DeferredList([ensureDeferred(configuration.change_agent(
                Agent(f"a{i}", skills={"support": 5}, queues={"support"})))
                for i in range(first, min(agents, first + AGENTS_AT_ONCE))],
                fireOnOneErrback=True, consumeErrors=True)
        # Known callers: stored before the run (each with a completed call of yesterday), past
        # the cache (the inner store), as a restarted server finds them.
        for first in range(0, known, KNOWN_AT_ONCE):
            await DeferredList([inner.create_task(
                Task(f"known-{i}", Channel.PHONE, "support", None, time.time() - DAY,
                     state=TaskState.COMPLETED),
                phone_identity(f"+3220{i:06d}"), f"Caller {i}", [])
                for i in range(first, min(known, first + KNOWN_AT_ONCE))],
                fireOnOneErrback=True, consumeErrors=True)
        # As App.start does: full collections on schedule (dispatcher/runtime/collector.py),
        # every REFREEZE_SECONDS as in production. With --no-refreeze: the interpreter's own.
        collector = Collector(reactor, REFREEZE_SECONDS) if refreeze else None
        if collector is not None:
            collector.start()
        # All the agents connect from 127.0.0.1: as `[server] max_connections_per_ip` would be
        # set for such a test, the gate admits them all.
        net.configure(net.Limits(per_peer=agents + 64))
        settings = EDGE.settings(port=0, jwt_secret_file=secret, grace_seconds=600,
                                 allowed_origins="http://127.0.0.1")
        ctx = EdgeContext(reactor, intake, sessions, queries, configuration, assignment, Resource(),
                          history=History(store, assignment, cache=history_cache)
                          if history else None)
        console = EDGE.build(ctx, settings)
        await console.start()
        print(json.dumps({"ws_port": console.server.port}), flush=True)
        await deferToThread(sys.stdin.readline)  # the client is connected and available
        # The agents have signed in: the steady state of a shift is after a scheduled refreeze
        # (whose own pause is reported, not mixed into the latencies).
        pause_ms = round(collector.refreeze() * 1000, 1) if collector is not None else None
        profiler = None
        if profile:  # the server's reactor thread, from the first task to the last
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        submit = submitter(channel, intake, store, reactor, customers)
        n, t0 = 0, time.monotonic()
        # CPU spent in the timed part: the reactor thread's, and the process's (DB threads too).
        reactor_cpu0, usage0 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF)
        commits0, calls0 = commit_counts(storage)
        while (elapsed := time.monotonic() - t0) < seconds + WARMUP_SECONDS:
            while n < int(elapsed * rate):  # paced on the clock, whatever the tick's length
                n += 1
                submit(n)
            await deferLater(reactor, TICK)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        figures = {"submitted": n, "refreeze_pause_ms": pause_ms,
                   "reactor_cpu_s": round(time.thread_time() - reactor_cpu0, 3),
                   "process_cpu_s": round(usage.ru_utime + usage.ru_stime - usage0.ru_utime
                                          - usage0.ru_stime, 3)}
        commits, calls = commit_counts(storage)
        figures.update(commits=commits - commits0, commit_calls=calls - calls0)
        if history_cache is not None:
            figures.update(cache_hits=history_cache.hits, cache_misses=history_cache.misses,
                           cache_reads=history_cache.reads,
                           cache_born=getattr(history_cache, "born", None),
                           cached_customers=len(history_cache))
        print(json.dumps(figures), flush=True)
        await deferLater(reactor, 1.0)
        await console.stop()
        if storage is not None:
            await storage.stop()
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(main()))
    reactor.run()


# --- the client process ----------------------------------------------------------------------


async def agents_run(port: int, agents: int, secret: str) -> tuple[list[float], dict]:
    from websockets.asyncio.client import connect

    from agent_console.auth import load_keys, signer_for
    from agent_console.config import ConsoleSettings

    settings = ConsoleSettings(jwt_secret_file=secret)
    signer = signer_for(settings, load_keys(settings))
    latencies: list[tuple[float, float]] = []  # (submitted_at, latency)
    counts = {"offers": 0, "completed": 0, "errors": 0, "agents_lost": 0}
    ready = asyncio.Event()
    up = 0

    async def agent(i: int) -> None:
        try:
            await signed_in(i)
        except Exception as exc:  # noqa: BLE001 - counted: a run never waits on a lost agent
            counts["agents_lost"] += 1
            print(f"agent a{i}: {exc!r}", file=sys.stderr)
            if up + counts["agents_lost"] == agents:
                ready.set()

    async def signed_in(i: int) -> None:
        nonlocal up
        token = signer.issue(f"a{i}", "agent", 3600)
        async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["switchboard.v1",
                           f"bearer.{token}"], compression=None, open_timeout=60,
                           ping_interval=None, max_queue=None) as ws:
            await ws.send('{"type":"hello","v":1}')
            await ws.send('{"type":"presence","status":"available"}')
            up += 1
            if up + counts["agents_lost"] == agents:
                ready.set()
            async for raw in ws:
                now = time.time()
                msg = json.loads(raw)
                kind = msg["type"]
                if kind == "offer":
                    sent = submitted_at(msg["task"]["attributes"])
                    latencies.append((sent, now - sent))
                    counts["offers"] += 1
                    await ws.send(json.dumps({"type": "accept", "offer_id": msg["offer_id"]}))
                elif kind == "assigned":
                    await ws.send(json.dumps({"type": "complete", "task_id": msg["task"]["id"],
                                              "disposition": "bench"}))
                    counts["completed"] += 1
                elif kind == "error":
                    counts["errors"] += 1

    tasks = []
    for i in range(agents):
        tasks.append(asyncio.ensure_future(agent(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # do not flood the listen backlog
    await ready.wait()
    return latencies, counts, tasks


def submitted_at(attributes: dict) -> float:
    """The wall time the server stamped a task with (a call's attribute, a mail's subject)."""
    if "submitted_at" in attributes:
        return attributes["submitted_at"]
    return float(attributes["subject"].removeprefix(SUBJECT))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(args: argparse.Namespace, cache: bool) -> dict:
    """One server process on a fresh database, N agents, R tasks/s: the latencies' figures."""
    with tempfile.TemporaryDirectory() as tmp, database(args.store) as url:
        secret = Path(tmp) / "secret"
        secret.write_text(os.urandom(32).hex())
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--agents", str(args.agents), "--rate",
             str(args.rate), "--seconds", str(args.seconds), "--secret", str(secret),
             "--customers", str(args.customers), "--known", str(args.known),
             "--channel", args.channel,
             *(["--profile", str(Path(args.profile).resolve())] if args.profile else []),
             *(["--url", url] if url else []),
             *(["--no-cache"] if not cache else []),
             *(["--no-history"] if args.no_history else []),
             *(["--no-refreeze"] if args.no_refreeze else []),
             *(["--unfenced"] if args.unfenced else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp)
        try:
            port = json.loads(server.stdout.readline())["ws_port"]
            loop = asyncio.new_event_loop()
            t0 = time.monotonic()
            latencies, counts, clients = loop.run_until_complete(
                agents_run(port, args.agents, str(secret)))
            connect_s = time.monotonic() - t0
            start = time.time()
            client0, machine0 = resource.getrusage(resource.RUSAGE_SELF), machine_ticks()
            server.stdin.write("go\n")
            server.stdin.flush()
            done = json.loads(loop.run_until_complete(
                loop.run_in_executor(None, server.stdout.readline)))
            submitted = done["submitted"]
            client1, machine1 = resource.getrusage(resource.RUSAGE_SELF), machine_ticks()
            loop.run_until_complete(asyncio.sleep(1.0))
            for c in clients:
                c.cancel()
            loop.run_until_complete(asyncio.gather(*clients, return_exceptions=True))
            loop.close()
        finally:
            server.wait(60)
    measured = [lat * 1000 for sent, lat in latencies if sent >= start + WARMUP_SECONDS]
    return {
        "cache": cache, "refreeze_pause_ms": done["refreeze_pause_ms"],
        "connect_all_s": round(connect_s, 2), "submitted": submitted,
        "offers_seen": counts["offers"], "completed": counts["completed"],
        "errors": counts["errors"], "agents_lost": counts["agents_lost"],
        "measured": len(measured),
        "median_ms": round(statistics.median(measured), 2) if measured else None,
        "p90_ms": round(pct(measured, 0.90), 2) if measured else None,
        "p99_ms": round(pct(measured, 0.99), 2) if measured else None,
        "max_ms": round(max(measured), 2) if measured else None,
        "reactor_cpu_ms_per_task": round(done["reactor_cpu_s"] * 1000 / max(1, submitted), 3),
        "process_cpu_ms_per_task": round(done["process_cpu_s"] * 1000 / max(1, submitted), 3),
        "client_cpu_ms_per_task": round((client1.ru_utime + client1.ru_stime - client0.ru_utime
                                         - client0.ru_stime) * 1000 / max(1, submitted), 3),
        "machine_busy": round(1 - (machine1[1] - machine0[1])
                              / max(1, machine1[0] - machine0[0]), 3),
        **({"commits_per_s": round(done["commits"] / (args.seconds + WARMUP_SECONDS), 1),
            "calls_per_commit": round(done["commit_calls"] / max(1, done["commits"]), 1)}
           if done["commits"] else {}),
        **{k: done[k] for k in ("cache_hits", "cache_misses", "cache_reads", "cache_born",
                                "cached_customers") if k in done},
    }


FIGURES = ("median_ms", "p90_ms", "p99_ms", "max_ms")


def medians(runs: list[dict]) -> dict:
    out = {}
    for key in (*FIGURES, "measured", "offers_seen", "completed", "errors",
                "reactor_cpu_ms_per_task", "process_cpu_ms_per_task", "client_cpu_ms_per_task",
                "machine_busy"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    return out


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the whole machine so far, every core (/proc/stat; idle counts
    iowait too): the share busy between two readings says how close to saturation a run was,
    the client, the database and everything else included."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(ticks), ticks[3] + (ticks[4] if len(ticks) > 4 else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=STORES, default="memory")
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--customers", type=int, default=CUSTOMERS,
                    help="callers the tasks come from in turn")
    ap.add_argument("--known", type=int, default=0,
                    help="callers already in the database before the run (not cached)")
    ap.add_argument("--channel", choices=("phone", "email"), default="phone",
                    help="calls through Intake.submit, or e-mails through Mail.receive")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-history", action="store_true",
                    help="offers without the customer card (isolates the push path)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--no-cache", action="store_true",
                       help="only the peer: every frame reads the card from the store")
    which.add_argument("--cache-only", action="store_true", help="only ours, without the peer")
    ap.add_argument("--no-refreeze", action="store_true",
                    help="leave garbage collection to the interpreter (the baseline)")
    ap.add_argument("--unfenced", action="store_true",
                    help="PostgreSQL: commit without the router's lease and fence (its cost)")
    ap.add_argument("--profile", metavar="FILE",
                    help="write the server's cProfile statistics of the timed part to FILE")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--secret", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    raise_fd_limit()
    if args.serve:
        serve(args.agents, args.rate, args.seconds, args.secret, not args.no_history,
              not args.no_refreeze, url=args.url, cache=not args.no_cache,
              customers=args.customers, profile=args.profile, known=args.known,
              channel=args.channel, fenced=not args.unfenced)
        return
    # Without offers' history there is no cache to compare: one variant.
    variants = ([False] if args.no_cache or args.no_history else [True] if args.cache_only
                else [True, False])
    result: dict = {
        "store": args.store, "channel": args.channel, "agents": args.agents,
        "rate_per_s": args.rate,
        "seconds": args.seconds, "repeats": args.repeats, "customers": args.customers,
        "known": args.known,
        "history": not args.no_history, "refreeze": not args.no_refreeze,
        "fenced": args.store == "postgresql" and not args.unfenced,
        "machine_before": machine.now(), "runs": [],
    }
    if not args.json:
        print(f"push: {args.store}, {args.channel}, {args.agents} agents, {args.rate:g} tasks/s for "
              f"{args.seconds:g} s (+{WARMUP_SECONDS:g} s warm-up), {args.repeats} rounds of "
              f"{' and '.join('cache' if v else 'no cache (peer)' for v in variants)}; "
              f"{machine.said(result['machine_before'])}", flush=True)
    for _ in range(args.repeats):
        for cache in variants:
            core = machine.core_ms()  # just before the run: the core's speed for it
            run = one_run(args, cache)
            run["core_ms_before"], run["load"] = core, machine.load()
            result["runs"].append(run)
            if not args.json:
                hits = (f", cache hits {run['cache_hits']}, misses {run['cache_misses']} "
                        f"(store reads {run['cache_reads']}, new customers kept without a "
                        f"read {run.get('cache_born')})" if "cache_hits" in run else "")
                cpu = (f", CPU per task: reactor {run['reactor_cpu_ms_per_task']} ms, process "
                       f"{run['process_cpu_ms_per_task']} ms, clients "
                       f"{run['client_cpu_ms_per_task']} ms; machine busy "
                       f"{run['machine_busy']:.0%}")
                if "commits_per_s" in run:  # the group commit's batches (a real store)
                    cpu += (f", {run['commits_per_s']} commits/s of "
                            f"{run['calls_per_commit']} calls")
                print(f"  {'cache   ' if cache else 'no cache'}  median {run['median_ms']} ms"
                      f"  p90 {run['p90_ms']}  p99 {run['p99_ms']}  max {run['max_ms']}{cpu}  "
                      f"(measured {run['measured']}, submitted {run['submitted']}, "
                      f"errors {run['errors']}, agents lost {run['agents_lost']}{hits}; "
                      f"load {run['load'][0]}, core {core} ms before)", flush=True)
    for cache in variants:
        result["cache" if cache else "no_cache"] = medians(
            [r for r in result["runs"] if r["cache"] is cache])
    if len(variants) == 2 and result["cache"]["p99_ms"] and result["no_cache"]["p99_ms"]:
        result["p99_ratio_peer_to_ours"] = round(
            result["no_cache"]["p99_ms"] / result["cache"]["p99_ms"], 2)
    result["machine_after"] = machine.now()
    if args.json:
        print(json.dumps(result))
        return
    for cache in variants:
        m = result["cache" if cache else "no_cache"]
        print(f"{'cache' if cache else 'no cache (peer)':>16}: median {m['median_ms']} ms, "
              f"p90 {m['p90_ms']}, p99 {m['p99_ms']}, max {m['max_ms']}, CPU ms per task: "
              f"reactor {m['reactor_cpu_ms_per_task']}, process {m['process_cpu_ms_per_task']}, "
              f"clients {m['client_cpu_ms_per_task']}; machine busy {m['machine_busy']:.0%} "
              f"(medians of "
              f"{args.repeats})")
    if "p99_ratio_peer_to_ours" in result:
        print(f"{'p99 peer / ours':>16}: {result['p99_ratio_peer_to_ours']}x")
    print(f"{'after':>16}: {machine.said(result['machine_after'])}")


if __name__ == "__main__":
    main()
