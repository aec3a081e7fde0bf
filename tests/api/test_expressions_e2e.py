"""Requirement expressions through the REST API, against the running server: a supervisor puts
a queue with an expression and an agent with attributes, a mistake is a 400 naming its column,
and tasks an integration creates with attributes are routed by them (the agent's console
WebSocket gets only the task whose language they speak)."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from tests.api.conftest import Server, token

SUPERVISOR, INTEGRATION = "supervisor", "integration"
EXPRESSION = "languages HAS task.language AND tier != 'trainee'"


async def _agent_sees(server: Server, tasks: list[dict]) -> tuple[list[str], str]:
    """Agent fr1 at the console, available; the tasks are created (their ids); the id of the
    first task offered to fr1."""
    async with connect(f"ws://127.0.0.1:{server.ws_port}/",
                       subprotocols=["switchboard.v1", f"bearer.{token('fr1', 'agent')}"],
                       origin="http://127.0.0.1:8080", compression=None,
                       open_timeout=10) as ws:
        async def frame(match) -> dict:
            async with asyncio.timeout(20):
                while True:
                    got = json.loads(await ws.recv())
                    if match(got):
                        return got
        await ws.send(json.dumps({"type": "hello", "v": 1}))
        await frame(lambda f: f["type"] == "welcome")
        await ws.send(json.dumps({"type": "presence", "id": 1, "status": "available"}))
        await frame(lambda f: f.get("re") == 1)
        ids = []
        for body in tasks:
            made = await asyncio.to_thread(server.call, "POST", "/api/v1/tasks", body,
                                           role=INTEGRATION)
            assert made.status == 201, made.body
            ids.append(made.body["id"])
        offer = await frame(lambda f: f["type"] == "offer")
        return ids, offer["task"]["id"]


def test_a_queue_expression_and_agent_attributes_through_the_api(server: Server):
    put = server.call("PUT", "/api/v1/queues/fr-desk", {"expression": EXPRESSION},
                      role=SUPERVISOR)
    assert put.status == 201, put.body
    got = server.call("GET", "/api/v1/queues/fr-desk", role=SUPERVISOR).body
    assert got["expression"] == 'languages HAS task.language AND tier != "trainee"'
    bad = server.call("PUT", "/api/v1/queues/fr-bad", {"expression": "languages HAS"},
                      role=SUPERVISOR)
    assert bad.status == 400 and "column 14" in bad.body["detail"], bad.body
    assert server.call("GET", "/api/v1/queues/fr-bad", role=SUPERVISOR).status == 404
    put = server.call("PUT", "/api/v1/agents/fr1", {
        "queues": ["fr-desk"], "channels": ["email"], "attributes": {"languages": ["fr", "nl"]}},
        role=SUPERVISOR)
    assert put.status == 201, put.body
    got = server.call("GET", "/api/v1/agents/fr1", role=SUPERVISOR).body
    assert got["attributes"] == {"languages": ["fr", "nl"]}
    bad = server.call("PUT", "/api/v1/agents/fr2", {"attributes": {"languages": {"x": 1}}},
                      role=SUPERVISOR)
    assert bad.status == 400 and "attributes.languages" in bad.body["detail"], bad.body

    def task(language: str) -> dict:
        return {"channel": "email", "queue": "fr-desk", "subject": f"In {language}",
                "customer": {"value": f"{language}@client.example"}, "source": "crm",
                "attributes": {"language": language}}

    (german, french), offered = asyncio.run(_agent_sees(server, [task("de"), task("fr")]))
    assert offered == french
    shown = server.call("GET", f"/api/v1/tasks/{german}", role=SUPERVISOR).body
    assert shown["task"]["state"] == "queued", shown
