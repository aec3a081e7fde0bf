"""Presence from the phone (channels/phone/presence.py) with a fake Calls and task.Clock: the
dialog-package notifier (digest, 200 and the first NOTIFY, our legs trying → early →
confirmed → terminated, refresh, un-subscribe, expiry, 489/404/423/503/481, versions per
subscription) and a phone's 486 making the agent busy for `busy_seconds`."""

from __future__ import annotations

from twisted.internet.task import Clock

from channels.phone import dialog_info as di
from channels.phone.config import PhoneSettings
from channels.phone.control import CallControl
from channels.phone.parse import Request, parse
from channels.phone.presence import PhonePresence
from channels.phone.registrar import Registrar, digest_response, parse_credentials
from channels.phone.sip import Endpoint, Flow
from dispatcher.service.calls import digest_ha1
from tests.channels.phone import messages as m
from tests.channels.phone.fake_calls import FakeCalls
from tests.channels.phone.test_control import CALL, CALLER, phone_says, ringing, to
from tests.channels.phone.test_sip import Wire

WATCHER = Flow("udp", "127.0.0.1", 5091)


def setup(**settings):
    clock, wire = Clock(), Wire()
    clock.advance(1000)
    calls = FakeCalls(clock)
    calls.add("alice", "alice", "secret")
    calls.add("sup", "sup", "secret")
    calls.register("alice", "sip:alice@127.0.0.1:5081", 300, "udp:127.0.0.1:5081", "r", 1)
    calls.log.clear()
    s = PhoneSettings(**{"enabled": True, "queues": "support=support", "queued_interval": 60,
                         "max_queue_wait": 600, "busy_seconds": 30, **settings})
    registrar = Registrar(clock, calls, s)
    presence = PhonePresence(calls, s, registrar)
    control = CallControl(clock, calls, None, s, registrar, presence)
    ep = Endpoint(clock, control, "127.0.0.1", 5060, None, clock=clock)
    ep._udp = wire
    control.attach(ep)
    return ep, control, presence, calls, wire, clock


def subscribe(cseq: int, *, call_id: str = "sub-1", to_tag: str | None = None,
              expires: str | None = "600", event: str = "dialog", target: str = "alice",
              user: str = "sup", auth: str | None = None) -> bytes:
    lines = [f"SUBSCRIBE sip:{target}@127.0.0.1 SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK{call_id}-{cseq};rport",
             "Max-Forwards: 70", f"From: <sip:{user}@127.0.0.1>;tag=st1",
             f"To: <sip:{target}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {call_id}", f"CSeq: {cseq} SUBSCRIBE",
             "Contact: <sip:sup@127.0.0.1:5091>", f"Event: {event}",
             "Accept: application/dialog-info+xml"]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join([*lines, "Content-Length: 0", "", ""]).encode()


def responses(wire: Wire, addr: Flow = WATCHER) -> list:
    return [x for x in to(wire, addr) if not isinstance(x, Request)]


def notifies(wire: Wire, addr: Flow = WATCHER) -> list[Request]:
    """Each NOTIFY once (by CSeq; our client transactions retransmit until answered)."""
    seen: dict[str, Request] = {}
    for x in to(wire, addr):
        if isinstance(x, Request) and x.method == "NOTIFY":
            seen.setdefault(x.get("cseq"), x)
    return list(seen.values())


def signed(ep, wire, cseq: int = 1, password: str = "secret", ack: bool = True, **kw):
    """SUBSCRIBE, its 401, the same with digest credentials: the last response (every NOTIFY
    so far answered 200 when `ack`)."""
    ep.received(subscribe(cseq, **kw), WATCHER)
    challenge = responses(wire)[-1]
    assert challenge.status == 401
    params = next(parse_credentials(v)[1] for v in challenge.values("www-authenticate")
                  if "MD5" in v)
    user, target = kw.get("user", "sup"), kw.get("target", "alice")
    uri = f"sip:{target}@127.0.0.1"
    ha1 = digest_ha1(user, params["realm"], password)
    resp = digest_response("MD5", ha1, params["nonce"], "SUBSCRIBE", uri, "auth", "00000001",
                           "c0ffee")
    auth = (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, '
            f'cnonce="c0ffee"')
    ep.received(subscribe(cseq + 1, auth=auth, **kw), WATCHER)
    last = responses(wire)[-1]
    if ack:
        for n in notifies(wire):
            answer(ep, n)
    return last


