"""Helpers of the runtime suites: run the `switchboard` command in a subprocess, find a free
port, and wire the service layer to a SqlStore without a running reactor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.dispatcher.service.stacks import T0, Stack, build_stack
from tests.dispatcher.storage.wiring import Wiring, wire

COMMAND_TIMEOUT = 60.0


def switchboard_command() -> list[str]:
    """The console script next to this interpreter, or the module when it is not installed."""
    script = Path(sys.executable).with_name("switchboard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dispatcher.runtime.cli"]


def base_env(**extra: str) -> dict[str, str]:
    """The environment without any SWITCHBOARD_* setting of the caller, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT) -> Run:
    done = subprocess.run(
        [*switchboard_command(), *args], cwd=cwd, env=env or base_env(),
        capture_output=True, text=True, timeout=timeout,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def run_many(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None,
             ) -> list[Run]:
    """Run independent commands side by side (most of a run is the interpreter starting)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run(*args, cwd=cwd, env=env), commands))


def free_port() -> int:
    """A TCP port nobody listens on now (bound by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sql_stack(url: str, start: float = T0) -> tuple[Wiring, Stack]:
    """The service layer on a SqlStore at `url` (already upgraded), timers on a Clock."""
    w = wire(url)
    stack = build_stack(w.store, start=start, wait=w.wait,
                        settle=lambda: w.wait(w.commit.drain()))
    return w, stack
