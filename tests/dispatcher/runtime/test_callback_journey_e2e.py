"""A caller keeps their place and is called back, end to end through the real `switchboard
serve` (issue 18): the caller (sipp) rings the queue's address with nobody free, hears the
queue's media (RTP measured here), presses 1 (sipp plays the RFC 4733 event to our 183's media
address) and is released with 480 "callback booked"; the callback waits in the queue. The agent
signs in on the console (WebSocket, a signed token) with a registered desk phone (sipp): the
console's offer names the number to call, the dispatcher rings the agent's phone (no SDP, RFC
3725 flow I), then the customer at `[phone] callback_uri` (a sipp UAS, with the agent's SDP);
the agent's ACK carries the customer's SDP, the customer hangs up, the agent wraps up. What the
operator then reads (`switchboard tasks show --json`, `switchboard report --format json`) says
the same."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import make_account
from dispatcher.storage import schema
from dispatcher.storage.phones import SqlPhones
from tests.channels.phone import running as phone
from tests.channels.phone.test_media_sipp import Receiver
from tests.dispatcher.runtime.running import (
    base_env,
    free_port,
    run,
    switchboard_command,
    wait_port,
)
from tests.dispatcher.runtime.test_answers_e2e import SECRET, console
from tests.dispatcher.storage.wiring import wire
from tests.support import need_binary, stop_process

pytestmark = pytest.mark.slow

NUMBER = "+3225550199"  # the caller's number: the callback scenarios check it at both phones
# "1" as RFC 4733 events with payload type 101, as the caller's SDP offer declares it.
DIGIT_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")  # Debian's sip-tester ships it


def prepare(url: str) -> None:
    """A phone queue and the agent Ann, who takes calls with her SIP desk phone."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(SqlPhones(w.pool, time.time).put_phone_account(
            make_account("ann", "ann", phone.PASSWORD)))
        w.wait(w.store.put_queue(Queue(
            "support", offer_timeout={Channel.PHONE: 20.0, Channel.EMAIL: 60.0},
            wrap_up_seconds=1.0)))
        w.wait(w.store.put_agent(Agent("ann", name="Ann", queues={"support"},
                                       capacity={Channel.PHONE: 1, Channel.EMAIL: 3},
                                       channels={Channel.PHONE})))
    finally:
        w.close()


def caller_scenario(tmp: Path) -> Path:
    """The media caller, calling from NUMBER, who listens 2 s to the queue and then presses 1:
    sipp itself plays the RFC 4733 event (payload type 101, event 1, the capture that ships
    with sipp) to the media address of our 183's SDP."""
    text = (phone.SCENARIOS / "customer_media_callback.xml").read_text()
    assert DIGIT_PCAP.exists(), DIGIT_PCAP
    presses = (f'<recv response="183" />\n  <pause milliseconds="2000" />\n'
               f'  <nop><action><exec play_pcap_audio="{DIGIT_PCAP}" /></action></nop>')
    out = tmp / "caller_keeps_place.xml"
    out.write_text(text.replace("+3315553[call_number]", NUMBER)
                   .replace('<recv response="183" />', presses))
    return out


def customer_phone(tmp: Path, port: int) -> phone.Sipp:
    """The customer behind the trunk (`callback_uri`): sipp as a UAS that answers once."""
    cwd = tmp / "customer"
    cwd.mkdir()
    cmd = [need_binary("sipp"), "-sf", str(phone.SCENARIOS / "customer_callback.xml"),
           "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin", "-trace_err",
           "-trace_msg", "-timeout", "60s", "-timeout_error"]
    with open(cwd / "sipp-stderr.log", "ab") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    return phone.Sipp(proc, cwd, "customer_callback.xml")


def messages(sipp: phone.Sipp) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sipp.cwd.glob("*messages.log"))


