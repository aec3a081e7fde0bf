"""End to end, as an integrator uses it: `switchboard serve` with the e-mail edge and the REST
API; a real HTTP receiver (http.server in a thread) that answers 500 to the first attempt of
every third event and once hangs past the server's timeout; subscriptions made with
`POST /api/v1/webhooks`; real events made by e-mails over SMTP. Every event committed after the
subscription reaches the receiver at least once, every signature verifies, the event ids
de-duplicate to exactly the set of events in the log, and a subscription whose receiver always
fails shows its dead deliveries through the API. And a delivery pending while the receiver was
down is sent after the server's restart. On SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from dispatcher.service.accounts import Accounts
from dispatcher.storage.accounts import SqlAccounts
from tests.channels.email.running import rows
from tests.dispatcher.runtime.running import (
    desk_env,
    free_port,
    prepare_support,
    relay,
    serving,
)
from tests.dispatcher.storage.wiring import wire
from tests.support import missing

SECRET = b"webhooks-e2e-" + b"z" * 40
HOOK_SECRET = "receiver-shared-secret-0123456789"
TIMEOUT = 2.0  # the server's [webhooks] timeout here
WAIT_SECONDS = 90.0
MAILS = 3


@dataclass
class Received:
    """What the receiver saw, request by request."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[dict[str, Any]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # distinct event ids, first seen first
    hung: bool = False
    bad_signatures: list[str] = field(default_factory=list)

    def ids(self, path: str) -> set[str]:
        with self.lock:
            return {r["id"] for r in self.requests if r["path"] == path}


