"""CTI: a scripted PBX client over WebSocket (and HTTP POST) walks every case against the real
dispatcher (cti_server.py: the runtime's App on SQLite, the agent console and the CTI), with the
agents at their consoles (real `websockets` clients): a call offered, accepted in the console,
routed to the agent's extension, answered and ended (wrap-up); no answer (RONA); a reject and
the next agent; a caller who gives up in the queue or while offered; an extension busy and idle
again, or ringing; a route the PBX never reports answered (cti_route_timeout); instructions
missed while the link was down, sent again in order; one-shot HTTP events; refused tokens and
origins; malformed frames.

Each case has its own queue and agents, so the cases share one server and stay independent."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent_console import messages as console_messages
from channels.phone import messages as m
from channels.phone.cti import CtiSettings
from dispatcher.domain.errors import InvalidValue
from tests.agent_console.harness import Client

ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 30.0
EVENT_TIMEOUT = 20.0
TEST_TIMEOUT = 120.0
FRAME_TIMEOUT = 15.0  # generous: the suite shares two cores with the others
SECRET = b"c" * 48
ORIGIN = "http://127.0.0.1:8080"  # the console's default allowed origin
RONA_SECONDS = 1.0
ISSUER, AUDIENCE = CtiSettings.issuer, CtiSettings.audience
FLOW_NUMBER = "+32 2 555 00 01"  # cti numbers map it to the queue `flow`
CALLER = "+32 2 555 01 00"

QUEUES = [
    {"name": "flow"}, {"name": "rona", "offer_timeout": RONA_SECONDS}, {"name": "reject"},
    {"name": "abandon"}, {"name": "device"}, {"name": "http"}, {"name": "misc"},
    {"name": "transfer"}, {"name": "ring"}, {"name": "fail"},
    {"name": "skills", "expression": "languages HAS task.language"},
    {"name": "again"}, {"name": "bell"}, {"name": "replay"},
]
AGENTS = [
    {"id": "ann", "extension": "201", "queues": ["flow"]},
    {"id": "rob", "extension": "202", "queues": ["rona"]},
    {"id": "rae", "extension": "203", "queues": ["reject"]},
    {"id": "ray", "extension": "204", "queues": ["reject"]},
    {"id": "abe", "extension": "205", "queues": ["abandon"]},
    {"id": "dee", "extension": "206", "queues": ["device"]},
    {"id": "hal", "extension": "207", "queues": ["http"]},
    {"id": "tom", "extension": "208", "queues": ["transfer"]},
    {"id": "ria", "extension": "209", "queues": ["ring"]},
    {"id": "fay", "extension": "210", "queues": ["fail"]},
    {"id": "fox", "extension": "211", "queues": ["fail"]},
    {"id": "ivo", "extension": "212", "queues": ["skills"], "skills": {"billing": 5},
     "attributes": {"languages": ["en"]}},
    {"id": "iva", "extension": "213", "queues": ["skills"], "skills": {"billing": 1},
     "attributes": {"languages": ["fr"]}},
    {"id": "ira", "extension": "214", "queues": ["skills"], "skills": {"billing": 4},
     "attributes": {"languages": ["fr", "en"]}},
    {"id": "amy", "extension": "215", "queues": ["again"]},
    {"id": "bea", "extension": "216", "queues": ["bell"]},
    {"id": "rex", "extension": "217", "queues": ["replay"]},
    {"id": "rey", "extension": "218", "queues": ["replay"]},
]


@dataclass
class App:
    proc: subprocess.Popen
    http_port: int
    console_port: int
    cti_port: int
    parts: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    _new: queue.Queue = field(default_factory=queue.Queue)

    def follow(self) -> None:
        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith("EVENT "):
                    self._new.put(json.loads(line[6:]))
        threading.Thread(target=read, daemon=True).start()

    def wait_for(self, kind: str, timeout: float = EVENT_TIMEOUT, **match: Any) -> dict:
        """The first committed event of `kind` whose fields (or data fields) equal `match`."""
        deadline = time.monotonic() + timeout
        while True:
            while True:
                try:
                    self.events.append(self._new.get_nowait())
                except queue.Empty:
                    break
            for e in self.events:
                if e["kind"] == kind and all(e.get(k, e["data"].get(k)) == v
                                             for k, v in match.items()):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {match} within {timeout}s; saw "
                                     f"{[(e['kind'], e['agent_id']) for e in self.events]}")
            with contextlib.suppress(queue.Empty):
                self.events.append(self._new.get(timeout=min(left, 0.2)))

    async def event(self, kind: str, **match: Any) -> dict:
        return await asyncio.to_thread(self.wait_for, kind, **match)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # ------------------------------------------------------------------ clients

    async def pbx(self, sub: str = "pbx1", token: str | None = None) -> Client:
        """A PBX on the CTI WebSocket, past its welcome."""
        ws = await connect(f"ws://127.0.0.1:{self.cti_port}/", subprotocols=[m.SUBPROTOCOL],
                           additional_headers={"Authorization": f"Bearer {token or sign(sub)}"},
                           compression=None, open_timeout=5)
        client = Peer(ws)
        client.welcome = await client.expect(m.WELCOME)
        return client

    async def agent(self, agent_id: str) -> Client:
        """An agent at the console, signed in and available."""
        token = sign(agent_id, role="agent")
        ws = await connect(f"ws://127.0.0.1:{self.console_port}/",
                           subprotocols=[console_messages.SUBPROTOCOL, f"bearer.{token}"],
                           origin=ORIGIN, compression=None, open_timeout=5)
        client = Peer(ws)
        await client.send({"type": "hello", "v": 1})
        client.welcome = await client.expect("welcome")
        assert (await client.request("presence", status="available"))["type"] == "ok"
        return client

    def post(self, body: bytes | dict, token: str | None = "", method: str = "POST",
             content_type: str = "application/json") -> tuple[int, dict, dict]:
        """POST /cti/events: (status, JSON body, headers)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/cti/events",
                                     data=data if method == "POST" else None, method=method)
        req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token or sign('pbx1')}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, (json.loads(raw) if raw.startswith(b"{") else {}), dict(
                exc.headers)


