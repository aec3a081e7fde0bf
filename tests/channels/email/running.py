"""Start and stop the e-mail test server (server.py) as a subprocess; read what it stored."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 30.0
ROUTES = "support@example.com=support,sales@example.com=sales"


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    url: str

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start(url: str, fenced: bool = False, **settings: Any) -> Server:
    """server.py on `url` with `settings` (EmailSettings' fields); `fenced`: behind the router's
    lease, as `serve` on PostgreSQL."""
    settings.setdefault("smtp_port", 0)
    settings.setdefault("recipients", ROUTES)
    settings.setdefault("hostname", "mx.example.com")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.channels.email.server", url, json.dumps(settings),
         *(["--fenced"] if fenced else [])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY"):
                return Server(proc, int(line.split()[1]), url)
            if not line:
                break
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"the e-mail test server did not start (rc {proc.poll()})")


def rows(url: str, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params))
    finally:
        engine.dispose()
