"""The supervision messages against a real console on 127.0.0.1 with real `websockets`
clients: a supervisor watches the live state and carries out every balancing action (each
audited with their id); an agent token (and an integration's) can do none of it."""

from __future__ import annotations

import asyncio

import pytest
from twisted.internet.defer import ensureDeferred
from websockets.exceptions import ConnectionClosed

from agent_console import messages as m
from dispatcher.aio import to_future
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from tests.agent_console.harness import run, start_console

SUP = "supervisor:boss"

# Every supervisor-only request, with fields that would be valid for a supervisor.
ACTIONS = [
    ("watch", {}),
    ("agent_update", {"agent_id": "a1", "queues": ["billing"]}),
    ("agent_update", {"agent_id": "a1", "skills": {"support": 9}}),
    ("agent_presence", {"agent_id": "a1", "status": "offline"}),
    ("task_priority", {"task_id": "t1", "priority": 9}),
    ("task_move", {"task_id": "t1", "to_queue": "billing"}),
    ("task_assign", {"task_id": "t1", "to_agent": "a2"}),
    ("task_take_back", {"task_id": "t1"}),
    ("merge", {"survivor_id": "c1", "merged_id": "c2"}),
]


async def billing(c) -> None:
    await to_future(ensureDeferred(c.configuration.change_queue(Queue("billing"))))


def live_row(frame, queue="support", channel="email"):
    (row,) = [q for q in frame["queues"] if q["queue"] == queue and q["channel"] == channel]
    return row


@pytest.mark.parametrize("role", ["agent", "integration"])
@run
async def test_only_supervisors_watch_and_balance(tmp_path, caplog, role):
    c = await start_console(tmp_path)
    await billing(c)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        one = await c.connect("a1", role=role) if role == "agent" else await c.connect(
            "pbx", role=role)
        if role == "agent":
            await one.request("presence", status="available")
        task = await c.mail()
        before = [(e.kind, e.actor) for e in c.store.agent_events]
        for kind, fields in ACTIONS:
            fields = {k: (task.id if v == "t1" else v) for k, v in fields.items()}
            answer = await one.request(kind, **fields)
            assert answer["type"] == "error" and answer["code"] == m.FORBIDDEN, (kind, answer)
        await one.request("ping")
        assert not [f for f in one.seen if f["type"] == "live"]
        assert "forbidden" in caplog.text
        # Nothing changed: no event by anyone but the agents themselves and the system.
        assert [(e.kind, e.actor) for e in c.store.agent_events] == before
        assert c.router.agents["a1"].queues == {"support"}
        assert c.router.tasks[task.id].priority == 0
        assert not c.supervision.watched
    finally:
        await c.stop()