class Peer(Client):
    """The console harness's client (frames kept in `seen`), with this suite's patience."""

    async def expect(self, what: Any, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        return await super().expect(what, timeout)


def sign(sub: str, role: str = "integration", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + 600, "iss": ISSUER,
              "aud": AUDIENCE, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET,
                      algorithm="HS256")


def start_app(where: Path, **extra: Any) -> App:
    """The test server (cti_server.py) on a SQLite file in `where`, up and followed."""
    secret = where / "secret"
    secret.write_bytes(SECRET)
    cti = {"numbers": f"{FLOW_NUMBER}=flow", "max_frame_bytes": 4096, **extra.pop("cti", {})}
    spec = {"secret_file": str(secret), "queues": QUEUES, "agents": AGENTS, "cti": cti,
            **extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.channels.phone.cti_server",
         f"sqlite:///{where / 'switchboard.db'}", json.dumps(spec)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=open(where / "server.log", "ab"), text=True)  # noqa: SIM115 - the child keeps it
    deadline = time.monotonic() + READY_TIMEOUT
    ready = None
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if line.startswith("READY "):
                ready = json.loads(line[6:])
                break
            if not line:
                break
    if ready is None:
        proc.kill()
        pytest.fail(f"the CTI test server did not start: {(where / 'server.log').read_text()}")
    server = App(proc, ready["http_port"], ready["console_port"], ready["cti_port"],
                 ready["parts"])
    server.follow()
    return server


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[App]:
    server = start_app(tmp_path_factory.mktemp("cti"), api=True)
    yield server
    server.stop()


def run(coro_fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an async test in a fresh event loop."""
    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(coro_fn(*args, **kw), TEST_TIMEOUT))
    return wrapper


async def arrive(pbx: Client, call_id: str, **fields: Any) -> dict:
    fields.setdefault("from", CALLER)
    answer = await pbx.request(m.CALL_ARRIVED, call_id=call_id, **fields)
    assert answer["type"] == m.OK, answer
    return answer


def of_call(kind: str, call_id: str) -> Callable[[dict], bool]:
    return lambda f: f["type"] == kind and f.get("call_id") == call_id


async def close_all(*clients: Client) -> None:
    for c in clients:
        await c.close()


# ---------------------------------------------------------------------- the cases


@run
async def test_arrived_offered_accepted_routed_answered_ended(app):
    pbx, ann = await app.pbx(), await app.agent("ann")
    try:
        assert pbx.welcome["v"] == m.PROTOCOL_VERSION and pbx.welcome["integration"] == "pbx1"
        # The dialled number picks the queue; the answer comes after the commit.
        ack = await arrive(pbx, "flow-1", to=FLOW_NUMBER, attributes={"ivr": "billing",
                                                                      "source": "forged"})
        assert ack["queue"] == "flow" and ack["state"] == "offered"
        offer = await pbx.expect(of_call(m.OFFER, "flow-1"))
        assert (offer["agent_id"], offer["extension"], offer["task_id"]) == \
            ("ann", "201", ack["task_id"])
        # The agent's console shows the ringing call: caller, customer card and timeline.
        shown = await ann.expect("offer")
        task = shown["task"]
        assert task["id"] == ack["task_id"] and task["channel"] == "phone"
        assert task["attributes"]["caller"] == CALLER and task["attributes"]["source"] == "cti"
        assert task["attributes"]["ivr"] == "billing"
        assert shown["customer"] is not None
        assert {"kind": "phone", "value": "+3225550100"} in shown["customer"]["identities"]
        # A repeated call.arrived is the same call.
        again = await arrive(pbx, "flow-1", to=FLOW_NUMBER)
        assert again["task_id"] == ack["task_id"]
        # Accept in the console -> route to the agent's extension.
        assert (await ann.request("accept", offer_id=shown["offer_id"]))["type"] == "ok"
        route = await pbx.expect(of_call(m.ROUTE, "flow-1"))
        assert (route["agent_id"], route["extension"]) == ("ann", "201")
        answered = await pbx.request(m.CALL_ANSWERED, call_id="flow-1", extension="201")
        assert answered["type"] == m.OK and answered["agent_id"] == "ann"
        await app.event("call.answered", task_id=ack["task_id"], agent_id="ann")
        ended = await pbx.request(m.CALL_ENDED, call_id="flow-1", by="caller")
        assert ended["type"] == m.OK
        # Committed before the ok: the log has the end, the agent is in wrap-up.
        e = await app.event("call.ended", task_id=ack["task_id"])
        assert e["data"]["by"] == "caller" and e["data"]["talk_seconds"] is not None
        await app.event("task.wrap_up", task_id=ack["task_id"], agent_id="ann")
        state = await ann.expect(lambda f: f["type"] == "task_state"
                                 and f["task_id"] == ack["task_id"])
        assert state["state"] == "wrap_up"
        # Ends are idempotent.
        assert (await pbx.request(m.CALL_ENDED, call_id="flow-1"))["type"] == m.OK
        done = await ann.request("complete", task_id=ack["task_id"], disposition="solved")
        assert done["type"] == "ok"
    finally:
        await close_all(pbx, ann)


@run
async def test_a_call_brings_its_own_skills_and_attributes_to_the_queue_expression(app):
    """ivo speaks no French, iva lacks the level the IVR asked for: only ira is offered it."""
    pbx = await app.pbx()
    agents = [await app.agent(aid) for aid in ("ivo", "iva", "ira")]
    try:
        ack = await arrive(pbx, "skills-1", queue="skills", attributes={"language": "fr"},
                           skills={"billing": 3})
        assert ack["state"] == "offered"
        offer = await pbx.expect(of_call(m.OFFER, "skills-1"))
        assert offer["agent_id"] == "ira"
        offered = await app.event("task.offered", task_id=ack["task_id"])
        assert offered["data"]["explanation"]["requirement"] == {"billing": 3}
        bad = await pbx.request(m.CALL_ARRIVED, call_id="skills-2", queue="skills",
                                skills={"billing": 11})
        assert bad["type"] == m.ERROR and "skills" in bad["message"]
    finally:
        await close_all(pbx, *agents)


@run
async def test_no_answer_is_rona_cancel_route_and_the_call_back_at_the_head(app):
    pbx, rob = await app.pbx(), await app.agent("rob")
    try:
        ack = await arrive(pbx, "rona-1", queue="rona")
        first = await pbx.expect(of_call(m.OFFER, "rona-1"))
        assert first["agent_id"] == "rob"
        await rob.expect("offer")
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "rona-1"), timeout=RONA_SECONDS + 5)
        assert (cancel["reason"], cancel["agent_id"], cancel["extension"]) == \
            (m.EXPIRED, "rob", "202")
        assert cancel["offer_id"] == first["offer_id"]
        gone = await rob.expect("offer_cancelled")
        assert gone["reason"] == "expired"
        presence = await rob.expect(lambda f: f["type"] == "presence"
                                    and f["status"] == "not_responding")
        assert presence["status"] == "not_responding"
        await app.event("offer.expired", task_id=ack["task_id"], agent_id="rob")
        # Back at the head with its age: the agent's return brings the same call again.
        assert (await rob.request("presence", status="available"))["type"] == "ok"
        second = await pbx.expect(of_call(m.OFFER, "rona-1"))
        assert second["task_id"] == ack["task_id"] and second["offer_id"] != first["offer_id"]
        offer = await rob.expect("offer")
        assert (await rob.request("reject", offer_id=offer["offer_id"]))["type"] == "ok"
        assert (await pbx.request(m.CALL_ABANDONED, call_id="rona-1"))["type"] == m.OK
    finally:
        await close_all(pbx, rob)


@run
async def test_a_reject_goes_to_the_next_agent_and_routes_survive_a_reconnect(app):
    pbx = await app.pbx()
    consoles = {"rae": await app.agent("rae"), "ray": await app.agent("ray")}
    extensions = {"rae": "203", "ray": "204"}
    try:
        await arrive(pbx, "rej-1", queue="reject")
        first = await pbx.expect(of_call(m.OFFER, "rej-1"))
        one, other = first["agent_id"], ({"rae", "ray"} - {first["agent_id"]}).pop()
        offer = await consoles[one].expect("offer")
        assert (await consoles[one].request("reject", offer_id=offer["offer_id"],
                                            reason="busy"))["type"] == "ok"
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "rej-1"))
        assert (cancel["reason"], cancel["agent_id"]) == (m.REJECTED, one)
        second = await pbx.expect(of_call(m.OFFER, "rej-1"))
        assert (second["agent_id"], second["extension"]) == (other, extensions[other])
        offer = await consoles[other].expect("offer")
        assert (await consoles[other].request("accept", offer_id=offer["offer_id"])
                )["type"] == "ok"
        route = await pbx.expect(of_call(m.ROUTE, "rej-1"))
        assert route["extension"] == extensions[other]
        # The PBX drops and comes back before connecting the call: the route is sent again.
        await pbx.close()
        pbx = await app.pbx()
        again = await pbx.expect(of_call(m.ROUTE, "rej-1"))
        assert again["extension"] == extensions[other]
        # The PBX reports the answer without naming the extension: the routed agent.
        answered = await pbx.request(m.CALL_ANSWERED, call_id="rej-1")
        assert answered["agent_id"] == other
        assert (await pbx.request(m.CALL_ENDED, call_id="rej-1", by="agent"))["type"] == m.OK
        state = await consoles[other].expect("task_state")
        assert state["state"] == "wrap_up"
    finally:
        await close_all(pbx, *consoles.values())


@run
async def test_a_pbx_that_rings_on_offer_accepts_by_answering(app):
    pbx, ria = await app.pbx(), await app.agent("ria")
    try:
        ack = await arrive(pbx, "ring-1", queue="ring")
        offer = await pbx.expect(of_call(m.OFFER, "ring-1"))
        await ria.expect("offer")
        # The PBX rang extension 209 on `offer`; the phone's answer is ria's accept.
        answered = await pbx.request(m.CALL_ANSWERED, call_id="ring-1",
                                     extension=offer["extension"])
        assert (answered["type"], answered["agent_id"]) == (m.OK, "ria")
        assigned = await ria.expect("assigned")
        assert assigned["task"]["id"] == ack["task_id"]
        await app.event("offer.accepted", task_id=ack["task_id"], agent_id="ria")
        # Already connected: no `route` for it.
        assert (await pbx.request(m.PING))["type"] == m.PONG
        assert not [f for f in pbx.seen if f["type"] == m.ROUTE]
        assert (await pbx.request(m.CALL_ENDED, call_id="ring-1"))["type"] == m.OK
        assert (await ria.expect("task_state"))["state"] == "wrap_up"
    finally:
        await close_all(pbx, ria)


@run
async def test_a_route_the_pbx_cannot_connect_goes_to_the_next_agent(app):
    pbx = await app.pbx()
    consoles = {"fay": await app.agent("fay"), "fox": await app.agent("fox")}
    try:
        ack = await arrive(pbx, "fail-1", queue="fail")
        first = (await pbx.expect(of_call(m.OFFER, "fail-1")))["agent_id"]
        other = ({"fay", "fox"} - {first}).pop()
        offer = await consoles[first].expect("offer")
        assert (await consoles[first].request("accept", offer_id=offer["offer_id"])
                )["type"] == "ok"
        await pbx.expect(of_call(m.ROUTE, "fail-1"))
        # The extension never answered the PBX's dial.
        failed = await pbx.request(m.ROUTE_FAILED, call_id="fail-1", reason="no_answer")
        assert (failed["type"], failed["agent_id"]) == (m.OK, first)
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "fail-1"))
        assert (cancel["reason"], cancel["agent_id"]) == (m.ROUTE_FAILED_REASON, first)
        e = await app.event("task.transferred", task_id=ack["task_id"])
        assert e["data"]["from_agent"] == first
        closed = await consoles[first].expect("task_closed")  # gone from that agent's desk
        assert (closed["task_id"], closed["state"]) == (ack["task_id"], "queued")
        nxt = await pbx.expect(of_call(m.OFFER, "fail-1"))
        assert nxt["agent_id"] == other  # never back to the agent whose phone failed
        again = await pbx.request(m.ROUTE_FAILED, call_id="fail-1")  # not routed now
        assert (again["type"], again["code"]) == (m.ERROR, "offer_not_current")
        assert (await pbx.request(m.CALL_ABANDONED, call_id="fail-1"))["type"] == m.OK
    finally:
        await close_all(pbx, *consoles.values())


@run
async def test_a_routed_call_taken_elsewhere_is_cancelled_at_the_pbx(app):
    pbx, tom = await app.pbx(), await app.agent("tom")
    try:
        ack = await arrive(pbx, "tr-1", queue="transfer")
        offer = await tom.expect("offer")
        assert (await tom.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        assert (await pbx.expect(of_call(m.ROUTE, "tr-1")))["extension"] == "208"
        moved = await tom.request("transfer", task_id=ack["task_id"], to_queue="misc")
        assert moved["type"] == "ok"
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "tr-1"))
        assert (cancel["reason"], cancel["agent_id"], cancel["extension"]) == \
            (m.TRANSFERRED, "tom", "208")
        # No longer with tom: the PBX cannot report tom's extension answering it.
        late = await pbx.request(m.CALL_ANSWERED, call_id="tr-1", extension="208")
        assert (late["type"], late["code"]) == (m.ERROR, "offer_not_current")
        assert (await pbx.request(m.CALL_ABANDONED, call_id="tr-1"))["type"] == m.OK
    finally:
        await close_all(pbx, tom)


@run
async def test_a_waiting_call_cancelled_through_the_api_is_cancelled_at_the_pbx(app):
    pbx = await app.pbx()
    try:
        ack = await arrive(pbx, "cx-1", queue="misc")  # nobody signed in takes misc
        req = urllib.request.Request(
            f"http://127.0.0.1:{app.http_port}/api/v1/tasks/{ack['task_id']}/cancel",
            data=json.dumps({"reason": "duplicate"}).encode(), method="POST",
            headers={"Authorization": f"Bearer {sign('crm')}",  # the API's integration
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "cx-1"))
        assert (cancel["reason"], cancel["agent_id"], cancel["task_id"]) == \
            (m.CANCELLED, None, ack["task_id"])
    finally:
        await close_all(pbx)


@run
async def test_a_caller_who_gives_up_in_the_queue_or_while_offered(app):
    pbx = await app.pbx()
    abe = None
    try:
        # Nobody to take it: it waits, then the caller hangs up.
        ack = await arrive(pbx, "ab-1", queue="abandon")
        assert ack["state"] == "queued"
        gave_up = await pbx.request(m.CALL_ABANDONED, call_id="ab-1")
        assert gave_up["type"] == m.OK
        e = await app.event("task.abandoned", task_id=ack["task_id"])
        assert e["data"]["reason"] == m.DEFAULT_ABANDON_REASON and e["data"]["waited"] >= 0
        # While it rings an agent: the offer is withdrawn on both sides.
        abe = await app.agent("abe")
        ack = await arrive(pbx, "ab-2", queue="abandon")
        await pbx.expect(of_call(m.OFFER, "ab-2"))
        await abe.expect("offer")
        gone = await pbx.request(m.CALL_ABANDONED, call_id="ab-2", reason="timeout_in_ivr")
        assert gone["type"] == m.OK
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "ab-2"))
        assert (cancel["reason"], cancel["agent_id"]) == (m.WITHDRAWN, "abe")
        cancelled = await abe.expect("offer_cancelled")
        assert cancelled["reason"] == "caller_hung_up"
        e = await app.event("task.abandoned", task_id=ack["task_id"])
        assert e["data"]["reason"] == "timeout_in_ivr"
        # Unknown calls: an end is acknowledged (nothing to do), an answer is refused.
        assert (await pbx.request(m.CALL_ABANDONED, call_id="never"))["type"] == m.OK
        refused = await pbx.request(m.CALL_ANSWERED, call_id="never", extension="205")
        assert (refused["type"], refused["code"]) == (m.ERROR, m.UNKNOWN_CALL)
    finally:
        await close_all(pbx, *([abe] if abe else []))


@run
async def test_a_busy_extension_takes_no_call_until_idle(app):
    pbx, dee = await app.pbx(), await app.agent("dee")
    try:
        busy = await pbx.request(m.DEVICE_STATE, extension="206", state=m.BUSY)
        assert busy["type"] == m.OK and busy["agent_id"] == "dee"
        e = await app.event("agent.device", agent_id="dee", engaged=True)
        assert e["data"]["channel"] == "phone"
        ack = await arrive(pbx, "dev-1", queue="device")
        assert ack["state"] == "queued"  # committed and routed before the ok: nobody free
        assert (await pbx.request(m.DEVICE_STATE, extension="206", state=m.IDLE)
                )["type"] == m.OK
        offer = await pbx.expect(of_call(m.OFFER, "dev-1"))
        assert (offer["agent_id"], offer["extension"]) == ("dee", "206")
        await dee.expect("offer")
        # Unplugged while it rings: withdrawn; back: offered again.
        assert (await pbx.request(m.DEVICE_STATE, extension="206", state=m.UNAVAILABLE)
                )["type"] == m.OK
        cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "dev-1"))
        assert (cancel["reason"], cancel["detail"]) == (m.WITHDRAWN, "device_unreachable")
        await app.event("agent.device", agent_id="dee", reachable=False)
        assert (await pbx.request(m.DEVICE_STATE, extension="206", state=m.IDLE)
                )["type"] == m.OK
        await pbx.expect(of_call(m.OFFER, "dev-1"))
        unknown = await pbx.request(m.DEVICE_STATE, extension="999", state=m.BUSY)
        assert (unknown["type"], unknown["code"]) == (m.ERROR, m.UNKNOWN_EXTENSION)
        assert (await pbx.request(m.CALL_ABANDONED, call_id="dev-1"))["type"] == m.OK
    finally:
        await close_all(pbx, dee)


@run
async def test_one_shot_events_over_http(app):
    pbx, hal = await app.pbx(), await app.agent("hal")
    try:
        status, body, _ = await asyncio.to_thread(
            app.post, {"type": m.CALL_ARRIVED, "id": "h1", "call_id": "http-1",
                       "from": CALLER, "queue": "http"})
        assert status == 200 and body["type"] == m.OK and body["re"] == "h1"
        # The integration's WebSocket gets what becomes of the call it reported over HTTP.
        offer = await pbx.expect(of_call(m.OFFER, "http-1"))
        assert offer["agent_id"] == "hal" and offer["task_id"] == body["task_id"]
        await hal.expect("offer")
        status, body, _ = await asyncio.to_thread(
            app.post, {"type": m.CALL_ABANDONED, "call_id": "http-1"})
        assert status == 200 and body["type"] == m.OK
        await pbx.expect(of_call(m.CANCEL_ROUTE, "http-1"))
        await app.event("task.abandoned", task_id=offer["task_id"])
        cases = [
            ({"type": m.PING}, None, 401),
            ({"type": m.PING}, sign("hal", role="agent"), 403),
            ({"type": m.PING}, sign("sup", role="supervisor"), 403),
            ({"type": m.PING}, sign("pbx1", aud="someone-else"), 401),
            ({"type": m.CALL_ARRIVED, "call_id": "http-2", "queue": "nowhere"}, "", 404),
            ({"type": m.CALL_ARRIVED, "call_id": "http-3"}, "", 404),  # no queue for it
            (b"{not json", "", 400),
            ({"type": "call.teleported"}, "", 400),
            (b"x" * 5000, "", 413),
        ]
        for payload, token, expected in cases:
            status, body, headers = await asyncio.to_thread(app.post, payload, token)
            assert status == expected, (payload, token, status, body)
            if expected == 401:
                assert headers["WWW-Authenticate"].startswith("Bearer")
            assert body.get("type") == m.ERROR
        status, _, _ = await asyncio.to_thread(app.post, {"type": m.PING}, "",
                                               content_type="text/plain")
        assert status == 415
        status, _, _ = await asyncio.to_thread(app.post, b"", "", method="GET")
        assert status == 405
        status, body, _ = await asyncio.to_thread(app.post, {"type": m.PING, "id": 7})
        assert (status, body) == (200, {"type": m.PONG, "re": 7})
    finally:
        await close_all(pbx, hal)


@pytest.mark.parametrize("name", ["none", "agent", "supervisor", "wrong_audience", "expired",
                                  "garbage", "foreign_origin", "too_long_lived"])
@run
async def test_the_handshake_refuses_all_but_integrations(app, name):
    now = int(time.time())
    token = {"none": None, "agent": sign("ann", role="agent"),
             "supervisor": sign("sup", role="supervisor"),
             "wrong_audience": sign("pbx1", aud="switchboard-elsewhere"),
             "expired": sign("pbx1", iat=now - 7200, exp=now - 3600),
             "garbage": "not-a-jwt", "foreign_origin": sign("pbx1"),
             # past `cti_max_token_lifetime_seconds` (400 days by default)
             "too_long_lived": sign("pbx1", iat=now, exp=now + 401 * 86400)}[name]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    expected = 403 if name in ("agent", "supervisor", "foreign_origin") else 401
    with pytest.raises(InvalidStatus) as err:
        await connect(f"ws://127.0.0.1:{app.cti_port}/", additional_headers=headers,
                      origin="http://evil.example" if name == "foreign_origin" else None,
                      compression=None, open_timeout=5)
    assert err.value.response.status_code == expected
    if expected == 401:
        assert err.value.response.headers["WWW-Authenticate"].startswith("Bearer")


@run
async def test_bad_frames_get_errors_and_the_connection_stays(app):
    pbx = await app.pbx()
    try:
        cases = [
            ("{not json", m.BAD_MESSAGE),
            (b"\xff\xfe", m.BAD_MESSAGE),
            ("[1, 2]", m.BAD_MESSAGE),
            (json.dumps({"type": "call.teleported", "id": 5}), m.UNKNOWN_TYPE),
            (json.dumps({"type": m.CALL_ARRIVED, "queue": "misc"}), m.BAD_MESSAGE),
            (json.dumps({"type": m.CALL_ARRIVED, "call_id": "x" * 300, "queue": "misc"}),
             m.BAD_MESSAGE),
            (json.dumps({"type": m.CALL_ARRIVED, "call_id": "b1", "queue": "misc",
                         "attributes": {"nested": {"no": 1}}}), m.BAD_MESSAGE),
            (json.dumps({"type": m.CALL_ARRIVED, "call_id": "b1", "queue": "misc",
                         "priority": "high"}), m.BAD_MESSAGE),
            (json.dumps({"type": m.DEVICE_STATE, "extension": "201", "state": "on_fire"}),
             m.BAD_MESSAGE),
            (json.dumps({"type": m.CALL_ENDED, "call_id": "b1", "by": "martians"}),
             m.BAD_MESSAGE),
        ]
        for raw, code in cases:
            await pbx.ws.send(raw)
            answer = await pbx.expect(m.ERROR)
            assert answer["code"] == code, (raw, answer)
        assert (await pbx.request(m.PING))["type"] == m.PONG
        # A frame above max_frame_bytes closes the socket (1009): the one thing that does.
        await pbx.ws.send(json.dumps({"type": m.PING, "pad": "x" * 5000}))
        with pytest.raises(ConnectionClosed) as closed:
            await pbx.ws.recv()
        assert closed.value.rcvd.code == 1009
    finally:
        await pbx.close()


@run
async def test_the_cti_and_the_console_read_frames_alike(app):
    """One parser for both sockets of the server (dispatcher.service.wire.read_frame): the same
    frame gets the same answer from the CTI and from the console — an `id` of `true` used to be
    refused here and taken for 1 there — and both sockets stay open."""
    pbx = await app.pbx()
    ws = await connect(f"ws://127.0.0.1:{app.console_port}/",
                       subprotocols=[console_messages.SUBPROTOCOL, f"bearer.{sign('hal', 'agent')}"],
                       origin=ORIGIN, compression=None, open_timeout=5)
    console = Peer(ws)
    try:
        await console.send({"type": "hello", "v": 1})
        await console.expect("welcome")
        frames = [json.dumps({"type": "ping", "id": rid}) for rid in
                  (True, False, 1.5, [1], "p-1", 0, 2**70, None)]
        frames += ["{nope", "[1]", json.dumps({"type": "launch.rockets", "id": "r"}),
                   json.dumps({"type": "ping", "id": 4}).encode()]  # a binary frame
        for raw in frames:
            await pbx.ws.send(raw)
            await console.ws.send(raw)
            answers = [await peer.expect(lambda f: f["type"] in (m.ERROR, m.PONG))
                       for peer in (pbx, console)]
            assert answers[0] == answers[1], (raw, answers)
            if answers[0]["type"] == m.ERROR:
                assert answers[0]["code"] in (m.BAD_MESSAGE, m.UNKNOWN_TYPE), (raw, answers)
        assert [(await p.request(m.PING))["type"] for p in (pbx, console)] == [m.PONG] * 2
    finally:
        await close_all(pbx, console)


@run
async def test_a_call_belongs_to_the_integration_that_reported_it(app):
    pbx1, pbx2 = await app.pbx("pbx1"), await app.pbx("pbx2")
    try:
        ack = await arrive(pbx1, "own-1", queue="misc")
        for kind, extra in ((m.CALL_ENDED, {}), (m.CALL_ABANDONED, {}),
                            (m.CALL_ANSWERED, {"extension": "201"}),
                            (m.CALL_ARRIVED, {"queue": "misc"})):
            answer = await pbx2.request(kind, call_id="own-1", **extra)
            assert (answer["type"], answer["code"]) == (m.ERROR, m.FORBIDDEN), (kind, answer)
        await app.event("task.queued", task_id=ack["task_id"])
        assert (await pbx1.request(m.CALL_ABANDONED, call_id="own-1"))["type"] == m.OK
        await app.event("task.abandoned", task_id=ack["task_id"])
    finally:
        await close_all(pbx1, pbx2)


@run
async def test_an_extension_reports_busy_and_idle_after_its_first_call(app):
    """Issue 18 said the CTI's routed set was never cleared, so an extension's busy and idle
    stopped counting after its first call: the CTI clears it at the call's end (wrap-up); this
    walks a second call after the first to prove it. (The Asterisk guide's own `routed` set
    was the one never cleared: docs/asterisk.md.)"""
    pbx, amy = await app.pbx(), await app.agent("amy")
    try:
        ack = await arrive(pbx, "again-1", queue="again")
        offer = await amy.expect("offer")
        assert (await amy.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        await pbx.expect(of_call(m.ROUTE, "again-1"))
        assert (await pbx.request(m.CALL_ANSWERED, call_id="again-1", extension="215")
                )["type"] == m.OK
        assert (await pbx.request(m.CALL_ENDED, call_id="again-1", by="agent"))["type"] == m.OK
        await app.event("task.wrap_up", task_id=ack["task_id"], agent_id="amy")
        assert (await amy.request("complete", task_id=ack["task_id"], disposition="solved")
                )["type"] == "ok"
        await app.event("task.completed", task_id=ack["task_id"])
        # After the first call the extension's states still count: busy keeps the next away...
        assert (await pbx.request(m.DEVICE_STATE, extension="215", state=m.BUSY)
                )["type"] == m.OK
        await app.event("agent.device", agent_id="amy", engaged=True)
        second = await arrive(pbx, "again-2", queue="again")
        assert second["state"] == "queued"
        # ...and idle brings it.
        assert (await pbx.request(m.DEVICE_STATE, extension="215", state=m.IDLE)
                )["type"] == m.OK
        nxt = await pbx.expect(of_call(m.OFFER, "again-2"))
        assert (nxt["agent_id"], nxt["task_id"]) == ("amy", second["task_id"])
        await amy.expect("offer")
        assert (await pbx.request(m.CALL_ABANDONED, call_id="again-2"))["type"] == m.OK
    finally:
        await close_all(pbx, amy)


@run
async def test_a_ringing_extension_takes_no_call_until_idle(app):
    """`ringing` (Asterisk's RINGING) of a call outside our routing makes the agent engaged on
    the phone, as `busy` does: no call offered until `idle`. While one of our calls is offered
    to the agent (a PBX that rings on `offer`), the ringing is that call's: nothing changes."""
    pbx, bea = await app.pbx(), await app.agent("bea")
    try:
        ringing = await pbx.request(m.DEVICE_STATE, extension="216", state=m.RINGING)
        assert (ringing["type"], ringing["agent_id"], ringing["state"]) == \
            (m.OK, "bea", m.RINGING)
        await app.event("agent.device", agent_id="bea", engaged=True)
        ack = await arrive(pbx, "bell-1", queue="bell")
        assert ack["state"] == "queued"
        assert (await pbx.request(m.DEVICE_STATE, extension="216", state=m.IDLE)
                )["type"] == m.OK
        await app.event("agent.device", agent_id="bea", engaged=False)
        offer = await pbx.expect(of_call(m.OFFER, "bell-1"))
        assert (offer["agent_id"], offer["extension"]) == ("bea", "216")
        await bea.expect("offer")
        # The PBX rings 216 for our offer and says so: the offer stays.
        assert (await pbx.request(m.DEVICE_STATE, extension="216", state=m.RINGING)
                )["type"] == m.OK
        assert (await pbx.request(m.PING))["type"] == m.PONG
        assert not [f for f in pbx.seen if of_call(m.CANCEL_ROUTE, "bell-1")(f)]
        answered = await pbx.request(m.CALL_ANSWERED, call_id="bell-1", extension="216")
        assert (answered["type"], answered["agent_id"]) == (m.OK, "bea")
        assert (await pbx.request(m.CALL_ENDED, call_id="bell-1"))["type"] == m.OK
        await app.event("task.wrap_up", task_id=ack["task_id"], agent_id="bea")
        engaged = [e for e in app.events if e["kind"] == "agent.device"
                   and e["agent_id"] == "bea" and e["data"].get("engaged")]
        assert len(engaged) == 1, engaged  # only the first ringing, not our call's
    finally:
        await close_all(pbx, bea)


INSTRUCTIONS = (m.OFFER, m.ROUTE, m.CANCEL_ROUTE)


def instruction(f: dict) -> bool:
    return f["type"] in INSTRUCTIONS and str(f.get("call_id", "")).startswith("rp-")


@run
async def test_instructions_missed_while_the_link_was_down_come_again_in_order(app):
    """Offers, routes and cancels issued while the integration had no WebSocket open are
    sent after the next welcome, each call's latest only, in the order they were issued; what
    the PBX has answered or ended is not sent again."""
    token = sign("pbx9")
    agents = {"rex": await app.agent("rex"), "rey": await app.agent("rey")}
    pbx = None
    try:
        tasks = {}
        for call_id in ("rp-1", "rp-2"):  # over HTTP, no WebSocket open: nobody hears the offer
            status, body, _ = await asyncio.to_thread(app.post, {
                "type": m.CALL_ARRIVED, "call_id": call_id, "from": CALLER, "queue": "replay"},
                token)
            assert (status, body["state"]) == (200, "offered"), body
            tasks[call_id] = body["task_id"]
        offered = {}
        for aid, console in agents.items():
            shown = await console.expect("offer")
            offered[shown["task"]["id"]] = (aid, shown["offer_id"])
        pbx = await app.pbx("pbx9")
        frames = [await pbx.expect(instruction) for _ in range(2)]
        assert [(f["type"], f["call_id"]) for f in frames] == [(m.OFFER, "rp-1"),
                                                               (m.OFFER, "rp-2")]
        for f in frames:
            assert (f["agent_id"], f["offer_id"]) == offered[f["task_id"]]
        # The link drops; one agent rejects the first call, the other accepts the second.
        await pbx.close()
        first_agent, first_offer = offered[tasks["rp-1"]]
        second_agent, second_offer = offered[tasks["rp-2"]]
        assert (await agents[first_agent].request("reject", offer_id=first_offer)
                )["type"] == "ok"
        assert (await agents[second_agent].request("accept", offer_id=second_offer)
                )["type"] == "ok"
        await app.event("offer.rejected", task_id=tasks["rp-1"])
        await app.event("offer.accepted", task_id=tasks["rp-2"])
        pbx = await app.pbx("pbx9")
        frames = [await pbx.expect(instruction) for _ in range(2)]
        assert [(f["type"], f["call_id"]) for f in frames] == [(m.CANCEL_ROUTE, "rp-1"),
                                                               (m.ROUTE, "rp-2")]
        assert (frames[0]["reason"], frames[1]["agent_id"]) == (m.REJECTED, second_agent)
        # Answered and abandoned: nothing more to say about them on the next connect.
        assert (await pbx.request(m.CALL_ANSWERED, call_id="rp-2"))["type"] == m.OK
        assert (await pbx.request(m.CALL_ABANDONED, call_id="rp-1"))["type"] == m.OK
        await app.event("task.abandoned", task_id=tasks["rp-1"])
        await pbx.close()
        pbx = await app.pbx("pbx9")
        assert (await pbx.request(m.PING))["type"] == m.PONG
        assert not [f for f in pbx.seen if instruction(f)]
        assert (await pbx.request(m.CALL_ENDED, call_id="rp-2"))["type"] == m.OK
    finally:
        await close_all(*([pbx] if pbx else []), *agents.values())


@pytest.mark.parametrize("sip", [True, False], ids=["with-sip", "cti-only"])
def test_the_phone_edge_runs_the_cti_when_enabled(tmp_path, sip):
    """Deployed as `[phone] cti_enabled = true`: the phone edge runs it, next to the SIP server
    (on free ports) or alone with `sip_enabled = false`."""
    server = start_app(tmp_path, phone_edge=True, sip=sip)
    assert server.parts == (["sip", "media", "cti"] if sip else ["cti"])

    async def walk() -> None:
        pbx, ann = await server.pbx(), await server.agent("ann")
        try:
            ack = await arrive(pbx, "edge-1", to=FLOW_NUMBER)
            offer = await ann.expect("offer")
            assert offer["task"]["id"] == ack["task_id"]
            assert (await ann.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
            route = await pbx.expect(of_call(m.ROUTE, "edge-1"))
            assert (route["agent_id"], route["extension"]) == ("ann", "201")
            assert (await pbx.request(m.CALL_ANSWERED, call_id="edge-1", extension="201")
                    )["type"] == m.OK
            assert (await pbx.request(m.CALL_ENDED, call_id="edge-1"))["type"] == m.OK
            assert (await ann.expect("task_state"))["state"] == "wrap_up"
            status, body, _ = await asyncio.to_thread(server.post, {"type": m.PING, "id": 1})
            assert (status, body["type"]) == (200, m.PONG)
        finally:
            await close_all(pbx, ann)

    try:
        asyncio.run(asyncio.wait_for(walk(), TEST_TIMEOUT))
    finally:
        server.stop()


def test_settings_from_the_phone_section():
    from channels.phone.config import PhoneSettings

    assert CtiSettings.from_phone(PhoneSettings()).route_timeout == 30.0
    s = CtiSettings.from_phone(PhoneSettings(cti_port=9999, cti_numbers="0800 123=sales",
                                             cti_audience="pbx", cti_route_timeout=5.5))
    assert (s.port, s.audience, s.number_map(), s.route_timeout) == \
        (9999, "pbx", {"0800123": "sales"}, 5.5)
    with pytest.raises(InvalidValue, match="cti_numbers"):
        CtiSettings(numbers="0800").number_map()


def test_a_route_survives_a_restart_of_the_dispatcher(tmp_path):
    """Accepted, then the dispatcher restarts before the PBX connected the call: the route
    comes again after the welcome, and the call goes on from there."""
    server = start_app(tmp_path)

    async def before() -> str:
        pbx, ann = await server.pbx(), await server.agent("ann")
        try:
            ack = await arrive(pbx, "restart-1", to=FLOW_NUMBER)
            offer = await ann.expect("offer")
            assert (await ann.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
            await pbx.expect(of_call(m.ROUTE, "restart-1"))
            return ack["task_id"]
        finally:
            await close_all(pbx, ann)

    async def after(task_id: str) -> None:
        pbx = await server.pbx()
        try:
            route = await pbx.expect(of_call(m.ROUTE, "restart-1"))
            assert (route["task_id"], route["extension"]) == (task_id, "201")
            answered = await pbx.request(m.CALL_ANSWERED, call_id="restart-1")
            assert (answered["type"], answered["agent_id"]) == (m.OK, "ann")
            assert (await pbx.request(m.CALL_ENDED, call_id="restart-1"))["type"] == m.OK
            await server.event("task.wrap_up", task_id=task_id, agent_id="ann")
        finally:
            await pbx.close()

    try:
        task_id = asyncio.run(asyncio.wait_for(before(), TEST_TIMEOUT))
        server.stop()
        server = start_app(tmp_path)
        asyncio.run(asyncio.wait_for(after(task_id), TEST_TIMEOUT))
    finally:
        server.stop()


ROUTE_TIMEOUT = 1.0


def test_a_route_nobody_answers_goes_back_to_the_queue_on_its_own(tmp_path):
    """`cti_route_timeout` after a `route` without `call.answered` (nor `route.failed`): the
    dispatcher fails the route itself, as if the PBX had sent `route.failed`: `cancel_route
    {route_failed, detail no_answer}`, the call back in its queue, the next agent offered it;
    logged once. A route answered in time is left alone."""
    server = start_app(tmp_path, cti={"route_timeout": ROUTE_TIMEOUT})

    async def walk() -> None:
        pbx = await server.pbx()
        consoles = {"fay": await server.agent("fay"), "fox": await server.agent("fox")}
        try:
            ack = await arrive(pbx, "quiet-1", queue="fail")
            first = (await pbx.expect(of_call(m.OFFER, "quiet-1")))["agent_id"]
            other = ({"fay", "fox"} - {first}).pop()
            offer = await consoles[first].expect("offer")
            assert (await consoles[first].request("accept", offer_id=offer["offer_id"])
                    )["type"] == "ok"
            await pbx.expect(of_call(m.ROUTE, "quiet-1"))
            routed = time.monotonic()
            # The PBX never says whether the extension answered.
            cancel = await pbx.expect(of_call(m.CANCEL_ROUTE, "quiet-1"),
                                      timeout=ROUTE_TIMEOUT + FRAME_TIMEOUT)
            assert time.monotonic() - routed >= ROUTE_TIMEOUT - 0.3
            assert (cancel["reason"], cancel["detail"], cancel["agent_id"]) == \
                (m.ROUTE_FAILED_REASON, m.DEFAULT_ROUTE_FAILURE, first)
            e = await server.event("task.transferred", task_id=ack["task_id"])
            assert e["data"]["from_agent"] == first
            closed = await consoles[first].expect("task_closed")
            assert (closed["task_id"], closed["state"]) == (ack["task_id"], "queued")
            nxt = await pbx.expect(of_call(m.OFFER, "quiet-1"))
            assert nxt["agent_id"] == other
            # The next agent's route is answered in time: it stays.
            offer = await consoles[other].expect("offer")
            assert (await consoles[other].request("accept", offer_id=offer["offer_id"])
                    )["type"] == "ok"
            await pbx.expect(of_call(m.ROUTE, "quiet-1"))
            assert (await pbx.request(m.CALL_ANSWERED, call_id="quiet-1"))["type"] == m.OK
            await asyncio.sleep(ROUTE_TIMEOUT + 0.5)
            assert (await pbx.request(m.PING))["type"] == m.PONG
            assert not [f for f in pbx.seen if of_call(m.CANCEL_ROUTE, "quiet-1")(f)]
            assert (await pbx.request(m.CALL_ENDED, call_id="quiet-1"))["type"] == m.OK
            await server.event("task.wrap_up", task_id=ack["task_id"], agent_id=other)
        finally:
            await close_all(pbx, *consoles.values())

    try:
        asyncio.run(asyncio.wait_for(walk(), TEST_TIMEOUT))
    finally:
        server.stop()
    logged = [line for line in (tmp_path / "server.log").read_text().splitlines()
              if "quiet-1" in line and "no answer" in line]
    assert len(logged) == 1, logged
