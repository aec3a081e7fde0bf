"""Pull lists over the console protocol (agent_console/pull.py) with real `websockets` clients:
pushed to the agents of a pull queue only, live and in the router's order, picked from with
`pick`; a pick that comes second is refused with `task_taken` and the list follows."""

from __future__ import annotations

import asyncio

from twisted.internet.defer import ensureDeferred

from dispatcher.aio import to_future
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.intake import email_identity
from tests.agent_console.harness import run, start_console

PULL = Queue("support", requirement={"support": 5}, mode=Mode.PULL)


async def pull_console(tmp_path):
    c = await start_console(tmp_path, queue=PULL)
    await to_future(ensureDeferred(c.configuration.change_queue(Queue("sales"))))
    await c.put_agent("a1")
    await c.put_agent("a2")
    await to_future(ensureDeferred(c.configuration.change_agent(
        Agent("a3", name="A3", queues={"sales"}))))
    return c


def listed(frame) -> list[str]:
    return [i["subject"] for i in frame["items"]]


async def pull_frames(client) -> list[dict]:
    """The pull_list frames received so far (a ping's answer comes after them)."""
    assert (await client.request("ping"))["type"] == "pong"
    frames = [f for f in client.seen if f["type"] == "pull_list"]
    client.seen.clear()
    return frames


@run
async def test_agents_of_a_pull_queue_see_its_list_live_and_others_do_not(tmp_path):
    c = await pull_console(tmp_path)
    try:
        a1, a3 = await c.connect("a1"), await c.connect("a3")
        first = await a1.expect("pull_list")  # at once, even empty
        assert first["items"] == [] and first["total"] == 0 and first["pulls"] is True
        await c.mail(subject="Older", request="SB-000001")
        await asyncio.sleep(0.05)
        await to_future(c.intake.submit(Channel.EMAIL, "support", email_identity("bo@example.org"),
                                        priority=9, attributes={"subject": "Urgent"}))
        frame = await a1.expect(lambda f: f["type"] == "pull_list" and f["total"] == 2)
        assert listed(frame) == ["Urgent", "Older"]  # the router's order: priority first
        old = frame["items"][1]
        assert old["request"] == "SB-000001" and old["customer"] == "Ann Example"
        assert old["channel"] == "email" and old["priority"] == 0 and old["deadline"] is None
        assert old["age"] >= 0 and old["created_at"] <= frame["at"]
        # An agent without a pull queue is told nothing of it.
        assert await pull_frames(a3) == []
        await a1.close()
        await a3.close()
    finally:
        await c.stop()


@run
async def test_pick_from_the_list_and_a_second_pick_is_task_taken(tmp_path):
    c = await pull_console(tmp_path)
    try:
        a1, a2 = await c.connect("a1"), await c.connect("a2")
        for client in (a1, a2):
            assert (await client.request("presence", status="available"))["type"] == "ok"
        task = await c.mail(subject="Pick me")
        frame = await a2.expect(lambda f: f["type"] == "pull_list" and f["total"] == 1)
        (item,) = frame["items"]
        assert item["task_id"] == task.id
        assert (await a1.request("pick", task_id=task.id))["type"] == "ok"
        assigned = await a1.expect("assigned")
        assert assigned["via"] == "pick" and assigned["task"]["id"] == task.id
        # a2 clicks the same line a moment later: refused, clearly, and the list refreshed.
        refused = await a2.request("pick", task_id=task.id)
        assert refused["type"] == "error" and refused["code"] == "task_taken"
        assert "someone else took it first" in refused["message"]
        fresh = await a2.expect(lambda f: f["type"] == "pull_list" and f["total"] == 0)
        assert fresh["items"] == []
        await a1.close()
        await a2.close()
    finally:
        await c.stop()


@run
async def test_the_list_is_pushed_at_most_once_a_second_and_only_when_it_changes(tmp_path):
    c = await pull_console(tmp_path)
    try:
        a1 = await c.connect("a1")
        await a1.expect("pull_list")
        for i in range(5):
            await c.mail(subject=f"Mail {i}")
        await asyncio.sleep(1.5)
        frames = await pull_frames(a1)
        assert 1 <= len(frames) <= 2, [f["total"] for f in frames]
        assert frames[-1]["total"] == 5
        times = [f["at"] for f in frames]
        assert all(b - a >= 0.99 for a, b in zip(times, times[1:], strict=False))
        # Nothing changes: nothing more is sent (ages are the page's to count).
        await asyncio.sleep(1.3)
        assert await pull_frames(a1) == []
        await a1.close()
    finally:
        await c.stop()
