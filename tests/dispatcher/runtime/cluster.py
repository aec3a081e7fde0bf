"""Helpers of the multi-node suites (test_failover_e2e, test_held_e2e, test_database_outage_e2e)
and bench/failover.py: several `switchboard serve` nodes on one PostgreSQL database, driven as
an operator and a customer would (running.py holds the single-node helpers).

- `prepare`: the database through the real CLI (`db upgrade`, `queues add`, `agents add`);
- `make_node` / `Node`: a node's folder, ports and environment (lease, SMTP intake for
  support@example.com, /healthz, the console signed with `SECRET`, phone off), its process
  (started, signalled, ended) and its log; `Node.health()` reads /healthz as a `Health`;
- `start_pair`: A leading, then B standing by; `end_all`: every node stopped (killed: HUNG);
- `until`: polls a condition; `send` / `accepted`: one message in its own SMTP session;
  `Stream`: a sender thread (Message-IDs answered 250, refused attempts);
- `tasks_of`, `task_of`, `stored`, `assigned_twice`: what the database holds afterwards;
- `agent`: an agent's console WebSocket, signed in and available; `take`: an offer accepted;
  `token`: a signed token of any role.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

import jwt
from websockets.asyncio.client import connect

from tests.channels.email import running as mail
from tests.dispatcher.runtime.running import (
    STOP_SECONDS,
    DeskPorts,
    base_env,
    free_port,
    run,
    switchboard_command,
)
from tests.dispatcher.runtime.test_answers_e2e import Client

SECRET = b"cluster-e2e-" + b"s" * 40  # signs the console tokens of every node
ORIGIN = "http://127.0.0.1:8080"  # one of the console's default allowed origins
WAIT_SECONDS = 30.0
HUNG = "killed: still running after SIGTERM"  # Node.end of a node that would not stop
# A task leaves an agent's hands with one of these; a second `task.assigned` before one of
# them is a task assigned twice.
RELEASES = {"task.queued", "task.requeued", "task.transferred", "task.completed",
            "task.cancelled", "task.abandoned"}


def until(check: Callable, what: str = "a condition", seconds: float = WAIT_SECONDS,
          step: float = 0.05):
    """`check()`'s first true answer, polled every `step` s; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def prepare(tmp: Path, url: str, agent_capacity: str | None = None) -> None:
    """Through the real CLI: the schema and queue `support`; with `agent_capacity` (such as
    "email=3,phone=1") e-mail agent `a1` (Alex Agent) on it."""
    commands = [["db", "upgrade"], ["queues", "add", "support"]]
    if agent_capacity is not None:
        commands.append(["agents", "add", "a1", "--name", "Alex Agent", "--queues", "support",
                         "--capacity", agent_capacity, "--channels", "email"])
    env = base_env()
    for args in commands:
        done = run("--database", url, *args, cwd=tmp, env=env)
        assert done.code == 0, (args, done.err)


class Health(NamedTuple):
    """A node's /healthz: its status code (0: nothing answered) and JSON body ({} then)."""

    code: int
    body: dict

    @property
    def lease(self) -> dict:
        """The leader says its lease under "cluster"; a standby says it at the top."""
        return self.body.get("cluster", self.body)

    @property
    def role(self) -> str | None:  # "leader", "standby", "edge"
        return self.lease.get("role")

    @property
    def epoch(self) -> int | None:
        return self.lease.get("epoch")

    @property
    def leader(self) -> str | None:  # a standby: the node it names as the leader
        return self.lease.get("leader")

    @property
    def open_tasks(self) -> int | None:  # the leader: the tasks its router holds
        return self.body.get("open_tasks")


