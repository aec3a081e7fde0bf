"""Benchmark: SMTP intake on PostgreSQL with one `switchboard serve` node against three (the
leader plus two `serve --role edge` nodes whose SMTP holds mail for it), in one run.

    .venv/bin/python bench/nodes.py [--messages M] [--clients N] [--repeats R] [--warmup W]
        [--settle S] [--database URL] [--json]

Each repeat runs both set-ups, the order swapped every other repeat, each on a fresh database
(made on the server of `--database`, else $SWITCHBOARD_BENCH_PG_URL, else bench/intake.py's, and
dropped after) prepared with the real CLI (`db upgrade`, `queues add support`); the nodes are
real processes (tests/dispatcher/runtime/running.py), acknowledgements off (as bench/smtp.py),
the per-IP session limit lifted, phone off. The leader is started first and sending waits for
its /healthz 200; every edge node's SMTP must answer too. N client threads (smtplib, one SMTP
session each, reused for all its messages, no pipelining) split over the SMTP ports of every
node (one in set-up 1, three in set-up 2) send M messages of about 2 KB in all, each with its
own Message-ID, as fast as the servers answer. W warm-up messages (spread the same way) are
stored before the clock starts. Measured per set-up and repeat:

- accepted_per_s: 250s over the sending wall time (first send to the last client's end);
- stored_per_s: the accepted messages over the time from the first send until each accepted
  Message-ID is an inbound row of `email_messages` (polled every POLL_SECONDS, so up to that
  much late; the 1-node figure includes no held-mail wait, the 3-node one the leader's 0.5 s
  polling of `held_mail`);
- held_peak: the highest count(*) of `held_mail` seen by that poll (0 with one node);
- lost: accepted but not stored within `--settle` seconds (must be 0); duplicates: Message-IDs
  stored more than once (must be 0); tasks: distinct tasks the accepted messages became;
- refused: 4xx/5xx answers or broken sessions (a client reconnects and moves on);
- cpu_s: CPU seconds of every node and its children (the reading workers) during the run;
- for a run that went wrong (refusals, lost, duplicates, not all stored, warm-up not stored, a
  node gone before the stop): the reasons of the refusals and the end of every node's log.

Prints medians over the repeats, the ratio 3-node/1-node of both rates (of the medians, and
repeat by repeat), the CPU count and the load average before and after (`--json`: one object).
Prints figures, never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench import intake  # noqa: E402
from bench.smtp import cpu_seconds  # noqa: E402
from tests.dispatcher.runtime.running import (  # noqa: E402
    base_env,
    free_port,
    run,
    switchboard_command,
    wait_port,
)

PG_URL = os.environ.get("SWITCHBOARD_BENCH_PG_URL", intake.PG_URL)
SENDERS = [0]  # customers sending: 0, one per message (main sets it from --senders)
RECIPIENT = "support@example.com"
LINE = b"x" * 74 + b"\r\n"
FILLER = LINE * 25  # 1,900 bytes: about 2 KB a message with the header
POLL_SECONDS = 0.1
READY_SECONDS = 60.0
SECRET = "ab" * 32  # 64 hex characters, the console's token key


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sender(n: int) -> str:
    """The customer who sends message `n`: each their own, or one of --senders."""
    return f"customer{n % SENDERS[0] if SENDERS[0] else n}@customer.org"


def message(mid: str, n: int) -> bytes:
    return (f"From: Bench Customer <{sender(n)}>\r\nTo: {RECIPIENT}\r\n"
            f"Subject: Bench question {n}\r\nMessage-ID: <{mid}@customer.org>\r\n"
            "Date: Sat, 05 Dec 2026 06:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + FILLER


@dataclass
class Node:
    """One `switchboard serve` (its log: home/serve.log)."""

    name: str
    home: Path
    env: dict[str, str]
    smtp: int
    http: int
    args: tuple[str, ...]
    proc: subprocess.Popen | None = None
    exit_code: int | None = None
    gone_before_stop: bool = False  # it had exited by itself (or someone else stopped it)

    def start(self) -> None:
        with (self.home / "serve.log").open("ab") as out:
            self.proc = subprocess.Popen([*switchboard_command(), *self.args], cwd=self.home,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")[-2000:]

    def leads(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz",
                                        timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> None:
        """SIGTERM (it should exit 0: the code is kept), killed after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and self.exit_code is None:
                self.exit_code, self.gone_before_stop = self.proc.returncode, True
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait(10)


