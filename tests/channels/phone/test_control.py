"""Call control with a fake Calls and task.Clock: queueing (100, 182 repeated, time limit),
ringing the agent's phone on an offer (proxied INVITE with Record-Route), the phone's answers
(200 → answered then relayed; 486 → refused; no answer → CANCEL), the caller's CANCEL and BYE,
and the methods the server does not serve."""

from __future__ import annotations

from twisted.internet.task import Clock

from channels.phone.config import PhoneSettings
from channels.phone.control import CallControl
from channels.phone.parse import Request, parse
from channels.phone.sip import Endpoint, Flow
from dispatcher.domain import events as ev
from dispatcher.domain.routing import Outcome
from dispatcher.service.calls import call_task_id
from tests.channels.phone import messages as m
from tests.channels.phone.fake_calls import FakeCalls
from tests.channels.phone.test_sip import Wire

CALLER = Flow("udp", "127.0.0.1", 5071)
PHONE = Flow("udp", "127.0.0.1", 5081)
CALL = "call-1@phone"
TASK = call_task_id(CALL)


def setup(**settings):
    clock, wire = Clock(), Wire()
    calls = FakeCalls(clock)
    calls.add("alice", "alice", "secret")
    calls.register("alice", "sip:alice@127.0.0.1:5081", 300, "udp:127.0.0.1:5081", "r", 1)
    calls.log.clear()
    s = PhoneSettings(**{"enabled": True, "queues": "support=support", "queued_interval": 60,
                         "max_queue_wait": 600, **settings})
    control = CallControl(clock, calls, None, s)
    ep = Endpoint(clock, control, "127.0.0.1", 5060, None, clock=clock)
    ep._udp = wire
    control.attach(ep)
    return ep, control, calls, wire, clock


def to(wire: Wire, addr: Flow) -> list:
    return [parse(d) for d, a in wire.sent if a == (addr.host, addr.port)]


def statuses(wire: Wire, addr: Flow = CALLER) -> list[int]:
    return [x.status for x in to(wire, addr) if not isinstance(x, Request)]


def offered(control: CallControl, agent: str = "alice", kind: str = ev.TASK_OFFERED) -> None:
    control.heard(Outcome(events=[ev.Event(kind, 0.0, TASK, agent, data={"offer_id": "o1"})]))


def ringing(ep, control, wire):
    """A queued call offered to alice: returns the INVITE her phone got."""
    ep.received(m.request("INVITE", body="v=0\r\n", extra=["Content-Type: application/sdp"]),
                CALLER)
    offered(control)
    (invite,) = [x for x in to(wire, PHONE) if isinstance(x, Request)]
    return invite


def phone_says(ep, invite: Request, status: int, reason: str, to_tag: str = "pt1",
               extra=()) -> None:
    resp = m.response(status, reason, branch=invite.top_via.branch, to_tag=to_tag,
                      extra=list(extra)).decode()
    vias = "\r\n".join(f"Via: {v}" for v in invite.values("via"))
    resp = resp.replace(f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={invite.top_via.branch}", vias)
    ep.received(resp.encode(), PHONE)


def test_unknown_address_is_404_known_is_queued_with_182_repeated():
    ep, control, calls, wire, clock = setup()
    ep.received(m.request("INVITE", "sip:nobody@127.0.0.1", branch="z9hG4bKx"), CALLER)
    assert statuses(wire) == [100, 404]
    ep.received(m.request("INVITE"), CALLER)
    assert statuses(wire)[2:] == [100, 182]
    assert calls.log[0][:4] == ("arrived", CALL, "+33155501234", "support")
    clock.advance(60)
    clock.advance(60)
    # (the unacknowledged 404 is retransmitted meanwhile: timer G)
    assert [st for st in statuses(wire)[2:] if st != 404] == [100, 182, 182, 182]


def test_182_waits_for_the_arrival_to_be_stored():
    ep, control, calls, wire, clock = setup()
    calls.hold = []
    ep.received(m.request("INVITE"), CALLER)
    assert statuses(wire) == [100]
    d, task = calls.hold.pop()
    d.callback(task)
    assert statuses(wire) == [100, 182]


def test_queue_time_limit_abandons_with_480():
    ep, control, calls, wire, clock = setup(max_queue_wait=90)
    ep.received(m.request("INVITE"), CALLER)
    clock.advance(90)
    assert statuses(wire)[-1] == 480
    assert ("abandoned", CALL, "queue_timeout") in calls.log


def test_unknown_queue_behind_a_known_address_is_404():
    ep, control, calls, wire, clock = setup()
    calls.queues = set()
    ep.received(m.request("INVITE"), CALLER)
    assert statuses(wire) == [100, 404]


def test_offer_rings_the_phone_with_record_route_and_answer_is_relayed_after_answered():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    assert invite.uri == "sip:alice@127.0.0.1:5081"
    assert len(invite.vias) == 2 and invite.vias[0].host == "127.0.0.1"
    assert invite.values("record-route") == ["<sip:127.0.0.1:5060;transport=udp;lr>"]
    assert invite.get("max-forwards") == "69" and invite.body == b"v=0\r\n"
    phone_says(ep, invite, 180, "Ringing")
    assert statuses(wire)[-1] == 180
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    assert ("answered", CALL, "alice") in calls.log
    ok = to(wire, CALLER)[-1]
    assert ok.status == 200 and len(ok.vias) == 1 and ok.to.tag == "pt1"
    # retransmitted 2xx from the phone passes through as well
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    assert statuses(wire)[-2:] == [200, 200]


def test_answer_after_the_offer_ended_hangs_up_the_agent_leg():
    ep, control, calls, wire, clock = setup()
    calls.answer_fails = True
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    methods = [x.method for x in to(wire, PHONE) if isinstance(x, Request)]
    assert methods == ["INVITE", "ACK", "BYE"]
    assert 200 not in statuses(wire)


def test_busy_phone_is_a_refusal():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 486, "Busy Here")
    assert ("refused", CALL, "alice", "busy") in calls.log
    assert [x.method for x in to(wire, PHONE) if isinstance(x, Request)] == ["INVITE", "ACK"]
    assert 486 not in statuses(wire)  # the caller keeps waiting for the next agent


