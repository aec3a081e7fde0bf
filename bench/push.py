"""Offer push latency: from a task's submission to its offer frame at the agent's socket.

A benchmark, not a test: it prints figures and never fails on time. A server process runs the
dispatcher on the asyncio reactor (service layer on the MemoryStore, with the customer history
service, so every offer carries its customer card and timeline) and the console edge built by
its plugin. A second process (this one) opens N agent connections (default 2,000, one client
process) which go available, accept every offer and complete the task at once. The server
submits phone tasks at R per second (default 500) through `Intake.submit`, stamping the wall
time just before the call into the task; each client measures receipt time minus that stamp.
Both processes share the machine's clock. Target: p99 <= 20 ms. Garbage collection runs as in
`switchboard serve` (one scheduled full pass every 300 s, dispatcher/runtime/collector.py); the
run measures the steady state after the pass that follows sign-in and reports that pass's own
pause; `--no-refreeze` leaves collection to the interpreter, for comparison.

    .venv/bin/python bench/push.py [--agents N] [--rate R] [--seconds S] [--json]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARMUP_SECONDS = 2.0
TICK = 0.005  # the server submits what is due every TICK seconds
CUSTOMERS = 5000
REFREEZE_SECONDS = 300.0  # the production default ([server] gc_refreeze_seconds)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server process ----------------------------------------------------------------------


def serve(agents: int, rate: float, seconds: float, secret: str, history: bool,
          refreeze: bool = True) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread
    from twisted.web.resource import Resource

    from agent_console.plugin import EDGE
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.routing import Router
    from dispatcher.domain.tasks import Channel
    from dispatcher.runtime.collector import Collector
    from dispatcher.service.assignment import Assignment
    from dispatcher.service.configuration import Configuration
    from dispatcher.service.edges import EdgeContext
    from dispatcher.service.history import History
    from dispatcher.service.intake import Intake, phone_identity
    from dispatcher.service.queries import Queries
    from dispatcher.service.sessions import Sessions
    from dispatcher.storage.memory import MemoryStore

    async def main() -> None:
        store, router = MemoryStore(), Router()
        assignment = Assignment(router, store, reactor)
        intake, sessions = Intake(assignment, store, reactor), Sessions(assignment)
        queries = Queries(router, store)
        configuration = Configuration(store, assignment.clock, assignment=assignment)
        await configuration.change_queue(Queue("support", requirement={"support": 1}))
        for i in range(agents):
            await configuration.change_agent(Agent(f"a{i}", skills={"support": 5},
                                                   queues={"support"}))
        # As App.start does: full collections on schedule (dispatcher/runtime/collector.py),
        # every REFREEZE_SECONDS as in production. With --no-refreeze: the interpreter's own.
        collector = Collector(reactor, REFREEZE_SECONDS) if refreeze else None
        if collector is not None:
            collector.start()
        settings = EDGE.settings(port=0, jwt_secret_file=secret, grace_seconds=600,
                                 allowed_origins="http://127.0.0.1")
        ctx = EdgeContext(reactor, intake, sessions, queries, configuration, assignment, Resource(),
                          history=History(store, assignment) if history else None)
        console = EDGE.build(ctx, settings)
        await console.start()
        print(json.dumps({"ws_port": console.server.port}), flush=True)
        await deferToThread(sys.stdin.readline)  # the client is connected and available
        # The agents have signed in: the steady state of a shift is after a scheduled refreeze
        # (whose own pause is reported, not mixed into the latencies).
        pause_ms = round(collector.refreeze() * 1000, 1) if collector is not None else None
        n, t0 = 0, time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds + WARMUP_SECONDS:
            while n < int(elapsed * rate):  # paced on the clock, whatever the tick's length
                n += 1
                intake.submit(Channel.PHONE, "support",
                              identity=phone_identity(f"+3220{n % CUSTOMERS:06d}"),
                              attributes={"submitted_at": time.time()})
            await deferLater(reactor, TICK)
        print(json.dumps({"submitted": n, "refreeze_pause_ms": pause_ms}), flush=True)
        await deferLater(reactor, 1.0)
        await console.stop()
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
    counts = {"offers": 0, "completed": 0, "errors": 0}
    ready = asyncio.Event()
    up = 0

    async def agent(i: int) -> None:
        nonlocal up
        token = signer.issue(f"a{i}", "agent", 3600)
        async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["switchboard.v1",
                           f"bearer.{token}"], compression=None, open_timeout=60,
                           ping_interval=None, max_queue=None) as ws:
            await ws.send('{"type":"hello","v":1}')
            await ws.send('{"type":"presence","status":"available"}')
            up += 1
            if up == agents:
                ready.set()
            async for raw in ws:
                now = time.time()
                msg = json.loads(raw)
                kind = msg["type"]
                if kind == "offer":
                    sent = msg["task"]["attributes"]["submitted_at"]
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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-history", action="store_true",
                    help="offers without the customer card (isolates the push path)")
    ap.add_argument("--no-refreeze", action="store_true",
                    help="leave garbage collection to the interpreter (the baseline)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--secret", help=argparse.SUPPRESS)
    args = ap.parse_args()
    raise_fd_limit()
    if args.serve:
        serve(args.agents, args.rate, args.seconds, args.secret, not args.no_history,
              not args.no_refreeze)
        return
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text(os.urandom(32).hex())
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--agents", str(args.agents), "--rate",
             str(args.rate), "--seconds", str(args.seconds), "--secret", str(secret),
             *(["--no-history"] if args.no_history else []),
             *(["--no-refreeze"] if args.no_refreeze else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp)
        try:
            port = json.loads(server.stdout.readline())["ws_port"]
            loop = asyncio.new_event_loop()
            t0 = time.monotonic()
            latencies, counts, clients = loop.run_until_complete(
                agents_run(port, args.agents, str(secret)))
            connect_s = time.monotonic() - t0
            start = time.time()
            server.stdin.write("go\n")
            server.stdin.flush()
            done = json.loads(loop.run_until_complete(
                loop.run_in_executor(None, server.stdout.readline)))
            submitted = done["submitted"]
            loop.run_until_complete(asyncio.sleep(1.0))
            for c in clients:
                c.cancel()
            loop.run_until_complete(asyncio.gather(*clients, return_exceptions=True))
        finally:
            server.wait(30)
    measured = [lat * 1000 for sent, lat in latencies if sent >= start + WARMUP_SECONDS]
    figures = {
        "agents": args.agents, "rate_per_s": args.rate, "history": not args.no_history,
        "refreeze": not args.no_refreeze, "refreeze_pause_ms": done["refreeze_pause_ms"],
        "seconds": args.seconds,
        "connect_all_s": round(connect_s, 2), "submitted": submitted,
        "offers_seen": counts["offers"], "completed": counts["completed"],
        "errors": counts["errors"], "measured": len(measured),
        "median_ms": round(statistics.median(measured), 2) if measured else None,
        "p90_ms": round(pct(measured, 0.90), 2) if measured else None,
        "p99_ms": round(pct(measured, 0.99), 2) if measured else None,
        "max_ms": round(max(measured), 2) if measured else None,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:>16}: {v}")


if __name__ == "__main__":
    main()
