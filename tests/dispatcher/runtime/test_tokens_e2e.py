"""Tokens against a real `switchboard serve` (SQLite, e-mail desk, console, CTI), as clients use
them: a `websockets` client with the token in the subprotocol, in the query string and in an
`Authorization` header, `POST /login` and `/login/refresh`, `/report`, the CTI's WebSocket and
`POST /cti/events`. The server runs at DEBUG, where `websockets` logs whole handshakes; the log
must hold no token (nor its signature) at the end. An integration token cannot read a
customer's history; a token living longer than the maximum is refused; `switchboard token
revoke` (another process, same database) refuses the token's next connection and closes its
open session within the poll interval."""

from __future__ import annotations

import asyncio
import json
import secrets
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import jwt
import pytest
from twisted.internet.task import Clock
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.accounts import Accounts
from dispatcher.service.tokens import REVOCATION_POLL_SECONDS
from dispatcher.storage import schema
from dispatcher.storage.accounts import SqlAccounts
from tests.channels.email import running
from tests.dispatcher.runtime.running import desk_env, free_port, relay, run, serving
from tests.dispatcher.storage.wiring import wire

SECRET = b"tokens-e2e-secret-" + b"y" * 40
ORIGIN = "http://127.0.0.1:8080"
PASSWORD = "correct horse battery"
WAIT_SECONDS = 30.0
# Every token this module hands the server: none may appear in its log.
SEEN: list[str] = []


def token(sub: str, role: str, lifetime: int = 600, jti: str | None = None,
          iat: float | None = None) -> str:
    now = int(time.time()) if iat is None else iat
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + lifetime,
              "iss": "switchboard", "aud": "switchboard-console"}
    if jti is not None:
        claims["jti"] = jti
    made = jwt.encode(claims, SECRET, algorithm="HS256")
    SEEN.append(made)
    return made


def prepare(url: str) -> None:
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        for agent_id in ("a1", "a2"):
            w.wait(w.store.put_agent(Agent(agent_id, name=agent_id.upper(), queues={"support"},
                                           capacity={Channel.EMAIL: 3},
                                           channels={Channel.EMAIL})))
        accounts = Accounts(SqlAccounts(w.pool), w.store, Clock())
        w.wait(accounts.set("boss", "supervisor", "Boss", password=PASSWORD))
    finally:
        w.close()


@dataclass
class Served:
    url: str
    tmp: Path
    env: dict
    smtp: int
    ws: int
    http: int
    cti: int
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("tokens-e2e")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    cti = free_port()
    with relay() as (_sink, relay_port):
        env, ports = desk_env(
            tmp, url, relay_port, SECRET, SWITCHBOARD_LOG_LEVEL="DEBUG",
            SWITCHBOARD_EMAIL_ACK_QUEUES="", SWITCHBOARD_EMAIL_FORM_QUEUE="support",
            SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_SIP_ENABLED="false",
            SWITCHBOARD_PHONE_CTI_ENABLED="true", SWITCHBOARD_PHONE_CTI_PORT=str(cti),
            SWITCHBOARD_PHONE_CTI_JWT_SECRET_FILE=str(tmp / "console.secret"),
            SWITCHBOARD_PHONE_CTI_DEFAULT_QUEUE="support")
        with serving(tmp, env, (ports.smtp, ports.ws, ports.http, cti)) as log:
            yield Served(url, tmp, env, ports.smtp, ports.ws, ports.http, cti, log)


# ---------------------------------------------------------------------- clients


class Client:
    def __init__(self, ws) -> None:
        self.ws, self.seen, self.n = ws, [], 0

    async def request(self, type_: str, **fields):
        self.n += 1
        await self.ws.send(json.dumps({"type": type_, "id": self.n, **fields}))
        return await self.expect(lambda f, n=self.n: f.get("re") == n)

    async def expect(self, what):
        match = (lambda f: f["type"] == what) if isinstance(what, str) else what
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                frame = json.loads(await self.ws.recv())
                if match(frame):
                    return frame


async def console(port: int, bearer: str, *, in_query: bool = False) -> Client:
    path = f"/?access_token={bearer}" if in_query else "/"
    protocols = ["switchboard.v1"] + ([] if in_query else [f"bearer.{bearer}"])
    ws = await connect(f"ws://127.0.0.1:{port}{path}", subprotocols=protocols, origin=ORIGIN,
                       compression=None, open_timeout=10)
    c = Client(ws)
    await ws.send(json.dumps({"type": "hello", "v": 1}))
    await c.expect("welcome")
    return c


