"""Hostile input against a running `switchboard serve` (the e-mail edge with its web form, the
console, the phone edge's CTI), sent as an attacker would, answered with each protocol's own
error, never a traceback in the log, and the server still answering afterwards:
- the contact form with U+2028 and a form feed in the subject: 200 and a request number, the
  subject stored clean, the message as typed;
- JSON nested 30,000 deep (in 64 KB) to the console WebSocket, the CTI WebSocket, POST
  /cti/events, the form's JSON, and POST /login (2,000 deep: its body limit is 4 KB);
- `%00` in a static path: 404;
- a burst of forbidden console requests and of refused handshakes: a couple of log lines, not
  one per request."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.channels.email import running
from tests.dispatcher.runtime.running import desk_env, free_port, prepare_support, relay, serving
from tests.dispatcher.runtime.test_answers_e2e import SECRET, Client, console, token

WAIT_SECONDS = 30.0
DEEP = 30_000
ORIGIN = "http://127.0.0.1:8080"
CLEAN_SUBJECT = "Broken router it blinks"


def deep_frame() -> str:
    """A console/CTI frame whose `data` nests DEEP arrays: 60,025 bytes."""
    return '{"type":"ping","id":7,"data":' + "[" * DEEP + "]" * DEEP + "}"


@dataclass
class Served:
    url: str
    http_port: int
    ws_port: int
    cti_port: int
    log: Path

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=WAIT_SECONDS)
        try:
            conn.request(method, path, body, headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_no_traceback(self) -> None:
        text = self.text()
        for bad in ("Traceback", "RecursionError", "CRITICAL", "Unhandled Error"):
            assert bad not in text, f"{bad} in serve's log: {text[-4000:]}"


def prepare(url: str) -> None:
    prepare_support(url)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hostile-e2e")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    cti_port = free_port()
    with relay() as (_, relay_port):
        env, ports = desk_env(
            tmp, url, relay_port, SECRET, SWITCHBOARD_EMAIL_FROM_ADDRESS="help@example.com",
            SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support", SWITCHBOARD_LOG_LEVEL="INFO",
            SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_SIP_ENABLED="false",
            SWITCHBOARD_PHONE_CTI_ENABLED="true", SWITCHBOARD_PHONE_CTI_PORT=str(cti_port),
            SWITCHBOARD_PHONE_CTI_JWT_SECRET_FILE=str(tmp / "console.secret"),
            SWITCHBOARD_PHONE_CTI_DEFAULT_QUEUE="support")
        with serving(tmp, env, (ports.smtp, ports.ws, ports.http, cti_port)) as log:
            yield Served(url, ports.http, ports.ws, cti_port, log)


async def pbx(served: Served) -> Client:
    ws = await connect(f"ws://127.0.0.1:{served.cti_port}/",
                       subprotocols=["switchboard.cti.v1"],
                       additional_headers={"Authorization": f"Bearer {token('pbx1', 'integration')}"},
                       compression=None, open_timeout=10)
    client = Client(ws)
    await client.expect("welcome")
    return client


# ---------------------------------------------------------------------- the contact form


@pytest.mark.parametrize("as_json", [False, True], ids=["form-encoded", "json"])
def test_a_subject_with_a_line_separator_and_a_form_feed_is_stored_clean(served: Served,
                                                                        as_json: bool) -> None:
    fields = {"name": "Eve\u2028Example", "email": f"eve{int(as_json)}@customer.org",
              "subject": "Broken router\u2028it\x0cblinks",
              "message": "Line one\u2028line two\x0cpage two"}
    body = json.dumps(fields).encode() if as_json else urlencode(fields).encode()
    ctype = "application/json" if as_json else "application/x-www-form-urlencoded"
    status, raw = served.request("POST", "/forms/contact", body,
                                 {"Content-Type": ctype, "Accept": "application/json"})
    assert status == 200, raw
    request = json.loads(raw)["request"]
    assert request
    rows = running.rows(served.url, "select m.subject, m.text_body, t.attributes from "
                        "email_messages m join tasks t on t.id = m.task_id where m.from_addr = "
                        ":a", a=fields["email"])
    assert len(rows) == 1
    subject, text, attributes = rows[0]
    assert subject == CLEAN_SUBJECT
    attributes = json.loads(attributes) if isinstance(attributes, str) else attributes
    assert attributes["subject"] == CLEAN_SUBJECT
    assert "Line one\u2028line two\x0cpage two" in text  # the body as typed
    served.assert_no_traceback()


# ---------------------------------------------------------------------- deep JSON


def test_deep_json_on_the_console_socket_is_a_bad_message(served: Served) -> None:
    async def walk() -> None:
        agent = await console(served.ws_port, "a1", "agent")
        try:
            await agent.ws.send(deep_frame())
            answer = await agent.expect("error")
            assert (answer["code"], answer["re"]) == ("bad_message", None)
            assert "nested deeper than 32" in answer["message"]
            assert (await agent.request("ping"))["type"] == "pong"
        finally:
            await agent.ws.close()

    asyncio.run(asyncio.wait_for(walk(), WAIT_SECONDS))
    served.assert_no_traceback()


def test_deep_json_on_the_cti_socket_is_a_bad_message(served: Served) -> None:
    async def walk() -> None:
        client = await pbx(served)
        try:
            await client.ws.send(deep_frame())
            answer = await client.expect("error")
            assert answer["code"] == "bad_message" and "deeper" in answer["message"]
            assert (await client.request("ping"))["type"] == "pong"
        finally:
            await client.ws.close()

    asyncio.run(asyncio.wait_for(walk(), WAIT_SECONDS))
    served.assert_no_traceback()


def cti_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {token('pbx1', 'integration')}",
            "Content-Type": "application/json"}


# path, body, headers, the error field and code of the JSON answer
DEEP_POSTS = {
    "cti-events": ("/cti/events", deep_frame(), cti_headers, "code", "bad_message"),
    "form": ("/forms/contact", '{"name":"x","subject":' + "[" * DEEP + "]" * DEEP + "}",
             lambda: {"Content-Type": "application/json"}, "error", "bad_request"),
    # its body limit is 4 KB: 2,000 levels, twice the interpreter's recursion limit
    "login": ("/login", '{"id":"a1","password":' + "[" * 2000 + "]" * 2000 + "}",
              lambda: {"Content-Type": "application/json", "Origin": ORIGIN}, "error",
              "bad_request"),
}


@pytest.mark.parametrize("name", list(DEEP_POSTS))
def test_deep_json_over_http_is_400_with_a_json_error(served: Served, name: str) -> None:
    path, body, headers, field, code = DEEP_POSTS[name]
    status, raw = served.request("POST", path, body.encode(), headers())
    assert status == 400, raw
    answer = json.loads(raw)
    assert answer[field] == code and "deeper than 32" in answer["message"], answer
    # still answering
    status, raw = served.request("POST", "/cti/events", b'{"type":"ping","id":1}',
                                 cti_headers())
    assert (status, json.loads(raw)["type"]) == (200, "pong")
    served.assert_no_traceback()


# ---------------------------------------------------------------------- static files


def test_a_nul_in_a_static_path_is_404(served: Served) -> None:
    for path in ("/console/static/%00x", "/console/static/console.js%00.png",
                 "/console/static/%ff"):
        status, _ = served.request("GET", path)
        assert status == 404, path
    assert served.request("GET", "/console/static/console.js")[0] == 200
    served.assert_no_traceback()


# ---------------------------------------------------------------------- log floods


def test_a_burst_of_refusals_writes_a_couple_of_lines(served: Served) -> None:
    burst = 500

    async def forbidden() -> None:
        agent = await console(served.ws_port, "a1", "agent")
        try:
            for n in range(burst):
                await agent.ws.send(json.dumps({"type": "merge", "id": n, "survivor_id": "c1",
                                                "merged_id": "c2"}))
            for n in range(burst):
                answer = await agent.expect(lambda f, n=n: f.get("re") == n)
                assert answer["code"] == "forbidden"
        finally:
            await agent.ws.close()

    async def bad_tokens() -> None:
        for _ in range(50):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"ws://127.0.0.1:{served.ws_port}/",
                              subprotocols=["switchboard.v1", "bearer.not-a-token"],
                              origin=ORIGIN, open_timeout=10)
            assert refused.value.response.status_code == 401

    async def bad_frames() -> None:
        client = await pbx(served)
        try:
            for n in range(burst):
                await client.ws.send(json.dumps({"type": "call.teleported", "id": n}))
            for n in range(burst):
                answer = await client.expect(lambda f, n=n: f.get("re") == n)
                assert answer["code"] == "unknown_type"
        finally:
            await client.ws.close()

    asyncio.run(asyncio.wait_for(forbidden(), 120))
    asyncio.run(asyncio.wait_for(bad_tokens(), 120))
    asyncio.run(asyncio.wait_for(bad_frames(), 120))
    for _ in range(50):
        status, _ = served.request("POST", "/cti/events", b'{"type":"ping"}',
                                   {"Authorization": "Bearer not-a-token",
                                    "Content-Type": "application/json"})
        assert status == 401
    lines = served.text().splitlines()
    for what in ("console: forbidden", "console: refused a token", "cti: bad message",
                 "cti: refused a token"):
        assert 1 <= len([x for x in lines if what in x]) <= 2, what