def verify(secret: str, headers: Any, body: bytes, now: float) -> bool:
    """The check docs/webhooks.md tells receivers to make."""
    timestamp = headers.get("Switchboard-Timestamp", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return any(hmac.compare_digest(f"v1={mac.hexdigest()}", s.strip())
               for s in headers.get("Switchboard-Signature", "").split(","))


def receiver(got: Received, port: int = 0, flaky: bool = True) -> ThreadingHTTPServer:
    class Hook(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # persistent connections, as the server's pool keeps

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = json.loads(body)
            status, hang = 200, False
            with got.lock:
                if not verify(HOOK_SECRET, self.headers, body, time.time()):
                    got.bad_signatures.append(payload.get("id"))
                first = payload["id"] not in got.order
                if first and self.path == "/ok" and flaky:
                    got.order.append(payload["id"])
                    if len(got.order) % 3 == 0:
                        status = 500
                    elif not got.hung:
                        got.hung = hang = True
                got.requests.append({"path": self.path, "id": payload["id"],
                                     "header_id": self.headers["Switchboard-Event-Id"],
                                     "kind": payload["kind"]})
            if self.path != "/ok":
                status = 500
            if hang:
                time.sleep(TIMEOUT + 1.5)  # the server gave up: it must send this one again
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def scraped(base: str) -> dict[tuple[str, str], float]:
    """The server's /metrics: (sample name, outcome label) -> value."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, s.labels.get("outcome", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "boss", "role": "supervisor", "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def api(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token()}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until(check: Any, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


def logged_ids(url: str, after: dict[str, int]) -> set[str]:
    return {f"{log}-{i}" for log in ("task", "agent")
            for (i,) in rows(url, f"select id from {log}_events where id > :a", a=after[log])}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database (`pg_url`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'switchboard.db'}"
    return request.getfixturevalue("pg_url")


def prepared(url: str) -> str:
    """The database with queue support, agent a1 and the supervisor account `boss`."""
    prepare_support(url)
    w = wire(url)
    try:
        w.wait(Accounts(SqlAccounts(w.pool), w.store, Clock()).set("boss", "supervisor", "Boss"))
    finally:
        w.close()
    return url


def environment(tmp_path: Any, url: str, relay_port: int) -> tuple[dict[str, str], Any]:
    return desk_env(tmp_path, url, relay_port, SECRET,
                    SWITCHBOARD_API_JWT_SECRET_FILE=str(tmp_path / "console.secret"),
                    SWITCHBOARD_EMAIL_ACK_QUEUES="", SWITCHBOARD_PHONE_ENABLED="false",
                    SWITCHBOARD_WEBHOOKS_TIMEOUT=str(TIMEOUT),
                    SWITCHBOARD_WEBHOOKS_MAX_ATTEMPTS="2",
                    SWITCHBOARD_WEBHOOKS_POLL_SECONDS="0.2")


def mail(port: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for i in range(count):
            msg = EmailMessage()
            msg["From"] = f"Customer {i} <c{i}@customer.org>"
            msg["To"] = "support@example.com"
            msg["Subject"] = f"Question {i}"
            msg.set_content(f"Hello, question number {i}.")
            smtp.send_message(msg)


@pytest.fixture
def hook() -> Iterator[tuple[Received, int]]:
    got = Received()
    server = receiver(got)
    try:
        yield got, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_events_reach_a_flaky_receiver_signed_at_least_once_and_dead_letters_show(
        tmp_path, db_url: str, hook: tuple[Received, int]) -> None:
    got, port = hook
    url = prepared(db_url)
    with relay() as (_, relay_port):
        env, ports = environment(tmp_path, url, relay_port)
        with serving(tmp_path, env, (ports.smtp, ports.http)) as log:
            base = f"http://127.0.0.1:{ports.http}"
            status, made = api(base, "POST", "/webhooks", {
                "url": f"http://127.0.0.1:{port}/ok", "kinds": ["*"], "secret": HOOK_SECRET})
            if status in (404, 503):
                missing(f"POST /api/v1/webhooks is not served here ({status}): the REST API "
                        f"edge or its webhook route is missing")
            assert status == 201, made
            ok_id = made["subscription"]["id"]
            assert made["secret"] == HOOK_SECRET
            # The server is idle: the log's ends now are the subscription's cursors.
            after = {log_: rows(url, f"select coalesce(max(id), 0) from {log_}_events")[0][0]
                     for log_ in ("task", "agent")}
            status, dead = api(base, "POST", "/webhooks", {
                "url": f"http://127.0.0.1:{port}/dead", "kinds": ["task.created"],
                "secret": HOOK_SECRET})
            assert status == 201, dead
            dead_id = dead["subscription"]["id"]
            status, bad = api(base, "POST", "/webhooks", {"url": "ftp://x/", "kinds": ["*"]})
            assert status == 400 and "url" in json.dumps(bad)

            mail(ports.smtp, MAILS)

            def settled() -> bool:
                expected = logged_ids(url, after)
                pending = api(base, "GET", f"/webhooks/{ok_id}/deliveries?state=pending")[1]
                return bool(expected) and got.ids("/ok") >= expected and pending == []

            until(settled)
            expected = logged_ids(url, after)
            assert got.ids("/ok") == expected  # exactly the events, de-duplicated by id
            kinds = {r["kind"] for r in got.requests if r["path"] == "/ok"}
            assert {"task.created", "email.received", "config.changed"} <= kinds, kinds
            assert got.bad_signatures == []
            assert all(r["id"] == r["header_id"] for r in got.requests)
            sent = [r["id"] for r in got.requests if r["path"] == "/ok"]
            assert len(sent) > len(set(sent))  # the failed and the hung ones came again
            assert got.hung

            status, done = api(base, "GET", f"/webhooks/{ok_id}/deliveries?limit=500")
            assert status == 200 and {d["state"] for d in done} == {"delivered"}
            assert max(d["attempts"] for d in done) >= 2
            assert {(d["last_status"], d["last_error"], d["next_attempt_at"])
                    for d in done} == {(200, None, None)}
            assert all(d["created_at"] <= d["delivered_at"] for d in done)

            def all_dead() -> list[dict[str, Any]] | None:
                listed = api(base, "GET", f"/webhooks/{dead_id}/deliveries?state=dead")[1]
                return listed if len(listed) == MAILS else None

            dead_letters = until(all_dead)
            assert {d["kind"] for d in dead_letters} == {"task.created"}
            assert {d["attempts"] for d in dead_letters} == {2}
            assert {(d["last_status"], d["last_error"], d["next_attempt_at"], d["delivered_at"])
                    for d in dead_letters} == {(500, "HTTP 500", None, None)}
            counted = scraped(base)
            assert counted[("switchboard_webhook_attempts_total", "dead")] == MAILS
            assert counted[("switchboard_webhook_attempts_total", "delivered")] >= len(done)
            assert counted[("switchboard_webhook_attempts_total", "retry")] >= MAILS + 1
            assert counted[("switchboard_webhook_deliveries_dead", "")] == MAILS
            status, again = api(base, "POST", f"/webhooks/{dead_id}/deliveries/"
                                f"{dead_letters[0]['id']}/redeliver")
            assert status == 202, again
            status, gone = api(base, "DELETE", f"/webhooks/{dead_id}")
            assert status == 200, gone
            assert api(base, "GET", f"/webhooks/{dead_id}")[0] == 404
            assert HOOK_SECRET not in log.read_text(errors="replace")


@pytest.mark.slow
def test_pending_deliveries_survive_a_restart(tmp_path, db_url: str) -> None:
    """The receiver is down: the delivery fails and stays pending; the server stops; the
    receiver comes up; after the next start the delivery is sent from the table."""
    url = prepared(db_url)
    port = free_port()  # nobody listens there yet
    with relay() as (_, relay_port):
        env, ports = environment(tmp_path, url, relay_port)
        with serving(tmp_path, env, (ports.smtp, ports.http)):
            base = f"http://127.0.0.1:{ports.http}"
            status, made = api(base, "POST", "/webhooks", {
                "url": f"http://127.0.0.1:{port}/ok", "kinds": ["task.created"],
                "secret": HOOK_SECRET})
            if status in (404, 503):
                missing(f"POST /api/v1/webhooks is not served here ({status}): the REST API "
                        f"edge or its webhook route is missing")
            assert status == 201, made
            sub_id = made["subscription"]["id"]
            mail(ports.smtp, 1)
            (failed,) = until(lambda: [
                d for d in api(base, "GET", f"/webhooks/{sub_id}/deliveries")[1]
                if d["attempts"] >= 1])
            assert failed["state"] == "pending"
        got = Received()
        server = receiver(got, port, flaky=False)
        try:
            with serving(tmp_path, env, (ports.smtp, ports.http)):
                until(lambda: got.ids("/ok") == {failed["event_id"]})
                done = until(lambda: [
                    d for d in api(base, "GET", f"/webhooks/{sub_id}/deliveries")[1]
                    if d["state"] == "delivered"])
                assert [d["id"] for d in done] == [failed["id"]]
            assert got.bad_signatures == []
        finally:
            server.shutdown()
            server.server_close()