def test_offer_expiry_cancels_the_ringing_leg_and_reports_no_refusal():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 180, "Ringing")
    offered(control, kind=ev.OFFER_EXPIRED)
    (cancel,) = [x for x in to(wire, PHONE) if isinstance(x, Request) and x.method == "CANCEL"]
    assert cancel.top_via.branch == invite.top_via.branch and cancel.uri == invite.uri
    phone_says(ep, invite, 487, "Request Terminated")
    assert "refused" not in calls.kinds()
    assert statuses(wire)[-1] == 180  # nothing final for the caller


def test_cancel_before_any_provisional_waits_for_one():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    offered(control, kind=ev.OFFER_WITHDRAWN)
    assert not [x for x in to(wire, PHONE) if isinstance(x, Request) and x.method == "CANCEL"]
    phone_says(ep, invite, 100, "Trying")
    assert [x for x in to(wire, PHONE) if isinstance(x, Request) and x.method == "CANCEL"]


def invites(wire: Wire) -> list[Request]:
    return [x for x in to(wire, PHONE) if isinstance(x, Request) and x.method == "INVITE"]


def test_a_phone_not_reached_when_its_offer_ends_gets_no_more_invites():
    """Under loss the phone may not have the INVITE yet when the offer runs out: timer A stops
    there, so the phone is not rung for an offer that is over; a late 180 still gets the
    CANCEL, and the transaction ends by itself (timer B) without a refusal."""
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    clock.advance(0.5)
    clock.advance(1.0)
    assert len(invites(wire)) == 3  # timer A: 0, 0.5, 1.5 s
    offered(control, kind=ev.OFFER_EXPIRED)
    for _ in range(7):
        clock.advance(4)  # 29.5 s: timer A would have sent at 3.5, 7.5, 15.5 s
    assert len(invites(wire)) == 3
    phone_says(ep, invite, 180, "Ringing")  # one of the earlier copies reached it after all
    assert [x.method for x in to(wire, PHONE) if isinstance(x, Request)][-1] == "CANCEL"
    clock.advance(40)  # timers B and F: the 408s they make are no refusal
    assert "refused" not in calls.kinds() and 180 not in statuses(wire)


def test_a_late_answer_is_hung_up_once_and_its_retransmissions_only_acked():
    """The phone's 200 crosses the end of its offer: ACK and BYE once; the same 200 again (our
    ACK lost) gets the same ACK, never a second BYE; the caller hears nothing of it."""
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    offered(control, kind=ev.OFFER_EXPIRED)
    contact = ["Contact: <sip:alice@127.0.0.1:5081>"]
    phone_says(ep, invite, 200, "OK", extra=contact)
    phone_says(ep, invite, 200, "OK", extra=contact)
    sent = [x for x in to(wire, PHONE) if isinstance(x, Request)]
    assert [x.method for x in sent] == ["INVITE", "ACK", "BYE", "ACK"]
    assert sent[1].to_bytes() == sent[3].to_bytes()
    assert "answered" not in calls.kinds() and 200 not in statuses(wire)


