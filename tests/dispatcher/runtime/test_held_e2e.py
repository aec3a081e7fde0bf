"""Held mail end to end: real `switchboard serve` nodes on one PostgreSQL database, mail over
real SMTP (smtplib) to the nodes that do not route.

What an operator may rely on (dispatcher/service/held.py, channels/email/held.py,
runtime/serve.py `wait_for_lease`):

- the standby's SMTP answers 250 "held for the dispatcher" and the leader takes the message in
  within a second or two (an open task, source `held:<id>`, the held row gone);
- a node started with `serve --role edge` never leads (its /healthz says role "edge" even when
  the leader stops and the standby takes over) and its SMTP keeps holding mail for whichever
  node leads;
- kill -9 of the leader while mail streams to the standby's SMTP: every message answered 250
  is a task once B took over, none twice;
- `serve --role edge` on SQLite refuses to start, saying it needs PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.channels.email import running as mail
from tests.dispatcher.runtime.running import base_env, free_port, run, switchboard_command

LEASE = 2
WAIT = 20.0
HELD = (250, b"2.0.0 Stored; held for the dispatcher")
OPEN = "('queued', 'offered', 'assigned', 'wrap_up')"


@dataclass
class Node:
    """One `switchboard serve` (its output in dir/serve.log)."""

    name: str
    dir: Path
    env: dict[str, str]
    smtp: int
    http: int
    proc: subprocess.Popen | None = None

    def start(self, *args: str) -> Node:
        with (self.dir / "serve.log").open("ab") as out:
            self.proc = subprocess.Popen([*switchboard_command(), "serve", *args], cwd=self.dir,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz",
                                        timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def leads(self) -> bool:
        code, body = self.health()
        return code == 200 and body.get("cluster", {}).get("role") == "leader"

    def standing_by(self, leader: bool = True) -> bool:
        """/healthz 503 (naming a leader: `leader`), and the SMTP answering."""
        code, body = self.health()
        if code != 503 or (leader and not body.get("leader")):
            return False
        try:
            with smtplib.SMTP("127.0.0.1", self.smtp, timeout=2) as c:
                return c.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def log(self) -> str:
        return (self.dir / "serve.log").read_text(errors="replace")[-3000:]

    def end(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


def until(check: Callable, what: str, seconds: float = WAIT):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.fixture
def cluster(tmp_path, pg_url) -> Iterator[Callable[..., Node]]:
    """The database upgraded, with queue `support`; `node(name)` makes a node's directory and
    environment (its own SMTP and HTTP ports); every node started is stopped at the end."""
    for args in (["db", "upgrade"], ["queues", "add", "support"]):
        done = run("--database", pg_url, *args, cwd=tmp_path, env=base_env())
        assert done.code == 0, (args, done.err)
    (tmp_path / "console.secret").write_text("ab" * 32)
    nodes: list[Node] = []

    def node(name: str) -> Node:
        home = tmp_path / name
        home.mkdir()
        smtp, http = free_port(), free_port()
        env = base_env(
            SWITCHBOARD_DATABASE_URL=pg_url, SWITCHBOARD_CLUSTER_NODE=name,
            SWITCHBOARD_CLUSTER_LEASE_SECONDS=str(LEASE),
            SWITCHBOARD_EMAIL_SMTP_PORT=str(smtp), SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support",
            SWITCHBOARD_EMAIL_DOMAINS="example.com", SWITCHBOARD_EMAIL_ACK_QUEUES="",
            SWITCHBOARD_EMAIL_SMTP_SESSIONS_PER_IP_PER_MINUTE="0",
            SWITCHBOARD_SERVER_HTTP_PORT=str(http), SWITCHBOARD_CONSOLE_PORT=str(free_port()),
            SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp_path / "console.secret"),
            SWITCHBOARD_PHONE_ENABLED="false")
        nodes.append(Node(name, home, env, smtp, http))
        return nodes[-1]

    try:
        yield node
    finally:
        # The last started first: the standbys go before the leader, so that none takes over
        # while being stopped (a SIGTERM during a takeover is another matter).
        codes = {n.name: n.end() for n in reversed(nodes)}
        for n in nodes:  # SIGTERM must stop every node still running cleanly
            assert codes[n.name] in (None, 0, -signal.SIGKILL), (n.name, n.log())


def leader_and_standby(node: Callable[..., Node]) -> tuple[Node, Node]:
    a = node("node-a").start()
    until(lambda: a.proc.poll() is not None or a.leads(), "node-a to lead")
    b = node("node-b").start()
    until(lambda: b.proc.poll() is not None or b.standing_by(), "node-b to stand by")
    assert a.proc.poll() is None and b.proc.poll() is None, a.log() + b.log()
    return a, b


def message(mid: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"] = f"Customer <{mid}@customer.org>", "support@example.com"
    m["Subject"], m["Message-ID"] = f"Question {mid}", f"<{mid}@customer.org>"
    m.set_content(f"Hello, this is {mid}.")
    return m


def send(port: int, mid: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One message in its own session: the final reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as c:
        c.ehlo("customer.org")
        c.mail(f"{mid}@customer.org")
        assert c.rcpt("support@example.com")[0] == 250
        return c.data(message(mid).as_bytes())


def tasks_of(url: str, mids: list[str]) -> dict[str, list[tuple[str, str, str | None]]]:
    """Per Message-ID: (task id, task state, source) of each received message stored."""
    got: dict[str, list] = {m: [] for m in mids}
    for mid, task, state, source in mail.rows(
            url, "SELECT m.message_id, t.id, t.state, m.source FROM email_messages m "
            "JOIN tasks t ON t.id = m.task_id WHERE m.direction = 'in'"):
        key = (mid or "").strip("<>").removesuffix("@customer.org")
        if key in got:
            got[key].append((task, state, source))
    return got


def held_count(url: str) -> int:
    return mail.rows(url, "SELECT count(*) FROM held_mail")[0][0]


@pytest.mark.postgres
@pytest.mark.slow
def test_the_standby_holds_mail_and_the_leader_takes_it_in(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    sent = time.monotonic()
    assert send(b.smtp, "held-1") == HELD
    assert send(b.smtp, "held-2") == HELD
    until(lambda: all(tasks_of(pg_url, ["held-1", "held-2"]).values()), "the tasks on A")
    took = time.monotonic() - sent
    stored = tasks_of(pg_url, ["held-1", "held-2"])
    for mid, [(_, state, source)] in stored.items():
        assert state == "queued" and source.startswith("held:"), (mid, state, source)
    assert stored["held-1"][0][0] != stored["held-2"][0][0]
    assert held_count(pg_url) == 0
    code, body = a.health()
    assert code == 200 and body["open_tasks"] == 2, body
    assert b.health()[0] == 503  # B still stands by: it routes nothing
    assert send(a.smtp, "direct")[0] == 250  # the leader's own SMTP stores at once
    assert tasks_of(pg_url, ["direct"])["direct"][0][2] is None
    assert took < 5.0, took


@pytest.mark.postgres
@pytest.mark.slow
def test_an_edge_node_never_leads_and_holds_for_whoever_leads(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    c = cluster("node-c").start("--role", "edge")
    until(lambda: c.proc.poll() is not None or c.standing_by(leader=False), "node-c to answer")
    assert c.proc.poll() is None, c.log()
    code, body = c.health()
    assert (code, body.get("status"), body.get("role")) == (503, "standby", "edge"), body
    assert send(c.smtp, "edge-1") == HELD
    until(lambda: tasks_of(pg_url, ["edge-1"])["edge-1"], "A to take edge-1 in")

    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(WAIT) == 0, a.log()
    until(b.leads, "node-b to lead")
    code, body = c.health()
    assert (code, body["role"]) == (503, "edge"), body
    assert send(c.smtp, "edge-2") == HELD
    until(lambda: tasks_of(pg_url, ["edge-2"])["edge-2"], "B to take edge-2 in")
    assert [len(v) for v in tasks_of(pg_url, ["edge-1", "edge-2"]).values()] == [1, 1]
    time.sleep(LEASE)  # well past a lease: C still has not tried to lead
    assert c.health()[1]["role"] == "edge" and b.leads()
    assert c.proc.poll() is None, c.log()


@dataclass(eq=False)
class Stream(threading.Thread):
    """Sends to `port` until stopped, one message a session; a refused or failed attempt is
    sent again (a new Message-ID: the sender retrying). `accepted`: Message-IDs answered 250."""

    port: int
    accepted: list[str] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            mid = f"stream-{n}"
            try:
                if send(self.port, mid, timeout=3.0)[0] == 250:
                    self.accepted.append(mid)
            except (OSError, smtplib.SMTPException, AssertionError):
                self.refused += 1
                self.halt.wait(0.05)
            self.halt.wait(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_the_leader_loses_no_held_mail_and_stores_none_twice(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    stream = Stream(b.smtp)
    stream.start()
    try:
        # A has taken some in, and B holds more: both sides of the kill are exercised
        until(lambda: len(stream.accepted) >= 20 and sum(map(bool, tasks_of(
            pg_url, list(stream.accepted)).values())) >= 5, "node-a taking held mail in")
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        a.proc.wait(10)
        until(b.leads, "node-b to lead after the kill")
        took = time.monotonic() - killed
        at_takeover = len(stream.accepted)
        until(lambda: len(stream.accepted) >= at_takeover + 10, "B's own SMTP to take mail")
    finally:
        stream.stop()
    accepted = list(stream.accepted)
    until(lambda: all(tasks_of(pg_url, accepted).values()), "every message answered 250")
    stored = tasks_of(pg_url, accepted)
    twice = {m: v for m, v in stored.items() if len(v) != 1}
    assert not twice, twice
    tasks = [v[0][0] for v in stored.values()]
    assert len(set(tasks)) == len(accepted)  # one task each (one sender each)
    assert held_count(pg_url) == 0
    held = sum(1 for v in stored.values() if (v[0][2] or "").startswith("held:"))
    assert held >= 20 and held < len(accepted), (held, len(accepted))  # then B's own SMTP
    assert took < 10.0, took  # measured 0.75-1.25 s with a 2 s lease
    code, body = b.health()
    assert code == 200 and body["open_tasks"] == len(accepted), body


def test_an_edge_node_on_sqlite_refuses_to_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    assert run("--database", url, "db", "upgrade", cwd=tmp_path).code == 0
    done = subprocess.run([*switchboard_command(), "serve", "--role", "edge"], cwd=tmp_path,
                          env=base_env(SWITCHBOARD_DATABASE_URL=url,
                                       SWITCHBOARD_EMAIL_SMTP_PORT=str(free_port()),
                                       SWITCHBOARD_SERVER_HTTP_PORT=str(free_port())),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "role 'edge' needs PostgreSQL" in done.stderr, done.stderr