def answer(ep, req: Request, status: int = 200, reason: str = "OK") -> None:
    lines = [f"SIP/2.0 {status} {reason}", *(f"Via: {v}" for v in req.values("via")),
             f"From: {req.get('from')}", f"To: {req.get('to')}", f"Call-ID: {req.call_id}",
             f"CSeq: {req.get('cseq')}", "Content-Length: 0", "", ""]
    ep.received("\r\n".join(lines).encode(), WATCHER)


def ack_all(ep, wire: Wire) -> None:
    """Answer 200 to every NOTIFY so far, and to those that answering lets go."""
    count = -1
    while count != len(notifies(wire)):
        count = len(notifies(wire))
        for n in notifies(wire):
            answer(ep, n)


def states(wire: Wire) -> list[tuple[int, tuple[str, ...]]]:
    out = []
    for n in notifies(wire):
        info = di.parse(n.body)
        out.append((info.version, tuple(d.state for d in info.dialogs)))
    return out


def test_subscribe_is_challenged_then_200_and_a_first_notify_of_no_calls():
    ep, control, presence, calls, wire, clock = setup()
    ok = signed(ep, wire)
    assert ok.status == 200 and ok.get("expires") == "600" and ok.to.tag
    assert ok.get("contact") == "<sip:127.0.0.1:5060>"
    (first,) = notifies(wire)
    assert first.uri == "sip:sup@127.0.0.1:5091"
    assert first.from_.tag == ok.to.tag and first.to.tag == "st1"
    assert first.get("event") == "dialog"
    assert first.get("subscription-state") == "active;expires=600"
    assert first.get("content-type") == "application/dialog-info+xml"
    info = di.parse(first.body)
    assert (info.entity, info.version, info.state, info.dialogs) == \
        ("sip:alice@127.0.0.1", 0, "full", ())


def test_wrong_password_is_403_and_nothing_is_kept():
    ep, control, presence, calls, wire, clock = setup()
    assert signed(ep, wire, password="guess").status == 403
    assert presence.subscriptions == {} and notifies(wire) == []


def test_other_packages_unknown_targets_short_expiry_and_strays():
    ep, control, presence, calls, wire, clock = setup()
    ep.received(subscribe(1, event="presence"), WATCHER)
    bad_event = responses(wire)[-1]
    assert bad_event.status == 489 and bad_event.get("allow-events") == "dialog"
    assert signed(ep, wire, cseq=2, call_id="s2", target="nobody").status == 404
    too_short = signed(ep, wire, cseq=4, call_id="s3", expires="10")
    assert too_short.status == 423 and too_short.get("min-expires") == "60"
    assert signed(ep, wire, cseq=6, call_id="s4", expires="99999").get("expires") == "3600"
    ep.received(subscribe(8, call_id="s9", to_tag="nope"), WATCHER)
    assert responses(wire)[-1].status == 481
    ep.received(m.request("NOTIFY", "sip:127.0.0.1", call_id="n1", to_tag="x",
                          extra=["Event: dialog"]), WATCHER)
    assert responses(wire)[-1].status == 481


def test_our_legs_are_notified_trying_early_confirmed_terminated():
    ep, control, presence, calls, wire, clock = setup()
    signed(ep, wire)
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 180, "Ringing")
    assert len(notifies(wire)) == 2  # trying sent; early waits until it is answered
    ack_all(ep, wire)
    phone_says(ep, invite, 200, "OK", extra=["Contact: <sip:alice@127.0.0.1:5081>"])
    ep.received(m.request("BYE", to_tag="pt1", cseq=2, branch="z9hG4bKbye"), CALLER)
    ack_all(ep, wire)
    assert states(wire) == [(0, ()), (1, ("trying",)), (2, ("early",)), (3, ("confirmed",)),
                            (4, ("terminated",))]
    last = di.parse(notifies(wire)[-1].body).dialogs[0]
    assert (last.call_id, last.direction, last.remote_tag, last.local_tag, last.event) == \
        (CALL, "recipient", "ft1", "pt1", "remote-bye")
    assert last.remote == ""  # a colleague's lamp shows the state, never who is calling
    assert presence.is_ours(CALL) and presence.dialogs == {}


def test_only_the_agents_own_phone_is_told_who_is_calling():
    ep, control, presence, calls, wire, clock = setup()
    signed(ep, wire, user="alice")
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 180, "Ringing")
    ack_all(ep, wire)
    (ringing_leg,) = di.parse(notifies(wire)[-1].body).dialogs
    assert ringing_leg.state == "early"
    assert ringing_leg.remote == "sip:+33155501234@127.0.0.1"