def make_node(tmp: Path, url: str, name: str, edge: bool) -> Node:
    home = tmp / name
    home.mkdir()
    (home / "console.secret").write_text(SECRET)
    smtp, http = free_port(), free_port()
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_CLUSTER_NODE=name,
        SWITCHBOARD_EMAIL_SMTP_PORT=str(smtp), SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support",
        SWITCHBOARD_EMAIL_DOMAINS="example.com", SWITCHBOARD_EMAIL_ACK_QUEUES="",
        SWITCHBOARD_EMAIL_SMTP_SESSIONS_PER_IP_PER_MINUTE="0",
        SWITCHBOARD_SERVER_HTTP_PORT=str(http), SWITCHBOARD_CONSOLE_PORT=str(free_port()),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(home / "console.secret"),
        SWITCHBOARD_PHONE_ENABLED="false", SWITCHBOARD_LOG_LEVEL="WARNING",
    )
    args = ("serve", "--role", "edge") if edge else ("serve",)
    return Node(name, home, env, smtp, http, args)


@contextmanager
def cluster(url: str, nodes: int):
    """The leader (leading: /healthz 200, SMTP answering), then nodes - 1 edge nodes (SMTP
    answering); every node stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="sb-nodes-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        for args in (["db", "upgrade"], ["queues", "add", "support"]):
            done = run("--database", url, *args, cwd=tmp, env=base_env())
            if done.code != 0:
                raise RuntimeError(f"switchboard {' '.join(args)}: {done.err[-1000:]}")
        started = []
        for i in range(nodes):
            node = make_node(tmp, url, f"sb-{i + 1}", edge=i > 0)
            node.start()
            stack.callback(node.stop)
            started.append(node)
        leader = started[0]
        deadline = time.monotonic() + READY_SECONDS
        while not leader.leads():
            if leader.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{leader.name} did not lead: {leader.log()}")
            time.sleep(0.1)
        for node in started:
            wait_port(node.smtp, node.proc, node.home / "serve.log", READY_SECONDS)
        yield started


@dataclass
class Sent:
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why, the first 80 characters
    seconds: float = 0.0


def send_one(c: smtplib.SMTP, mid: str, n: int) -> tuple[int, str]:
    """One transaction on an open session: the DATA reply's code and text (raises on a refused
    MAIL or RCPT)."""
    for code, reply in (c.mail(sender(n)), c.rcpt(RECIPIENT)):
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
    code, reply = c.data(message(mid, n))
    return code, f"{code} {reply.decode(errors='replace')}"[:80]


def send_all(ports: list[int], messages: int, clients: int, prefix: str) -> Sent:
    """`clients` threads, client i on ports[i % len(ports)], one session each (reopened after a
    broken one), together `messages` messages; the Message-IDs answered 250."""
    sent = Sent()
    lock = threading.Lock()

    def client(i: int) -> None:
        mine = range(i, messages, clients)
        c: smtplib.SMTP | None = None
        for n in mine:
            mid = f"{prefix}-{n}"
            try:
                if c is None:
                    c = smtplib.SMTP("127.0.0.1", ports[i % len(ports)], timeout=60)
                    c.ehlo("bench.customer.org")
                code, why = send_one(c, mid, n)
            except (OSError, smtplib.SMTPException) as exc:
                code, why = 0, f"{type(exc).__name__}: {exc}"[:80]
                if c is not None:
                    c.close()
                c = None
            with lock:
                if code == 250:
                    sent.accepted.append(mid)
                else:
                    sent.refused += 1
                    sent.reasons[why] = sent.reasons.get(why, 0) + 1
        if c is not None:
            try:
                c.quit()
            except (OSError, smtplib.SMTPException):
                c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent.seconds = time.perf_counter() - t0
    return sent


class Watch(threading.Thread):
    """Polls the held backlog and the stored count every POLL_SECONDS until stopped."""

    def __init__(self, engine: sa.Engine, prefix: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.like = engine, f"{prefix}-%"
        self.halt = threading.Event()
        self.held_peak = 0
        self.stored = 0
        self.seen = threading.Condition()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.halt.is_set():
                held = conn.execute(sa.text("SELECT count(*) FROM held_mail")).scalar_one()
                stored = conn.execute(sa.text(
                    "SELECT count(DISTINCT message_id) FROM email_messages "
                    "WHERE direction = 'in' AND message_id LIKE :like"),
                    {"like": self.like}).scalar_one()
                conn.rollback()  # a fresh snapshot each time
                with self.seen:
                    self.held_peak = max(self.held_peak, held)
                    self.stored = stored
                    self.seen.notify_all()
                self.halt.wait(POLL_SECONDS)

    def until_stored(self, count: int, seconds: float) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: self.stored >= count, seconds)


def outcome(engine: sa.Engine, accepted: list[str], prefix: str) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT message_id, count(*), count(DISTINCT task_id) FROM email_messages "
            "WHERE direction = 'in' AND message_id LIKE :like GROUP BY message_id"),
            {"like": f"{prefix}-%"}).all()
        tasks = conn.execute(sa.text(
            "SELECT count(DISTINCT m.task_id) FROM email_messages m JOIN tasks t "
            "ON t.id = m.task_id WHERE m.direction = 'in' AND m.message_id LIKE :like"),
            {"like": f"{prefix}-%"}).scalar_one()
    have = {r[0].split("@")[0]: r[1] for r in rows}
    return {"lost": sum(1 for m in accepted if m not in have),
            "duplicates": sum(1 for n in have.values() if n > 1), "tasks": tasks}


def one(server_url: str, nodes: int, args: argparse.Namespace, repeat: int) -> dict:
    intake.PG_URL = server_url  # postgres_database() makes one on this server
    with intake.postgres_database() as url, cluster(url, nodes) as started:
        ports = [n.smtp for n in started]
        engine = sa.create_engine(url, pool_size=2)
        try:
            warmed = True
            if args.warmup:
                warmed = False
                warm = send_all(ports, args.warmup, min(args.clients, args.warmup), "warm")
                deadline = time.monotonic() + args.settle
                while time.monotonic() < deadline:
                    with engine.connect() as conn:
                        held = conn.execute(sa.text("SELECT count(*) FROM held_mail")
                                            ).scalar_one()
                    if held == 0 and outcome(engine, warm.accepted, "warm")["lost"] == 0:
                        warmed = True
                        break
                    time.sleep(POLL_SECONDS)
            prefix = f"nb{repeat}n{nodes}"
            cpu = {n.name: cpu_seconds(n.proc.pid) for n in started}
            watch = Watch(engine, prefix)
            t0 = time.perf_counter()
            watch.start()
            sent = send_all(ports, args.messages, args.clients, prefix)
            done = watch.until_stored(len(sent.accepted), args.settle)
            stored_s = time.perf_counter() - t0
            watch.halt.set()
            watch.join(10)
            cpu = {n.name: round(cpu_seconds(n.proc.pid) - cpu[n.name], 2) for n in started}
            result = outcome(engine, sent.accepted, prefix)
        finally:
            engine.dispose()
            for node in started:
                node.stop()
    accepted = len(sent.accepted)
    return {
        "nodes": nodes, "accepted": accepted, "refused": sent.refused,
        "send_s": round(sent.seconds, 3), "accepted_per_s": round(accepted / sent.seconds, 1),
        "stored_s": round(stored_s, 3) if done else None,
        "stored_per_s": round(accepted / stored_s, 1) if done else None,
        "held_peak": watch.held_peak, **result, "cpu_s": cpu,
        "exit_codes": {n.name: n.exit_code for n in started}, "refusals": sent.reasons,
        "gone_before_stop": [n.name for n in started if n.gone_before_stop],
        "warmup_stored": warmed,
        # something went wrong: the end of every node's log says what
        **({"logs": {n.name: n.log()[-1500:] for n in started}}
           if sent.refused or not done or result["lost"] or result["duplicates"]
           or not warmed or any(n.gone_before_stop for n in started) else {}),
    }


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def summary(runs: list[dict]) -> dict:
    return {
        "accepted_per_s": median([r["accepted_per_s"] for r in runs]),
        "stored_per_s": median([r["stored_per_s"] for r in runs]),
        "held_peak": max(r["held_peak"] for r in runs),
        "lost": sum(r["lost"] for r in runs), "duplicates": sum(r["duplicates"] for r in runs),
        "refused": sum(r["refused"] for r in runs),
        "not_stored_in_time": sum(1 for r in runs if r["stored_per_s"] is None),
    }


def ratio(three: list[dict], one_: list[dict], key: str) -> dict:
    a, b = median([r[key] for r in three]), median([r[key] for r in one_])
    pairs = [round(x[key] / y[key], 3) if x[key] and y[key] else None
             for x, y in zip(three, one_, strict=True)]
    return {"of_medians": round(a / b, 3) if a and b else None, "repeats": pairs}


def measure(args: argparse.Namespace) -> dict:
    server_url = args.database or PG_URL
    try:
        sa.create_engine(server_url).connect().close()
    except Exception as exc:  # noqa: BLE001 - no server: say so
        return {"missing": f"PostgreSQL at {server_url}: {str(exc)[:200]}"}
    before = load()
    runs: dict[int, list[dict]] = {1: [], 3: []}
    for repeat in range(args.repeats):
        for nodes in (1, 3) if repeat % 2 == 0 else (3, 1):
            runs[nodes].append(one(server_url, nodes, args, repeat))
    return {
        "messages": args.messages, "clients": args.clients, "warmup": args.warmup,
        "bytes": len(message("nb0n1-0", 0)), "repeats": args.repeats, "cpus": os.cpu_count(),
        "senders": args.senders or "one per message",
        "load_before": before, "load_after": load(),
        "one_node": summary(runs[1]), "three_nodes": summary(runs[3]),
        "ratio_3_to_1": {k: ratio(runs[3], runs[1], k)
                         for k in ("accepted_per_s", "stored_per_s")},
        "runs": runs[1] + runs[3],
    }


def show(result: dict) -> None:
    if "missing" in result:
        print(f"missing: {result['missing']}")
        return
    print(f"{result['messages']} messages of {result['bytes']} bytes a run, "
          f"{result['clients']} SMTP clients (sessions reused), {result['warmup']} warm-up, "
          f"{result['repeats']} repeats; {result['cpus']} CPUs; load before "
          f"{result['load_before']}, after {result['load_after']}")
    print(f"{'set-up':10} {'accepted/s':>10} {'stored/s':>9} {'held peak':>9} {'lost':>5} "
          f"{'dups':>5} {'refused':>7}")
    for name, key in (("1 node", "one_node"), ("3 nodes", "three_nodes")):
        s = result[key]
        late = f"  ({s['not_stored_in_time']} runs not all stored in time)" \
            if s["not_stored_in_time"] else ""
        print(f"{name:10} {s['accepted_per_s'] or 0:10.0f} {s['stored_per_s'] or 0:9.0f} "
              f"{s['held_peak']:9d} {s['lost']:5d} {s['duplicates']:5d} {s['refused']:7d}{late}")
    for key, r in result["ratio_3_to_1"].items():
        pairs = ", ".join("n/a" if p is None else f"{p:.2f}" for p in r["repeats"])
        of = "n/a" if r["of_medians"] is None else f"{r['of_medians']:.2f}x"
        print(f"3 nodes / 1 node, {key:15} {of} of medians; repeat by repeat: {pairs}")
    for r in result["runs"]:
        print(f"  {r['nodes']} node(s): {r['accepted']} accepted in {r['send_s']:.2f} s, "
              f"stored after {r['stored_s']} s, {r['tasks']} tasks, held peak "
              f"{r['held_peak']}, CPU s {r['cpu_s']}, exit codes {r['exit_codes']}"
              + (f", gone before the stop: {r['gone_before_stop']}" if r["gone_before_stop"]
                 else "")
              + (f", refusals: {r['refusals']}" if r["refusals"] else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages a run, in all")
    ap.add_argument("--clients", type=int, default=8, help="concurrent SMTP sessions")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each set-up")
    ap.add_argument("--warmup", type=int, default=40, help="messages stored before timing")
    ap.add_argument("--settle", type=float, default=120.0,
                    help="seconds to wait for every accepted message to be stored")
    ap.add_argument("--database", default="", help="PostgreSQL server URL (a fresh database "
                    "is made on it per run)")
    ap.add_argument("--senders", type=int, default=0, help="customers sending (0: one per "
                    "message; the router takes each one's held mail in order, one at a time)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    SENDERS[0] = max(0, args.senders)
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