def test_caller_cancel_abandons_then_487_and_cancels_the_agent_leg():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 180, "Ringing")
    ep.received(m.request("CANCEL"), CALLER)
    assert ("abandoned", CALL, "caller_cancel") in calls.log
    assert statuses(wire)[-2:] == [200, 487]
    assert [x.method for x in to(wire, PHONE) if isinstance(x, Request)][-1] == "CANCEL"


def test_bye_passes_through_and_ends_the_call():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    route = ["Route: <sip:127.0.0.1:5060;transport=udp;lr>"]
    ep.received(m.request("ACK", "sip:alice@127.0.0.1:5081", branch="z9hG4bKack",
                          to_tag="pt1", extra=route), CALLER)
    ep.received(m.request("BYE", "sip:alice@127.0.0.1:5081", branch="z9hG4bKbye", cseq=2,
                          to_tag="pt1", extra=route), CALLER)
    ack, bye = [x for x in to(wire, PHONE) if isinstance(x, Request)][-2:]
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert bye.get("route") is None and len(bye.vias) == 2
    assert ("ended", CALL, "caller") in calls.log
    resp = m.response(200, "OK", branch=bye.top_via.branch, method="BYE", cseq=2).decode()
    resp = resp.replace("Content-Length", "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKbye"
                        "\r\nContent-Length")
    ep.received(resp.encode(), PHONE)
    last = to(wire, CALLER)[-1]
    assert (last.status, last.cseq.method) == (200, "BYE")


def test_bye_from_the_agent_says_so():
    ep, control, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    bye = (m.request("BYE", "sip:caller@127.0.0.1:5071", branch="z9hG4bKpb", from_tag="pt1",
                     to_tag="ft1", via_host="127.0.0.1:5081"))
    ep.received(bye, PHONE)
    assert ("ended", CALL, "agent") in calls.log
    assert [x.method for x in to(wire, CALLER) if isinstance(x, Request)] == ["BYE"]


def test_options_405_501_416_420_481():
    ep, control, calls, wire, clock = setup()
    for i, (method, uri, extra) in enumerate([
            ("OPTIONS", "sip:support@127.0.0.1", []),
            ("SUBSCRIBE", "sip:support@127.0.0.1", []),
            ("FROB", "sip:support@127.0.0.1", []),
            ("OPTIONS", "tel:+331", []),
            ("OPTIONS", "sip:support@127.0.0.1", ["Require: 100rel"]),
            ("BYE", "sip:support@127.0.0.1", [])]):
        ep.received(m.request(method, uri, branch=f"z9hG4bKm{i}", extra=extra), CALLER)
    assert statuses(wire) == [200, 405, 501, 416, 420, 481]


def test_stop_answers_waiting_callers_and_abandons_their_tasks():
    ep, control, calls, wire, clock = setup()
    ep.received(m.request("INVITE"), CALLER)
    control.stop()
    assert statuses(wire)[-1] == 503
    assert ("abandoned", CALL, "server_stopping") in calls.log


# ---------------------------------------------------------------- issue 13: Call-ID reuse


def test_call_id_in_use_merged_request_is_482_another_call_is_400():
    ep, control, calls, wire, clock = setup()
    ep.received(m.request("INVITE"), CALLER)
    assert statuses(wire)[-1] == 182
    # the same request by another path (same From tag and CSeq, another branch): merged
    ep.received(m.request("INVITE", branch="z9hG4bKother1"), CALLER)
    assert statuses(wire)[-1] == 482
    # another caller's INVITE reusing the Call-ID: not a loop, a bad request
    ep.received(m.request("INVITE", branch="z9hG4bKother2", from_tag="someone-else"), CALLER)
    resp = [x for x in to(wire, CALLER) if not isinstance(x, Request)][-1]
    assert (resp.status, resp.reason) == (400, "Bad Request (Call-ID already in use)")
    assert [e for e in calls.log if e[0] == "arrived"] == [
        ("arrived", CALL, "+33155501234", "support", "sip")]


def test_call_id_of_a_task_no_longer_waiting_is_400_and_nothing_is_queued():
    from types import SimpleNamespace

    from twisted.internet.defer import succeed

    ep, control, calls, wire, clock = setup()
    calls.arrived = lambda *a, **k: succeed(SimpleNamespace(id=TASK, state="assigned",
                                                            attributes={}))
    ep.received(m.request("INVITE"), CALLER)
    resp = [x for x in to(wire, CALLER) if not isinstance(x, Request)][-1]
    assert (resp.status, resp.reason) == (400, "Bad Request (Call-ID already in use)")
    assert control.by_call_id == {}
    clock.advance(600)
    assert set(statuses(wire)) == {100, 400}  # (the 400 repeated on timer G: no ACK here)