async def refused(port: int, bearer: str) -> int:
    """The HTTP status of a console handshake with this token (101: accepted)."""
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/",
                           subprotocols=["switchboard.v1", f"bearer.{bearer}"], origin=ORIGIN,
                           compression=None, open_timeout=10)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def closed_within(c: Client, seconds: float) -> int | None:
    """The close code of `c`'s socket once the server closes it (None: still open)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await c.ws.recv()
    except ConnectionClosed:
        return c.ws.close_code
    except TimeoutError:
        return None


def http(method: str, url: str, body: bytes | None = None, **headers: str
         ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def customer_of_new_mail(served: Served) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Cara <cara@customer.org>", "support@example.com"
    msg["Subject"], msg["Message-ID"] = "My order", "<tok-1@customer.org>"
    msg.set_content("Where is it?")
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as smtp:
        smtp.send_message(msg)
    rows = running.rows(served.url, "select customer_id from tasks")
    assert rows, "the mail was acknowledged, so its task is committed"
    return rows[0][0]


# ---------------------------------------------------------------------- tests


@pytest.mark.slow
def test_an_integration_token_reads_no_customer_history(served: Served) -> None:
    customer = customer_of_new_mail(served)

    async def scenario():
        boss = await console(served.ws, token("boss", "supervisor"))
        seen = await boss.request("history", customer_id=customer)
        pbx = await console(served.ws, token("pbx1", "integration"))
        refused_ = await pbx.request("history", customer_id=customer)
        await boss.ws.close()
        await pbx.ws.close()
        return seen, refused_

    seen, refused_ = asyncio.run(scenario())
    assert seen["type"] == "history" and seen["customer"]["id"] == customer
    assert refused_["type"] == "error" and refused_["code"] == "forbidden", refused_
    assert "customer" not in refused_


@pytest.mark.slow
def test_a_token_living_longer_than_the_maximum_is_refused(served: Served) -> None:
    assert asyncio.run(refused(served.ws, token("a1", "agent", lifetime=13 * 3600))) == 401
    assert asyncio.run(refused(served.ws, token("a1", "agent", lifetime=11 * 3600))) == 101


@pytest.mark.slow
def test_a_token_revoked_by_the_cli_is_refused_and_its_session_closed(served: Served) -> None:
    jti = secrets.token_hex(16)  # as issued: never starts with "-" (an option to argparse)
    bearer, other = token("a1", "agent", jti=jti), token("a2", "agent", jti="kept")

    async def scenario():
        c = await console(served.ws, bearer)
        keeps = await console(served.ws, other)
        made = await asyncio.to_thread(run, "token", "revoke", "--jti", jti,
                                       cwd=served.tmp, env=served.env)
        assert made.code == 0, made.err
        started = time.monotonic()
        code = await closed_within(c, REVOCATION_POLL_SECONDS + 10)
        took = time.monotonic() - started
        pong = await keeps.request("ping")
        await keeps.ws.close()
        return code, took, pong, await refused(served.ws, bearer)

    code, took, pong, status = asyncio.run(scenario())
    assert code == 4007, code
    assert took < REVOCATION_POLL_SECONDS + 10
    assert pong["type"] == "pong"  # another token of another agent is untouched
    assert status == 401
    print(f"revoked session closed {took:.1f} s after the CLI returned")


@pytest.mark.slow
def test_a_pbx_link_of_a_revoked_token_is_closed_and_refused(served: Served) -> None:
    jti = secrets.token_hex(16)  # as issued: never starts with "-" (an option to argparse)
    bearer = token("pbx9", "integration", lifetime=365 * 86400, jti=jti)

    async def link():
        return await connect(f"ws://127.0.0.1:{served.cti}/",
                             subprotocols=["switchboard.cti.v1", f"bearer.{bearer}"],
                             compression=None, open_timeout=10)

    async def scenario():
        ws = await link()
        assert json.loads(await ws.recv())["type"] == "welcome"
        made = await asyncio.to_thread(run, "token", "revoke", "--jti", jti,
                                       cwd=served.tmp, env=served.env)
        assert made.code == 0, made.err
        code = await closed_within(Client(ws), REVOCATION_POLL_SECONDS + 10)
        try:
            await link()
        except InvalidStatus as exc:
            return code, exc.response.status_code
        return code, 101

    assert asyncio.run(scenario()) == (4007, 401)


@pytest.mark.slow
def test_revoking_a_subject_refuses_its_older_tokens_only(served: Served) -> None:
    old = token("boss", "supervisor", iat=int(time.time()) - 5)

    async def scenario():
        c = await console(served.ws, old)
        made = await asyncio.to_thread(run, "token", "revoke", "--subject", "boss",
                                       cwd=served.tmp, env=served.env)
        assert made.code == 0, made.err
        code = await closed_within(c, REVOCATION_POLL_SECONDS + 10)
        await asyncio.sleep(0.01)
        fresh = token("boss", "supervisor", iat=time.time() + 1)
        return code, await refused(served.ws, old), await refused(served.ws, fresh)

    code, old_status, fresh_status = asyncio.run(scenario())
    assert (code, old_status, fresh_status) == (4007, 401, 101)


@pytest.mark.slow
def test_no_token_reaches_the_log_at_debug(served: Served) -> None:
    base = f"http://127.0.0.1:{served.http}"

    async def sockets():
        c = await console(served.ws, token("a1", "agent"))
        await c.ws.close()
        q = await console(served.ws, token("a1", "agent"), in_query=True)
        await q.ws.close()
        await refused(served.ws, token("a1", "agent", lifetime=13 * 3600))
        await refused(served.ws, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")  # alg none
        SEEN.append("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
        pbx = token("pbx1", "integration")
        for kwargs in ({"subprotocols": ["switchboard.cti.v1", f"bearer.{pbx}"]},
                       {"additional_headers": {"Authorization": f"Bearer {pbx}"},
                        "subprotocols": ["switchboard.cti.v1"]}):
            ws = await connect(f"ws://127.0.0.1:{served.cti}/", compression=None,
                               open_timeout=10, **kwargs)
            await ws.recv()
            await ws.close()
        ws = await connect(f"ws://127.0.0.1:{served.cti}/?access_token={pbx}",
                           subprotocols=["switchboard.cti.v1"], compression=None,
                           open_timeout=10)
        await ws.close()

    asyncio.run(sockets())
    boss = token("boss", "supervisor")
    assert http("GET", f"{base}/report?access_token={boss}")[0] == 401
    assert http("GET", f"{base}/report?from=2026-01-01&to=2026-01-02",
                Authorization=f"Bearer {boss}")[0] == 200
    status, body = http("POST", f"{base}/login",
                        json.dumps({"id": "boss", "password": PASSWORD}).encode(),
                        **{"Content-Type": "application/json", "Origin": ORIGIN})
    assert status == 200, body
    issued = json.loads(body)["token"]
    SEEN.append(issued)
    status, body = http("POST", f"{base}/login/refresh", b"",
                        Authorization=f"Bearer {issued}", Origin=ORIGIN)
    assert status == 200, body
    SEEN.append(json.loads(body)["token"])
    status, _ = http("POST", f"{base}/cti/events",
                     json.dumps({"type": "call.arrived", "call_id": "c-log",
                                 "caller": "+3225550111"}).encode(),
                     Authorization=f"Bearer {pbx_token()}",
                     **{"Content-Type": "application/json"})
    assert status < 500
    time.sleep(0.5)  # let the last lines reach the file
    text = served.log.read_text(errors="replace")
    assert "websockets" in text or "GET /" in text or "< GET" in text  # DEBUG lines exist
    leaks = [t[:20] for t in SEEN if t in text or t.rsplit(".", 1)[-1] and
             len(t.rsplit(".", 1)[-1]) > 10 and t.rsplit(".", 1)[-1] in text]
    assert not leaks, leaks
    assert PASSWORD not in text


def pbx_token() -> str:
    return token("pbx1", "integration")


# ---------------------------------------------------------------------- page headers

PAGES = ("/", "/wallboard", "/supervisor", "/console/config.json", "/console/static/console.js",
         "/help", "/help?q=parcel", "/forms/contact")


def fetch(port: int, path: str, host: str, **headers: str):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        answer = conn.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_headers_and_the_host_never_enters_the_csp(served: Served,
                                                                      path: str) -> None:
    status, plain = fetch(served.http, path, f"127.0.0.1:{served.http}")
    assert status == 200, (path, status)
    csp = plain["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert plain["x-content-type-options"] == "nosniff"
    assert plain["referrer-policy"] == "no-referrer"
    _, evil = fetch(served.http, path, 'evil"; script-src *; x')
    assert evil["content-security-policy"] == csp
    assert "evil" not in evil["content-security-policy"]


@pytest.mark.slow
def test_the_report_has_the_headers(served: Served) -> None:
    bearer = token("boss", "supervisor")
    status, headers = fetch(served.http, "/report?from=2026-01-01&to=2026-01-02&format=html",
                            'evil"; script-src *', Authorization=f"Bearer {bearer}")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "evil" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.slow
def test_an_integration_token_named_like_an_agent_never_acts_as_that_agent(served: Served
                                                                            ) -> None:
    async def scenario():
        ws = await connect(f"ws://127.0.0.1:{served.ws}/",
                           subprotocols=["switchboard.v1", f"bearer.{token('a1', 'integration')}"],
                           origin=ORIGIN, compression=None, open_timeout=10)
        await ws.send(json.dumps({"type": "hello", "v": 1}))
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "welcome":
                    break
        await ws.send(json.dumps({"type": "presence", "id": 1, "status": "available"}))
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("re") == 1:
                    break
        await ws.close()
        return frame, answer

    welcome, answer = asyncio.run(scenario())
    assert welcome["agent"] is None, welcome
    assert answer["type"] == "error", answer
