"""The console's sign-in: `POST /login` and `/login/refresh` (login.py) on twisted.web's request
double, with the real `Accounts` service on memory stores and a `Clock` for the rate limits;
and the accounts' rule at the WebSocket hello, on the real console server (harness.py).

The real HTTP path (`switchboard serve`, the CLI, urllib, a websockets client, Chromium) is in
tests/dispatcher/runtime/test_login_e2e.py."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace

import pytest
from argon2 import PasswordHasher
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from websockets.exceptions import ConnectionClosed

from agent_console import messages as m
from agent_console.auth import Signer, load_keys, verifier_for
from agent_console.config import ConsoleSettings
from agent_console.login import LoginPage
from dispatcher.domain.agents import Agent
from dispatcher.service.accounts import Accounts
from dispatcher.storage.accounts import MemoryAccounts
from dispatcher.storage.memory import MemoryStore
from tests.agent_console.harness import run, start_console
from tests.dispatcher.storage.test_store_contract import fired

ORIGIN = "http://127.0.0.1:8080"
PASSWORD = "correct horse battery"
STORED = b"k" * 64


class Site:
    """A LoginPage with accounts a1 (agent) and sue (supervisor), both with PASSWORD."""

    def __init__(self, **overrides) -> None:
        self.settings = replace(ConsoleSettings(allowed_origins=ORIGIN), **overrides)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        store = MemoryStore()
        fired(store.put_agent(Agent("a1", name="Alex")))
        fired(store.put_agent(Agent("a2", name="Bea")))
        self.accounts = Accounts(MemoryAccounts(), store, self.clock,
                                 hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                       parallelism=1))
        fired(self.accounts.set("a1", "agent", password=PASSWORD))
        fired(self.accounts.set("sue", "supervisor", "Sue", PASSWORD))
        keys = load_keys(self.settings, STORED)
        self.verifier = verifier_for(self.settings, keys)
        self.signer = Signer(keys, self.settings.issuer, self.settings.audience)
        self.page = LoginPage(self.settings, self.accounts, self.signer, self.verifier,
                              self.clock)

    def post(self, body=None, *, path=(), kind="application/json", origin=ORIGIN,
             client="192.0.2.10", authorization=None, raw=None):
        request = DummyRequest(list(path))
        request.method = b"POST"
        request.client = IPv4Address("TCP", client, 40000)
        content = raw if raw is not None else json.dumps(body).encode()
        request.content = io.BytesIO(content)
        for name, value in (("content-type", kind), ("origin", origin),
                            ("authorization", authorization),
                            ("content-length", str(len(content)))):
            if value is not None:
                request.requestHeaders.setRawHeaders(name, [value])
        result = self.page.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()
        assert request.finished, "the answer did not come"
        answer = json.loads(b"".join(request.written))
        return request.responseCode or 200, answer, request.responseHeaders

    def login(self, account_id="a1", password=PASSWORD, **kw):
        return self.post({"id": account_id, "password": password}, **kw)


def test_the_right_password_gives_a_short_lived_console_token():
    site = Site()
    status, body, headers = site.login()
    assert status == 200, body
    assert set(body) == {"token", "expires_at", "role", "id"}
    claims = site.verifier.verify(body["token"])
    assert (claims.sub, claims.role, body["role"], body["id"]) == ("a1", "agent", "agent", "a1")
    assert claims.exp - claims.iat == site.settings.login_token_ttl_seconds == 15 * 60
    assert body["expires_at"] == pytest.approx(claims.exp, abs=1)
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
    status, body, _ = site.login("sue")
    assert (status, body["role"]) == (200, "supervisor")


def test_a_wrong_password_and_an_unknown_id_get_the_same_answer():
    site = Site()
    wrong = site.login(password="not the password")
    unknown = site.login("nobody")
    no_password = site.login("a2")  # an agent without an account
    assert wrong[0] == unknown[0] == no_password[0] == 401
    assert wrong[1] == unknown[1] == no_password[1] == {
        "error": m.LOGIN_REFUSED, "message": "wrong id or password"}


def test_the_sixth_failure_in_a_minute_is_throttled_then_allowed_again():
    site = Site()
    for _ in range(5):
        assert site.login(password="guess")[0] == 401
    status, body, headers = site.login()  # even the right password waits
    assert status == 429 and body["error"] == m.LOGIN_THROTTLED
    assert 0 < body["retry_after"] <= 60
    assert headers.getRawHeaders(b"retry-after") == [str(body["retry_after"]).encode()]
    assert body["message"] == f"too many attempts, try again in {body['retry_after']} s"
    site.clock.advance(61)
    assert site.login()[0] == 200


def test_the_limits_hold_per_account_and_per_address():
    site = Site()
    for i in range(5):  # one id from five addresses
        assert site.login(password="guess", client=f"198.51.100.{i}")[0] == 401
    assert site.login(client="198.51.100.99")[0] == 429
    assert site.login("sue", client="198.51.100.99")[0] == 200  # another id: fine
    for i in range(5):  # one address, many ids
        assert site.login(f"user{i}", client="203.0.113.5")[0] == 401
    assert site.login("sue", client="203.0.113.5")[0] == 429


def test_a_success_does_not_count_as_a_failure():
    site = Site()
    for _ in range(10):
        assert site.login()[0] == 200


@pytest.mark.parametrize("kw, status", [
    ({"kind": "application/x-www-form-urlencoded"}, 415),
    ({"kind": "text/plain"}, 415),
    ({"raw": b"{not json"}, 400),
    ({"raw": b"[1, 2]"}, 400),
    ({"raw": json.dumps({"id": "a1"}).encode()}, 400),
    ({"raw": json.dumps({"id": "a1", "password": 12345678}).encode()}, 400),
    ({"raw": json.dumps({"id": "a1", "password": "x" * 5000}).encode()}, 413),
])
def test_bad_requests_are_refused_before_any_check(kw, status):
    site = Site()
    got, body, _ = site.post(**kw) if "raw" in kw else site.post(
        {"id": "a1", "password": PASSWORD}, **kw)
    assert got == status and body["error"] == m.LOGIN_BAD_REQUEST
    for _ in range(6):  # nor counted as failed sign-ins
        site.post(raw=b"{not json")
    assert site.login()[0] == 200


def test_the_origin_is_checked_like_the_websocket():
    site = Site()
    status, body, _ = site.login(origin="http://evil.example")
    assert (status, body["error"]) == (403, m.LOGIN_FORBIDDEN_ORIGIN)
    assert site.login(origin=None)[0] == 200  # not a browser: allowed by default
    strict = Site(allow_missing_origin=False)
    assert strict.login(origin=None)[0] == 403


def test_a_disabled_account_is_told_only_with_the_right_password():
    site = Site()
    fired(site.accounts.disable("a1"))
    assert site.login(password="guess")[0] == 401
    status, body, _ = site.login()
    assert (status, body["error"]) == (403, m.LOGIN_DISABLED)


def test_refresh_gives_a_fresh_token_while_the_account_is_enabled():
    site = Site()
    token = site.login()[1]["token"]
    status, body, _ = site.post(path=[b"refresh"], raw=b"", authorization=f"Bearer {token}")
    assert status == 200 and site.verifier.verify(body["token"]).sub == "a1"
    assert body["role"] == "agent" and body["id"] == "a1"
    assert site.post(path=[b"refresh"], raw=b"")[0] == 401  # no token
    assert site.post(path=[b"refresh"], raw=b"", authorization="Bearer nonsense")[0] == 401
    no_account = site.signer.issue("a2", "agent", 60)  # a token from `switchboard token`
    assert site.post(path=[b"refresh"], raw=b"",
                     authorization=f"Bearer {no_account}")[0] == 401
    fired(site.accounts.disable("a1"))
    status, body, _ = site.post(path=[b"refresh"], raw=b"", authorization=f"Bearer {token}")
    assert (status, body["error"]) == (403, "account_disabled")
    assert site.post(path=[b"nope"], raw=b"")[0] == 404


def test_refusals_are_logged_once_without_password_or_token(caplog):
    site = Site()
    caplog.set_level(logging.INFO, logger="agent_console.login")
    token = site.login()[1]["token"]
    site.login(password="hunter2-secret")
    site.post(path=[b"refresh"], raw=b"", authorization=f"Bearer {token}x")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "hunter2-secret" not in text and PASSWORD not in text
    assert token not in text and token[:40] not in text
    refusals = [r for r in caplog.records if "refused a sign-in" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert "'a1'" in refusals[0].getMessage() and "192.0.2.10" in refusals[0].getMessage()


# ---------------------------------------------------------------------- the hello's rule


@run
async def test_a_supervisor_token_needs_an_enabled_supervisor_account(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        boss = await c.connect("boss", "supervisor", hello=False,
                               token=c.token("boss", "supervisor"))  # no account made
        await boss.send({"type": "hello", "v": 1})
        error = await boss.expect("error")
        assert error["code"] == "unknown_account"
        with pytest.raises(ConnectionClosed):
            await boss.expect("never")
        assert boss.ws.close_code == m.CLOSE_NO_ACCOUNT
        sue = await c.connect("sue", "supervisor")  # the harness gives her an account
        assert sue.welcome["role"] == "supervisor"
        await sue.close()
    finally:
        await c.stop()


@run
async def test_a_disabled_account_is_closed_at_hello(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        from dispatcher.aio import to_future

        await to_future(c.accounts.set("a1", "agent"))
        first = await c.connect("a1")  # enabled: welcome
        await first.close()
        await to_future(c.accounts.disable("a1"))
        client = await c.connect("a1", hello=False)
        await client.send({"type": "hello", "v": 1})
        assert (await client.expect("error"))["code"] == "account_disabled"
        with pytest.raises(ConnectionClosed):
            await client.expect("never")
        assert client.ws.close_code == m.CLOSE_ACCOUNT_DISABLED
        assert "disabled" in client.ws.close_reason
    finally:
        await c.stop()
