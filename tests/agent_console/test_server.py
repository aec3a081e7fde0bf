"""The console protocol against a real server on 127.0.0.1 with real `websockets` clients:
handshake authentication, origin, frame size, offers and their endings, dropped sockets,
displacement and actions on someone else's work."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.defer import Deferred, ensureDeferred
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent_console import messages as m
from dispatcher.aio import to_future
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from tests.agent_console.harness import ORIGIN, SECRET, run, start_console

QUICK_OFFERS = {Channel.PHONE: 0.4, Channel.EMAIL: 0.4}


def claims(**overrides):
    now = int(time.time())
    out = {"sub": "a1", "role": "agent", "iat": now, "exp": now + 600,
           "iss": "switchboard", "aud": "switchboard-console"}
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def unsigned(payload: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(payload)}."


def rsa_private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def tampered() -> str:
    head, body, sig = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="a2")).encode()).rstrip(b"=")
    return f"{head}.{forged.decode()}.{sig}"


BAD_TOKENS = {
    "alg_none": lambda: unsigned(claims()),
    "wrong_algorithm_hs512": lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"),
    "wrong_algorithm_rs256": lambda: jwt.encode(claims(), rsa_private_pem(), algorithm="RS256"),
    "expired": lambda: jwt.encode(claims(iat=int(time.time()) - 7200,
                                         exp=int(time.time()) - 3600), SECRET, algorithm="HS256"),
    "wrong_aud": lambda: jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
    "wrong_iss": lambda: jwt.encode(claims(iss="evil"), SECRET, algorithm="HS256"),
    "missing_sub": lambda: jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
    "missing_exp": lambda: jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
    "wrong_key": lambda: jwt.encode(claims(), b"x" * 48, algorithm="HS256"),
    "tampered_signature": tampered,
    "unknown_role": lambda: jwt.encode(claims(role="root"), SECRET, algorithm="HS256"),
    "garbage": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
@run
async def test_bad_tokens_get_401_at_the_handshake(tmp_path, name):
    c = await start_console(tmp_path)
    try:
        with pytest.raises(InvalidStatus) as err:
            await c.connect(token=BAD_TOKENS[name]())
        assert err.value.response.status_code == 401
        assert err.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        await c.stop()


@run
async def test_valid_token_by_subprotocol_or_query_and_no_token(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        assert client.ws.subprotocol == m.SUBPROTOCOL
        w = client.welcome
        assert w["v"] == 1 and w["agent"]["id"] == "a1" and w["agent"]["skills"] == {"support": 6}
        assert w["agent"]["capacity"] == {"phone": 1, "email": 3}
        assert w["presence"]["status"] == "offline" and w["tasks"] == []
        await client.close()
        ws = await connect(f"{c.url}?access_token={c.token('a1')}", origin=ORIGIN)
        await ws.send(json.dumps({"type": "hello", "v": 1}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.close()
        with pytest.raises(InvalidStatus) as err:
            await connect(c.url, origin=ORIGIN)
        assert err.value.response.status_code == 401
    finally:
        await c.stop()


@run
async def test_foreign_origin_gets_403(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        with pytest.raises(InvalidStatus) as err:
            await c.connect("a1", origin="http://evil.example")
        assert err.value.response.status_code == 403
        client = await c.connect("a1", origin=None)  # not a browser: accepted by default
        await client.close()
    finally:
        await c.stop()


@run
async def test_frames_above_the_limit_close_with_1009(tmp_path):
    c = await start_console(tmp_path, max_frame_bytes=1024)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        await client.ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
        with pytest.raises(ConnectionClosed):
            await client.expect("pong")
        assert client.ws.close_code == 1009
    finally:
        await c.stop()


@run
async def test_bad_frames_get_errors_without_closing(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1", hello=False)
        assert (await client.request("accept", offer_id="o1"))["code"] == m.BAD_MESSAGE
        await client.ws.send("{nope")
        assert (await client.expect("error"))["code"] == m.BAD_MESSAGE
        assert (await client.request("launch_rockets"))["code"] == m.UNKNOWN_TYPE
        await client.send({"type": "hello", "v": 1})
        await client.expect("welcome")
        assert (await client.request("accept"))["code"] == m.BAD_MESSAGE
        err = await client.request("accept", offer_id="o99")
        assert err["code"] == "offer_not_current" and "Traceback" not in err["message"]
        assert (await client.request("ping"))["type"] == "pong"
    finally:
        await c.stop()


@run
async def test_unsupported_version_and_unknown_agent_are_closed(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1", hello=False)
        await client.send({"type": "hello", "v": 99})
        assert (await client.expect("error"))["code"] == m.UNSUPPORTED_VERSION
        with pytest.raises(ConnectionClosed):
            await client.expect("never")
        assert client.ws.close_code == m.CLOSE_UNSUPPORTED_VERSION
        ghost = await c.connect("ghost", hello=False)
        await ghost.send({"type": "hello", "v": 1})
        assert (await ghost.expect("error"))["code"] == "unknown_agent"
    finally:
        await c.stop()


@run
async def test_offer_accept_complete_with_customer_history(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        old = await c.mail(subject="Earlier question", text="First line\nsecond")
        client = await c.connect("a1")
        assert (await client.request("presence", status="available"))["type"] == "ok"
        offer = await client.expect("offer")
        assert offer["task"]["id"] == old.id
        assert (await client.request("reject", offer_id=offer["offer_id"], reason="later")
                )["type"] == "ok"
        await c.sessions.set_status("a1", "available")  # rejected: nobody else; new task now
        task = await c.mail(subject="Invoice 12", html="<p>Hi <b>there</b></p><script>x()</script>")
        offer = await client.expect("offer")
        assert offer["task"]["id"] == task.id and offer["expires_in"] > 50
        assert offer["task"]["attributes"]["text"] == "Hi there"
        assert "html" not in offer["task"]["attributes"]
        customer = offer["customer"]
        assert customer["name"] == "Ann Example"
        assert customer["identities"] == [{"kind": "email", "value": "ann@example.org"}]
        assert [e["task_id"] for e in customer["timeline"]] == [task.id, old.id]
        assert customer["timeline"][1]["subject"] == "Earlier question"
        assert customer["timeline"][1]["preview"] == "First line\nsecond"
        assert (await client.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        assigned = await client.expect("assigned")
        assert assigned["task"]["id"] == task.id and assigned["task"]["state"] == "assigned"
        done = await client.request("complete", task_id=task.id, disposition="solved",
                                    notes="explained the invoice")
        assert done["type"] == "ok"
        closed = await client.expect("task_closed")
        assert closed == {"type": "task_closed", "task_id": task.id, "state": "completed",
                          "reason": "solved", "by": "agent:a1"}
        late = await client.request("accept", offer_id=offer["offer_id"])
        assert late["code"] == "offer_not_current"
    finally:
        await c.stop()


@run
async def test_reject_goes_to_the_next_agent(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        one, two = await c.connect("a1"), await c.connect("a2")
        await one.request("presence", status="available")
        await two.request("presence", status="available")
        task = await c.call()
        first, other = (one, two) if c.router.tasks[task.id].agent_id == "a1" else (two, one)
        offer = await first.expect("offer")
        assert offer["task"]["channel"] == "phone"
        await first.request("reject", offer_id=offer["offer_id"], reason="on a break soon")
        assert (await other.expect("offer"))["task"]["id"] == task.id
    finally:
        await c.stop()


@run
async def test_offer_timeout_makes_the_agent_not_responding(tmp_path):
    queue = Queue("support", requirement={"support": 5}, offer_timeout=QUICK_OFFERS)
    c = await start_console(tmp_path, queue=queue)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        await client.request("presence", status="available")
        task = await c.call()
        offer = await client.expect("offer")
        cancelled = await client.expect("offer_cancelled")
        assert cancelled == {"type": "offer_cancelled", "offer_id": offer["offer_id"],
                             "task_id": task.id, "reason": "expired"}
        await client.expect(lambda f: f["type"] == "presence"
                            and f["status"] == "not_responding")
        await client.request("presence", status="available")
        assert (await client.expect("offer"))["task"]["id"] == task.id  # back at the head
    finally:
        await c.stop()


@run
async def test_socket_drop_mid_offer_gives_the_task_back(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        one = await c.connect("a1")
        await one.request("presence", status="available")
        task = await c.call()
        await one.expect("offer")
        two = await c.connect("a2")
        await two.request("presence", status="available")
        one.ws.transport.abort()
        assert (await two.expect("offer"))["task"]["id"] == task.id
        assert c.router.agents["a1"].status.value == "not_responding"
        events = [e.kind for e in c.store._task_events if e.task_id == task.id]
        assert "offer.expired" in events
    finally:
        await c.stop()


@run
async def test_second_connection_displaces_the_first_and_keeps_the_work(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        first = await c.connect("a1")
        await first.request("presence", status="available")
        task = await c.mail()
        await first.request("accept", offer_id=(await first.expect("offer"))["offer_id"])
        second = await c.connect("a1")
        with pytest.raises(ConnectionClosed):
            await first.expect("never")
        assert first.ws.close_code == m.CLOSE_DISPLACED
        assert first.ws.close_reason == m.DISPLACED_REASON
        assert [t["id"] for t in second.welcome["tasks"]] == [task.id]
        assert second.welcome["tasks"][0]["customer"]["name"] == "Ann Example"
        await asyncio.sleep(0.1)
        assert c.router.agents["a1"].status.value == "available"  # displacement is no drop
        assert (await second.request("complete", task_id=task.id, disposition="ok")
                )["type"] == "ok"
    finally:
        await c.stop()


@run
async def test_a_dropped_agent_keeps_tasks_for_the_grace_period_then_they_go_back(tmp_path):
    c = await start_console(tmp_path, grace_seconds=0.5)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        one = await c.connect("a1")
        await one.request("presence", status="available")
        task = await c.call()
        await one.request("accept", offer_id=(await one.expect("offer"))["offer_id"])
        await one.close()
        again = await c.connect("a1")  # back within the grace period: nothing lost
        assert [t["id"] for t in again.welcome["tasks"]] == [task.id]
        await asyncio.sleep(0.7)
        assert c.router.tasks[task.id].agent_id == "a1"
        again.ws.transport.abort()
        two = await c.connect("a2")
        await two.request("presence", status="available")
        offer = await two.expect("offer", timeout=3)  # after the grace period
        assert offer["task"]["id"] == task.id
        kinds = [e.kind for e in c.store._task_events if e.task_id == task.id]
        assert "task.requeued" in kinds
        assert c.router.agents["a1"].status.value == "offline"
    finally:
        await c.stop()


@run
async def test_nobody_acts_on_another_agents_offer_or_task(tmp_path, caplog):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        one, two = await c.connect("a1"), await c.connect("a2")
        await one.request("presence", status="available")
        task = await c.mail()
        offer = await one.expect("offer")
        for req in [("accept", {"offer_id": offer["offer_id"]}),
                    ("reject", {"offer_id": offer["offer_id"]})]:
            assert (await two.request(req[0], **req[1]))["code"] == m.FORBIDDEN
        await one.request("accept", offer_id=offer["offer_id"])
        for req in [("complete", {"task_id": task.id, "disposition": "x"}),
                    ("wrap_up", {"task_id": task.id}),
                    ("reply", {"task_id": task.id, "text": "hi"}),
                    ("transfer", {"task_id": task.id, "to_queue": "support"}),
                    ("history", {"customer_id": task.customer_id}),
                    ("merge", {"survivor_id": task.customer_id, "merged_id": "x"})]:
            assert (await two.request(req[0], **req[1]))["code"] == m.FORBIDDEN, req
        assert "forbidden" in caplog.text
        assert c.router.tasks[task.id].agent_id == "a1"
        history = await one.request("history", customer_id=task.customer_id)
        assert history["type"] == "history" and history["customer"]["timeline"]
    finally:
        await c.stop()


@run
async def test_reply_goes_to_the_email_hook_or_is_not_available(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        await client.request("presence", status="available")
        task = await c.mail()
        await client.request("accept", offer_id=(await client.expect("offer"))["offer_id"])
        answer = await client.request("reply", task_id=task.id, text="Dear Ann, ...")
        assert answer["code"] == m.NOT_AVAILABLE
        heard = []
        c.desks.on_reply(lambda *args: heard.append(args))
        assert (await client.request("reply", task_id=task.id, text="Dear Ann, ..."))["type"] == "ok"
        assert heard == [("a1", task.id, "Dear Ann, ...")]
    finally:
        await c.stop()


@run
async def test_per_channel_presence_and_breaks(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        await client.request("presence", status="available", channels={"phone": False})
        frame = await client.expect(lambda f: f["type"] == "presence"
                                    and f["channels"] == {"email": True, "phone": False})
        await c.call()
        await client.request("ping")
        assert not [f for f in client.seen if f["type"] == "offer"]  # no calls now
        task = await c.mail()
        assert (await client.expect("offer"))["task"]["id"] == task.id
        assert frame["status"] in ("offline", "available")
        await client.request("presence", status="break", reason="lunch")
        pres = await client.expect(lambda f: f["type"] == "presence" and f["status"] == "break")
        assert pres["reason"] == "lunch"
        assert (await client.request("presence", channels={"email": False, "phone": False})
                )["code"] == "invalid_value"
        # Presence, not configuration: the stored agent still handles both channels.
        (stored,) = [a for a in await to_future(c.store.list_agents()) if a.id == "a1"]
        assert stored.channels == {Channel.EMAIL, Channel.PHONE}
    finally:
        await c.stop()


@run
async def test_supervisors_get_queue_snapshots_and_merge_customers(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        mail, call = await c.mail(), await c.call()
        sup = await c.connect("boss", role="supervisor")
        snapshot = await sup.expect("queues")
        phone = [q for q in snapshot["queues"] if q["channel"] == "phone"][0]
        assert phone["waiting"] == 1 and phone["queue"] == "support"
        await sup.expect("queues", timeout=2)  # periodic
        merged_id = call.customer_id
        done = await sup.request("merge", survivor_id=mail.customer_id, merged_id=merged_id)
        assert done["type"] == "ok" and done["task_ids"] == [call.id]
        view = await sup.request("history", customer_id=mail.customer_id)
        assert {e["task_id"] for e in view["customer"]["timeline"]} == {mail.id, call.id}
        audit = [e for e in c.store.agent_events if e.kind == "customer.merged"]
        assert audit[0].agent_id == "boss"
    finally:
        await c.stop()


@run
async def test_transfer_to_another_queue_and_to_a_named_agent(tmp_path):
    from dispatcher.aio import to_future
    from dispatcher.domain.agents import Agent

    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    await to_future(ensureDeferred(c.configuration.change_queue(Queue("billing"))))
    await to_future(ensureDeferred(c.configuration.change_agent(
        Agent("b1", name="B1", queues={"billing"}))))
    try:
        a1, a2, b1 = await c.connect("a1"), await c.connect("a2"), await c.connect("b1")
        await a1.request("presence", status="available")
        task = await c.mail(subject="Refund")
        offer = await a1.expect("offer")
        await a1.request("accept", offer_id=offer["offer_id"])
        await a1.expect("assigned")
        await b1.request("presence", status="available")

        moved = await a1.request("transfer", task_id=task.id, to_queue="billing")
        assert moved["type"] == "ok", moved
        offer = await b1.expect("offer")
        assert offer["task"]["id"] == task.id and offer["task"]["queue"] == "billing"
        await b1.request("accept", offer_id=offer["offer_id"])
        await b1.expect("assigned")

        busy = await b1.request("transfer", task_id=task.id, to_agent="a2")
        assert busy["code"] == "not_eligible"  # a2 is not available
        await a2.request("presence", status="available")
        handed = await b1.request("transfer", task_id=task.id, to_agent="a2")
        assert handed["type"] == "ok", handed
        offer = await a2.expect("offer")
        assert offer["task"]["id"] == task.id
        other = await a1.request("transfer", task_id=task.id, to_queue="support")
        assert other["code"] == "forbidden"  # not a1's task any more
    finally:
        await c.stop()


@run
async def test_frame_rules_are_the_ctis(tmp_path):
    """The console reads frames as the CTI does (dispatcher.service.wire.read_frame): an `id` is
    a string or an integer — `true` used to be taken for 1 here and refused there — and frames
    are text; each refusal is a bad_message and the socket stays open."""
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        for rid in (True, False, 1.5, [1]):
            await client.send({"type": "ping", "id": rid})
            err = await client.expect("error")
            assert (err["code"], err["re"]) == (m.BAD_MESSAGE, None), rid
            assert "string or an integer" in err["message"]
        await client.ws.send(json.dumps({"type": "ping", "id": 4}).encode())  # a binary frame
        err = await client.expect("error")
        assert (err["code"], err["message"]) == (m.BAD_MESSAGE, "frames are JSON text")
        for rid in ("p-1", 0, 2**70):
            await client.send({"type": "ping", "id": rid})
            assert (await client.expect("pong"))["re"] == rid
        await client.send({"type": "launch_rockets", "id": "r"})
        err = await client.expect("error")
        assert (err["code"], err["re"]) == (m.UNKNOWN_TYPE, "r")
    finally:
        await c.stop()


@run
async def test_presence_is_pushed_when_it_changes_never_twice_the_same(tmp_path):
    """Over the socket, through an offer, its accept and the completion: each presence frame
    differs from the one before it (the accept leaves the agent `busy`, as the offer did), and
    the agent sees every change: available, busy, available."""
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        received: list[dict] = []  # every frame, in order
        recv = client.ws.recv

        async def recording() -> str:
            raw = await recv()
            received.append(json.loads(raw))
            return raw
        client.ws.recv = recording
        await client.request("presence", status="available")
        await client.expect(lambda f: f["type"] == "presence" and f["presence"] == "available")
        task = await c.mail(subject="Invoice 12", text="Hello")
        offer = await client.expect("offer")
        await client.request("accept", offer_id=offer["offer_id"])
        await client.expect("assigned")
        await client.request("complete", task_id=task.id, disposition="solved")
        await client.expect("task_closed")
        await client.expect(lambda f: f["type"] == "presence" and f["presence"] == "available")
        await client.request("presence", status="available")  # no change: no frame
        presence = [f for f in received if f["type"] == "presence"]
        assert [f["presence"] for f in presence] == ["available", "busy", "available"]
        assert all(a != b for a, b in zip(presence, presence[1:], strict=False))
        kinds = [f["type"] for f in received if f["type"] != "ok"]
        assert kinds.index("offer") < kinds.index("assigned") < kinds.index("task_closed")
    finally:
        await c.stop()


async def available_and_recorded(c, agent_id: str) -> tuple[Any, list[bytes]]:
    """The agent connected and available, and what the server's socket writes to them from now
    on, one item per write (the transport's own `write`, under dispatcher/held_writes.py)."""
    client = await c.connect(agent_id)
    await client.request("presence", status="available")
    await client.expect(lambda f: f["type"] == "presence" and f["presence"] == "available")
    transport = c.desks.by_agent[agent_id].ws.held_writes.transport
    writes: list[bytes] = []
    write = transport.write

    def recording(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)
    transport.write = recording
    return client, writes


@run
async def test_the_frames_of_one_decision_leave_in_one_write(tmp_path):
    """A decision's frames for one agent are pushed together: the offer of a call and the
    presence it makes `busy`; the call's completion and the presence back to `available`. Each
    pair reaches the agent in that order, sent by one write on the server's socket
    (dispatcher/held_writes.py), not a write each."""
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client, writes = await available_and_recorded(c, "a1")
        task = await c.call()
        offer = await client.expect("offer")
        await client.expect(lambda f: f["type"] == "presence" and f["presence"] == "busy")
        [both] = [w for w in writes if b'"offer"' in w]
        assert b'"presence"' in both and both.index(b'"offer"') < both.index(b'"presence"')
        await client.request("accept", offer_id=offer["offer_id"])
        await client.expect("assigned")
        await client.request("complete", task_id=task.id, disposition="solved")
        assert (await client.expect("task_closed"))["task_id"] == task.id
        await client.expect(lambda f: f["type"] == "presence" and f["presence"] == "available")
        [both] = [w for w in writes if b'"task_closed"' in w]
        assert b'"presence"' in both and both.index(b'"task_closed"') < both.index(b'"presence"')
    finally:
        await c.stop()


@run
async def test_a_commands_ok_leaves_with_the_frames_of_its_outcome(tmp_path):
    """On a database the commit ends on a later turn of the loop than the command. The `ok` of
    an accept still leaves in the same write as the `assigned` frame, and the `ok` of a
    completion with the task closed and the presence; in that order, each behind its frames."""
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    record = c.store.record

    def committed_later(changes):  # as a thread's commit: it fires on a later turn
        d = Deferred()
        done = record(changes)
        asyncio.get_running_loop().call_later(0.001, done.chainDeferred, d)
        return d
    c.store.record = committed_later
    try:
        client, writes = await available_and_recorded(c, "a1")
        task = await c.call()
        offer = await client.expect("offer")
        accept = await client.request("accept", offer_id=offer["offer_id"])
        await client.expect("assigned")
        ok = b'"re":%d' % accept["re"]
        [both] = [w for w in writes if b'"assigned"' in w]
        assert ok in both and both.index(b'"assigned"') < both.index(ok)
        done = await client.request("complete", task_id=task.id, disposition="solved")
        await client.expect("task_closed")
        ok = b'"re":%d' % done["re"]
        [all_three] = [w for w in writes if b'"task_closed"' in w]
        assert (all_three.index(b'"task_closed"') < all_three.index(b'"presence"')
                < all_three.index(ok))
    finally:
        await c.stop()
