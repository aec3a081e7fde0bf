"""Start and stop the phone test server (server.py) as a subprocess, follow the events it
prints, run sipp scenarios against it, and read what it stored."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
READY_TIMEOUT = 30.0
PASSWORD = "secret"


@dataclass
class Server:
    proc: subprocess.Popen
    udp_port: int
    tcp_port: int
    url: str
    events: list[dict] = field(default_factory=list)
    _new: queue.Queue = field(default_factory=queue.Queue)
    ready: queue.Queue = field(default_factory=queue.Queue)

    def follow(self) -> None:
        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith("EVENT "):
                    self._new.put(json.loads(line[6:]))
                elif line.startswith("READY"):
                    self.ready.put(line)
            self.ready.put(None)
        threading.Thread(target=read, daemon=True).start()

    def wait_for(self, kind: str, timeout: float = 15.0, after: dict | None = None,
                 **match: Any) -> dict:
        """The first event (seen before or arriving within `timeout`; only those after the
        event `after` if given) of `kind` whose fields (or data fields) equal `match`."""
        deadline = time.monotonic() + timeout
        while True:
            while True:
                try:
                    self.events.append(self._new.get_nowait())
                except queue.Empty:
                    break
            start = 0 if after is None else next(
                i for i, e in enumerate(self.events) if e is after) + 1
            for e in self.events[start:]:
                if e["kind"] == kind and all(e.get(k, e["data"].get(k)) == v
                                             for k, v in match.items()):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(e["kind"], e["agent_id"]) for e in self.events]
                raise AssertionError(f"no {kind} {match} within {timeout}s; saw {kinds}")
            with contextlib.suppress(queue.Empty):
                self.events.append(self._new.get(timeout=min(left, 0.2)))

    def kinds(self) -> list[str]:
        while True:
            try:
                self.events.append(self._new.get_nowait())
            except queue.Empty:
                return [e["kind"] for e in self.events]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start(url: str, spec: dict, log_path: Path | None = None) -> Server:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    err = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.channels.phone.server", url, json.dumps(spec)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
    )
    if err is not None:
        err.close()
    server = Server(proc, 0, 0, url)
    server.follow()
    try:
        ready = server.ready.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        ready = None
    if ready is None:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"the phone test server did not start (rc {proc.poll()})")
    _, udp, tcp = ready.split()
    server.udp_port, server.tcp_port = int(udp), int(tcp) if tcp != "None" else 0
    return server


def rows(url: str, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params))
    finally:
        engine.dispose()


@dataclass
class Sipp:
    proc: subprocess.Popen
    cwd: Path
    name: str

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"sipp {self.name} did not finish in {timeout}s: "
                                 f"{self.logs()}") from None

    def logs(self) -> str:
        out = []
        for p in sorted(self.cwd.glob("*.log")):
            out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sipp(binary: str, cwd: Path, target: str, scenario: str, *args: str,
         ooc: str | None = None) -> Sipp:
    """Run sipp with `scenario` (a file in scenarios/) against `target` (host:port)."""
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-nostdin",
           "-trace_err", "-trace_msg"]
    if ooc:
        cmd += ["-oocsf", str(SCENARIOS / ooc)]
    cmd += [*args, target]
    with open(cwd / "sipp-stderr.log", "ab") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    return Sipp(proc, cwd, scenario)


def free_udp_port() -> int:
    """A port on 127.0.0.1 nobody uses now on UDP nor on TCP (bound by the OS, then released):
    sipp binds its `-p` on the transport it is given (`-t t1`: TCP), and with the suite on
    several workers a port free on UDP may be another server's TCP listener."""
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
