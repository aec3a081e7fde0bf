"""Benchmark: messages/s the e-mail edge accepts (250 sent after the commit) with C concurrent SMTP
clients, against Postfix *with its queue* (a private instance: smtpd -> cleanup -> a queue file
written with fsync before the 250, then delivered to the discard transport; bench/postfix.py) and
Postfix's smtp-sink (accepts and discards: the ceiling of the client and loopback), in one run.

    .venv/bin/python bench/smtp.py [--messages N] [--clients C] [--runs R] [--warmup W]
        [--store sqlite|postgresql|both] [--db URL] [--senders distinct|one] [--no-acks]
        [--reuse] [--before DIR] [--unfenced] [--json]

Switchboard runs the e-mail edge (tests/channels/email/server.py: store on a thread pool with
group commit, router, services, the edge as `serve` builds it) on a fresh SQLite file (default;
WAL, synchronous=FULL), on a fresh PostgreSQL database (`--store postgresql`:
SWITCHBOARD_TEST_PG_URL's server, created and dropped), on both (`--store both`), or on `--db
URL`. On PostgreSQL the server holds the router's lease and every commit passes its fence, as
under `serve` (`--unfenced`: without). With `--before DIR`, the Switchboard of another checkout
too (the same server module run from DIR with this Python, on a store of its own: `git archive
HEAD | tar -x -C DIR` measures the last commit against the working tree in one run).

What is sent is what a centre gets, by default: every message from a sender of its own (a new
request from a new address: envelope and From differ each time, never seen before), so that
each is acknowledged as `serve` does by default (an acknowledgement per sender and period,
stored with the task before the 250). The client is then an asyncio one of this script
(smtp-source cannot vary the sender). `--senders one`: every message from one sender, sent by
Postfix's `smtp-source` when it is installed (else smtplib threads); only the first is then
acknowledged. `--no-acks`: the queues send no acknowledgement (the edge and the intake alone).
One connection per message, or with `--reuse` one connection per client for all its messages.

Every peer gets the same messages from the same client. After W warm-up messages each (not
counted), R rounds run every peer once, the order reversed every other round, waiting for
Postfix's queue to empty between runs; it prints each peer's median msg/s, Switchboard's CPU per
message (server and reading workers), the client's CPU per message, the ratio of medians to
each peer and the ratio of each round's pair, and the load average and the core's speed
(bench/machine.py) before and after (`--json`: one object). A peer that cannot run (Postfix or
smtp-sink not installed, not root) is reported as missing with the reason. Prints figures, never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402
from bench.intake import postgres_database, sqlite_database  # noqa: E402
from bench.postfix import Missing, private_postfix  # noqa: E402
from tests.channels.email import running  # noqa: E402

TEXT = b"Subject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"
BODY = b"From: bench@customer.org\r\n" + TEXT
RECIPIENT = "support@example.com"
SENDER = "bench@customer.org"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_smtplib(port: int, messages: int, clients: int, reuse: bool) -> float:
    per = messages // clients

    def one(n: int) -> None:
        for _ in range(1 if reuse else per):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
                for _ in range(per if reuse else 1):
                    c.sendmail(f"c{n}@customer.org", [RECIPIENT], BODY)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * clients / (time.perf_counter() - t0)


def with_smtp_source(tool: str, port: int, messages: int, clients: int, reuse: bool) -> float:
    t0 = time.perf_counter()
    subprocess.run([tool, *(["-d"] if reuse else []), "-s", str(clients), "-m", str(messages),
                    "-l", str(len(BODY)),
                    "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL, timeout=600)
    return messages / (time.perf_counter() - t0)


def with_asyncio(port: int, messages: int, clients: int, reuse: bool) -> float:
    """`clients` concurrent asyncio sessions; every message from a new sender (`--senders
    distinct`: the module doc)."""
    import asyncio

    nonce = uuid.uuid4().hex[:8]  # new senders on every run, never acknowledged before
    numbers = iter(range(messages))

    async def reply(reader: asyncio.StreamReader) -> None:
        while True:  # the reply's lines up to its last ("250 ...", not "250-...")
            line = await reader.readline()
            if line[:1] not in (b"2", b"3"):
                raise RuntimeError(f"the server answered {line!r}")
            if line[3:4] != b"-":
                return

    async def say(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  *lines: bytes) -> None:
        writer.write(b"".join(lines))
        await reply(reader)

    async def session() -> None:
        reader = writer = None
        for n in numbers:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await reply(reader)
                await say(reader, writer, b"EHLO bench.customer.org\r\n")
            sender = f"s{n}-{nonce}@customer.org".encode()
            await say(reader, writer, b"MAIL FROM:<%s>\r\n" % sender)
            await say(reader, writer, b"RCPT TO:<%s>\r\n" % RECIPIENT.encode())
            await say(reader, writer, b"DATA\r\n")
            await say(reader, writer, b"From: <%s>\r\n" % sender, TEXT, b".\r\n")
            if not reuse:
                await say(reader, writer, b"QUIT\r\n")
                writer.close()
                writer = None
        if writer is not None:
            await say(reader, writer, b"QUIT\r\n")
            writer.close()

    async def sessions() -> None:
        await asyncio.gather(*(session() for _ in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(sessions())
    return messages / (time.perf_counter() - t0)


def client_cpu() -> float:
    """The sending client's CPU: this process (the asyncio client) and its ended children
    (smtp-source)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live children (the reading workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@dataclass
class Peer:
    name: str
    what: str
    port: int = 0
    missing: str | None = None
    settle: Callable[[], None] = lambda: None
    pid: int | None = None  # whose CPU is measured
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # per message, per run
    client_ms: list[float] = field(default_factory=list)  # the client's, per message
    count: Callable[[], int] | None = None  # messages it stored (or delivered) in all
    stored: int | None = None

    def summary(self) -> dict:
        if self.missing is not None:
            return {"what": self.what, "missing": self.missing}
        out = {"what": self.what, "msgs_per_s": round(statistics.median(self.rates), 1),
               "runs": [round(r, 1) for r in self.rates]}
        if self.cpu_ms:
            out["cpu_ms_per_msg"] = round(statistics.median(self.cpu_ms), 3)
        if self.client_ms:
            out["client_cpu_ms_per_msg"] = round(statistics.median(self.client_ms), 3)
        if self.stored is not None:
            out["stored"] = self.stored
        return out


def start_server(root: Path, url: str, acks: bool, fenced: bool) -> running.Server:
    """tests/channels/email/server.py of the checkout `root` (running.start for this one);
    `fenced`: behind the router's lease, as `serve` on PostgreSQL (a checkout whose server
    does not know `--fenced` runs without)."""
    # One source sends every message: lift the per-source session rate (issue 13's limit).
    settings = {"ack_queues": "*" if acks else "", "smtp_sessions_per_ip_per_minute": 0}
    if root == ROOT:
        return running.start(url, fenced, **settings)
    settings.update(smtp_port=0, recipients=running.ROUTES, hostname="mx.example.com")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.channels.email.server", url, json.dumps(settings),
         *(["--fenced"] if fenced else [])],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.PIPE,
        text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    while line and not line.startswith("READY"):
        line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"the e-mail server of {root} did not start (rc {proc.poll()})")
    return running.Server(proc, int(line.split()[1]), url)


