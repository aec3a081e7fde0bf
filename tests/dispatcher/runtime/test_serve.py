"""`switchboard serve`: refuses a stale schema (naming the upgrade command), serves /healthz,
stops cleanly on SIGTERM; and recovery: what one dispatcher committed to SQL, the next one
rebuilds (no task lost, queue order kept, timers armed again).

Recovery runs the service layer on a real SqlStore (SQLite file and PostgreSQL) without a
running reactor: the storage suites' wiring drives the pool and group commit, a `task.Clock`
drives the timers.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import WRAP_UP_TIMEOUT_DISPOSITION
from dispatcher.storage import schema
from tests.dispatcher.runtime.running import (
    base_env,
    free_port,
    run,
    run_many,
    sql_stack,
    switchboard_command,
)
from tests.dispatcher.service.stacks import (
    PHONE_OFFER_TIMEOUT,
    STEP_AFTER,
    WRAP_UP_SECONDS,
    support_queue,
)
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
UPGRADE_HINT = "switchboard db upgrade"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request) -> str:
    url = url_for(request.param, request)
    schema.upgrade(url)
    return url


# ---------------------------------------------------------------------- the command


def test_serve_refuses_a_stale_or_unreachable_database_quickly(sqlite_url, tmp_path):
    started = time.monotonic()
    env = base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(free_port()))
    stale, unreachable = run_many([
        ["--database", sqlite_url, "serve"],
        ["--database", f"sqlite:///{tmp_path / 'no' / 'such.db'}", "serve"],
    ], cwd=tmp_path, env=env)
    assert stale.code != 0
    assert UPGRADE_HINT in stale.err, stale.err
    assert unreachable.code != 0
    assert "switchboard: database:" in unreachable.err, unreachable.err
    for r in (stale, unreachable):
        assert "Traceback" not in r.err, r.err
    assert time.monotonic() - started < STOP_TIMEOUT


def wait_for_health(port: int, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                assert resp.headers["content-type"] == "application/json"
                return json.loads(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"serve did not answer on port {port}: {proc.communicate()[1]}")
            time.sleep(0.1)  # polling a real server started in another process


def test_serve_answers_healthz_and_stops_on_sigterm(sqlite_url, tmp_path):
    schema.upgrade(sqlite_url)
    port = free_port()
    proc = subprocess.Popen(
        [*switchboard_command(), "--database", sqlite_url, "serve"], cwd=tmp_path,
        env=base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        health = wait_for_health(port, proc)
        assert health["status"] == "ok"

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


def test_serve_exits_when_its_port_is_taken(sqlite_url, tmp_path):
    schema.upgrade(sqlite_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("--database", sqlite_url, "serve", cwd=tmp_path,
                env=base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(port)), timeout=STOP_TIMEOUT)
    assert r.code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in r.err, r.err


# ---------------------------------------------------------------------- recovery


def test_a_restarted_dispatcher_loses_nothing_and_keeps_the_order(sql_url):
    w1, s1 = sql_stack(sql_url)
    try:
        s1.put_queue(support_queue())
        s1.put_agent("ann", 8)
        s1.put_agent("bob", 8)
        s1.put_agent("cy", 2)  # qualifies only after the escalation step
        ids = []
        for i in range(6):
            priority = 10 if i == 2 else 0
            channel = Channel.EMAIL if i == 4 else Channel.PHONE
            task = s1.wait(s1.intake.submit(channel, "support", priority=priority))
            ids.append(task.id)
            s1.advance(1)
        s1.settle()
        s1.login("ann")  # the priority call; she takes it and wraps it up
        assert s1.last_offer("ann").task_id == ids[2]
        s1.wait(s1.sessions.accept("ann", s1.last_offer("ann").id))
        s1.wait(s1.sessions.wrap_up("ann", ids[2]))
        s1.login("bob")  # declines the oldest, leaves the next one offered
        s1.wait(s1.sessions.reject("bob", s1.last_offer("bob").id, "not mine"))
        assert s1.last_offer("bob").task_id == ids[1]
        s1.settle()
        s1.assignment.stop()
        wrap_started = s1.clock.seconds()
    finally:
        w1.close()

    w2, s2 = sql_stack(sql_url, start=wrap_started + 100)
    try:
        state = s2.wait(s2.store.load_state())
        s2.wait(s2.assignment.restore(state))
        s2.settle()

        # Nothing lost, the pending offer is over, the agents are offline.
        assert set(s2.router.tasks) == set(ids)
        t1 = s2.router.tasks[ids[1]]
        assert (t1.state, t1.agent_id, t1.offer_id) == (TaskState.QUEUED, None, None)
        assert s2.router.tasks[ids[2]].state is TaskState.WRAP_UP
        assert all(a.status is Presence.OFFLINE for a in s2.router.agents.values())
        assert s2.router.declined == {ids[0]: {"bob"}}
        assert {t.id: t.state for t in s2.wait(s2.store.list_tasks())}[ids[1]] == "queued"

        # The wrap-up timer was armed again.
        s2.advance(WRAP_UP_SECONDS)
        assert ids[2] not in s2.router.tasks
        [done] = [e for e in s2.events(ids[2]) if e.kind == ev.TASK_COMPLETED]
        assert done.data["disposition"] == WRAP_UP_TIMEOUT_DISPOSITION

        # Same order as before the restart: priority, then due time; bob skips what he declined.
        s2.login("bob")
        order = []
        for _ in range(4):
            offer = s2.last_offer("bob")
            order.append(offer.task_id)
            s2.wait(s2.sessions.accept("bob", offer.id))
            s2.wait(s2.sessions.complete("bob", offer.task_id, "done"))
            s2.settle()
        # calls are due 20 s after arrival, the e-mail (ids[4]) a day after: it comes last
        assert order == [ids[1], ids[3], ids[5], ids[4]]
        s2.wait(s2.sessions.logout("bob"))

        # The escalation timer was armed again: the declined call reaches its step on time.
        t0 = s2.router.tasks[ids[0]]
        s2.advance(t0.created_at + STEP_AFTER - s2.clock.seconds())
        assert t0.step == 1
        s2.login("cy")
        offer = s2.last_offer("cy")
        assert offer.task_id == ids[0]

        # And offers expire in the new dispatcher.
        s2.advance(PHONE_OFFER_TIMEOUT)
        assert s2.router.agents["cy"].status is Presence.NOT_RESPONDING
        s2.assignment.stop()
    finally:
        w2.close()

    # What the second dispatcher wrote is what a third one starts from.
    w3, s3 = sql_stack(sql_url, start=s2.clock.seconds() + 100)
    try:
        state = s3.wait(s3.store.load_state())
        assert {t.id for t in state.open_tasks} == {ids[0]}
        [t0] = state.open_tasks
        assert (t0.state, t0.step) == (TaskState.QUEUED, 1)
        summaries = {t.id: t.state for t in s3.wait(s3.store.list_tasks())}
        assert summaries == {ids[0]: "queued", **{i: "completed" for i in ids[1:]}}
    finally:
        w3.close()
