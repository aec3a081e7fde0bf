"""channels/phone/redirect.py: SIP on a node that does not route answers every request with a
302 to the leader's SIP address (the Request-URI's user and the transport kept), 503 with
Retry-After while no leader is known; through the real transaction layer (sip.py Endpoint)
with its UDP port stood in for."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from channels.phone.parse import parse
from channels.phone.redirect import Redirect, contact
from channels.phone.sip import Endpoint, Flow
from tests.channels.phone import messages as m
from tests.channels.phone.test_sip import Wire

PHONE = Flow("udp", "127.0.0.1", 5071)
LEADER = {"sip": "sip://10.0.0.11:5070", "sip_tcp": "sip://10.0.0.11:5072"}


def standby(leader=lambda kind: succeed(LEADER.get(kind))):
    clock, wire = Clock(), Wire()
    redirect = Redirect(leader)
    ep = Endpoint(clock, redirect, "127.0.0.1", 5060, None, clock=clock)
    ep._udp = wire
    return ep, redirect, wire


def answers(wire: Wire) -> list:
    """The final responses sent (the layer's own 100 Trying left out)."""
    got = [parse(d) for d, _ in wire.sent if d.startswith(b"SIP/2.0")]
    return [r for r in got if r.status >= 200]


def test_an_invite_is_sent_to_the_leader_with_its_queue_address():
    ep, redirect, wire = standby()
    ep.received(m.request("INVITE", "sip:support@192.0.2.1"), PHONE)
    [moved] = answers(wire)
    assert moved.status == 302
    assert moved.get("contact") == "<sip:support@10.0.0.11:5070>"
    assert moved.call_id == "call-1@phone" and ";tag=" in moved.get("to")
    ep.received(m.request("INVITE", "sip:support@192.0.2.1"), PHONE)  # a retransmission
    assert [a.status for a in answers(wire)] == [302, 302]  # the same answer, once more
    ep.received(m.request("ACK", "sip:support@192.0.2.1", to_tag=moved.to.tag), PHONE)
    ep.received(m.request("INVITE", "sip:support@192.0.2.1"), PHONE)  # absorbed once acked
    assert len(answers(wire)) == 2 and redirect.redirected == 1


def test_a_register_is_redirected_too_and_tcp_keeps_its_transport():
    assert contact(LEADER["sip_tcp"], parse(m.request("REGISTER", "sip:192.0.2.1")),
                   Flow("tcp", "127.0.0.1", 40000)) == "<sip:10.0.0.11:5072;transport=tcp>"
    ep, _, wire = standby()
    ep.received(m.request("REGISTER", "sip:192.0.2.1", cseq_method="REGISTER"), PHONE)
    [moved] = answers(wire)
    assert (moved.status, moved.get("contact")) == (302, "<sip:10.0.0.11:5070>")


def test_no_leader_known_is_503_with_retry_after():
    for leader in (lambda kind: succeed(None), lambda kind: fail(RuntimeError("db away")),
                   lambda kind: succeed("ws://10.0.0.11:8081")):  # not a SIP address
        ep, redirect, wire = standby(leader)
        ep.received(m.request("INVITE"), PHONE)
        [busy] = answers(wire)
        assert (busy.status, busy.get("retry-after")) == (503, "5")
        assert redirect.redirected == 0


def test_a_cancel_before_the_leader_is_known_ends_the_invite_with_487():
    waiting: Deferred = Deferred()
    ep, _, wire = standby(lambda kind: waiting)
    ep.received(m.request("INVITE"), PHONE)
    ep.received(m.request("CANCEL", cseq_method="CANCEL"), PHONE)
    waiting.callback(LEADER["sip"])  # too late: the INVITE is answered
    assert sorted(a.status for a in answers(wire)) == [200, 487]
