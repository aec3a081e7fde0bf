"""docs/asterisk.md, executed: the ARI application printed in the guide (its ```python block,
as written) runs against a stand-in for Asterisk's ARI (fake_ari.py) and the real dispatcher with
its CTI (cti_server.py, as in test_cti.py), with agents at their consoles. The test plays
Asterisk's side and walks the guide's cases: a call answered, bridged and hung up (wrap-up);
the extension's own states (INUSE, RINGING, NOT_INUSE) counting again after that call; the
states of a phone the app is dialling kept to itself; a dialled phone that never answers
(route.failed, the call offered to nobody else's desk but back in its queue); a caller who gives
up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from dispatcher.service.calls import call_task_id
from tests.channels.phone.fake_ari import FakeAri
from tests.channels.phone.test_cti import TEST_TIMEOUT, sign, start_app
from tests.support import stop_process

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "asterisk.md"
STEP_TIMEOUT = 15.0
SUPPORT, SALES = "+3225550000", "+3225550001"
CALLER = "+3225550100"
QUEUES = [{"name": "support"}, {"name": "sales"}]
AGENTS = [{"id": "ann", "extension": "201", "queues": ["support"]},
          {"id": "rob", "extension": "202", "queues": ["sales"]}]


def guide_program() -> str:
    """The guide's ARI application: the ```python block of its section 3."""
    text = GUIDE.read_text()
    section = text[text.index("## 3. The ARI application"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "docs/asterisk.md has no ARI application"
    return match.group(1)


async def within(awaitable, what: str):
    try:
        return await asyncio.wait_for(awaitable, STEP_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no {what} within {STEP_TIMEOUT}s") from None


async def until(predicate, what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.05)
    await within(poll(), what)


def test_the_asterisk_guide_walks_its_cases(tmp_path):
    server = start_app(tmp_path, queues=QUEUES, agents=AGENTS,
                       cti={"numbers": f"{SUPPORT}=support,{SALES}=sales"})
    program = tmp_path / "switchboard_ari.py"
    program.write_text(guide_program())
    token = tmp_path / "switchboard.jwt"
    token.write_text(sign("asterisk1"))
    app_log = tmp_path / "ari_app.log"

    async def walk() -> None:
        ari = FakeAri()
        await ari.start()
        env = dict(os.environ, **ari.urls, CTI_URL=f"ws://127.0.0.1:{server.cti_port}/",
                   CTI_TOKEN_FILE=str(token), EXTENSIONS="201,202")
        proc = subprocess.Popen([sys.executable, str(program)], env=env, cwd=tmp_path,
                                stdout=open(app_log, "ab"),  # noqa: SIM115 - the child keeps it
                                stderr=subprocess.STDOUT)
        ann = await server.agent("ann")
        try:
            await until(lambda: len(ari.subscriptions) == 2 or proc.poll() is not None,
                        "device-state subscriptions")
            assert ari.subscriptions == ["deviceState:PJSIP/201", "deviceState:PJSIP/202"], \
                app_log.read_text()

            # A call answered: arrived, accepted at the desk, dialled, bridged, hung up.
            await ari.caller("c1", CALLER, SUPPORT)
            offer = await ann.expect("offer")
            task_id = offer["task"]["id"]
            assert ari.called("POST", "/channels/c1/moh") == [{}]
            assert (await ann.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
            leg = await within(ari.legs.get(), "originate of PJSIP/201")
            assert (leg.endpoint, leg.args) == ("PJSIP/201", ["agent", "c1", "201"])
            await ari.answer(leg)
            await server.event("call.answered", task_id=task_id, agent_id="ann")
            await until(lambda: any(v == ["c1", leg.id] for v in ari.bridges.values()),
                        "the bridge of c1 and the agent leg")
            assert ari.called("DELETE", "/channels/c1/moh") == [{}]
            await ari.hang_up(leg.id)  # the agent hangs up
            ended = await server.event("call.ended", task_id=task_id)
            assert ended["data"]["by"] == "agent"
            await server.event("task.wrap_up", task_id=task_id, agent_id="ann")
            await until(lambda: "c1" in ari.hung_up, "the caller hung up by the app")
            assert (await ann.request("complete", task_id=task_id, disposition="solved")
                    )["type"] == "ok"

            # After that call, the phone's own states count again: a direct call (INUSE)
            # keeps the next call away, NOT_INUSE brings it.
            await ari.device("201", "INUSE")
            await server.event("agent.device", agent_id="ann", engaged=True)
            await ari.caller("c2", CALLER, SUPPORT)
            second = call_task_id("c2")
            await server.event("task.queued", task_id=second)
            assert not [e for e in server.events
                        if e["kind"] == "task.offered" and e["task_id"] == second]
            await ari.device("201", "NOT_INUSE")
            await server.event("agent.device", agent_id="ann", engaged=False)
            offer = await ann.expect("offer")
            assert offer["task"]["id"] == second
            assert (await ann.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
            leg = await within(ari.legs.get(), "originate of PJSIP/201 for c2")
            # The phone rings with our call: the app keeps that state to itself.
            await ari.device("201", "RINGING")
            # It never answers: route.failed, the call is taken from ann, back to its queue.
            await ari.no_answer(leg)
            moved = await server.event("task.transferred", task_id=second)
            assert moved["data"]["from_agent"] == "ann"
            closed = await ann.expect(lambda f: f["type"] == "task_closed"
                                      and f["task_id"] == second)
            assert closed["state"] == "queued"
            engaged = [e for e in server.events if e["kind"] == "agent.device"
                       and e["agent_id"] == "ann" and e["data"].get("engaged")]
            assert len(engaged) == 1, engaged  # INUSE only, not the RINGING of our leg

            # The caller gives up while waiting: abandoned.
            await ari.hang_up("c2")
            gone = await server.event("task.abandoned", task_id=second)
            assert gone["data"]["reason"] == "ended_by_caller"
            assert "refused" not in app_log.read_text(), app_log.read_text()
            assert proc.poll() is None, app_log.read_text()
        finally:
            await ann.close()
            stop_process(proc)
            await ari.stop()

    try:
        asyncio.run(asyncio.wait_for(walk(), TEST_TIMEOUT))
    finally:
        server.stop()
