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

import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.channels.email import running as mail
from tests.dispatcher.runtime.cluster import (
    Node,
    Stream,
    end_all,
    make_node,
    prepare,
    send,
    start_pair,
    tasks_of,
    until,
)
from tests.dispatcher.runtime.running import base_env, free_port, run, switchboard_command

LEASE = 2
WAIT = 20.0
HELD = (250, b"2.0.0 Stored; held for the dispatcher")


@pytest.fixture
def cluster(tmp_path, pg_url) -> Iterator[Callable[..., Node]]:
    """The database upgraded, with queue `support`; `node(name)` makes a node (cluster.py
    `make_node`, not started); every node started is stopped at the end."""
    prepare(tmp_path, pg_url)
    nodes: list[Node] = []

    def node(name: str) -> Node:
        nodes.append(make_node(tmp_path, pg_url, name, LEASE))
        return nodes[-1]

    try:
        yield node
    finally:
        # The last started first: the standbys go before the leader, so that none takes over
        # while being stopped (a SIGTERM during a takeover is another matter).
        codes = end_all(reversed(nodes))
        for n in nodes:  # SIGTERM must stop every node still running cleanly
            assert codes[n.name] in (None, 0, -signal.SIGKILL), (n.name, n.log())


def leader_and_standby(node: Callable[..., Node]) -> tuple[Node, Node]:
    a, b = node("node-a"), node("node-b")
    start_pair(a, b)
    return a, b


def held_count(url: str) -> int:
    return mail.rows(url, "SELECT count(*) FROM held_mail")[0][0]


@pytest.mark.postgres
@pytest.mark.slow
def test_the_standby_holds_mail_and_the_leader_takes_it_in(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    sent = time.monotonic()
    assert send(b.ports.smtp, "held-1") == HELD
    assert send(b.ports.smtp, "held-2") == HELD
    until(lambda: all(tasks_of(pg_url, ["held-1", "held-2"]).values()), "the tasks on A", WAIT)
    took = time.monotonic() - sent
    stored = tasks_of(pg_url, ["held-1", "held-2"])
    for mid, [(_, state, source)] in stored.items():
        assert state == "queued" and source.startswith("held:"), (mid, state, source)
    assert stored["held-1"][0][0] != stored["held-2"][0][0]
    assert held_count(pg_url) == 0
    on_a = a.health()
    assert on_a.code == 200 and on_a.open_tasks == 2, on_a.body
    assert b.health().code == 503  # B still stands by: it routes nothing
    assert send(a.ports.smtp, "direct")[0] == 250  # the leader's own SMTP stores at once
    assert tasks_of(pg_url, ["direct"])["direct"][0][2] is None
    assert took < 5.0, took


@pytest.mark.postgres
@pytest.mark.slow
def test_an_edge_node_never_leads_and_holds_for_whoever_leads(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    c = cluster("node-c").start("--role", "edge")
    c.until_up(lambda: c.standing_by(leader=False), "node-c to answer", WAIT)
    on_c = c.health()
    assert (on_c.code, on_c.body.get("status"), on_c.role) == (503, "standby", "edge"), on_c.body
    assert send(c.ports.smtp, "edge-1") == HELD
    until(lambda: tasks_of(pg_url, ["edge-1"])["edge-1"], "A to take edge-1 in", WAIT)

    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(WAIT) == 0, a.log()
    until(b.leads, "node-b to lead", WAIT)
    on_c = c.health()
    assert (on_c.code, on_c.role) == (503, "edge"), on_c.body
    assert send(c.ports.smtp, "edge-2") == HELD
    until(lambda: tasks_of(pg_url, ["edge-2"])["edge-2"], "B to take edge-2 in", WAIT)
    assert [len(v) for v in tasks_of(pg_url, ["edge-1", "edge-2"]).values()] == [1, 1]
    time.sleep(LEASE)  # well past a lease: C still has not tried to lead
    assert c.health().role == "edge" and b.leads()
    assert c.proc.poll() is None, c.log()


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_the_leader_loses_no_held_mail_and_stores_none_twice(cluster, pg_url):
    a, b = leader_and_standby(cluster)
    stream = Stream(lambda: [b.ports.smtp], rate=50.0, prefix="stream", timeout=3.0)
    stream.start()
    try:
        # A has taken some in, and B holds more: both sides of the kill are exercised
        until(lambda: len(stream.accepted) >= 20 and sum(map(bool, tasks_of(
            pg_url, stream.mids()).values())) >= 5, "node-a taking held mail in", WAIT)
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        a.proc.wait(10)
        until(b.leads, "node-b to lead after the kill", WAIT)
        took = time.monotonic() - killed
        at_takeover = len(stream.accepted)
        until(lambda: len(stream.accepted) >= at_takeover + 10, "B's own SMTP to take mail",
              WAIT)
    finally:
        stream.stop()
    accepted = stream.mids()
    until(lambda: all(tasks_of(pg_url, accepted).values()), "every message answered 250", WAIT)
    stored = tasks_of(pg_url, accepted)
    twice = {m: v for m, v in stored.items() if len(v) != 1}
    assert not twice, twice
    tasks = [v[0][0] for v in stored.values()]
    assert len(set(tasks)) == len(accepted)  # one task each (one sender each)
    assert held_count(pg_url) == 0
    held = sum(1 for v in stored.values() if (v[0][2] or "").startswith("held:"))
    assert held >= 20 and held < len(accepted), (held, len(accepted))  # then B's own SMTP
    assert took < 10.0, took  # measured 0.75-1.25 s with a 2 s lease
    on_b = b.health()
    assert on_b.code == 200 and on_b.open_tasks == len(accepted), on_b.body


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