@dataclass
class Node:
    """One `switchboard serve` in `dir` (its log: dir/serve.log, stdout and stderr)."""

    name: str
    dir: Path
    env: dict[str, str]
    ports: DeskPorts
    proc: subprocess.Popen | None = None

    def start(self, *args: str) -> Node:
        """`serve` with `args` (such as "--role", "edge"), not waited for."""
        with (self.dir / "serve.log").open("ab") as out:
            self.proc = subprocess.Popen([*switchboard_command(), "serve", *args], cwd=self.dir,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def health(self) -> Health:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}/healthz",
                                        timeout=2) as r:
                return Health(r.status, json.loads(r.read()))
        except urllib.error.HTTPError as e:
            return Health(e.code, json.loads(e.read() or b"{}"))
        except (OSError, ValueError):
            return Health(0, {})

    def smtp_answers(self) -> bool:
        """Its SMTP intake answers NOOP with 250."""
        try:
            with smtplib.SMTP("127.0.0.1", self.ports.smtp, timeout=2) as c:
                return c.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def leads(self) -> bool:
        """/healthz 200 as the leader and the SMTP intake answers."""
        h = self.health()
        return h.code == 200 and h.role == "leader" and self.smtp_answers()

    def standing_by(self, leader: bool = True) -> bool:
        """/healthz 503 (naming a leader: `leader`) and the SMTP intake answers."""
        h = self.health()
        return h.code == 503 and (not leader or bool(h.leader)) and self.smtp_answers()

    def until_up(self, check: Callable, what: str, seconds: float = WAIT_SECONDS) -> None:
        """`until(check)` while this node runs: fails with its log when it exits first."""
        until(lambda: self.proc.poll() is not None or check(), what, seconds)
        assert self.proc.poll() is None, (self.name, self.proc.returncode, self.log())

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def log(self, tail: int | None = 3000) -> str:
        text = (self.dir / "serve.log").read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def end(self) -> int | str | None:
        """Stop it whatever its state (resumed first if paused; SIGTERM) and reap it: its exit
        code, None when it never started, HUNG when it was killed (still running STOP_SECONDS
        after SIGTERM)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        for sig in (signal.SIGCONT, signal.SIGTERM):
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return HUNG


def make_node(tmp: Path, url: str, name: str, lease: float, **extra: str) -> Node:
    """Node `name` in tmp/name (not started): its own SMTP, console and HTTP ports; lease
    `lease` s; mail for example.com to queue `support`, no acknowledgements, no per-IP session
    limit; the console's tokens signed with SECRET (tmp/console.secret); phone off. `extra`
    adds or overrides settings."""
    home = tmp / name
    home.mkdir()
    secret = tmp / "console.secret"
    if not secret.exists():
        secret.write_bytes(SECRET)
    ports = DeskPorts(smtp=free_port(), ws=free_port(), http=free_port())
    env = base_env(**{
        "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_CLUSTER_NODE": name,
        "SWITCHBOARD_CLUSTER_LEASE_SECONDS": str(lease),
        "SWITCHBOARD_EMAIL_SMTP_PORT": str(ports.smtp),
        "SWITCHBOARD_EMAIL_DEFAULT_QUEUE": "support", "SWITCHBOARD_EMAIL_DOMAINS": "example.com",
        "SWITCHBOARD_EMAIL_ACK_QUEUES": "",
        "SWITCHBOARD_EMAIL_SMTP_SESSIONS_PER_IP_PER_MINUTE": "0",
        "SWITCHBOARD_SERVER_HTTP_PORT": str(ports.http),
        "SWITCHBOARD_CONSOLE_PORT": str(ports.ws),
        "SWITCHBOARD_CONSOLE_JWT_SECRET_FILE": str(secret),
        "SWITCHBOARD_PHONE_ENABLED": "false", **extra})
    return Node(name, home, env, ports)


def start_pair(a: Node, b: Node) -> None:
    """`a` started and leading (/healthz 200, its SMTP answering), then `b` standing by
    (/healthz 503 naming the leader, its SMTP answering); on failure both are ended."""
    try:
        a.start().until_up(a.leads, f"{a.name} to lead")
        b.start().until_up(b.standing_by, f"{b.name} to stand by")
    except BaseException:
        end_all([a, b])
        raise


def end_all(nodes: Iterable[Node]) -> dict[str, int | str | None]:
    """`Node.end` of each, in this order: what each said, by name."""
    return {node.name: node.end() for node in nodes}


def message(mid: str) -> EmailMessage:
    m = EmailMessage()
    # One sender per message: each is a task of its own (no threading onto an open task).
    m["From"], m["To"] = f"Customer <{mid}@customer.org>", "support@example.com"
    m["Subject"], m["Message-ID"] = f"Question {mid}", f"<{mid}@customer.org>"
    m.set_content(f"Hello, this is question {mid}.")
    return m


def send(port: int, mid: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Message `mid` in its own SMTP session: the reply to its DATA, which was 250 (anything
    else refused raises smtplib's exceptions, as `sendmail` does)."""
    sender, rcpt = f"{mid}@customer.org", "support@example.com"
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as c:
        c.ehlo("customer.org")
        code, reply = c.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = c.rcpt(rcpt)
        if code != 250:
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
        code, reply = c.data(message(mid).as_bytes())
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return code, reply


