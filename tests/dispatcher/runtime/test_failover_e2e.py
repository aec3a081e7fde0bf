"""Failover end to end: two real `switchboard serve` nodes (A, B) on one PostgreSQL database.

The database, queue and agent are set up with the real CLI (`db upgrade`, `queues add`,
`agents add`); mail arrives over real SMTP (smtplib) and the agent is a console WebSocket client.
What an operator may rely on (dispatcher/storage/lease.py, service/leadership.py,
runtime/serve.py):

- the standby answers /healthz 503 "standby" naming the leader; the leader 200;
- kill -9 of the leader while mail streams in: every message answered 250 is a task afterwards,
  B leads within a bound, its SMTP intake then stores mail, its router holds every open task;
- SIGSTOP of the leader past its lease: B takes over after the lease; on SIGCONT A exits 75
  ("stopped routing") with restart_when_deposed off, or waits again as a standby (the default);
  no task is assigned twice, and B offers new mail to the agent on B;
- SIGTERM of the leader gives the lease up: B takes over well before a lease could expire.

The helpers (Node, start_pair, Stream, assigned_twice) also drive bench/failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import smtplib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import jwt
import pytest
from websockets.asyncio.client import connect

from tests.channels.email import running as mail
from tests.dispatcher.runtime.running import (
    DeskPorts,
    base_env,
    desk_env,
    free_port,
    run,
    switchboard_command,
)
from tests.dispatcher.runtime.test_answers_e2e import Client

SECRET = b"failover-e2e-" + b"f" * 40
ORIGIN = "http://127.0.0.1:8080"
LEASE = 2.0
WAIT_SECONDS = 30.0
TAKEOVER_BOUND = 10.0  # kill -9 -> B leads (measured well under 1.5 s; 2-core machine)
DEPOSED_EXIT = 75
# A task leaves an agent's hands with one of these; a second `task.assigned` before one of
# them is a task assigned twice.
RELEASES = {"task.queued", "task.requeued", "task.transferred", "task.completed",
            "task.cancelled", "task.abandoned"}


@dataclass
class Node:
    """One `switchboard serve` in `dir` (its log: dir/serve.log, stdout and stderr)."""

    name: str
    dir: Path
    env: dict[str, str]
    ports: DeskPorts
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with (self.dir / "serve.log").open("ab") as out:
            self.proc = subprocess.Popen([*switchboard_command(), "serve"], cwd=self.dir,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def health(self) -> tuple[int, dict | None]:
        """/healthz: (status, body); (0, None) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}/healthz",
                                        timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
        except (OSError, ValueError):
            return 0, None

    def leads(self) -> bool:
        """/healthz 200 as the leader and the SMTP intake answers with its banner."""
        code, body = self.health()
        if code != 200 or (body or {}).get("cluster", {}).get("role") != "leader":
            return False
        try:
            with smtplib.SMTP("127.0.0.1", self.ports.smtp, timeout=2) as c:
                return c.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def log(self) -> str:
        return (self.dir / "serve.log").read_text(errors="replace")[-3000:]

    def end(self) -> None:
        """Stop it whatever its state (resumed first if paused), and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def until(check: Callable, seconds: float = WAIT_SECONDS, what: str = "a condition",
          step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def prepare(tmp: Path, url: str) -> None:
    """The schema, queue `support` and e-mail agent `a1`, through the real CLI."""
    env = base_env()
    for args in (["db", "upgrade"], ["queues", "add", "support"],
                 ["agents", "add", "a1", "--name", "Alex Agent", "--queues", "support",
                  "--capacity", "email=3,phone=1", "--channels", "email"]):
        done = run("--database", url, *args, cwd=tmp, env=env)
        assert done.code == 0, (args, done.err)


def make_node(tmp: Path, url: str, name: str, lease: float, **extra: str) -> Node:
    home = tmp / name
    home.mkdir()
    env, ports = desk_env(home, url, free_port(), SECRET,
                          SWITCHBOARD_CLUSTER_NODE=name,
                          SWITCHBOARD_CLUSTER_LEASE_SECONDS=str(lease), **extra,
                          SWITCHBOARD_PHONE_ENABLED="false",
                          SWITCHBOARD_EMAIL_ACK_QUEUES="",
                          SWITCHBOARD_EMAIL_SMTP_SESSIONS_PER_IP_PER_MINUTE="0")
    return Node(name, home, env, ports)


def start_pair(tmp: Path, url: str, lease: float, **extra: str) -> tuple[Node, Node]:
    """A leading (its /healthz 200, its SMTP answering), then B a standby (/healthz 503);
    `extra`: settings of both."""
    a, b = (make_node(tmp, url, name, lease, **extra) for name in ("node-a", "node-b"))
    a.start()
    try:
        until(lambda: a.proc.poll() is not None or a.leads(), what="node-a to lead")
        assert a.proc.poll() is None, a.log()
        b.start()
        until(lambda: b.proc.poll() is not None or b.health()[0] == 503,
              what="node-b to answer as a standby")
        assert b.proc.poll() is None, b.log()
    except BaseException:
        a.end()
        b.end()
        raise
    return a, b


def message(mid: str, n: int) -> EmailMessage:
    m = EmailMessage()
    # One sender per message: each is a task of its own (no threading onto an open task).
    m["From"], m["To"] = f"Customer {n} <c{n}-{mid}@customer.org>", "support@example.com"
    m["Subject"], m["Message-ID"] = f"Question {mid}", f"<{mid}@customer.org>"
    m.set_content(f"Hello, this is question {mid}.")
    return m


def send(port: int, mid: str, n: int = 0, timeout: float = 5.0) -> None:
    """One message over its own SMTP session; returns once the server answered 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as c:
        c.send_message(message(mid, n))