@run
async def test_a_supervisor_watches_live_numbers_change_when_tasks_arrive(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        sup = await c.connect("boss", role="supervisor")
        assert (await sup.request("watch"))["type"] == "ok"
        first = await sup.expect("live")
        assert live_row(first)["waiting"] == 0
        assert [a["id"] for a in first["agents"]] == ["a1"]
        await c.mail(subject="Refund please")
        await c.mail()
        frame = await sup.expect(lambda f: f["type"] == "live"
                                 and live_row(f)["waiting"] == 2)
        assert live_row(frame)["oldest_arrival"] <= frame["at"]
        assert frame["waiting"][0]["label"] == "Refund please"
        assert live_row(frame)["eligible"] == 1 and live_row(frame)["offline"] == 1
        # Nothing changes: no more frames (at most one a second, only on change).
        await sup.request("ping")
        sup.seen.clear()
        with pytest.raises(TimeoutError):
            await sup.expect("live", timeout=2.5)
        await sup.close()
        async with asyncio.timeout(5):  # the server sees the close
            while c.supervision.watched:
                await asyncio.sleep(0.02)
        assert not c.desks.live.sessions  # a closed socket stops watching
    finally:
        await c.stop()


@run
async def test_a_supervisor_reads_why_a_task_went_to_an_agent_in_words(tmp_path):
    """The live state carries each task's latest routing decision in words: who it was offered
    to, who declined it, who lacks the skill (the same words as `switchboard tasks show`)."""
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    await c.put_agent("low", support=2)  # below the queue's support 5
    try:
        sup = await c.connect("boss", role="supervisor")
        a1, a2 = await c.connect("a1"), await c.connect("a2")
        await a1.request("presence", status="available")
        await a2.request("presence", status="available")
        assert (await sup.request("watch"))["type"] == "ok"
        task = await c.mail(subject="Refund please")
        first, other = (a1, a2) if c.router.agents["a1"].offer_id else (a2, a1)
        first_id, other_id = ("a1", "a2") if first is a1 else ("a2", "a1")
        offer = await first.expect("offer")
        await first.request("reject", offer_id=offer["offer_id"])
        await other.expect("offer")
        words = (f"offered to {other_id} (longest idle of 1 available out of 2 eligible); "
                 f"passed over: {first_id} declined it; low: skill support 2 < 5")

        def shows(frame) -> bool:
            if frame["type"] != "live":
                return False
            rows = [t for t in frame["waiting"] if t["id"] == task.id]
            return bool(rows) and rows[0]["decision"] == words

        frame = await sup.expect(shows)
        (agent,) = [a for a in frame["agents"] if a["id"] == other_id]
        assert agent["offer"]["id"] == task.id and agent["offer"]["decision"] == words
    finally:
        await c.stop()


@run
async def test_every_balancing_action_is_carried_out_and_audited(tmp_path):
    c = await start_console(tmp_path)
    await billing(c)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        sup = await c.connect("boss", role="supervisor")
        a1, a2 = await c.connect("a1"), await c.connect("a2")
        await a1.request("presence", status="available")
        task = await c.mail()
        offer = await a1.expect("offer")

        # Priority, then the task to a named agent: a1's offer is taken back, a2 gets it.
        assert (await sup.request("task_priority", task_id=task.id, priority=7))["type"] == "ok"
        await a2.request("presence", status="available")
        assert (await sup.request("task_assign", task_id=task.id, to_agent="a2"))["type"] == "ok"
        gone = await a1.expect("offer_cancelled")
        assert gone["offer_id"] == offer["offer_id"]
        offer = await a2.expect("offer")
        assert offer["task"]["priority"] == 7
        await a2.request("accept", offer_id=offer["offer_id"])
        await a2.expect("assigned")

        # Taken back from a2: a1 gets it (never back to a2).
        assert (await sup.request("task_take_back", task_id=task.id))["type"] == "ok"
        closed = await a2.expect("task_closed")
        assert (closed["state"], closed["by"]) == ("queued", SUP)
        offer = await a1.expect("offer")
        assert offer["task"]["id"] == task.id

        # To another queue: the offer ends, it waits in billing; a1 moved there gets it back.
        assert (await sup.request("task_move", task_id=task.id, to_queue="billing"))["type"] == "ok"
        await a1.expect("offer_cancelled")
        assert c.router.tasks[task.id].queue == "billing"
        assert (await sup.request("agent_update", agent_id="a1", queues=["billing"],
                                  skills={"support": 6, "billing": 3}))["type"] == "ok"
        offer = await a1.expect("offer")
        assert offer["task"]["queue"] == "billing"

        # A break, then a sign-off: a2's console is closed politely.
        assert (await sup.request("agent_presence", agent_id="a2", status="break",
                                  reason="meeting"))["type"] == "ok"
        pres = await a2.expect(lambda f: f["type"] == "presence" and f["status"] == "break")
        assert pres["reason"] == "meeting"
        assert (await sup.request("agent_presence", agent_id="a2",
                                  status="offline"))["type"] == "ok"
        await a2.expect(lambda f: f["type"] == "presence" and f["status"] == "offline")
        with pytest.raises(ConnectionClosed) as closed_by:
            await a2.expect("never")
        assert closed_by.value.rcvd.code == m.CLOSE_SIGNED_OFF
        assert closed_by.value.rcvd.reason == m.SIGNED_OFF_REASON

        audit = [(e.kind, e.task_id or e.agent_id) for e in
                 [*c.store.agent_events, *await to_future(c.store.task_events(task.id))]
                 if e.actor == SUP]
        for kind in ("task.changed", "task.transferred", "offer.withdrawn", "task.requeued",
                     "agent.changed", "agent.status"):
            assert kind in [k for k, _ in audit], (kind, audit)
        assert ("agent.status", "a2") in audit and ("agent.changed", "a1") in audit
    finally:
        await c.stop()


@run
async def test_balancing_refusals_and_bad_requests(tmp_path):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    await to_future(ensureDeferred(c.configuration.change_agent(Agent("a3", queues={"support"},
                                             skills={"support": 6}))))
    try:
        sup = await c.connect("boss", role="supervisor")
        task = await c.mail()
        for kind, fields, code in [
            ("task_assign", {"task_id": task.id, "to_agent": "a3"}, "not_eligible"),  # offline
            ("task_move", {"task_id": task.id, "to_queue": "nope"}, "unknown_queue"),
            ("task_take_back", {"task_id": task.id}, "illegal_transition"),  # not assigned
            ("task_priority", {"task_id": task.id, "priority": 500}, "invalid_value"),
            ("task_priority", {"task_id": task.id, "priority": "high"}, "bad_message"),
            ("task_priority", {"task_id": "ghost", "priority": 1}, "unknown_task"),
            ("agent_update", {"agent_id": "a1"}, "bad_message"),
            ("agent_update", {"agent_id": "a1", "queues": "support"}, "bad_message"),
            ("agent_update", {"agent_id": "a1", "skills": {"x": 11}}, "invalid_value"),
            ("agent_update", {"agent_id": "ghost", "queues": []}, "unknown_agent"),
            ("agent_presence", {"agent_id": "a1", "status": "busy"}, "invalid_value"),
            ("agent_presence", {"agent_id": "a1"}, "bad_message"),
        ]:
            answer = await sup.request(kind, **fields)
            assert (answer["type"], answer["code"]) == ("error", code), (kind, fields, answer)
        assert c.router.tasks[task.id].priority == 0
    finally:
        await c.stop()