def switchboard(stack: ExitStack, store: str, db: str, root: Path = ROOT,
                acks: bool = True, fenced: bool = True) -> Peer:
    before = root != ROOT
    name = f"switchboard_{store}" + ("_before" if before else "")
    what = f"Switchboard{f' of {root}' if before else ''}, 250 after the commit on {store}"
    try:
        url = db or stack.enter_context(
            sqlite_database() if store == "sqlite" else postgres_database())
    except Exception as exc:  # noqa: BLE001 - no database server: the peer is missing
        return Peer(name, what, missing=f"{type(exc).__name__}: {str(exc)[:200]}")
    server = start_server(root, url, acks, fenced and store == "postgresql")
    stack.callback(server.stop)
    return Peer(name, what, server.port, pid=server.proc.pid,
                count=lambda: running.rows(
                    url, "select count(*) from email_messages where direction = 'in'")[0][0])


def postfix(stack: ExitStack) -> Peer:
    what = "Postfix 250 after its queue file is fsync'ed, delivered to discard:"
    try:
        instance = stack.enter_context(private_postfix(free_port()))
    except Missing as exc:
        return Peer("postfix_queue", what, missing=str(exc))
    return Peer("postfix_queue", what, instance.port, settle=instance.settle,
                count=instance.delivered)


def smtp_sink(stack: ExitStack) -> Peer:
    what = "Postfix smtp-sink: accepts and discards (the ceiling)"
    sink_bin = shutil.which("smtp-sink")
    if sink_bin is None:
        return Peer("smtp_sink", what, missing="smtp-sink is not installed (apt-get install"
                    " postfix)")
    port = free_port()
    as_root = ["-u", "nobody"] if os.getuid() == 0 else []  # smtp-sink refuses root without -u
    sink = subprocess.Popen([sink_bin, *as_root, f"127.0.0.1:{port}", "1000"],
                            stdout=subprocess.DEVNULL)
    stack.callback(lambda: (sink.terminate(), sink.wait(5)))
    time.sleep(0.2)
    return Peer("smtp_sink", what, port)


def ratios(ours: Peer, theirs: Peer) -> dict:
    if ours.missing or theirs.missing:
        return {"missing": ours.missing or theirs.missing}
    return {"of_medians": round(statistics.median(ours.rates) / statistics.median(theirs.rates),
                                3),
            "pairs": [round(a / b, 3) for a, b in zip(ours.rates, theirs.rates, strict=True)]}