@dataclass(eq=False)
class Stream(threading.Thread):
    """Sends `rate` messages a second, each to the first of `ports()` that takes it (one SMTP
    session a message): the Message-IDs answered 250, with when, and the attempts refused."""

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
                try:
                    send(port, mid, n, self.timeout)
                except (OSError, smtplib.SMTPException):
                    self.refused += 1
                    continue
                self.accepted.append((time.monotonic(), mid))
                break
            self.halt.wait(1.0 / self.rate)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def stored(url: str, mids: list[str]) -> set[str]:
    """Which of `mids` are the Message-ID of a received message that is a task."""
    rows = mail.rows(url, "SELECT m.message_id FROM email_messages m JOIN tasks t "
                     "ON t.id = m.task_id WHERE m.direction = 'in'")
    have = {r[0].strip("<>") for r in rows if r[0]}  # stored without the angle brackets
    return {m for m in mids if f"{m}@customer.org" in have}


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
    rows = mail.rows(url, "SELECT task_id FROM email_messages WHERE message_id = :m",
                     m=f"{mid}@customer.org")
    assert len(rows) == 1, (mid, rows)
    return rows[0][0]


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": "agent", "iat": now, "exp": now + 600,
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


async def take(c: Client, task_id: str) -> None:
    """The offer of `task_id`, accepted."""
    offer = await c.expect(lambda f: f["type"] == "offer" and f["task"]["id"] == task_id)
    done = await c.request("accept", offer_id=offer["offer_id"])
    assert done["type"] == "ok", done


@pytest.fixture
def pair(tmp_path, pg_url, request):
    """`request.param`: (lease seconds, extra settings of both nodes)."""
    lease, extra = getattr(request, "param", (LEASE, {}))
    prepare(tmp_path, pg_url)
    a, b = start_pair(tmp_path, pg_url, lease, **extra)
    try:
        yield a, b
    finally:
        a.end()
        b.end()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_standby_names_the_leader_and_takes_no_mail(pair):
    a, b = pair
    code, body = a.health()
    assert code == 200 and body["cluster"]["role"] == "leader", body
    assert body["cluster"]["node"] == "node-a" and body["cluster"]["epoch"] >= 1
    # Until its first claim returns, the standby names no leader (a moment after it listens).
    code, body = until(lambda: (lambda h: h if h[1] and h[1].get("leader") else None)(
        b.health()), 5.0, "node-b to name the leader")
    assert code == 503, body
    assert (body["status"], body["role"], body["leader"]) == ("standby", "standby", "node-a")
    assert body["epoch"] == a.health()[1]["cluster"]["epoch"]
    with pytest.raises(urllib.error.HTTPError) as refused:  # nothing but /healthz on B
        urllib.request.urlopen(f"http://127.0.0.1:{b.ports.http}/api/v1/queues", timeout=5)
    assert refused.value.code == 503


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_the_leader_loses_no_accepted_mail(pair, pg_url):
    a, b = pair
    stream = Stream(lambda: [a.ports.smtp], rate=25.0, prefix="kill")
    stream.start()
    until(lambda: len(stream.accepted) >= 20, what="20 messages accepted by node-a")
    a.signal(signal.SIGKILL)
    killed = time.monotonic()
    a.proc.wait(10)
    time.sleep(0.3)  # the sender sees the refusals
    stream.stop()
    until(b.leads, what="node-b to lead after the kill")
    takeover = time.monotonic() - killed
    assert takeover < TAKEOVER_BOUND, takeover
    accepted = [m for _, m in stream.accepted]
    assert stream.refused > 0, "the stream never hit the dead node"
    lost = set(accepted) - stored(pg_url, accepted)
    assert not lost, f"{len(lost)} of {len(accepted)} messages answered 250 are not tasks"
    for n in range(3):
        send(b.ports.smtp, f"after-{n}", 1000 + n)
    assert stored(pg_url, [f"after-{n}" for n in range(3)]) == {f"after-{n}" for n in range(3)}
    (open_tasks,), = mail.rows(pg_url, "SELECT count(*) FROM tasks WHERE state IN "
                               "('queued', 'offered', 'assigned', 'wrap_up')")
    assert open_tasks >= len(accepted) + 3
    code, body = b.health()
    assert code == 200 and body["open_tasks"] == open_tasks, (open_tasks, body)
    assert body["cluster"]["epoch"] == 2, body


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("pair", [(LEASE, {"SWITCHBOARD_CLUSTER_RESTART_WHEN_DEPOSED": "false"})],
                         indirect=True)
