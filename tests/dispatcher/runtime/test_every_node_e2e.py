"""The console, the CTI, the REST API and the pages on every node: three real `switchboard
serve` nodes (A leading, B standing by, C an edge node) on one PostgreSQL database, driven as agents, a
PBX and an integrator would (the console's and the CTI's WebSockets, HTTP), through a node that
does *not* route.

What an operator may rely on (dispatcher/tunnel.py, runtime/proxy.py, runtime/peers.py):
- an agent signed in on a standby's console port gets offers of mail that arrived on another
  node, and accepts them; a bad token is refused there with the leader's own 401;
- the REST API and the console's pages answer on a standby (passed on to the leader): a task
  created through C is stored and offered to the agent on C;
- when the leader is killed, the agent's socket on C is closed with 1012; the agent signs in
  again on C, now passed on to the new leader B, and gets new work; nothing is assigned twice;
- a PBX on C's CTI port is judged by the leader's rules, and its call becomes a task; a call
  to B's or C's SIP port is redirected (302) to A's;
- when C dies, the offer pending for its agent goes back to the queue at once (the leader saw
  the socket close), and the agent gets it through B;
- in Chromium, on an edge node with an address of its own (127.0.0.3, A's ports): the page,
  the sign-in with a password and the console's socket all through it; an offer shows on the
  desk and accepting it assigns the task; while no node routes (A killed) the desk keeps its
  token and reconnects once A is back, without asking the agent to sign in again.

The nodes are tests/dispatcher/runtime/cluster.py's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.agent_console.test_web import WAIT_MS, chromium, launch, watched_page
from tests.channels.email import running as mail
from tests.dispatcher.runtime.cluster import (
    ORIGIN,
    WAIT_SECONDS,
    agent,
    assigned_twice,
    end_all,
    make_node,
    prepare,
    send,
    take,
    task_of,
    tasks_of,
    token,
    until,
)
from tests.dispatcher.runtime.running import base_env, free_port, run, wait_port
from tests.dispatcher.runtime.test_answers_e2e import Client

LEASE = 2.0
SERVICE_RESTART = 1012


def http(port: int, method: str, path: str, body: dict | None = None,
         role: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json",
                 **({"authorization": f"Bearer {token('crm', role)}"} if role else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def cti_port(node) -> int:
    return int(node.env["SWITCHBOARD_PHONE_CTI_PORT"])


@pytest.fixture
def trio(tmp_path, pg_url):
    prepare(tmp_path, pg_url, agent_capacity="email=5,phone=1")
    secret = str(tmp_path / "console.secret")
    nodes = [make_node(tmp_path, pg_url, name, LEASE, **{
        "SWITCHBOARD_API_JWT_SECRET_FILE": secret,
        # SIP and the CTI (signed with the same secret) on every node.
        "SWITCHBOARD_PHONE_ENABLED": "true", "SWITCHBOARD_PHONE_UDP_PORT": str(free_port()),
        "SWITCHBOARD_PHONE_TCP_PORT": str(free_port()),
        "SWITCHBOARD_PHONE_CTI_ENABLED": "true", "SWITCHBOARD_PHONE_CTI_PORT": str(free_port()),
        "SWITCHBOARD_PHONE_CTI_JWT_SECRET_FILE": secret}) for name in ("node-a", "node-b", "node-c")]
    a, b, c = nodes
    try:
        a.start().until_up(a.leads, "node-a to lead")
        b.start().until_up(b.standing_by, "node-b to stand by")
        # An edge node never routes: B alone takes over, and C passes its clients on to
        # whichever node routes.
        c.start("--role", "edge").until_up(lambda: c.standing_by(leader=False), "node-c up")
        for n in nodes:  # the phone edge starts after the e-mail edge that standing_by checks
            wait_port(cti_port(n), n.proc, n.dir / "serve.log")
        yield a, b, c
    finally:
        end_all(nodes)


@pytest.mark.postgres
@pytest.mark.slow
def test_agents_on_a_standby_work_through_it_before_and_after_a_takeover(trio, pg_url):
    a, b, c = trio

    async def scenario() -> None:
        # A bad token is refused by the leader's rules, answered by C.
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{c.ports.ws}/", origin=ORIGIN, open_timeout=10,
                          subprotocols=["switchboard.v1", "bearer.not-a-token"])
        assert refused.value.response.status_code == 401
        on_c = await agent(c.ports.ws)
        await asyncio.to_thread(send, a.ports.smtp, "to-a")  # mail on the leader's SMTP
        await take(on_c, task_of(pg_url, "to-a"))
        await asyncio.to_thread(send, b.ports.smtp, "held-by-b")  # held by B, taken in by A
        await take(on_c, await asyncio.to_thread(
            until, lambda: tasks_of(pg_url, ["held-by-b"])["held-by-b"] and
            task_of(pg_url, "held-by-b"), "the held mail to be a task"))
        # The REST API through C: stored by the leader, offered on C.
        code, made = await asyncio.to_thread(http, c.ports.http, "POST", "/api/v1/tasks", {
            "channel": "email", "queue": "support", "subject": "From the CRM",
            "customer": {"value": "crm-customer@customer.org"}}, "integration")
        assert code == 201, made
        await take(on_c, made["id"])
        code, shown = await asyncio.to_thread(http, c.ports.http, "GET",
                                              f"/api/v1/tasks/{made['id']}", None,
                                              "integration")
        assert code == 200 and shown["task"]["state"] == "assigned", shown
        # The leader dies: C closes the agent's socket with 1012; the agent comes back on C.
        a.signal(signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            while True:
                await on_c.ws.recv()
        assert on_c.ws.close_code == SERVICE_RESTART
        await asyncio.to_thread(until, b.leads, "node-b to lead", WAIT_SECONDS)
        again = await agent(c.ports.ws)
        await asyncio.to_thread(send, c.ports.smtp, "after-takeover")  # held by C, B routes
        await take(again, await asyncio.to_thread(
            until, lambda: tasks_of(pg_url, ["after-takeover"])["after-takeover"] and
            task_of(pg_url, "after-takeover"), "the mail after the takeover to be a task"))
        await again.ws.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
    assert (c.health().code, c.health().role) == (503, "edge")
    assert assigned_twice(pg_url) == []


@pytest.mark.postgres
@pytest.mark.slow
def test_a_pbx_on_a_standbys_cti_port_reaches_the_router(trio, pg_url):
    """The CTI's WebSocket on C is passed on to A: the PBX's call becomes a task there."""
    a, b, c = trio

    async def scenario() -> dict:
        with pytest.raises(InvalidStatus) as refused:  # the leader's rules, answered by C
            await connect(f"ws://127.0.0.1:{cti_port(c)}/", open_timeout=10,
                          subprotocols=["switchboard.cti.v1", "bearer.not-a-token"])
        assert refused.value.response.status_code == 401
        async with connect(f"ws://127.0.0.1:{cti_port(c)}/", open_timeout=10,
                           additional_headers={"Authorization":
                                               f"Bearer {token('pbx1', 'integration')}"},
                           subprotocols=["switchboard.cti.v1"]) as ws:
            assert ws.subprotocol == "switchboard.cti.v1"
            pbx = Client(ws)
            await pbx.expect("welcome")
            return await pbx.request("call.arrived", call_id="c-1", **{"from": "+3225550100"},
                                     to="+3225550000", queue="support")

    answer = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answer["type"] == "ok" and answer["queue"] == "support", answer
    assert mail.rows(pg_url, "SELECT channel FROM tasks WHERE id = :id",
                     id=answer["task_id"]) == [("phone",)]


def sip_port(node) -> int:
    return int(node.env["SWITCHBOARD_PHONE_UDP_PORT"])


@pytest.mark.postgres
@pytest.mark.slow
def test_a_call_to_a_standbys_sip_port_is_redirected_to_the_leader(trio):
    """SIP over UDP to B and C: 302 with a Contact on A's SIP port, the queue address kept."""
    a, b, c = trio
    for node in (b, c):
        invite = "\r\n".join([
            f"INVITE sip:support@127.0.0.1:{sip_port(node)} SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-e2e-1;rport", "Max-Forwards: 70",
            "From: <sip:+3225550100@127.0.0.1>;tag=e2e", "To: <sip:support@127.0.0.1>",
            f"Call-ID: e2e-{node.name}", "CSeq: 1 INVITE", "Contact: <sip:caller@127.0.0.1:5999>",
            "Content-Length: 0", "", ""]).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
            phone.settimeout(10)
            phone.sendto(invite, ("127.0.0.1", sip_port(node)))
            finals = []
            while not finals:
                head = phone.recv(65535).decode().split("\r\n")
                if not head[0].startswith("SIP/2.0 1"):
                    finals.append(head)
        [answer] = finals
        assert answer[0] == "SIP/2.0 302 Moved Temporarily", answer
        assert f"Contact: <sip:support@127.0.0.1:{sip_port(a)}>" in answer, answer


