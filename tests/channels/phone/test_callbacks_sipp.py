"""Callbacks end to end (issue 18, item 2): a callback asked through the REST API
(`POST /api/v1/callbacks`) is offered to an agent whose sipp desk phone is rung first by the
dialer (RFC 3725 flow I: an INVITE without SDP), then the customer — a sipp UAS behind
`[phone] callback_uri` — with the agent's SDP; the customer's SDP reaches the agent in the ACK.
A busy customer gives `callback.no_answer`, a retry after `callback_retry_delay`, and after the
last attempt the task ends as not reached; a customer who lets it ring is CANCELled after
`callback_ring_timeout`.

One server (the runtime's App with the phone edge and the API) for the module; each case has
its own queue and agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tests.channels.phone import running
from tests.dispatcher.runtime.running import free_port
from tests.support import need_binary

pytestmark = pytest.mark.slow

SECRET = b"callback-e2e-secret-" + b"z" * 40
NUMBER = "+3225550199"
CASES = {"cbok": "cbok-a", "cbbusy": "cbbusy-a", "cbring": "cbring-a", "cbrona": "cbrona-a"}
OFFER_TIMEOUT = {"cbrona": 2.0}  # the others: 20 s


def token(sub: str = "crm", role: str = "integration") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token()}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Harness:
    def __init__(self, server: running.Server, http_port: int, customer_port: int) -> None:
        self.server, self.http_port, self.customer_port = server, http_port, customer_port


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Iterator[Harness]:
    need_binary("sipp")
    tmp = tmp_path_factory.mktemp("callback-server")
    (tmp / "api.secret").write_bytes(SECRET)
    http_port, customer_port = free_port(), running.free_udp_port()
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    spec = {
        "settings": {"udp_port": 0, "tcp_port": 0, "media_enabled": False,
                     "digest_algorithms": "MD5,SHA-256", "register_min": 1,
                     "callback_uri": f"sip:{{number}}@127.0.0.1:{customer_port}",
                     "callback_ring_timeout": 2.0, "callback_retry_delay": 1.0,
                     "callback_attempts": 2},
        "queues": [{"name": q, "wrap_up_seconds": 1.0,
                    "offer_timeout": OFFER_TIMEOUT.get(q, 20.0)} for q in CASES],
        "agents": [{"id": a, "user": a, "password": running.PASSWORD, "skills": {},
                    "queues": [q]} for q, a in CASES.items()],
        "http_port": http_port, "secret_file": str(tmp / "api.secret"),
    }
    env = dict(os.environ, PYTHONPATH=str(running.ROOT))
    with open(tmp / "server.log", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.channels.phone.server", url,
             json.dumps(spec)], cwd=running.ROOT, env=env, stdout=subprocess.PIPE,
            stderr=err, text=True)
    server = running.Server(proc, 0, 0, url)
    server.follow()
    ready = server.ready.get(timeout=running.READY_TIMEOUT)
    if ready is None:
        proc.kill()
        raise RuntimeError(f"the callback server did not start: see {tmp / 'server.log'}")
    _, udp, tcp = ready.split()
    server.udp_port = int(udp)
    yield Harness(server, http_port, customer_port)
    server.stop()


def agent_phone(h: Harness, tmp: Path, agent_id: str, ooc: str) -> running.Sipp:
    p = running.sipp(need_binary("sipp"), tmp / f"agent-{agent_id}",
                     f"127.0.0.1:{h.server.udp_port}", "agent_register.xml", "-s", agent_id,
                     "-au", agent_id, "-ap", running.PASSWORD,
                     "-p", str(running.free_udp_port()), "-m", "1", "-timeout", "40s",
                     "-timeout_error", ooc=ooc)
    h.server.wait_for("agent.device", agent_id=agent_id, reachable=True)
    return p


def customer_phone(h: Harness, tmp: Path, scenario: str, calls: int) -> running.Sipp:
    # sipp as a UAS: no remote host; it answers at the trunk's port
    cwd = tmp / "customer"
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [need_binary("sipp"), "-sf", str(running.SCENARIOS / scenario), "-i", "127.0.0.1",
           "-p", str(h.customer_port), "-m", str(calls), "-nostdin", "-trace_err",
           "-trace_msg", "-timeout", "40s", "-timeout_error"]
    with open(cwd / "sipp-stderr.log", "ab") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    time.sleep(0.3)  # let it bind its port before the dialer sends there
    return running.Sipp(proc, cwd, scenario)


def kinds_of(h: Harness, task_id: str) -> list[str]:
    return [r[0] for r in running.rows(
        h.server.url, "SELECT kind FROM task_events WHERE task_id = :t ORDER BY id", t=task_id)]


def messages(sipp: running.Sipp) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sipp.cwd.glob("*messages.log"))


def test_a_web_callback_rings_the_agent_then_the_customer(harness, tmp_path):
    h = harness
    customer = customer_phone(h, tmp_path, "customer_callback.xml", 1)
    agent = agent_phone(h, tmp_path, "cbok-a", "agent_callback.xml")
    try:
        status, task = post(h.http_port, "/callbacks",
                            {"number": "+32 2 555 01 99", "queue": "cbok", "name": "Zoé",
                             "email": "zoe@example.org"})
        assert status == 201, task
        assert task["attributes"]["callback"]["number"] == NUMBER
        reached = h.server.wait_for("callback.reached", task_id=task["id"], timeout=20)
        assert reached["agent_id"] == reached["data"]["agent_id"] == "cbok-a"
        h.server.wait_for("call.ended", task_id=task["id"], timeout=20)
        assert customer.wait(30) == 0, customer.logs()
        assert agent.wait(30) == 0, agent.logs()
    finally:
        customer.stop()
        agent.stop()
    kinds = kinds_of(h, task["id"])
    for kind in ("callback.requested", "task.offered", "offer.accepted", "callback.dialled",
                 "callback.reached", "call.answered", "call.ended", "task.wrap_up"):
        assert kind in kinds, (kind, kinds)
    assert kinds.index("offer.accepted") < kinds.index("callback.dialled") \
        < kinds.index("callback.reached")
    # What each phone got: the agent an INVITE without SDP, then the customer's SDP in the
    # ACK; the customer an INVITE with the agent's SDP (the scenarios check it too).
    got_agent, got_customer = messages(agent), messages(customer)
    invite_to_agent = got_agent.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "Content-Length: 0" in invite_to_agent and "Callback +3225550199" in invite_to_agent
    assert "o=customer" in got_agent.split("ACK sip:", 1)[1]
    assert "o=agent" in got_customer.split("INVITE sip:+3225550199@", 1)[1]
    # The number joined the customer (a later call from it is the same customer).
    (row,) = running.rows(h.server.url, "SELECT customer_id FROM tasks WHERE id = :t",
                          t=task["id"])
    ids = {r[0] for r in running.rows(
        h.server.url, "SELECT kind || ':' || value FROM customer_identities "
        "WHERE customer_id = :c", c=row[0])}
    assert "phone:" + NUMBER in ids and "email:zoe@example.org" in ids


def test_a_busy_customer_is_retried_then_the_callback_ends_not_reached(harness, tmp_path):
    h = harness
    customer = customer_phone(h, tmp_path, "customer_busy.xml", 2)
    agent = agent_phone(h, tmp_path, "cbbusy-a", "agent_callback_dropped.xml")
    try:
        status, task = post(h.http_port, "/callbacks", {"number": NUMBER, "queue": "cbbusy"})
        assert status == 201, task
        first = h.server.wait_for("callback.no_answer", task_id=task["id"], timeout=20)
        assert first["data"]["reason"] == "busy"
        retry = h.server.wait_for("callback.retry", task_id=task["id"])
        ended = h.server.wait_for("task.cancelled", task_id=task["id"], timeout=20)
        assert ended["data"]["reason"] == "callback_not_reached"
        assert customer.wait(30) == 0, customer.logs()
        assert agent.wait(30) == 0, agent.logs()
    finally:
        customer.stop()
        agent.stop()
    kinds = kinds_of(h, task["id"])
    assert kinds.count("callback.dialled") == 2 and kinds.count("callback.no_answer") == 2
    assert kinds.count("callback.retry") == 1
    offers = [e for e in h.server.events if e["kind"] == "task.offered"
              and e["task_id"] == task["id"]]
    assert len(offers) == 2
    # the retry waited its delay (1 s): the second offer was made at its `at`, not before
    second_offered_at = float(offers[1]["data"]["expires_at"]) - OFFER_TIMEOUT.get("cbbusy", 20.0)
    assert second_offered_at >= float(retry["data"]["at"]) - 0.01, (offers[1], retry)


def test_a_customer_who_lets_it_ring_is_cancelled_after_the_ring_timeout(harness, tmp_path):
    h = harness
    customer = customer_phone(h, tmp_path, "customer_noanswer.xml", 2)
    agent = agent_phone(h, tmp_path, "cbring-a", "agent_callback_dropped.xml")
    try:
        status, task = post(h.http_port, "/callbacks", {"number": NUMBER, "queue": "cbring"})
        assert status == 201, task
        dialled = h.server.wait_for("callback.dialled", task_id=task["id"], timeout=20)
        first = h.server.wait_for("callback.no_answer", task_id=task["id"], timeout=20)
        assert first["data"]["reason"] == "timeout" and first["data"]["final"] is False
        ended = h.server.wait_for("task.cancelled", task_id=task["id"], timeout=30)
        assert ended["data"]["reason"] == "callback_not_reached"
        assert customer.wait(30) == 0, customer.logs()
        assert agent.wait(30) == 0, agent.logs()
    finally:
        customer.stop()
        agent.stop()
    assert dialled["data"]["via"] == "sip"
    got = messages(customer)
    assert got.count("CANCEL sip:+3225550199@") >= 2  # one per attempt, after the ring timeout


def test_an_agent_whose_phone_is_not_picked_up_leaves_the_callback_in_its_queue(harness,
                                                                               tmp_path):
    h = harness
    agent = agent_phone(h, tmp_path, "cbrona-a", "agent_noanswer.xml")
    try:
        status, task = post(h.http_port, "/callbacks", {"number": NUMBER, "queue": "cbrona"})
        assert status == 201, task
        h.server.wait_for("offer.expired", task_id=task["id"], timeout=10)
        assert agent.wait(30) == 0, agent.logs()  # it saw the CANCEL, answered 487, got ACK
    finally:
        agent.stop()
    kinds = kinds_of(h, task["id"])
    assert "callback.dialled" not in kinds and "task.cancelled" not in kinds
    (row,) = running.rows(h.server.url, "SELECT state FROM tasks WHERE id = :t", t=task["id"])
    assert row[0] == "queued"  # RONA: the callback keeps its place for the next agent