def test_a_paused_leader_is_replaced_after_its_lease_and_exits_75(pair, pg_url):
    """With restart_when_deposed off (the default starts it again as a standby)."""
    a, b = pair

    async def scenario() -> float:
        on_a = await agent(a.ports.ws)
        await asyncio.to_thread(send, a.ports.smtp, "before-pause", 1)
        await take(on_a, task_of(pg_url, "before-pause"))
        a.signal(signal.SIGSTOP)
        paused = time.monotonic()
        await asyncio.to_thread(until, b.leads, LEASE + WAIT_SECONDS, "node-b to lead")
        takeover = time.monotonic() - paused
        on_b = await agent(b.ports.ws)
        await asyncio.to_thread(send, b.ports.smtp, "after-pause", 2)
        await take(on_b, task_of(pg_url, "after-pause"))
        await on_b.ws.close()
        on_a.ws.transport.abort()  # its server is paused: no closing handshake
        return takeover

    takeover = asyncio.run(asyncio.wait_for(scenario(), 120))
    # Not before the lease could end (renewed every lease/3 s), nor long after it.
    assert LEASE * 0.5 <= takeover < LEASE + TAKEOVER_BOUND, takeover
    a.signal(signal.SIGCONT)
    assert a.proc.wait(WAIT_SECONDS) == DEPOSED_EXIT, a.log()
    assert "switchboard: stopped routing:" in a.log(), a.log()
    assert assigned_twice(pg_url) == []
    rows = mail.rows(pg_url, "SELECT t.id, t.state, t.agent_id FROM tasks t")
    assert sorted((s, ag) for _, s, ag in rows) == [("assigned", "a1")] * 2, rows
    assert b.health()[0] == 200 and b.proc.poll() is None, b.log()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_leader_paused_inside_a_routing_transaction_is_replaced_after_its_lease(pair, pg_url):
    """A's intake transaction (fenced, the lease row held FOR SHARE) is made to wait on a lock
    of ours, A is paused, our lock goes: A's session is then idle in its transaction, as when
    SIGSTOP lands mid-commit. B must still lead once the lease has run out."""
    import sqlalchemy as sa

    a, b = pair
    engine = sa.create_engine(pg_url)
    sender = threading.Thread(target=lambda: _try_send(a.ports.smtp), daemon=True)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text("LOCK TABLE task_events IN EXCLUSIVE MODE"))
            sender.start()
            until(lambda: mail.rows(  # another session: pg_stat_activity is per transaction
                pg_url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%task_events%'"),
                WAIT_SECONDS, "node-a's intake to wait on task_events")
            a.signal(signal.SIGSTOP)
        until(b.leads, LEASE + TAKEOVER_BOUND, "node-b to lead (A paused mid-transaction)")
    finally:
        a.signal(signal.SIGCONT)
        sender.join(WAIT_SECONDS)
        engine.dispose()


def _try_send(port: int) -> None:
    # Refused once A is deposed, or not: what matters is that B leads.
    with contextlib.suppress(OSError, smtplib.SMTPException):
        send(port, "mid-commit", 1, timeout=WAIT_SECONDS)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_deposed_leader_starts_again_as_a_standby_by_default(pair):
    """restart_when_deposed (the default): the paused leader, resumed after B took over, stays
    up in the same process and waits as a standby naming B."""
    a, b = pair
    a.signal(signal.SIGSTOP)
    until(b.leads, LEASE + WAIT_SECONDS, "node-b to lead")
    a.signal(signal.SIGCONT)
    code, body = until(lambda: (lambda h: h if h[1] and h[1].get("leader") == "node-b"
                                else None)(a.health()), WAIT_SECONDS, "node-a as a standby")
    assert (code, body["status"], body["epoch"]) == (503, "standby", 2), body
    assert a.proc.poll() is None, a.log()
    assert "stopped routing" in a.log() and "starting again as a standby" in a.log()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("pair", [(10.0, {})], indirect=True)
def test_sigterm_of_the_leader_hands_over_at_once(pair):
    """A 10 s lease: a takeover within ~2 s is the lease given up, not one that ran out."""
    a, b = pair
    a.signal(signal.SIGTERM)
    stopped = time.monotonic()
    until(b.leads, what="node-b to lead after SIGTERM")
    takeover = time.monotonic() - stopped
    assert a.proc.wait(WAIT_SECONDS) == 0, a.log()
    assert takeover < 3.0, takeover
    assert b.health()[1]["cluster"]["epoch"] == 2
