"""Benchmark: the router failing over between two `switchboard serve` nodes on one PostgreSQL
database, while mail streams in over SMTP and an agent accepts every offer.

    .venv/bin/python bench/failover.py [--repeats N] [--lease S] [--rate R] [--database URL]
        [--pause] [--agent-on leader|standby] [--json]

Each repeat: a fresh database on the server of `--database` (else $SWITCHBOARD_BENCH_PG_URL,
else $SWITCHBOARD_TEST_PG_URL's, as bench/intake.py), made with the real CLI (queue `support`,
agent `a1` with room for every e-mail); node A started and leading, node B a standby
(tests/dispatcher/runtime/cluster.py's helpers); a sender thread sends R messages a
second, one SMTP session each, to the first node that answers 250 (A, then B once A is gone); an
auto-accepting agent on the console WebSocket of the node that leads (`--agent-on standby`:
on B's console port throughout, passed on to A until B takes over: dispatcher/tunnel.py). After a second of
traffic the leader is killed (kill -9; `--pause`: SIGSTOP as well, resumed after the takeover
with restart_when_deposed off so it exits), the traffic runs on for a second after B leads.
Measured per repeat:

- takeover_s: the signal -> B's /healthz 200 as leader and its SMTP answering;
- intake_gap_s: the longest time without a 250 from any node around the signal (a standby's
  SMTP may hold mail for the router: then this is the sender's own reconnect time);
- lost: messages answered 250 that are not a task once B has taken held mail in (must be 0);
- assigned_twice: tasks with two `task.assigned` events and no release between (must be 0);
- assignments: `task.assigned` events (how much the agent exercised the check);
- agent_gap_s: the longest time without an accepted offer around the signal (the agent's
  time without work: its reconnection, and the takeover).

Prints medians and min/max over the repeats, the lease, the load before and after (`--json`:
one object). Prints figures, never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench import intake  # noqa: E402
from tests.channels.email import running as mail  # noqa: E402
from tests.dispatcher.runtime import cluster  # noqa: E402

PG_URL = os.environ.get("SWITCHBOARD_BENCH_PG_URL", intake.PG_URL)
WARM_SECONDS = 1.0
AFTER_SECONDS = 1.0
SETTLE_SECONDS = 30.0
TAKEOVER_WAIT = 20.0  # beyond the lease: a takeover later than this is reported as none


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextmanager
def fresh_database(server_url: str):
    intake.PG_URL = server_url  # postgres_database() makes one on this server
    with intake.postgres_database() as url:
        yield url


class Agent(threading.Thread):
    """a1 on the console of whichever node `port()` names, accepting every offer."""

    def __init__(self, port) -> None:
        super().__init__(daemon=True)
        self.port, self.halt, self.accepted = port, threading.Event(), 0
        self.stamps: list[float] = []  # when each accept was answered ok
        self.sessions: list[int] = []  # the console port of each session it opened
        self.error = ""  # the last failure to open one

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        while not self.halt.is_set():
            port = self.port()
            try:
                c = await cluster.agent(port)
            except Exception as exc:  # noqa: BLE001 - not up yet, or going away: try again
                self.error = f"{type(exc).__name__}: {exc}"[:200]
                await asyncio.sleep(0.1)
                continue
            self.sessions.append(port)
            # Frames that came while it signed in (the pending offer pushed with the welcome
            # after a takeover) wait in `seen`: answer them first.
            buffered, c.seen = list(c.seen), []
            try:
                while not self.halt.is_set() and self.port() == port:
                    try:
                        f = buffered.pop(0) if buffered else json.loads(
                            await asyncio.wait_for(c.ws.recv(), 0.2))
                    except TimeoutError:
                        continue
                    if f["type"] == "offer":
                        c.n += 1
                        await c.ws.send(json.dumps({"type": "accept", "id": c.n,
                                                    "offer_id": f["offer_id"]}))
                    elif f["type"] == "ok":
                        self.accepted += 1
                        self.stamps.append(time.monotonic())
            except Exception:  # noqa: BLE001 - its node died or was paused, or closed it (1012)
                pass
            finally:
                c.ws.transport.abort()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def waits(url: str) -> list[list]:
    """The database sessions of the run that wait, and on what (a takeover that never came)."""
    rows = mail.rows(url, "SELECT application_name, state, wait_event_type, wait_event, "
                     "left(query, 200), extract(epoch FROM now() - xact_start) FROM "
                     "pg_stat_activity WHERE datname = current_database() AND pid <> "
                     "pg_backend_pid()")
    return [[str(v) for v in r] for r in rows]


def gap_around(stamps: list[float], at: float) -> float:
    """The longest interval between 250s that contains or follows `at`."""
    before = [t for t in stamps if t <= at]
    after = [t for t in stamps if t > at]
    points = ([before[-1]] if before else [at]) + after
    return max((b - a for a, b in zip(points, points[1:], strict=False)), default=float("nan"))


def one(server_url: str, args: argparse.Namespace) -> dict:
    extra = {"SWITCHBOARD_CLUSTER_RESTART_WHEN_DEPOSED": "false"} if args.pause else {}
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cluster.prepare(tmp, url, agent_capacity="email=1000,phone=1")
        a, b = (cluster.make_node(tmp, url, name, args.lease, **extra)
                for name in ("node-a", "node-b"))
        cluster.start_pair(a, b)
        leader = {"node": a, "signalled": False}
        stream = cluster.Stream(
            lambda: [b.ports.smtp, a.ports.smtp] if leader["signalled"]
            else [a.ports.smtp, b.ports.smtp], rate=args.rate, prefix="fo", timeout=2.0)
        on_standby = args.agent_on == "standby"
        agent = Agent(lambda: b.ports.ws if on_standby else leader["node"].ports.ws)
        try:
            agent.start()
            stream.start()
            time.sleep(WARM_SECONDS)
            a.signal(signal.SIGSTOP if args.pause else signal.SIGKILL)
            at = time.monotonic()
            leader["signalled"] = True
            try:
                cluster.until(b.leads, "node-b to lead", args.lease + TAKEOVER_WAIT, step=0.02)
            except AssertionError:
                return {"takeover_s": None, "waits": waits(url), "log_b": b.log()[-1500:]}
            takeover = time.monotonic() - at
            leader["node"] = b
            time.sleep(AFTER_SECONDS)
            stream.stop()
            accepted = stream.mids()
            deadline = time.monotonic() + SETTLE_SECONDS  # held mail taken in by B
            while True:
                lost = len(set(accepted) - cluster.stored(url, accepted))
                if lost == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            # The agent takes what still waits (its console on B may be a moment late).
            while time.monotonic() < deadline and mail.rows(
                    url, "SELECT count(*) FROM tasks WHERE state IN ('queued', 'offered')"
            )[0][0]:
                time.sleep(0.1)
            agent.stop()
            exit_code = None
            if args.pause:
                a.signal(signal.SIGCONT)
                try:
                    exit_code = a.proc.wait(30)
                except subprocess.TimeoutExpired:
                    exit_code = "still running 30 s after SIGCONT"
            (assignments,), = mail.rows(url, "SELECT count(*) FROM task_events "
                                        "WHERE kind = 'task.assigned'")
            return {"takeover_s": round(takeover, 3),
                    "intake_gap_s": round(gap_around([t for t, _ in stream.accepted], at), 3),
                    "accepted": len(accepted), "refused": stream.refused, "lost": lost,
                    "assigned_twice": len(cluster.assigned_twice(url)),
                    "assignments": int(assignments), "accepts_ok": agent.accepted,
                    "agent_gap_s": round(gap_around(agent.stamps, at), 3),
                    "deposed_exit": exit_code,
                    "tasks_by_state": dict(mail.rows(url, "SELECT state, count(*) FROM tasks "
                                                     "GROUP BY state")),
                    "agent_sessions": ["A" if p == a.ports.ws else "B"
                                       for p in agent.sessions],
                    "agent_error": agent.error,
                    # No accept after the signal: what B said (the agent's side is above).
                    **({} if any(t > at for t in agent.stamps) else
                       {"log_b": b.log(None)[-6000:]})}
        finally:
            stream.halt.set()
            agent.halt.set()
            cluster.end_all([a, b])


def spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def measure(args: argparse.Namespace) -> dict:
    server_url = args.database or PG_URL
    try:
        sa.create_engine(server_url).connect().close()
    except Exception as exc:  # noqa: BLE001 - no server: say so
        return {"missing": f"PostgreSQL at {server_url}: {str(exc)[:200]}"}
    before = load()
    runs = []
    for _ in range(args.repeats):
        try:
            runs.append(one(server_url, args))
        except Exception as exc:  # noqa: BLE001 - a repeat that could not run: say why
            runs.append({"takeover_s": None, "error": f"{type(exc).__name__}: "
                         f"{str(exc)[-1500:]}"})
    done = [r for r in runs if r["takeover_s"] is not None]
    return {
        "signal": "SIGSTOP" if args.pause else "SIGKILL", "lease_seconds": args.lease,
        "agent_on": args.agent_on,
        "rate_per_s": args.rate, "repeats": args.repeats, "cpus": os.cpu_count(),
        "load_before": before, "load_after": load(),
        "errors": sum("error" in r for r in runs),
        "no_takeover": sum("waits" in r for r in runs),  # within the lease + TAKEOVER_WAIT
        "takeover_s": spread([r["takeover_s"] for r in done]),
        "intake_gap_s": spread([r["intake_gap_s"] for r in done]),
        "agent_gap_s": spread([r["agent_gap_s"] for r in done]),
        "lost": sum(r["lost"] for r in done),
        "assigned_twice": sum(r["assigned_twice"] for r in done),
        "runs": runs,
    }


def show(result: dict) -> None:
    if "missing" in result:
        print(f"missing: {result['missing']}")
        return
    print(f"{result['signal']} of the leader, lease {result['lease_seconds']} s, "
          f"{result['rate_per_s']} msg/s over SMTP, agent on the {result['agent_on']}'s "
          f"console, {result['repeats']} repeats, "
          f"{result['cpus']} CPUs; load before {result['load_before']}, "
          f"after {result['load_after']}")
    for key in ("takeover_s", "intake_gap_s", "agent_gap_s"):
        s = result[key]
        if s["median"] is not None:
            print(f"{key:14} median {s['median']:.3f}  min {s['min']:.3f}  max {s['max']:.3f}")
    print(f"lost (250 but no task): {result['lost']}; assigned twice: "
          f"{result['assigned_twice']}; no takeover within lease + {TAKEOVER_WAIT:.0f} s: "
          f"{result['no_takeover']}; repeats that could not run: {result['errors']}")
    for n, r in enumerate(result["runs"], 1):
        if "error" in r:
            print(f"  run {n}: could not run: {r['error'][-300:]}")
            continue
        if r["takeover_s"] is None:
            print(f"  run {n}: NO TAKEOVER; waiting sessions: {r['waits']}")
            continue
        print(f"  run {n}: takeover {r['takeover_s']:.3f} s, gap {r['intake_gap_s']:.3f} s, "
              f"agent gap {r['agent_gap_s']:.3f} s, "
              f"{r['accepted']} accepted ({r['refused']} refused attempts), {r['lost']} lost, "
              f"{r['assignments']} assignments, {r['assigned_twice']} twice"
              + (f", deposed exit {r['deposed_exit']}" if r["deposed_exit"] is not None
                 else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lease", type=float, default=2.0, help="[cluster] lease_seconds")
    ap.add_argument("--rate", type=float, default=20.0, help="messages a second")
    ap.add_argument("--database", default="", help="PostgreSQL server URL (a fresh database "
                    "is made on it per repeat)")
    ap.add_argument("--pause", action="store_true", help="SIGSTOP the leader, not kill -9")
    ap.add_argument("--agent-on", choices=("leader", "standby"), default="leader",
                    help="the agent's console: the leader's, or B's throughout (tunnelled)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
