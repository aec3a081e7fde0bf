"""Sign-in end to end, as an operator and an agent do it: the real `switchboard serve` on SQLite
with no token key file (the HS256 secret is the one kept in the database), accounts made with
the real `switchboard accounts set ... --password-file`, `POST /login` with urllib, the token
opening the console WebSocket (a `websockets` client), refresh, the rate limit, a disabled
account, `switchboard token` (refusing an unknown agent; run from another directory, its token
is accepted by the server), and the page itself in headless Chromium: nothing of the desk
before sign-in, a wrong password's message, then the desk. No token or password ever reaches
serve's log."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.storage import schema
from tests.agent_console.test_web import (
    ARTIFACTS,
    WAIT_MS,
    chromium,
    launch,
    watched_page,
)
from tests.dispatcher.runtime.running import base_env, free_port, run, serving, switchboard_command
from tests.dispatcher.runtime.test_answers_e2e import Client
from tests.dispatcher.storage.wiring import wire

AGENT_PASSWORD = "blue-harbour-42"
SUPERVISOR_PASSWORD = "quiet-lantern-77"
WAIT_SECONDS = 30.0
# Tokens from /login live this long here (15 min by default): the page renews them 60 s before
# they expire, so within seconds in this test.
LOGIN_TTL_SECONDS = 65


@dataclass
class Served:
    url: str
    http_port: int
    ws_port: int
    log: Path
    env: dict[str, str]
    tmp: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def origin(self) -> str:
        return self.base

    def cli(self, *args: str, cwd: Path | None = None):
        return run("--database", self.url, *args, cwd=cwd or self.tmp, env=self.env)

    def assert_never_logged(self, *secrets: str) -> None:
        text = self.log.read_text(errors="replace")
        for s in secrets:
            assert s not in text, "a secret reached serve's log"


def prepare(url: str) -> None:
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Martin", queues={"support"},
                                       capacity={Channel.EMAIL: 3, Channel.PHONE: 1},
                                       channels={Channel.EMAIL})))
    finally:
        w.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("login-e2e")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    (tmp / "agent.pw").write_text(AGENT_PASSWORD + "\n")
    http_port, ws_port = free_port(), free_port()
    env = base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(http_port),
                   SWITCHBOARD_CONSOLE_PORT=str(ws_port),
                   SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS=f"http://127.0.0.1:{http_port}",
                   SWITCHBOARD_CONSOLE_LOGIN_TOKEN_TTL_SECONDS=str(LOGIN_TTL_SECONDS),
                   SWITCHBOARD_EMAIL_ENABLED="false", SWITCHBOARD_LOG_LEVEL="INFO")
    made = run("--database", url, "accounts", "set", "a1", "--role", "agent",
               "--password-file", str(tmp / "agent.pw"), cwd=tmp, env=env)
    assert made.code == 0, made.err
    assert AGENT_PASSWORD not in made.out + made.err
    with serving(tmp, env, (ws_port, http_port), ("--database", url, "serve")) as log:
        yield Served(url, http_port, ws_port, log, env, tmp)


def login(served: Served, body: dict | bytes, source: str = "127.0.0.1",
          path: str = "/login", headers: dict | None = None) -> tuple[int, dict, dict]:
    """POST with http.client from a given loopback source address (each test its own, so
    that the per-address limit of one test does not reach another)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=WAIT_SECONDS,
                                      source_address=(source, 0))
    try:
        conn.request("POST", path, raw, {"Content-Type": "application/json",
                                         "Origin": served.origin, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}"), dict(resp.getheaders())
    finally:
        conn.close()


async def open_console(served: Served, token: str) -> Client:
    ws = await connect(f"ws://127.0.0.1:{served.ws_port}/",
                       subprotocols=["switchboard.v1", f"bearer.{token}"],
                       origin=served.origin, compression=None, open_timeout=10)
    client = Client(ws)
    await ws.send(json.dumps({"type": "hello", "v": 1}))
    return client


async def welcomed(served: Served, token: str) -> dict:
    client = await open_console(served, token)
    try:
        return await client.expect(lambda f: f["type"] in ("welcome", "error"))
    finally:
        await client.ws.close()


@pytest.mark.slow
def test_an_agent_signs_in_with_a_password_and_opens_the_console(served: Served) -> None:
    request = urllib.request.Request(
        f"{served.base}/login", method="POST",
        data=json.dumps({"id": "a1", "password": AGENT_PASSWORD}).encode(),
        headers={"Content-Type": "application/json", "Origin": served.origin})
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        signed = json.loads(resp.read())
    assert (signed["id"], signed["role"]) == ("a1", "agent")
    welcome = asyncio.run(asyncio.wait_for(welcomed(served, signed["token"]), 60))
    assert welcome["type"] == "welcome", welcome
    assert welcome["agent"]["name"] == "Alex Martin"

    # Refresh: a fresh token for the same account, which opens the console too.
    status, fresh, _ = login(served, b"", path="/login/refresh",
                             headers={"Authorization": f"Bearer {signed['token']}"})
    assert status == 200 and fresh["id"] == "a1" and fresh["expires_at"] >= signed["expires_at"]
    assert asyncio.run(asyncio.wait_for(welcomed(served, fresh["token"]), 60))["type"] == "welcome"
    assert login(served, b"", path="/login/refresh",
                 headers={"Authorization": "Bearer forged"})[0] == 401

    # A wrong password: 401, the same answer as an unknown id.
    wrong = login(served, {"id": "a1", "password": "not-it-at-all"}, source="127.0.0.2")
    unknown = login(served, {"id": "nobody", "password": AGENT_PASSWORD}, source="127.0.0.2")
    assert wrong[0] == unknown[0] == 401 and wrong[1] == unknown[1]
    served.assert_never_logged(signed["token"], fresh["token"], AGENT_PASSWORD,
                               "not-it-at-all")
    assert "refused a sign-in for id 'a1'" in served.log.read_text()


@pytest.mark.slow
def test_the_sixth_failure_in_a_minute_gets_429(served: Served) -> None:
    for _ in range(5):
        status, body, _ = login(served, {"id": "mallory", "password": "guess-guess"},
                                source="127.0.0.3")
        assert status == 401, body
    status, body, headers = login(served, {"id": "mallory", "password": "guess-guess"},
                                  source="127.0.0.3")
    assert status == 429 and body["error"] == "too_many_attempts"
    assert 0 < int(headers["Retry-After"]) <= 60
    # Another address signs in to another account meanwhile.
    assert login(served, {"id": "a1", "password": AGENT_PASSWORD}, source="127.0.0.4")[0] == 200


@pytest.mark.slow
def test_a_supervisor_account_and_its_disabling(served: Served) -> None:
    # Made while the server runs, the password on standard input.
    made = subprocess.run([*switchboard_command(), "--database", served.url, "accounts", "set",
                           "sue", "--role", "supervisor", "--name", "Sue Visor",
                           "--password-stdin"], input=SUPERVISOR_PASSWORD + "\n", text=True,
                          capture_output=True, cwd=served.tmp, env=served.env, timeout=60)
    assert made.returncode == 0, made.stderr
    listed = served.cli("accounts", "list", "--json")
    rows = {r["id"]: r for r in json.loads(listed.out)}
    assert rows["sue"]["role"] == "supervisor" and rows["sue"]["password"] is True
    assert "argon2" not in listed.out and SUPERVISOR_PASSWORD not in listed.out
    status, sue, _ = login(served, {"id": "sue", "password": SUPERVISOR_PASSWORD},
                           source="127.0.0.5")
    assert status == 200 and sue["role"] == "supervisor"
    assert asyncio.run(welcomed(served, sue["token"]))["role"] == "supervisor"

    assert served.cli("accounts", "disable", "sue").code == 0
    status, body, _ = login(served, {"id": "sue", "password": SUPERVISOR_PASSWORD},
                            source="127.0.0.5")
    assert (status, body["error"]) == (403, "account_disabled")
    assert login(served, b"", path="/login/refresh", source="127.0.0.5",
                 headers={"Authorization": f"Bearer {sue['token']}"})[0] == 403

    async def refused_at_hello() -> tuple[dict, int | None]:
        client = await open_console(served, sue["token"])
        error = await client.expect("error")
        with pytest.raises(ConnectionClosed):
            await client.expect("never")
        return error, client.ws.close_code

    error, code = asyncio.run(asyncio.wait_for(refused_at_hello(), 60))
    assert (error["code"], code) == ("account_disabled", 4005)
    # The audit: in the agent log, by the operator, without the password or its hash.
    shown = served.cli("tasks", "list", "--json")  # the database is readable meanwhile
    assert shown.code == 0
    served.assert_never_logged(sue["token"], SUPERVISOR_PASSWORD)


@pytest.mark.slow
def test_the_token_command_checks_who_and_signs_with_the_servers_key(served: Served,
                                                                    tmp_path) -> None:
    nobody = served.cli("token", "--agent", "nobody")
    assert nobody.code == 2 and nobody.out == ""
    assert "no such agent: nobody" in nobody.err
    boss = served.cli("token", "--agent", "boss", "--role", "supervisor")
    assert boss.code == 2 and "no supervisor account boss" in boss.err
    # From another directory (no key file anywhere): the key is the database's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = served.cli("token", "--agent", "a1", "--ttl", "300", cwd=elsewhere)
    assert made.code == 0, made.err
    assert list(elsewhere.iterdir()) == []  # no secret file left behind
    token = made.out.strip()
    assert asyncio.run(asyncio.wait_for(welcomed(served, token), 60))["type"] == "welcome"
    pbx = served.cli("token", "--agent", "pbx1", "--role", "integration", cwd=elsewhere)
    assert pbx.code == 0, pbx.err
    served.assert_never_logged(token)


@pytest.mark.slow
def test_the_agent_signs_in_on_the_page(served: Served) -> None:
    sync_playwright, expect = chromium()
    with urllib.request.urlopen(f"{served.base}/console/static/favicon.svg", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser)
            page.goto(f"{served.base}/")
            expect(page.locator("#login-id")).to_be_visible(timeout=WAIT_MS)
            # Nothing of the desk before sign-in: not shown, not in the accessibility tree.
            expect(page.locator("#desk")).to_be_hidden()
            expect(page.locator("#who")).to_be_hidden()
            assert page.get_by_role("button", name="Available").count() == 0
            assert page.get_by_role("heading", name="My tasks").count() == 0
            assert page.locator("link[rel=icon]").get_attribute("href").endswith("favicon.svg")
            page.screenshot(path=str(ARTIFACTS / "login-form.png"), full_page=True)

            page.fill("#login-id", "a1")
            page.fill("#login-password", "not-the-password")
            page.click("#password-form button[type=submit]")
            expect(page.locator("#login-error")).to_have_text("Wrong id or password.",
                                                              timeout=WAIT_MS)
            expect(page.locator("#desk")).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "login-refused.png"), full_page=True)

            page.fill("#login-password", AGENT_PASSWORD)
            page.click("#password-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            expect(page.locator("#desk")).to_be_visible()
            expect(page.locator("#login")).to_be_hidden()
            expect(page.locator("#who")).to_contain_text("Alex Martin")
            expect(page.locator("#login-password")).to_have_value("")
            page.click("#go-available")
            expect(page.locator("#presence")).to_have_text("Available", timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "login-desk.png"), full_page=True)
            first = page.evaluate("sessionStorage.getItem('switchboard.token')")
            assert first
            # The page renews its token before it expires (POST /login/refresh).
            page.wait_for_function(
                "t => sessionStorage.getItem('switchboard.token') !== t", arg=first,
                timeout=(LOGIN_TTL_SECONDS - 50) * 1000)
            renewed = page.evaluate("sessionStorage.getItem('switchboard.token')")
            assert renewed and renewed != first

            # Sign off: offline, back to the sign-in form, the token forgotten.
            page.click("#go-offline")
            expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#desk")).to_be_hidden()
            expect(page.locator("#who")).to_be_hidden()
            assert page.evaluate("sessionStorage.getItem('switchboard.token')") is None
            page.reload()
            expect(page.locator("#login-id")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#desk")).to_be_hidden()
            assert errors == []
        finally:
            browser.close()
    served.assert_never_logged(AGENT_PASSWORD, first, renewed)


def test_a_handshake_without_a_valid_token_is_refused(served: Served) -> None:
    async def refused() -> int:
        with pytest.raises(InvalidStatus) as err:
            await open_console(served, "forged.token.here")
        return err.value.response.status_code

    assert asyncio.run(asyncio.wait_for(refused(), 30)) == 401


def test_login_refuses_bad_requests(served: Served) -> None:
    assert login(served, b"{oops", source="127.0.0.6")[0] == 400
    assert login(served, b"x" * 10_000, source="127.0.0.6")[0] == 413
    assert login(served, {"id": "a1", "password": "x"}, source="127.0.0.6",
                 headers={"Content-Type": "text/plain"})[0] == 415
    assert login(served, {"id": "a1", "password": "x"}, source="127.0.0.6",
                 headers={"Origin": "http://evil.example"})[0] == 403
    try:
        urllib.request.urlopen(f"{served.base}/login", timeout=10)  # GET
    except urllib.error.HTTPError as exc:
        assert exc.code == 405
    else:
        raise AssertionError("GET /login answered")