def test_a_caller_keeps_their_place_and_the_agent_on_the_console_calls_them_back(tmp_path):
    sipp = need_binary("sipp")
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    prepare(url)
    (tmp_path / "jwt.secret").write_bytes(SECRET)
    http, ws, sip, trunk = free_port(), free_port(), phone.free_udp_port(), phone.free_udp_port()
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(http),
        SWITCHBOARD_EMAIL_ENABLED="false", SWITCHBOARD_CONSOLE_PORT=str(ws),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp_path / "jwt.secret"),
        SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS="http://127.0.0.1:8080",
        SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_HOST="127.0.0.1",
        SWITCHBOARD_PHONE_UDP_PORT=str(sip), SWITCHBOARD_PHONE_TCP_PORT="-1",
        SWITCHBOARD_PHONE_QUEUES="support=support",
        SWITCHBOARD_PHONE_DIGEST_ALGORITHMS="MD5,SHA-256",  # sipp answers MD5 only
        SWITCHBOARD_PHONE_REGISTER_MIN="1",
        SWITCHBOARD_PHONE_CALLBACK_DIGIT="1",
        SWITCHBOARD_PHONE_CALLBACK_URI=f"sip:{{number}}@127.0.0.1:{trunk}")
    started = time.time()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([*switchboard_command(), "serve"], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    receiver, procs = Receiver(), []
    try:
        wait_port(http, server, log)
        # 1. Nobody is signed in: the caller waits, hears the queue, presses 1, is released.
        caller = phone.sipp(sipp, tmp_path / "caller", f"127.0.0.1:{sip}",
                            str(caller_scenario(tmp_path)), "-key", "rtp_port",
                            str(receiver.port), "-key", "codec", "0", "-s", "support", "-m", "1",
                            "-mp", str(phone.free_udp_port()),
                            "-timeout", "30s", "-timeout_error")
        procs.append(caller)
        heard = receiver.collect(1.0)
        assert len(heard) >= 25, (len(heard), caller.logs())  # 50 packets a second
        assert {p.payload_type for _, p, _ in heard} == {0}  # the PCMU the caller offered
        assert caller.wait(30) == 0, caller.logs()
        assert "480 Temporarily Unavailable (callback booked)" in messages(caller)
        listed = run("tasks", "list", "--json", "--limit", "0", cwd=tmp_path, env=env)
        assert listed.code == 0, listed.err
        (waiting,) = json.loads(listed.out)
        assert waiting["state"] == "queued" and waiting["channel"] == "phone"

        # 2. Ann's desk phone registers; the customer's line waits behind the trunk.
        customer = customer_phone(tmp_path, trunk)
        procs.append(customer)
        desk = phone.sipp(sipp, tmp_path / "desk", f"127.0.0.1:{sip}", "agent_register.xml",
                          "-s", "ann", "-au", "ann", "-ap", phone.PASSWORD,
                          "-p", str(phone.free_udp_port()), "-m", "1", "-timeout", "60s",
                          "-timeout_error", ooc="agent_callback.xml")
        procs.append(desk)

        # 3. Ann signs in on the console: the offer names the number; her phone rings, then
        #    the customer's; the customer hangs up after talking; Ann is in wrap-up.
        async def desk_side() -> tuple[dict, dict]:
            ann = await console(ws, "ann", "agent")
            try:
                ok = await ann.request("presence", status="available")
                assert ok["type"] == "ok", ok
                offer = await ann.expect("offer")
                assigned = await ann.expect("assigned")  # her phone answered: her accept
                wrap = await ann.expect(lambda f: f.get("type") == "task_state"
                                        and f.get("state") == "wrap_up")
                assert assigned["task"]["id"] == offer["task"]["id"]
                return offer, wrap
            finally:
                await ann.ws.close()

        offer, wrap = asyncio.run(desk_side())
        assert offer["task"]["id"] == waiting["id"]
        assert offer["task"]["callback"]["number"] == NUMBER
        assert wrap["task_id"] == waiting["id"]
        assert customer.wait(30) == 0, customer.logs()
        assert desk.wait(30) == 0, desk.logs()
    finally:
        for p in procs:
            p.stop()
        receiver.close()
        stop_process(server, grace=20)

    # What each phone got: the agent an INVITE without SDP and then, in the ACK, the
    # customer's SDP; the customer an INVITE to the number with the agent's SDP.
    got_desk, got_customer = messages(desk), messages(customer)
    assert "o=customer" in got_desk.split("ACK sip:", 1)[1]
    assert "o=agent" in got_customer.split(f"INVITE sip:{NUMBER}@", 1)[1]

    # What the operator reads.
    shown = run("tasks", "show", waiting["id"], "--json", cwd=tmp_path, env=env)
    assert shown.code == 0, shown.err
    trail = json.loads(shown.out)["trail"]
    kinds = [e["kind"] for e in trail]
    for kind in ("callback.requested", "task.offered", "callback.dialled", "callback.reached",
                 "call.ended"):
        assert kind in kinds, (kind, kinds)
    assert "task.abandoned" not in kinds
    requested = next(e for e in trail if e["kind"] == "callback.requested")
    assert requested["data"]["kept"] is True
    def minute(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M")

    report = run("report", "--from", minute(started - 120), "--to", minute(time.time() + 120),
                 "--format", "json", "--quiet", cwd=tmp_path, env=env)
    assert report.code == 0, report.err
    queue = json.loads(report.out)["period"]["queue"]["support"]
    assert (queue["callbacks_requested"], queue["callbacks_reached"]) == (1, 1), queue
