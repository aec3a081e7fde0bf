"""Benchmark: messages/s the e-mail edge accepts (250 sent after the commit) with 10 concurrent
SMTP clients, against Postfix's smtp-sink (accepts and discards) on loopback, in the same run.

    .venv/bin/python bench/smtp.py [--messages N] [--clients C] [--runs R] [--db URL] [--json]

Starts the dispatcher with the e-mail edge (tests/channels/email/server.py) on a fresh SQLite
file unless --db is given, and smtp-sink on a free port; sends the same messages to both with
`smtp-source` when it is installed (else with smtplib threads, for both), R pairs of runs
(switchboard then smtp-sink, alternated); prints both medians, their ratio and the ratio of each
pair (`--json`: one object). Prints figures, never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.channels.email import running  # noqa: E402

BODY = b"Subject: bench\r\nFrom: bench@customer.org\r\n\r\n" + b"x" * 1000 + b"\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_smtplib(port: int, messages: int, clients: int) -> float:
    per = messages // clients

    def one(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
            for _ in range(per):
                c.sendmail(f"c{n}@customer.org", ["support@example.com"], BODY)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * clients / (time.perf_counter() - t0)


def with_smtp_source(tool: str, port: int, messages: int, clients: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([tool, "-s", str(clients), "-m", str(messages), "-l", str(len(BODY)),
                    "-f", "bench@customer.org", "-t", "support@example.com",
                    f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return messages / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3, help="pairs (switchboard, then smtp-sink)")
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    sink_bin, source_bin = shutil.which("smtp-sink"), shutil.which("smtp-source")
    if sink_bin is None:
        sys.exit("smtp-sink is not installed (apt-get install postfix; ./dev test does it as root)")
    tmp = tempfile.mkdtemp(prefix="sb-bench-")
    url = args.db or f"sqlite:///{tmp}/bench.db"
    # One source sends every message: lift the per-source session rate (issue 13's limit).
    server = running.start(url, ack_queues="", smtp_sessions_per_ip_per_minute=0)
    sink_port = free_port()
    as_root = ["-u", "nobody"] if os.getuid() == 0 else []  # smtp-sink refuses root without -u
    sink_cmd = [sink_bin, *as_root, f"127.0.0.1:{sink_port}", "1000"]
    sink = subprocess.Popen(sink_cmd, stdout=subprocess.DEVNULL)
    time.sleep(0.2)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        send = ((lambda p: with_smtp_source(source_bin, p, args.messages, args.clients))
                if source_bin else (lambda p: with_smtplib(p, args.messages, args.clients)))
        client = "smtp-source" if source_bin else "smtplib threads"
        for _ in range(args.runs):  # pair by pair, so both see the same machine
            ours.append(send(server.port))
            theirs.append(send(sink_port))
        stored = running.rows(url, "select count(*) from email_messages")[0][0]
    finally:
        server.stop()
        sink.terminate()
        sink.wait(5)
    result = {
        "client": client, "clients": args.clients, "messages": args.messages,
        "bytes": len(BODY), "database": url.split(":")[0], "runs": args.runs,
        "stored": stored,
        "switchboard_msgs_per_s": round(statistics.median(ours), 1),
        "smtp_sink_msgs_per_s": round(statistics.median(theirs), 1),
        "ratio": round(statistics.median(ours) / statistics.median(theirs), 3),
        "pair_ratios": [round(a / b, 3) for a, b in zip(ours, theirs, strict=True)],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"client: {client}, {args.clients} concurrent sessions, {args.messages} messages of "
          f"{len(BODY)} bytes, database {result['database']}, {args.runs} pairs of runs")
    print(f"switchboard (250 after commit): {result['switchboard_msgs_per_s']:8.0f} msg/s median"
          f"  ({', '.join(f'{r:.0f}' for r in ours)}; {stored} messages stored)")
    print(f"postfix smtp-sink (discards):   {result['smtp_sink_msgs_per_s']:8.0f} msg/s median"
          f"  ({', '.join(f'{r:.0f}' for r in theirs)})")
    print(f"ratio of medians: {result['ratio']:.2f}x; pair by pair: "
          f"{', '.join(f'{r:.2f}' for r in result['pair_ratios'])} (target >= 0.5x)")


if __name__ == "__main__":
    main()
