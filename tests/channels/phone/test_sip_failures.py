"""The transaction layer when its user fails (issue 13): an unexpected exception while handling
one request is answered 500 for that request only, in its transaction, under a request id that
the log line carries too; a source repeating it gets one log line a minute, not one a packet."""

from __future__ import annotations

import logging
import re

from channels.phone.parse import parse
from channels.phone.sip import Endpoint, Flow
from tests.channels.phone import messages as m
from tests.channels.phone.test_sip import User, Wire

PHONE = Flow("udp", "127.0.0.1", 5071)


class Failing(User):
    """Fails on INVITEs whose Call-ID starts with "boom"."""

    def request(self, txn):
        if txn.request.call_id.startswith("boom"):
            raise RuntimeError("a bug in the transaction user")
        super().request(txn)


def setup():
    from twisted.internet.task import Clock

    clock, user, wire = Clock(), Failing(200), Wire()
    ep = Endpoint(clock, user, "127.0.0.1", 5060, None, clock=clock)
    ep._udp = wire
    return ep, user, wire, clock


def test_a_failing_request_gets_500_with_a_request_id_logged_once(caplog):
    ep, user, wire, clock = setup()
    caplog.set_level(logging.INFO, logger="channels.phone.sip")
    for i in range(50):
        ep.received(m.request("INVITE", branch=f"z9hG4bKboom{i}", call_id=f"boom-{i}"), PHONE)
    finals = [parse(d) for d, _ in wire.sent if parse(d).status != 100]
    assert len(finals) == 50 and {r.status for r in finals} == {500}
    ids = {re.fullmatch(r"Server Internal Error \(request ([0-9a-f]{8})\)", r.reason).group(1)
           for r in finals}
    assert len(ids) == 50  # one id per request
    lines = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    text = lines[0].getMessage()
    assert re.search(r"request ([0-9a-f]{8})", text).group(1) in ids
    assert "RuntimeError: a bug in the transaction user" in text
    # the 500 went through the transaction: a retransmission gets it again, and it ends
    wire.sent.clear()
    ep.received(m.request("INVITE", branch="z9hG4bKboom0", call_id="boom-0"), PHONE)
    assert [parse(d).status for d, _ in wire.sent] == [500]
    # other requests are not affected
    wire.sent.clear()
    ep.received(m.request("INVITE", branch="z9hG4bKfine", call_id="fine-1"), PHONE)
    assert [parse(d).status for d, _ in wire.sent] == [100, 200]
    clock.advance(61)  # a minute later the next failure is logged again, with the count
    ep.received(m.request("INVITE", branch="z9hG4bKboomX", call_id="boom-x"), PHONE)
    lines = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(lines) == 2 and "49 more since" in lines[1].getMessage()