def accepted(port: int, mid: str, timeout: float = 5.0) -> bool:
    """`send`: True when answered 250, False when refused or nothing answered."""
    try:
        send(port, mid, timeout)
    except (OSError, smtplib.SMTPException):
        return False
    return True


@dataclass(eq=False)
class Stream(threading.Thread):
    """Sends `rate` messages a second, each to the first of `ports()` that takes it (one SMTP
    session a message; a refused message is not sent again, the next has a new Message-ID):
    the Message-IDs answered 250, with when, and the attempts refused."""

    ports: Callable[[], list[int]]
    rate: float
    prefix: str
    timeout: float = 2.0
    accepted: list[tuple[float, str]] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            mid = f"{self.prefix}-{n}"
            for port in self.ports():
                if accepted(port, mid, self.timeout):
                    self.accepted.append((time.monotonic(), mid))
                    break
                self.refused += 1
            self.halt.wait(1.0 / self.rate)

    def mids(self) -> list[str]:
        """The Message-IDs answered 250 so far."""
        return [m for _, m in list(self.accepted)]

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def tasks_of(url: str, mids: list[str]) -> dict[str, list[tuple[str, str, str | None]]]:
    """Per Message-ID of `mids`: (task id, task state, source) of each received message stored
    with a task."""
    got: dict[str, list] = {m: [] for m in mids}
    for mid, task, state, source in mail.rows(
            url, "SELECT m.message_id, t.id, t.state, m.source FROM email_messages m "
            "JOIN tasks t ON t.id = m.task_id WHERE m.direction = 'in'"):
        key = (mid or "").strip("<>").removesuffix("@customer.org")  # stored without the <>
        if key in got:
            got[key].append((task, state, source))
    return got


def stored(url: str, mids: list[str]) -> set[str]:
    """Which of `mids` are the Message-ID of a received message that is a task."""
    return {m for m, tasks in tasks_of(url, mids).items() if tasks}


def assigned_twice(url: str) -> list[str]:
    """Tasks with two `task.assigned` events and no release between them."""
    held: dict[str, bool] = {}
    twice = []
    for task_id, kind in mail.rows(url, "SELECT task_id, kind FROM task_events ORDER BY id"):
        if kind == "task.assigned":
            if held.get(task_id):
                twice.append(task_id)
            held[task_id] = True
        elif kind in RELEASES:
            held[task_id] = False
    return twice


def task_of(url: str, mid: str) -> str:
    """The task of the one received message with Message-ID `mid`."""
    [(task_id, _, _)] = tasks_of(url, [mid])[mid]
    return task_id


async def take(c: Client, task_id: str) -> None:
    """The offer of `task_id` on `c`, accepted."""
    offer = await c.expect(lambda f: f["type"] == "offer" and f["task"]["id"] == task_id)
    done = await c.request("accept", offer_id=offer["offer_id"])
    assert done["type"] == "ok", done


def token(sub: str, role: str = "agent") -> str:
    """A token signed with SECRET: the console's, and the API's when a node reads the same
    secret file (SWITCHBOARD_API_JWT_SECRET_FILE)."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


async def agent(port: int, sub: str = "a1") -> Client:
    """`sub`'s console on `port`, signed in and available."""
    ws = await connect(f"ws://127.0.0.1:{port}/",
                       subprotocols=["switchboard.v1", f"bearer.{token(sub)}"],
                       origin=ORIGIN, compression=None, open_timeout=10, close_timeout=1)
    c = Client(ws)
    await ws.send(json.dumps({"type": "hello", "v": 1}))
    await c.expect("welcome")
    assert (await c.request("presence", status="available"))["type"] == "ok"
    return c
