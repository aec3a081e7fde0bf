"""Who may use which route, against the running server (route × role → status), as users call
it: over HTTP with the console's tokens. Agent a1 holds one task (accepted on the console's
WebSocket, kept open meanwhile); everything else waits in queue `sales`, where no agent works.

Also: every route refuses a request without a token, a disabled account's token and a token
signed with another key (401 with WWW-Authenticate), and the table covers every route."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import connect

from api.catalogue import routes
from api.schemas import COMPONENTS
from tests.api.conftest import Server, token

AGENT, SUPERVISOR, INTEGRATION = "agent", "supervisor", "integration"
ORDER = (AGENT, INTEGRATION, SUPERVISOR)  # refusals first: the allowed change comes last


@dataclass
class World:
    held: str  # a1 holds it
    held_customer: str
    other: str  # waits in sales
    other_customer: str
    spare_customers: tuple[str, str]


def _new_task(server: Server, queue: str, who: str, **extra: Any) -> dict[str, Any]:
    got = server.call("POST", "/api/v1/tasks", {
        "channel": "email", "queue": queue, "customer": {"value": who, "name": who},
        "subject": "Order", "body": "Where is it?", "source": "crm", **extra},
        role=INTEGRATION)
    assert got.status == 201, got.body
    return got.body


class Desk:
    """Agent a1 on the console's WebSocket, in a thread with its own event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ws: Any = None

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self) -> None:
        self.ws = await connect(f"ws://127.0.0.1:{self.port}/",
                                subprotocols=["switchboard.v1",
                                              f"bearer.{token('a1', AGENT)}"],
                                origin="http://127.0.0.1:8080", compression=None,
                                open_timeout=10)
        await self.ws.send(json.dumps({"type": "hello", "v": 1}))
        await self._expect(lambda f: f["type"] == "welcome")
        await self.ws.send(json.dumps({"type": "presence", "id": 1, "status": "available"}))
        await self._expect(lambda f: f.get("re") == 1)

    async def _expect(self, match: Any) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                frame = json.loads(await self.ws.recv())
                if match(frame):
                    return frame

    async def _take(self) -> str:
        offer = await self._expect(lambda f: f["type"] == "offer")
        await self.ws.send(json.dumps({"type": "accept", "id": 2,
                                       "offer_id": offer["offer_id"]}))
        ok = await self._expect(lambda f: f.get("re") == 2)
        assert ok["type"] == "ok", ok
        return offer["task"]["id"]

    def close(self) -> None:
        if self.ws is not None:
            self.run(self.ws.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    desk = Desk(server.ws_port)
    try:
        desk.run(desk._open())
        held = _new_task(server, "support", "ann@example.com")
        assert desk.run(desk._take()) == held["id"]
        other = _new_task(server, "sales", "bob@example.com")
        spare = (_new_task(server, "sales", "cy@example.com")["customer_id"],
                 _new_task(server, "sales", "dee@example.com")["customer_id"])
        yield World(held["id"], held["customer_id"], other["id"], other["customer_id"], spare)
    finally:
        desk.close()


def _fresh_sales_task(server: Server) -> str:
    return _new_task(server, "sales", "eve@example.com")["id"]


# (method, path template, body, {role: expected status}); the path may name world's fields.
TABLE: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("GET", "/tasks", None, {AGENT: 200, SUPERVISOR: 200, INTEGRATION: 200}),
    ("GET", "/tasks/{held}", None, {AGENT: 200, SUPERVISOR: 200, INTEGRATION: 200}),
    ("GET", "/tasks/{other}", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 200}),
    ("POST", "/tasks", {"channel": "phone", "queue": "sales",
                        "customer": {"value": "+33 1 23 45 67 89"}, "source": "chat"},
     {AGENT: 403, SUPERVISOR: 201, INTEGRATION: 201}),
    ("POST", "/callbacks", {"number": "+33 1 23 45 67 80", "queue": "sales"},
     {AGENT: 403, SUPERVISOR: 201, INTEGRATION: 201}),
    ("POST", "/tasks/{fresh}/cancel", {"reason": "duplicate"},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 200}),
    ("POST", "/tasks/{other}/priority", {"priority": 7},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 200}),
    ("GET", "/customers?q=bob", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/customers/{held_customer}", None,
     {AGENT: 200, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/customers/{other_customer}", None,
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("PUT", "/customers/{other_customer}", {"name": "Bob B.", "identities": [
        {"kind": "email", "value": "bob@example.com"}]},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("POST", "/customers/{spare0}/merge", {"merged_id": "{spare1}"},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/answers", None, {AGENT: 200, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/answers/none-such", None, {AGENT: 404, SUPERVISOR: 404, INTEGRATION: 403}),
    ("GET", "/reports?from=2026-01-01&to=2026-01-02&interval=1d", None,
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/queues", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/queues/support", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("PUT", "/queues/extra", {"priority": 3}, {AGENT: 403, SUPERVISOR: 201, INTEGRATION: 403}),
    ("POST", "/queues/extra/disable", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("POST", "/queues/extra/enable", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("DELETE", "/queues/extra", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/agents", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/agents/a2", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("PUT", "/agents/a9", {"name": "Nine", "queues": ["sales"]},
     {AGENT: 403, SUPERVISOR: 201, INTEGRATION: 403}),
    ("PUT", "/agents/a9/skills", {"skills": {"french": 4}},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("POST", "/agents/a9/disable", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("POST", "/agents/a9/enable", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("DELETE", "/agents/a9", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/calendars", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("PUT", "/calendars/office", {"timezone": "Europe/Paris",
                                  "hours": {"mon": [["09:00", "17:00"]]}},
     {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 403}),
    ("GET", "/webhooks", None, {AGENT: 403, SUPERVISOR: 200, INTEGRATION: 200}),
    ("POST", "/webhooks", {"url": "http://127.0.0.1:9/hook", "kinds": ["task.*"]},
     {AGENT: 403, SUPERVISOR: 201, INTEGRATION: 201}),
    ("GET", "/webhooks/nope", None, {AGENT: 403, SUPERVISOR: 404,
                                     INTEGRATION: 404}),
    ("DELETE", "/webhooks/nope", None, {AGENT: 403, SUPERVISOR: 404,
                                        INTEGRATION: 404}),
    ("GET", "/webhooks/nope/deliveries", None, {AGENT: 403, SUPERVISOR: 404,
                                                INTEGRATION: 404}),
    ("POST", "/webhooks/nope/deliveries/1/redeliver", None,
     {AGENT: 403, SUPERVISOR: 404, INTEGRATION: 404}),
]


def _fill(text: str, world: World, fresh: str | None = None) -> str:
    values = {"held": world.held, "other": world.other, "fresh": fresh or "",
              "held_customer": world.held_customer, "other_customer": world.other_customer,
              "spare0": world.spare_customers[0], "spare1": world.spare_customers[1]}
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _template(path: str) -> str:
    """The route template a table path stands for (`/tasks/{other}` -> `/tasks/{id}`)."""
    path = path.split("?", 1)[0]
    parts = path.strip("/").split("/")
    for route in routes():
        mine = route.segments
        if len(mine) == len(parts) and all(
                a == b or a.startswith("{") and (b.startswith("{") or b not in {
                    r.segments[i] for r in routes() if len(r.segments) > i})
                for i, (a, b) in enumerate(zip(mine, parts, strict=True))):
            return route.path
    raise AssertionError(f"no route for {path}")


def test_the_table_covers_every_route() -> None:
    declared = {(r.method, r.path) for r in routes()}
    tested = {(m, _template(p)) for m, p, _, _ in TABLE}
    assert declared == tested, declared ^ tested


def _expected(want: Any, status: int) -> bool:
    return status == want


@pytest.mark.parametrize("method,path,body,expected", TABLE,
                         ids=[f"{m} {p}" for m, p, _, _ in TABLE])
def test_route_by_role(server: Server, world: World, method: str, path: str, body: Any,
                       expected: dict[str, Any]) -> None:
    for role in ORDER:
        fresh = _fresh_sales_task(server) if "{fresh}" in path else None
        filled = None if body is None else json.loads(_fill(json.dumps(body), world))
        got = server.call(method, "/api/v1" + _fill(path, world, fresh), filled, role=role)
        assert _expected(expected[role], got.status), (role, got.status, got.body)
        if got.status >= 400:
            assert got.headers["content-type"] == "application/problem+json"
            assert got.body["status"] == got.status and got.body["detail"]
        else:  # the answer is what the document promises
            _conforms(method, path, got.body)


def _conforms(method: str, path: str, body: Any) -> None:
    route = next(r for r in routes() if r.method == method and r.path == _template(path))
    schema = {**route.response, "components": {"schemas": COMPONENTS}}
    Draft202012Validator(schema).validate(body)


@pytest.mark.parametrize("route", routes(), ids=lambda r: f"{r.method} {r.path}")
def test_every_route_refuses_a_missing_bad_or_disabled_token(server: Server, route) -> None:
    path = "/api/v1" + route.path.replace("{id}", "x").replace("{name}", "x") \
        .replace("{delivery}", "1")
    for bearer in (None, token("boss", SUPERVISOR, secret=b"another-key-" + b"z" * 40),
                   token("gone", SUPERVISOR), "not-a-jwt"):
        got = server.call(route.method, path, {} if route.body is not None else None,
                          bearer=bearer)
        assert got.status == 401, (bearer is None, got.body)
        assert got.headers["www-authenticate"].startswith("Bearer")
        assert got.body["type"].endswith("unauthorized")