@pytest.mark.postgres
@pytest.mark.slow
def test_the_console_pages_come_from_the_leader_and_healthz_stays_local(trio):
    a, b, c = trio
    with urllib.request.urlopen(f"http://127.0.0.1:{c.ports.http}/console/config.json",
                                timeout=10) as r:
        config = json.loads(r.read())
    assert config["ws_port"] == a.ports.ws  # the leader's page, passed on
    assert (c.health().code, c.health().role) == (503, "edge")
    code, body = http(c.ports.http, "GET", "/api/v1/tasks")  # no token: the leader's 401
    assert code == 401, body


@pytest.mark.postgres
@pytest.mark.slow
def test_a_tunnel_nodes_death_gives_its_agents_offer_back_at_once(trio, pg_url):
    """C dies with an offer pending for its agent: the leader sees the socket close, the offer
    goes back to the queue at once, and the agent, signed in again through B, gets it."""
    a, b, c = trio

    async def scenario() -> float:
        on_c = await agent(c.ports.ws)
        await asyncio.to_thread(send, a.ports.smtp, "pending")
        task_id = task_of(pg_url, "pending")
        await on_c.expect(lambda f: f["type"] == "offer" and f["task"]["id"] == task_id)
        c.signal(signal.SIGKILL)
        killed = time.monotonic()
        on_c.ws.transport.abort()
        await asyncio.to_thread(until, lambda: mail.rows(
            pg_url, "SELECT state FROM tasks WHERE id = :id", id=task_id) == [("queued",)],
            "the offer to go back to the queue", 10.0)
        back = time.monotonic() - killed
        on_b = await agent(b.ports.ws)
        await take(on_b, task_id)
        await on_b.ws.close()
        return back

    back = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert back < 5.0, back  # the socket's close, not an offer timeout or a presence TTL
    assert assigned_twice(pg_url) == []


