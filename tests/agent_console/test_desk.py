"""The agent's desk over the console protocol (agent_console/desk.py) with real `websockets`
clients: a call's answer time and its wrap-up window reach the agent, `wrap_up_extend` (by the
holder only: anyone else is `forbidden`), the queue's disposition codes in offers, assignments
and the welcome, and a code outside them refused by the server."""

from __future__ import annotations

from dispatcher.aio import to_future
from dispatcher.domain.queues import MAX_WRAP_UP_EXTENSION, Queue
from dispatcher.service.calls import Calls
from dispatcher.storage.memory import MemoryStore
from tests.agent_console.harness import run, start_console

CODES = (("solved", "Solved"), ("callback", "Call back later"))
WRAP = 30.0
QUEUE = Queue("support", requirement={"support": 5}, dispositions=CODES, wrap_up_seconds=WRAP)
LISTED = [{"code": "solved", "label": "Solved"}, {"code": "callback", "label": "Call back later"}]


async def desk(tmp_path):
    c = await start_console(tmp_path, queue=QUEUE)
    await c.put_agent("a1")
    await c.put_agent("a2")
    return c


@run
async def test_a_call_answered_then_ended_carries_its_times_and_the_queue_codes(tmp_path):
    c = await desk(tmp_path)
    calls = Calls(c.assignment, c.intake, MemoryStore())  # a PBX's call (CTI), no devices
    try:
        a1 = await c.connect("a1")
        assert (await a1.request("presence", status="available"))["type"] == "ok"
        await to_future(calls.arrived("pbx-1", "+3225550100", "support", source="cti"))
        offer = await a1.expect("offer")
        task_id = offer["task"]["id"]
        assert offer["task"]["attributes"]["caller"] == "+3225550100"
        assert offer["task"]["dispositions"] == LISTED
        assert (await a1.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        assigned = await a1.expect("assigned")
        assert assigned["task"]["dispositions"] == LISTED
        assert assigned["task"]["answered_at"] is not None  # assigned; no answer reported yet
        await to_future(calls.answered("pbx-1", "a1"))
        answered = await a1.expect("task_update")
        assert answered == {"type": "task_update", "task_id": task_id,
                            "answered_at": answered["answered_at"]}
        assert isinstance(answered["answered_at"], float)
        assert answered["answered_at"] >= assigned["task"]["answered_at"]
        await to_future(calls.ended("pbx-1", "caller"))
        wrap = await a1.expect(lambda f: f["type"] == "task_state" and f["state"] == "wrap_up")
        assert wrap["wrap_up_limit"] - wrap["wrap_up_until"] == MAX_WRAP_UP_EXTENSION
        assert 0 < wrap["wrap_up_until"] - answered["answered_at"] <= WRAP + 5
        # After a reconnection the welcome says it all again.
        await a1.close()
        again = await c.connect("a1")
        (held,) = again.welcome["tasks"]
        assert held["answered_at"] == answered["answered_at"]
        assert held["wrap_up_until"] == wrap["wrap_up_until"]
        assert held["dispositions"] == LISTED
        await again.close()
    finally:
        calls.stop()
        await c.stop()


async def wrapping_mail(c, a1):
    assert (await a1.request("presence", status="available"))["type"] == "ok"
    await c.mail()
    offer = await a1.expect("offer")
    task_id = offer["task"]["id"]
    assert (await a1.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
    assert (await a1.request("wrap_up", task_id=task_id))["type"] == "ok"
    wrap = await a1.expect(lambda f: f["type"] == "task_state" and f["state"] == "wrap_up")
    return task_id, wrap


@run
async def test_wrap_up_extend_by_the_holder_and_forbidden_to_anyone_else(tmp_path):
    c = await desk(tmp_path)
    try:
        a1, a2 = await c.connect("a1"), await c.connect("a2")
        task_id, wrap = await wrapping_mail(c, a1)
        refused = await a2.request("wrap_up_extend", task_id=task_id, seconds=60)
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        assert c.router.wrap_up_window(task_id)[0] == wrap["wrap_up_until"]
        done = await a1.request("wrap_up_extend", task_id=task_id, seconds=60)
        assert done["type"] == "ok"
        assert done["wrap_up_until"] == wrap["wrap_up_until"] + 60
        pushed = await a1.expect("task_update")
        assert pushed == {"type": "task_update", "task_id": task_id,
                          "wrap_up_until": done["wrap_up_until"],
                          "wrap_up_limit": wrap["wrap_up_limit"]}
        too_much = await a1.request("wrap_up_extend", task_id=task_id,
                                    seconds=MAX_WRAP_UP_EXTENSION)
        assert too_much["code"] == "invalid_value" and "more at most" in too_much["message"]
        bad = await a1.request("wrap_up_extend", task_id=task_id, seconds="60")
        assert bad["code"] == "bad_message"
        kinds = [e.kind for e in await to_future(c.store.task_events(task_id))]
        assert kinds.count("task.wrap_up_extended") == 1
        await a1.close()
        await a2.close()
    finally:
        await c.stop()


@run
async def test_a_code_outside_the_queue_list_is_refused_by_the_server(tmp_path):
    c = await desk(tmp_path)
    try:
        a1 = await c.connect("a1")
        task_id, _ = await wrapping_mail(c, a1)
        refused = await a1.request("complete", task_id=task_id, disposition="made_up")
        assert refused["type"] == "error" and refused["code"] == "invalid_value"
        done = await a1.request("complete", task_id=task_id, disposition="callback",
                                notes="free text: call back Tuesday")
        assert done["type"] == "ok"
        closed = await a1.expect("task_closed")
        assert closed["reason"] == "callback"
        await a1.close()
    finally:
        await c.stop()
