"""We as subscriber (channels/phone/watch.py) with a fake Calls and task.Clock: a phone whose
REGISTER lists `dialog` in Allow-Events gets our SUBSCRIBE; its NOTIFYs of a call not ours make
the agent engaged, idle ones free them; NOTIFYs outside the subscription are 481; the
subscription is refreshed and ends with the registration; with a 486, idle comes from the
phone's dialog state."""

from __future__ import annotations

import pytest

from channels.phone import dialog_info as di
from channels.phone.parse import Request, parse
from channels.phone.registrar import digest_response, parse_credentials
from dispatcher.service.calls import digest_ha1
from tests.channels.phone import messages as m
from tests.channels.phone.test_control import CALL, CALLER, PHONE, offered, phone_says, to
from tests.channels.phone.test_presence import setup

CONTACT = "sip:alice@127.0.0.1:5081"


def register(ep, wire, cseq: int = 1, expires: int = 300, events: str = "dialog") -> None:
    """alice's phone REGISTERs (digest) from PHONE."""
    def msg(n: int, auth: str | None) -> bytes:
        lines = ["REGISTER sip:127.0.0.1 SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKreg{n};rport",
                 "Max-Forwards: 70", "From: <sip:alice@127.0.0.1>;tag=r1",
                 "To: <sip:alice@127.0.0.1>", "Call-ID: reg-1@phone", f"CSeq: {n} REGISTER",
                 f"Contact: <{CONTACT}>", f"Expires: {expires}"]
        if events:
            lines.append(f"Allow-Events: presence, {events}")
        if auth:
            lines.append(f"Authorization: {auth}")
        return "\r\n".join([*lines, "Content-Length: 0", "", ""]).encode()

    ep.received(msg(cseq, None), PHONE)
    challenge = [x for x in to(wire, PHONE) if not isinstance(x, Request)][-1]
    params = next(parse_credentials(v)[1] for v in challenge.values("www-authenticate")
                  if "MD5" in v)
    ha1 = digest_ha1("alice", params["realm"], "secret")
    resp = digest_response("MD5", ha1, params["nonce"], "REGISTER", "sip:127.0.0.1", "auth",
                           "00000001", "c0ffee")
    ep.received(msg(cseq + 1, f'Digest username="alice", realm="{params["realm"]}", '
                              f'nonce="{params["nonce"]}", uri="sip:127.0.0.1", '
                              f'response="{resp}", algorithm=MD5, qop=auth, nc=00000001, '
                              f'cnonce="c0ffee"'), PHONE)
    assert [x for x in to(wire, PHONE) if not isinstance(x, Request)][-1].status == 200


def subscribes(wire) -> list[Request]:
    seen: dict[str, Request] = {}
    for x in to(wire, PHONE):
        if isinstance(x, Request) and x.method == "SUBSCRIBE":
            seen.setdefault(x.get("cseq"), x)
    return list(seen.values())


def reply(ep, req: Request, status: int = 200, expires: int | None = 600) -> None:
    lines = [f"SIP/2.0 {status} OK", *(f"Via: {v}" for v in req.values("via")),
             f"From: {req.get('from')}", f"To: {req.get('to')}"
             + ("" if req.to.tag else ";tag=ph1"),
             f"Call-ID: {req.call_id}", f"CSeq: {req.get('cseq')}"]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    ep.received("\r\n".join([*lines, "Content-Length: 0", "", ""]).encode(), PHONE)


def notify(ep, wire, sub: Request, dialogs=(), *, version: int = 1, cseq: int = 1,
           state: str = "active;expires=600", body: bytes | None = None,
           their_tag: str = "ph1", call_id: str | None = None) -> int:
    """The phone's NOTIFY inside our subscription `sub`: the status we answered."""
    if body is None:
        body = di.render("sip:alice@127.0.0.1", version, dialogs)
    lines = ["NOTIFY sip:switchboard@127.0.0.1:5060 SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKn{cseq}{their_tag};rport",
             "Max-Forwards: 70", f"From: <sip:alice@127.0.0.1>;tag={their_tag}",
             f"To: {sub.get('from')}", f"Call-ID: {call_id or sub.call_id}",
             f"CSeq: {cseq} NOTIFY", "Event: dialog", f"Subscription-State: {state}",
             "Content-Type: application/dialog-info+xml",
             f"Content-Length: {len(body)}", "", ""]
    ep.received("\r\n".join(lines).encode() + body, PHONE)
    return [x for x in to(wire, PHONE) if not isinstance(x, Request)][-1].status


def ringing(ep, control, wire) -> Request:
    """A queued call offered to alice: the INVITE her phone got."""
    ep.received(m.request("INVITE", body="v=0\r\n", extra=["Content-Type: application/sdp"]),
                CALLER)
    offered(control)
    (invite,) = [x for x in to(wire, PHONE) if isinstance(x, Request) and x.method == "INVITE"]
    return invite


def devices(calls) -> list:
    return [e[2] for e in calls.log if e[0] == "device"]


def watched():
    ep, control, presence, calls, wire, clock = setup()
    register(ep, wire)
    (sub,) = subscribes(wire)
    reply(ep, sub)
    return ep, control, presence, calls, wire, clock, sub


DIRECT = di.Dialog("d1", "confirmed", "direct-1@phone", direction="initiator")


def test_a_phone_that_publishes_dialogs_gets_our_subscribe():
    ep, control, presence, calls, wire, clock, sub = watched()
    assert sub.uri == CONTACT and sub.get("event") == "dialog"
    assert sub.get("expires") == "600" and sub.get("accept") == di.CONTENT_TYPE
    assert sub.get("to") == "<sip:alice@127.0.0.1>" and sub.from_.tag
    assert sub.get("contact") == "<sip:127.0.0.1:5060>"