def rounds(peers: list[Peer], send: Callable[[int, int], float],
           args: argparse.Namespace) -> None:
    """Warm every peer up, then R rounds of one run each (order reversed every other round, so
    all see the same machine); then count what each stored."""
    for peer in peers:
        if args.warmup:
            send(peer.port, args.warmup)
            peer.settle()
    for round_ in range(args.runs):
        for peer in peers if round_ % 2 == 0 else peers[::-1]:
            cpu = cpu_seconds(peer.pid) if peer.pid else None
            mine = client_cpu()
            peer.rates.append(send(peer.port, args.messages))
            peer.client_ms.append((client_cpu() - mine) * 1000 / args.messages)
            if cpu is not None:
                peer.cpu_ms.append((cpu_seconds(peer.pid) - cpu) * 1000 / args.messages)
            peer.settle()
    for peer in peers:
        peer.stored = None if peer.count is None else peer.count()


def measure(args: argparse.Namespace) -> dict:
    source_bin = shutil.which("smtp-source")
    client = "smtp-source" if source_bin else "smtplib threads"
    if args.senders == "distinct":
        client = "asyncio (a new sender each message)"

    def send(port: int, messages: int) -> float:
        if args.senders == "distinct":
            return with_asyncio(port, messages, args.clients, args.reuse)
        if source_bin:
            return with_smtp_source(source_bin, port, messages, args.clients, args.reuse)
        return with_smtplib(port, messages, args.clients, args.reuse)

    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    if args.db:
        stores = ["postgresql" if args.db.startswith("postgres") else "sqlite"]
    before = machine.now()
    with ExitStack() as stack:
        acks = not args.no_acks
        fenced = not args.unfenced
        ours = [switchboard(stack, store, args.db, acks=acks, fenced=fenced)
                for store in stores]
        if args.before:
            ours += [switchboard(stack, store, "", Path(args.before).resolve(), acks, fenced)
                     for store in stores]
        peers = [*ours, postfix(stack), smtp_sink(stack)]
        rounds([p for p in peers if p.missing is None], send, args)
    result = {
        "client": client, "clients": args.clients, "reuse": args.reuse,
        "senders": args.senders, "acks": not args.no_acks,
        "fenced": not args.unfenced and "postgresql" in stores,
        "messages": args.messages,
        "warmup": args.warmup, "bytes": len(BODY), "runs": args.runs,
        "machine_before": before, "machine_after": machine.now(),
        "peers": {p.name: p.summary() for p in peers},
        "ratios": {},
    }
    for mine in ours:
        others = [p for p in peers if not p.name.startswith("switchboard")]
        others += [p for p in ours if p.name == f"{mine.name}_before"]
        for other in others:
            result["ratios"][f"{mine.name}/{other.name}"] = ratios(mine, other)
    return result


def show(result: dict) -> None:
    sessions = "sessions reused" if result["reuse"] else "one connection a message"
    acks = "acknowledged as by default" if result["acks"] else "no acknowledgements"
    print(f"client: {result['client']}, {result['clients']} concurrent clients ({sessions}), "
          f"{result['messages']} messages of {result['bytes']} bytes a run (after "
          f"{result['warmup']} warm-up), {result['runs']} rounds; {acks}")
    print(f"before: {machine.said(result['machine_before'])}; after: "
          f"{machine.said(result['machine_after'])}")
    for name, peer in result["peers"].items():
        if "missing" in peer:
            print(f"{name:31} missing: {peer['missing']}")
            continue
        extra = f"; {peer['cpu_ms_per_msg']:.2f} ms CPU/msg" if "cpu_ms_per_msg" in peer else ""
        extra += (f"; client {peer['client_cpu_ms_per_msg']:.2f} ms CPU/msg"
                  if "client_cpu_ms_per_msg" in peer else "")
        stored = f"; {peer['stored']} stored" if "stored" in peer else ""
        print(f"{name:31} {peer['msgs_per_s']:8.0f} msg/s median  "
              f"({', '.join(f'{r:.0f}' for r in peer['runs'])}{extra}{stored})  {peer['what']}")
    for name, ratio in result["ratios"].items():
        if "missing" in ratio:
            print(f"{name:46} n/a ({ratio['missing'][:60]})")
            continue
        target = "  (target >= 0.5x)" if name.endswith("/postfix_queue") else ""
        print(f"{name:46} {ratio['of_medians']:.2f}x of medians; round by round: "
              f"{', '.join(f'{r:.2f}' for r in ratio['pairs'])}{target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages a run")
    ap.add_argument("--clients", type=int, default=10, help="concurrent SMTP sessions")
    ap.add_argument("--runs", type=int, default=3, help="rounds (every peer once a round)")
    ap.add_argument("--warmup", type=int, default=200, help="messages to each peer first")
    ap.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--db", default="", help="database URL (instead of a fresh one)")
    ap.add_argument("--reuse", action="store_true", help="one connection per client")
    ap.add_argument("--before", default="", help="a checkout whose Switchboard runs too")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--senders", choices=["distinct", "one"], default="distinct",
                    help="a new sender each message (default), or one sender (smtp-source)")
    ap.add_argument("--no-acks", action="store_true", help="queues send no acknowledgement")
    ap.add_argument("--unfenced", action="store_true",
                    help="PostgreSQL: commit without the router's lease and its fence (which "
                         "`serve` holds; the default here too)")
    args = ap.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
