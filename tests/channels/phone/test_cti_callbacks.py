"""Callbacks through a PBX (CTI, issue 18): a callback asked through the REST API is offered to
an agent at their console (the offer shows the number to call); their accept sends the PBX a
`callback` instruction (the agent's extension, the number, the attempt); the PBX reports
`callback.reached` then `callback.ended` (the agent's wrap-up), or `callback.failed` (retry, or
the task ends as not reached). Only the integration told may report. The real dispatcher
(cti_server.py with the REST API), a scripted PBX and a console client over WebSocket."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from channels.phone import messages as m
from tests.channels.phone.test_cti import App, close_all, run, sign, start_app

QUEUES = [{"name": "cbq"}, {"name": "cbq2"}]
AGENTS = [{"id": "cal", "extension": "301", "queues": ["cbq"]},
          {"id": "cid", "extension": "302", "queues": ["cbq2"]}]
NUMBER = "+3225550177"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[App]:
    server = start_app(tmp_path_factory.mktemp("cti-callbacks"), queues=QUEUES, agents=AGENTS,
                       api=True)
    yield server
    server.stop()


def ask(app: App, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{app.http_port}/api/v1/callbacks", data=json.dumps(body).encode(),
        method="POST", headers={"Authorization": f"Bearer {sign('crm')}",
                                "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc.code}: {exc.read()!r}") from None


def is_callback(task_id: str):
    return lambda f: f["type"] == m.CALLBACK and f.get("task_id") == task_id


@run
async def test_accepted_callback_goes_to_the_pbx_which_reports_reached_and_ended(app):
    pbx, other, cal = await app.pbx(), await app.pbx("pbx2"), await app.agent("cal")
    try:
        task = ask(app, {"number": "+32 2 555 01 77", "queue": "cbq", "name": "Ivo"})
        shown = await cal.expect("offer")
        assert shown["task"]["id"] == task["id"]
        assert shown["task"]["callback"]["number"] == NUMBER  # what the agent will call
        assert shown["task"]["callback"]["origin"] == "api"
        assert (await cal.request("accept", offer_id=shown["offer_id"]))["type"] == "ok"
        frame = await pbx.expect(is_callback(task["id"]))
        assert (frame["number"], frame["extension"], frame["agent_id"], frame["attempt"]) == \
            (NUMBER, "301", "cal", 1)
        # Another integration may not report on it.
        refused = await other.request(m.CALLBACK_REACHED, task_id=task["id"])
        assert refused["type"] == m.ERROR and refused["code"] == m.FORBIDDEN
        reached = await pbx.request(m.CALLBACK_REACHED, task_id=task["id"])
        assert reached["type"] == m.OK and reached["agent_id"] == "cal"
        await app.event("callback.reached", task_id=task["id"])
        await app.event("call.answered", task_id=task["id"], agent_id="cal")
        ended = await pbx.request(m.CALLBACK_ENDED, task_id=task["id"], by="customer")
        assert ended["type"] == m.OK
        e = await app.event("call.ended", task_id=task["id"])
        assert e["data"]["by"] == "customer" and e["data"]["talk_seconds"] is not None
        await app.event("task.wrap_up", task_id=task["id"], agent_id="cal")
        unknown = await pbx.request(m.CALLBACK_REACHED, task_id="nope")
        assert unknown["type"] == m.ERROR and unknown["code"] == m.UNKNOWN_CALL
    finally:
        await close_all(pbx, other, cal)


@run
async def test_a_failed_callback_is_retried_later_or_ends_not_reached(app):
    pbx, cid = await app.pbx(), await app.agent("cid")
    try:
        first = ask(app, {"number": NUMBER, "queue": "cbq2", "attempts": 2})
        shown = await cid.expect("offer")
        assert (await cid.request("accept", offer_id=shown["offer_id"]))["type"] == "ok"
        await pbx.expect(is_callback(first["id"]))
        failed = await pbx.request(m.CALLBACK_FAILED, task_id=first["id"], reason="busy")
        assert failed["type"] == m.OK
        e = await app.event("callback.no_answer", task_id=first["id"])
        assert e["data"]["reason"] == "busy"
        retry = await app.event("callback.retry", task_id=first["id"])
        assert retry["data"]["at"] > time.time() + 200  # the default delay: 300 s
        await app.event("task.requeued", task_id=first["id"])
        # One attempt only: a busy customer ends it.
        once = ask(app, {"number": NUMBER, "queue": "cbq2", "attempts": 1})
        shown = await cid.expect(lambda f: f["type"] == "offer"
                                 and f["task"]["id"] == once["id"])
        assert (await cid.request("accept", offer_id=shown["offer_id"]))["type"] == "ok"
        await pbx.expect(is_callback(once["id"]))
        assert (await pbx.request(m.CALLBACK_FAILED, task_id=once["id"],
                                  reason="no_answer"))["type"] == m.OK
        cancelled = await app.event("task.cancelled", task_id=once["id"])
        assert cancelled["data"]["reason"] == "callback_not_reached"
        bad = await pbx.request(m.CALLBACK_FAILED, task_id=once["id"], reason="x")
        assert bad["type"] == m.ERROR
    finally:
        await close_all(pbx, cid)
