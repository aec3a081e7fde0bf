"""The agent console with phone offers (issue 5 item 6), on the console's own harness: a call
offer carries the caller's number and customer history like an e-mail offer; a call that rings
the agent's SIP phone is accepted by the phone only (the console's accept is refused with
`answer_on_phone`), a PBX (CTI) call is accepted in the console."""

from __future__ import annotations

from dispatcher.aio import to_future
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import AnswerOnPhone
from dispatcher.service.intake import phone_identity
from tests.agent_console.harness import run, start_console

NUMBER = "+3225550100"


async def ring(c, source: str, call_id: str):
    return await to_future(c.intake.submit(
        Channel.PHONE, "support", identity=phone_identity(NUMBER), customer_name="Ann",
        attributes={"caller": NUMBER, "source": source, "call_id": call_id}))


@run
async def test_a_sip_call_is_answered_on_the_phone_a_cti_call_in_the_console(tmp_path):
    c = await start_console(tmp_path)
    try:
        await c.put_agent("a1")
        agent = await c.connect("a1")
        assert (await agent.request("presence", status="available"))["type"] == "ok"

        sip = await ring(c, "sip", "sip-1")
        offer = await agent.expect(lambda f: f["type"] == "offer" and f["task"]["id"] == sip.id)
        assert offer["task"]["attributes"]["caller"] == NUMBER
        assert offer["customer"]["identities"] == [{"kind": "phone", "value": NUMBER}]
        refused = await agent.request("accept", offer_id=offer["offer_id"])
        assert (refused["type"], refused["code"]) == ("error", AnswerOnPhone.code)
        assert c.router.tasks[sip.id].state.value == "offered"  # still ringing the phone
        assert (await agent.request("reject", offer_id=offer["offer_id"]))["type"] == "ok"

        cti = await ring(c, "cti", "cti-1")
        offer = await agent.expect(lambda f: f["type"] == "offer" and f["task"]["id"] == cti.id)
        assert offer["customer"]["id"] == cti.customer_id
        assert (await agent.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        assigned = await agent.expect("assigned")
        assert assigned["task"]["id"] == cti.id
        await agent.close()
    finally:
        await c.stop()