def test_refresh_then_unsubscribe_ends_with_a_terminated_notify():
    ep, control, presence, calls, wire, clock = setup()
    tag = signed(ep, wire).to.tag
    clock.advance(100)
    assert signed(ep, wire, cseq=3, to_tag=tag, expires="300").status == 200
    assert notifies(wire)[-1].get("subscription-state") == "active;expires=300"
    assert [v for v, _ in states(wire)] == [0, 1]
    assert signed(ep, wire, cseq=5, to_tag=tag, expires="0").status == 200
    assert notifies(wire)[-1].get("subscription-state") == "terminated;reason=timeout"
    assert presence.subscriptions == {} and presence.per_user == {}
    ep.received(subscribe(7, to_tag=tag), WATCHER)
    assert responses(wire)[-1].status == 481


def test_a_subscription_not_refreshed_expires_on_the_clock():
    ep, control, presence, calls, wire, clock = setup()
    signed(ep, wire, expires="60")
    clock.advance(59)
    assert len(notifies(wire)) == 1
    clock.advance(2)
    assert notifies(wire)[-1].get("subscription-state") == "terminated;reason=timeout"
    assert presence.subscriptions == {}


def test_someone_else_cannot_refresh_a_subscription():
    ep, control, presence, calls, wire, clock = setup()
    tag = signed(ep, wire).to.tag
    assert signed(ep, wire, cseq=3, to_tag=tag, user="alice").status == 403
    assert len(presence.subscriptions) == 1


def test_bounds_per_user_and_in_total():
    ep, control, presence, calls, wire, clock = setup(max_subscriptions_per_user=1,
                                                      max_subscriptions=2)
    assert signed(ep, wire, call_id="a").status == 200
    busy = signed(ep, wire, cseq=3, call_id="b")
    assert busy.status == 503 and busy.get("retry-after")
    assert signed(ep, wire, cseq=5, call_id="c", user="alice", target="sup").status == 200
    calls.add("carol", "carol", "secret")
    assert signed(ep, wire, cseq=7, call_id="d", user="carol").status == 503
    assert len(presence.subscriptions) == 2


def test_a_notify_refused_by_the_subscriber_ends_the_subscription():
    ep, control, presence, calls, wire, clock = setup()
    signed(ep, wire, ack=False)
    answer(ep, notifies(wire)[0], 481, "Call/Transaction Does Not Exist")
    assert presence.subscriptions == {} and presence.per_user == {}
    ringing(ep, control, wire)
    assert len(notifies(wire)) == 1


def test_486_makes_the_agent_busy_for_busy_seconds_then_free_logged_once(caplog):
    ep, control, presence, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    caplog.set_level("INFO", logger="channels.phone.presence")
    phone_says(ep, invite, 486, "Busy Here")
    assert ("refused", CALL, "alice", "busy", "busy") in calls.log
    assert [e for e in calls.log if e[0] == "device"] == [("device", "alice", True)]
    clock.advance(29)
    assert presence.engaged("alice")
    clock.advance(1)
    assert [e for e in calls.log if e[0] == "device"] == [("device", "alice", True),
                                                          ("device", "alice", False)]
    assert not presence.engaged("alice")
    said = [r.getMessage() for r in caplog.records if "on the phone" in r.getMessage()]
    assert said == ["agent alice busy on the phone: answered 486 Busy Here",
                    "agent alice free again on the phone: no call refused for 30s"]


def test_603_is_only_a_refusal():
    ep, control, presence, calls, wire, clock = setup()
    invite = ringing(ep, control, wire)
    phone_says(ep, invite, 603, "Decline")
    assert ("refused", CALL, "alice", "declined") in calls.log
    assert "device" not in calls.kinds()


def test_options_says_subscribe_and_the_dialog_package():
    ep, control, presence, calls, wire, clock = setup()
    ep.received(m.request("OPTIONS", "sip:127.0.0.1"), CALLER)
    ok = [x for x in to(wire, CALLER) if not isinstance(x, Request)][-1]
    assert "SUBSCRIBE, NOTIFY" in ok.get("allow") and ok.get("allow-events") == "dialog"


def test_a_subscriber_that_does_not_keep_up_gets_the_latest_state():
    ep, control, presence, calls, wire, clock = setup()
    signed(ep, wire, ack=False)  # the first NOTIFY stays unanswered
    for n in range(30):
        invite = parse(m.request("INVITE", call_id=f"c{n}", branch=f"z9hG4bKi{n}"))
        presence.dialog("alice", invite, "early")  # what control.py says of each leg
    (sub,) = presence.subscriptions.values()
    assert len(sub.queue) <= 16
    ack_all(ep, wire)
    info = di.parse(notifies(wire)[-1].body)
    assert len(info.dialogs) == 30 and len(notifies(wire)) <= 18
