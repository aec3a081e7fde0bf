"""Call control with queue media (control.py's three hooks, media.Hold with a fake worker link):
182 at once then 183 with our SDP (repeated, our To-tag), 182 for an INVITE without usable SDP,
the agent's 180 not relayed while we play, our stream stopped when the agent's 200 goes to the
caller or the call ends, and the callback digit: keep_place, the confirmation, 480 with a
Reason, no abandon; a refused keep_place keeps the caller queued."""

from __future__ import annotations

from twisted.internet import defer

from channels.phone.config import PhoneSettings
from channels.phone.media import Hold
from channels.phone.parse import Request
from dispatcher.domain.errors import InvalidValue
from tests.channels.phone import messages as m
from tests.channels.phone.test_control import CALLER, PHONE, offered, phone_says, setup, to
from tests.channels.phone.test_media import FakeLink, FakeWaits

SDP_OFFER = ("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def with_media(**settings):
    ep, control, calls, wire, clock = setup(**settings)
    link = FakeLink()
    control.hold = Hold(clock, link, FakeWaits(),
                        PhoneSettings(enabled=True, **settings), control.digit)
    kept = []

    def keep_place(call_id):
        kept.append(call_id)
        if getattr(calls, "keep_fails", False):
            return defer.fail(InvalidValue("no number to call back"))
        return defer.succeed(object())

    calls.keep_place = keep_place
    return ep, control, calls, wire, clock, link, kept


def invite(ep, body=SDP_OFFER):
    ep.received(m.request("INVITE", body=body, extra=["Content-Type: application/sdp"]), CALLER)


def replies(wire):
    return [x for x in to(wire, CALLER) if not isinstance(x, Request)]


def test_183_with_our_sdp_repeated_and_182_without_usable_sdp():
    ep, control, calls, wire, clock, link, _ = with_media()
    invite(ep)
    got = replies(wire)
    assert [r.status for r in got] == [100, 182, 183]  # 182 at once, 183 once the stream runs
    progress = got[2]
    assert progress.get("content-type") == "application/sdp"
    assert progress.get("contact") == "<sip:127.0.0.1:5060;transport=udp>"
    assert b"m=audio 30000 RTP/AVP 0 101" in progress.body
    tag = progress.to.tag
    assert tag and got[1].to.tag == tag
    clock.advance(60)
    again = replies(wire)[-1]
    assert again.status == 183 and again.to.tag == tag and again.body == progress.body
    assert link.log[0][:4] == ("open", "call-1@phone", "127.0.0.1", 40000)
    # G.722 only: no stream, 182 as before
    ep2, _, _, wire2, _, link2, _ = with_media()
    invite(ep2, SDP_OFFER.replace("RTP/AVP 0 101", "RTP/AVP 9"))
    assert [r.status for r in replies(wire2)] == [100, 182] and link2.log == []


def test_agent_180_not_relayed_while_we_play_then_200_stops_our_stream():
    ep, control, calls, wire, clock, link, _ = with_media()
    invite(ep)
    offered(control)
    (leg,) = [x for x in to(wire, PHONE) if isinstance(x, Request)]
    assert leg.body == SDP_OFFER.encode()  # the caller's offer goes to the agent's phone
    phone_says(ep, leg, 180, "Ringing")
    assert [r.status for r in replies(wire)] == [100, 182, 183]
    phone_says(ep, leg, 200, "OK", extra=["Content-Type: application/sdp"])
    assert replies(wire)[-1].status == 200 and replies(wire)[-1].to.tag == "pt1"
    assert link.log[-1] == ("close", "call-1@phone")


def test_cancel_stops_the_stream():
    ep, control, calls, wire, clock, link, _ = with_media()
    invite(ep)
    ep.received(m.request("CANCEL"), CALLER)
    assert link.log[-1] == ("close", "call-1@phone")
    assert ("abandoned", "call-1@phone", "caller_cancel") in calls.log


def test_callback_digit_keeps_the_place_confirms_and_ends_with_480():
    ep, control, calls, wire, clock, link, kept = with_media(callback_digit="1")
    invite(ep)
    link.on_digit("call-1@phone", "5")  # another digit: nothing
    assert kept == []
    link.on_digit("call-1@phone", "1")
    link.on_digit("call-1@phone", "1")  # pressed twice: asked once
    assert kept == ["call-1@phone"]
    assert link.log[-1] == ("play", "call-1@phone", ["en/callback_confirm"], True)
    assert replies(wire)[-1].status == 183  # nothing final before the confirmation is played
    clock.advance(5)
    assert len(replies(wire)) == 3  # no 183 either while it plays
    link.played.callback(True)
    final = replies(wire)[-1]
    assert final.status == 480 and "callback booked" in final.get("reason")
    assert "abandoned" not in calls.kinds()
    assert link.log[-1] == ("close", "call-1@phone")
    assert "call-1@phone" not in control.by_call_id


def test_callback_refused_keeps_the_caller_queued_and_callbacks_off_ignore_digits():
    ep, control, calls, wire, clock, link, kept = with_media(callback_digit="1")
    calls.keep_fails = True
    invite(ep)
    link.on_digit("call-1@phone", "1")
    assert kept == ["call-1@phone"]
    clock.advance(60)
    assert replies(wire)[-1].status == 183 and "call-1@phone" in control.by_call_id
    ep2, _, _, _, _, link2, kept2 = with_media()  # callback_digit "" (off)
    invite(ep2)
    link2.on_digit("call-1@phone", "1")
    assert kept2 == []