AGENT_PASSWORD = "harbour-lights-31"
EDGE_HOST = "127.0.0.3"  # C's own address: the same ports as A's, as on machines of their own


@pytest.fixture
def apart(tmp_path, pg_url):
    """A leading on 127.0.0.1 and C, an edge node, on 127.0.0.3 with the same ports (the
    console's page names one console port for every node), and the password of agent a1."""
    prepare(tmp_path, pg_url, agent_capacity="email=5,phone=1")
    (tmp_path / "agent.pw").write_text(AGENT_PASSWORD + "\n")
    done = run("--database", pg_url, "accounts", "set", "a1", "--role", "agent",
               "--password-file", str(tmp_path / "agent.pw"), cwd=tmp_path, env=base_env())
    assert done.code == 0, done.err
    a = make_node(tmp_path, pg_url, "node-a", LEASE)
    origins = ",".join(f"http://{h}:{a.ports.http}" for h in ("127.0.0.1", EDGE_HOST))
    a.env["SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS"] = origins
    c = make_node(tmp_path, pg_url, "node-c", LEASE)
    c.ports = a.ports
    c.env.update({k: v for k, v in a.env.items() if k.endswith(("_PORT", "ALLOWED_ORIGINS"))})
    c.env.update(SWITCHBOARD_SERVER_HOST=EDGE_HOST, SWITCHBOARD_CONSOLE_HOST=EDGE_HOST,
                 SWITCHBOARD_EMAIL_SMTP_HOST=EDGE_HOST)
    try:
        a.start().until_up(a.leads, "node-a to lead")
        c.start("--role", "edge")
        wait_port(a.ports.ws, c.proc, c.dir / "serve.log", host=EDGE_HOST)  # C's console port
        yield a, c
    finally:
        end_all([a, c])


@pytest.mark.postgres
@pytest.mark.slow
def test_an_agent_signs_in_and_works_in_chromium_through_an_edge_node(apart, pg_url):
    """The page, the sign-in and the console's socket all from C's address; the offer of mail
    that arrived on A shows on the desk, and accepting it assigns the task."""
    a, c = apart
    sync_playwright, expect = chromium()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser)
            page.goto(f"http://{EDGE_HOST}:{a.ports.http}/")
            page.fill("#login-id", "a1")
            page.fill("#login-password", AGENT_PASSWORD)
            page.click("#password-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            page.click("#go-available")
            expect(page.locator("#presence")).to_have_text("Available", timeout=WAIT_MS)
            send(a.ports.smtp, "through-c")
            expect(page.locator("#offer-summary")).to_contain_text("Question through-c",
                                                                   timeout=WAIT_MS)
            page.click("#accept")
            expect(page.locator("#tasks")).to_contain_text("Question through-c",
                                                           timeout=WAIT_MS)
            token = page.evaluate("sessionStorage.getItem('switchboard.token')")
            # No node routes for a while (A killed, no standby): C answers the handshakes
            # 503. The desk waits with its token, and is back once a router is.
            a.signal(signal.SIGKILL)
            a.proc.wait(10)
            expect(page.locator("#link")).to_contain_text("reconnecting", timeout=WAIT_MS)
            page.wait_for_timeout(8000)  # past C's wait for a leader: handshakes refused
            expect(page.locator("#login")).to_be_hidden()
            expect(page.locator("#desk")).to_be_visible()
            a.start().until_up(a.leads, "node-a to lead again")
            expect(page.locator("#link")).to_have_text("connected", timeout=30_000)
            expect(page.locator("#tasks")).to_contain_text("Question through-c",
                                                           timeout=WAIT_MS)
            assert page.evaluate("sessionStorage.getItem('switchboard.token')") == token
            assert errors == []
        finally:
            browser.close()
    task_id = task_of(pg_url, "through-c")
    assert mail.rows(pg_url, "SELECT state, agent_id FROM tasks WHERE id = :id",
                     id=task_id) == [("assigned", "a1")]
    assert "dispatcher.tunnel.server: connection open" in c.log(None)  # the desk's socket
    assert AGENT_PASSWORD not in a.log(None) + c.log(None)
