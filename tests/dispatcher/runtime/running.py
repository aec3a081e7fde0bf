"""Helpers of the runtime suites: run the `switchboard` command in a subprocess, run
`switchboard serve` as users do (until its ports answer; stopped with SIGTERM, which must exit
0), find a free port, and wire the service layer to a SqlStore without a running reactor."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.dispatcher.service.stacks import T0, Stack, build_stack
from tests.dispatcher.storage.wiring import Wiring, wire

COMMAND_TIMEOUT = 60.0
READY_SECONDS = 60.0
STOP_SECONDS = 20.0


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


def wait_port(port: int, proc: subprocess.Popen, log: Path,
              seconds: float = READY_SECONDS, host: str = "127.0.0.1") -> None:
    """Until something listens on `host:port`; fails with the end of `log` when `proc`
    exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not open port {port}: "
                         f"{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def serving(cwd: Path, env: dict[str, str], ports: Sequence[int],
            args: Sequence[str] = ("serve",), nofile: int | None = None) -> Iterator[Path]:
    """`switchboard serve` in `cwd` with `env` (its log, stdout and stderr, in cwd/serve.log),
    yielded once every port of `ports` answers, in that order; stopped with SIGTERM on exit,
    and it must then exit 0. `nofile`: its RLIMIT_NOFILE (soft and hard), set before it
    starts."""
    log = cwd / "serve.log"

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as out:
        proc = subprocess.Popen([*switchboard_command(), *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=None if nofile is None else limit)
    try:
        for port in ports:
            wait_port(port, proc, log)
        yield log
    finally:
        proc.terminate()
        try:
            code = proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, log.read_text(errors="replace")[-3000:]


class Sink:
    """An SMTP server standing for the relay (aiosmtpd): what reached it, envelope by
    envelope."""

    def __init__(self) -> None:
        self.accepted: list = []

    async def handle_DATA(self, server, session, envelope):
        self.accepted.append(envelope)
        return "250 OK"


@contextmanager
def relay() -> Iterator[tuple[Sink, int]]:
    """A running Sink and its port (skips, or fails in strict mode, without aiosmtpd)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        from tests.support import missing

        missing("aiosmtpd is not installed (pip install -e .[test])")
    handler = Sink()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        yield handler, ctl.port
    finally:
        ctl.stop()


@dataclass(frozen=True)
class DeskPorts:
    smtp: int
    ws: int
    http: int


def desk_env(tmp: Path, url: str, relay_port: int, secret: bytes, **extra: str
             ) -> tuple[dict[str, str], DeskPorts]:
    """The environment of a `switchboard serve` as an e-mail desk: SMTP intake on a free port
    (support@example.com -> support), replies through the relay at `relay_port`, the console
    on free ports with `secret` (written to tmp/console.secret) signing its tokens; `extra`
    adds or overrides settings."""
    (tmp / "console.secret").write_bytes(secret)
    ports = DeskPorts(free_port(), free_port(), free_port())
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(ports.http),
        SWITCHBOARD_EMAIL_SMTP_PORT=str(ports.smtp),
        SWITCHBOARD_EMAIL_RECIPIENTS="support@example.com=support",
        SWITCHBOARD_EMAIL_RELAY_HOST="127.0.0.1", SWITCHBOARD_EMAIL_RELAY_PORT=str(relay_port),
        SWITCHBOARD_EMAIL_RELAY_INTERVAL="0.2",
        SWITCHBOARD_CONSOLE_PORT=str(ports.ws),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp / "console.secret"),
        SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS=f"http://127.0.0.1:8080,http://127.0.0.1:{ports.http}",
        **extra,
    )
    return env, ports


def free_port() -> int:
    """A TCP port nobody listens on now, never handed out before by this process, and below
    the kernel's range for outgoing connections (ip_local_port_range, 32768-60999 by default):
    a port the OS chose (bind to 0) could be handed out twice, or taken by a node's outgoing
    connection before the node listens on it."""
    low, high = _local_ports()
    for _ in range(1000):
        port = random.randint(FREE_PORTS_FROM, low - 1) if low > FREE_PORTS_FROM + 100 else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free TCP port found")


FREE_PORTS_FROM = 20000
_handed_out: set[int] = set()


def _local_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def sql_stack(url: str, start: float = T0) -> tuple[Wiring, Stack]:
    """The service layer on a SqlStore at `url` (already upgraded), timers on a Clock."""
    w = wire(url)
    stack = build_stack(w.store, start=start, wait=w.wait,
                        settle=lambda: w.wait(w.commit.drain()))
    return w, stack


def prepare_support(url: str) -> None:
    """A database at the head schema with queue `support` and e-mail agent `a1` (Alex Agent)."""
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.tasks import Channel
    from dispatcher.storage import schema

    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Agent", queues={"support"},
                                       capacity={Channel.EMAIL: 3, Channel.PHONE: 1},
                                       channels={Channel.EMAIL})))
    finally:
        w.close()
