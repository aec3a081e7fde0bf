"""Benchmark: messages/s the e-mail edge accepts (250 sent after the commit) with 10 concurrent
SMTP clients, against Postfix's smtp-sink (accepts and discards) on loopback, in the same run.

    .venv/bin/python bench/smtp.py [--messages N] [--clients C] [--db URL]

Starts the dispatcher with the e-mail edge (tests/channels/email/server.py) on a fresh SQLite
file unless --db is given, and smtp-sink on a free port; sends the same messages to both with
`smtp-source` when it is installed (else with smtplib threads, for both); prints both rates and
their ratio. Prints figures, never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import socket
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
    ap.add_argument("--db", default="")
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
    try:
        send = ((lambda p: with_smtp_source(source_bin, p, args.messages, args.clients))
                if source_bin else (lambda p: with_smtplib(p, args.messages, args.clients)))
        client = "smtp-source" if source_bin else "smtplib threads"
        ours = send(server.port)
        theirs = send(sink_port)
        stored = running.rows(url, "select count(*) from email_messages")[0][0]
    finally:
        server.stop()
        sink.terminate()
        sink.wait(5)
    print(f"client: {client}, {args.clients} concurrent sessions, {args.messages} messages of "
          f"{len(BODY)} bytes, database {url.split(':')[0]}")
    print(f"switchboard (250 after commit): {ours:8.0f} msg/s  ({stored} messages stored)")
    print(f"postfix smtp-sink (discards):   {theirs:8.0f} msg/s")
    print(f"ratio: {ours / theirs:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
