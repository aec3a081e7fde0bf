"""SIP ↔ the dispatcher's words, and the messages the proxy derives from others."""

from __future__ import annotations

from channels.phone import translate
from channels.phone.parse import parse
from tests.channels.phone import messages as m


def test_caller_number_and_attributes():
    req = parse(m.request("INVITE", extra=["Subject: billing question"]))
    assert translate.caller_of(req) == "+33155501234"
    attrs = translate.call_attributes(req)
    assert attrs == {"to": "sip:support@127.0.0.1", "from": "sip:+33155501234@127.0.0.1",
                     "caller_name": "Caller", "subject": "billing question"}
    tel = parse(m.request("INVITE").replace(b'"Caller" <sip:+33155501234@127.0.0.1>',
                                            b"<tel:+33155509999;phone-context=x>"))
    assert translate.caller_of(tel) == "+33155509999"


def test_forwarded_request_gets_our_via_record_route_and_loses_our_route():
    req = parse(m.request("BYE", "sip:alice@127.0.0.1:5081", to_tag="t", extra=[
        "Route: <sip:127.0.0.1:5060;lr>, <sip:proxy.example.com;lr>"]))
    n = translate.count_our_routes(req, lambda h, p: h == "127.0.0.1" and p == 5060)
    assert n == 1
    out = translate.forwarded(req, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKus",
                              record_route=["<sip:127.0.0.1:5060;lr>"], drop_routes=n)
    assert out.top_via.branch == "z9hG4bKus" and len(out.vias) == 2
    assert out.values("route") == ["<sip:proxy.example.com;lr>"]
    assert out.get("record-route") == "<sip:127.0.0.1:5060;lr>"
    assert out.get("max-forwards") == "69"
    assert req.get("max-forwards") == "70"  # the original is untouched


def test_without_top_via_and_cancel_for():
    invite = parse(m.request("INVITE").replace(
        b"Via:", b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKus\r\nVia:", 1))
    resp = parse(m.response(180, "Ringing", branch="z9hG4bKus").replace(
        b"branch=z9hG4bKus", b"branch=z9hG4bKus, SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKabc1"))
    up = translate.without_top_via(resp)
    assert [v.branch for v in up.vias] == ["z9hG4bKabc1"]
    cancel = translate.cancel_for(invite)
    assert (cancel.method, cancel.uri, cancel.cseq.method) == ("CANCEL", invite.uri, "CANCEL")
    assert [v.branch for v in cancel.vias] == ["z9hG4bKus"]