def test_a_call_of_its_own_makes_the_agent_busy_until_idle():
    ep, control, presence, calls, wire, clock, sub = watched()
    assert notify(ep, wire, sub, version=0, cseq=1) == 200
    assert devices(calls) == []  # idle, as it was: nothing to tell
    assert notify(ep, wire, sub, [DIRECT], version=1, cseq=2) == 200
    assert devices(calls) == [True]
    assert notify(ep, wire, sub, [DIRECT], version=2, cseq=3) == 200
    assert devices(calls) == [True]  # once per change
    gone = di.Dialog("d1", "terminated", "direct-1@phone")
    assert notify(ep, wire, sub, [gone], version=3, cseq=4) == 200
    assert devices(calls) == [True, False]


def test_our_own_leg_on_the_phone_is_not_a_call_of_its_own():
    ep, control, presence, calls, wire, clock, sub = watched()
    ringing(ep, control, wire)
    ours = di.Dialog("x", "early", CALL, direction="recipient")
    assert notify(ep, wire, sub, [ours], version=1, cseq=1) == 200
    assert devices(calls) == []


def test_notifies_outside_the_subscription_and_bad_bodies():
    ep, control, presence, calls, wire, clock, sub = watched()
    assert notify(ep, wire, sub, [DIRECT], call_id="other@x") == 481
    assert notify(ep, wire, sub, [DIRECT], their_tag="fork2", cseq=2) == 481
    evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            b'<dialog-info version="1" state="full" entity="&a;"/>')
    assert notify(ep, wire, sub, body=evil, cseq=3) == 400
    assert devices(calls) == []
    assert notify(ep, wire, sub, [DIRECT], version=5, cseq=4) == 200
    assert notify(ep, wire, sub, [], version=4, cseq=5) == 200  # older: ignored
    assert devices(calls) == [True]


def test_partial_documents_add_and_remove_dialogs():
    ep, control, presence, calls, wire, clock, sub = watched()
    partial = di.render("sip:alice@127.0.0.1", 1, [DIRECT]).replace(b'"full"', b'"partial"')
    assert notify(ep, wire, sub, body=partial, cseq=1) == 200
    other = di.Dialog("d2", "early", "direct-2@phone")
    body = di.render("sip:alice@127.0.0.1", 2, [other]).replace(b'"full"', b'"partial"')
    assert notify(ep, wire, sub, body=body, cseq=2) == 200
    end1 = di.render("sip:alice@127.0.0.1", 3, [di.Dialog("d1", "terminated")]) \
        .replace(b'"full"', b'"partial"')
    assert notify(ep, wire, sub, body=end1, cseq=3) == 200
    assert devices(calls) == [True]  # d2 still rings
    end2 = di.render("sip:alice@127.0.0.1", 4, [di.Dialog("d2", "terminated")]) \
        .replace(b'"full"', b'"partial"')
    assert notify(ep, wire, sub, body=end2, cseq=4) == 200
    assert devices(calls) == [True, False]


def test_refreshed_before_expiry_and_forgotten_with_the_registration():
    ep, control, presence, calls, wire, clock, sub = watched()
    assert notify(ep, wire, sub, [DIRECT], cseq=1) == 200
    clock.advance(569)
    assert len(subscribes(wire)) == 1
    clock.advance(2)
    first, again = subscribes(wire)
    assert again.call_id == sub.call_id and again.to.tag == "ph1"
    reply(ep, again)
    register(ep, wire, cseq=3, expires=0)
    assert devices(calls) == [True, False]  # its state is no longer known: not busy
    assert notify(ep, wire, sub, [DIRECT], cseq=2, version=2) == 481


def test_a_phone_that_refuses_is_not_watched():
    ep, control, presence, calls, wire, clock = setup()
    register(ep, wire)
    (sub,) = subscribes(wire)
    reply(ep, sub, status=489, expires=None)
    assert presence.watch.by_agent == {}
    assert notify(ep, wire, sub, [DIRECT]) == 481


@pytest.mark.parametrize("events, mode", [("", "auto"), ("dialog", "off")])
def test_no_subscribe_without_allow_events_or_when_off(events, mode):
    ep, control, presence, calls, wire, clock = setup(watch_dialogs=mode)
    register(ep, wire, events=events)
    assert subscribes(wire) == []


def test_486_with_a_watched_phone_lasts_until_the_phone_is_idle():
    ep, control, presence, calls, wire, clock, sub = watched()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 486, "Busy Here")
    assert devices(calls) == [True]
    assert notify(ep, wire, sub, [DIRECT], version=1, cseq=1) == 200
    clock.advance(31)  # busy_seconds: but the phone still shows its own call
    assert devices(calls) == [True] and presence.engaged("alice")
    assert notify(ep, wire, sub, [], version=2, cseq=2) == 200
    assert devices(calls) == [True, False]


def test_486_then_an_idle_phone_frees_the_agent_before_busy_seconds():
    ep, control, presence, calls, wire, clock, sub = watched()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 486, "Busy Here")
    assert notify(ep, wire, sub, [], version=1, cseq=1) == 200
    assert devices(calls) == [True, False]
    clock.advance(31)
    assert devices(calls) == [True, False]


def test_parse_is_reachable_from_the_wire_only_through_our_subscriptions():
    ep, control, presence, calls, wire, clock, sub = watched()
    raw = parse(b"NOTIFY sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5081;"
                b"branch=z9hG4bKq\r\nFrom: <sip:a@b>;tag=q\r\nTo: <sip:c@d>\r\n"
                b"Call-ID: q\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n")
    ep.received(raw.to_bytes(), PHONE)
    assert [x for x in to(wire, PHONE) if not isinstance(x, Request)][-1].status == 481
