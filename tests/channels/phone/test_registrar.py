"""The registrar: digest authentication (RFC 3261 §22, RFC 8760 SHA-256 and MD5), nonces that go
stale, replays, expiry limits (423), un-registration, bindings handed to `calls`."""

from __future__ import annotations

import hashlib
import re

import pytest
from twisted.internet.task import Clock

from channels.phone.config import PhoneSettings
from channels.phone.control import CallControl
from channels.phone.parse import parse
from channels.phone.registrar import Nonces, parse_credentials
from channels.phone.sip import Endpoint, Flow
from tests.channels.phone.fake_calls import FakeCalls
from tests.channels.phone.test_sip import Wire

PHONE = Flow("udp", "127.0.0.1", 5071)
REALM = "switchboard"
H = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def setup(**settings):
    clock, wire = Clock(), Wire()
    clock.advance(1000)
    calls = FakeCalls(clock)
    calls.add("alice", "alice", "secret")
    s = PhoneSettings(enabled=True, nonce_seconds=60, register_min=60, register_max=3600,
                      **settings)
    control = CallControl(clock, calls, None, s)
    ep = Endpoint(clock, control, "127.0.0.1", 5060, None, clock=clock)
    ep._udp = wire
    control.attach(ep)
    return ep, calls, wire, clock


def register(cseq: int, *, user: str = "alice", auth: str | None = None,
             contact: str = "<sip:alice@127.0.0.1:5071>", expires: str | None = "300",
             branch: str | None = None, user_agent: str | None = None) -> bytes:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch={branch or f'z9hG4bKreg{cseq}'}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag=r1",
        f"To: <sip:{user}@127.0.0.1>",
        "Call-ID: reg-1@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def last(wire: Wire):
    return parse(wire.sent[-1][0])


def challenge(wire: Wire, algorithm: str = "MD5") -> dict[str, str]:
    resp = last(wire)
    assert resp.status == 401
    for value in resp.values("www-authenticate"):
        scheme, params = parse_credentials(value)
        if params.get("algorithm") == algorithm:
            return params
    raise AssertionError(f"no {algorithm} challenge")


def answer(params, algorithm="MD5", password="secret", user="alice", nc="00000001",
           qop=True) -> str:
    h = H[algorithm]
    ha1 = h(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
    uri = "sip:127.0.0.1"
    ha2 = h(f"REGISTER:{uri}".encode()).hexdigest()
    if qop:
        resp = h(f"{ha1}:{params['nonce']}:{nc}:abcdef:auth:{ha2}".encode()).hexdigest()
        extra = f', qop=auth, nc={nc}, cnonce="abcdef"'
    else:
        resp = h(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
        extra = ""
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={algorithm}{extra}')


def test_challenge_offers_sha256_then_md5_with_qop_auth():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    resp = last(wire)
    assert resp.status == 401
    algorithms = [parse_credentials(v)[1]["algorithm"] for v in resp.values("www-authenticate")]
    assert algorithms == ["SHA-256", "MD5"]
    assert all('qop="auth"' in v and f'realm="{REALM}"' in v
               for v in resp.values("www-authenticate"))
    assert calls.log == []


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_success_binds_the_contact(algorithm):
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    ep.received(register(2, auth=answer(challenge(wire, algorithm), algorithm)), PHONE)
    resp = last(wire)
    assert resp.status == 200
    assert calls.log == [("register", "alice", "sip:alice@127.0.0.1:5071", 300.0,
                          "udp:127.0.0.1:5071")]
    assert resp.get("contact") == "<sip:alice@127.0.0.1:5071>;expires=300"
    assert resp.get("date", ) is not None


def test_rfc2069_digest_without_qop_is_never_accepted():
    """An answer without qop has no nonce count: it could be replayed with any Contact."""
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    ep.received(register(2, auth=answer(challenge(wire), qop=False)), PHONE)
    assert last(wire).status == 401 and "stale" not in last(wire).get("www-authenticate")
    assert calls.log == []


def test_wrong_password_is_403_and_binds_nothing():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    ep.received(register(2, auth=answer(challenge(wire), password="guess")), PHONE)
    assert last(wire).status == 403
    assert calls.log == []


def test_unknown_user_is_challenged_then_refused():
    ep, calls, wire, clock = setup()
    ep.received(register(1, user="mallory"), PHONE)
    ep.received(register(2, user="mallory", auth=answer(challenge(wire), user="mallory")),
                PHONE)
    assert last(wire).status == 403


def test_stale_nonce_and_replayed_nonce_count_are_challenged_again():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    params = challenge(wire)
    clock.advance(61)  # older than nonce_seconds
    ep.received(register(2, auth=answer(params)), PHONE)
    assert "stale=true" in last(wire).get("www-authenticate")
    fresh = challenge(wire)
    ep.received(register(3, auth=answer(fresh)), PHONE)
    assert last(wire).status == 200
    ep.received(register(4, auth=answer(fresh)), PHONE)  # same nc again: a replay
    assert last(wire).status == 401 and "stale=true" in last(wire).get("www-authenticate")
    ep.received(register(5, auth=answer(fresh, nc="00000002")), PHONE)
    assert last(wire).status == 200


def test_forged_nonce_is_refused():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    params = dict(challenge(wire))
    params["nonce"] = re.sub(r"\.[0-9a-f]+$", ".0123456789abcdef0123456789abcdef",
                             params["nonce"])
    ep.received(register(2, auth=answer(params)), PHONE)
    # a fresh challenge, nothing checked: phones reuse their last nonce after our restart
    assert last(wire).status == 401 and "stale=true" in last(wire).get("www-authenticate")
    assert calls.log == []


def test_nonces_from_before_a_restart_are_not_failures():
    ep, calls, wire, clock = setup(auth_max_failures=2)
    old = Nonces(clock, 60, b"the secret of the process before").issue()
    for cseq in range(1, 6):  # five phones behind one address, each with its last nonce
        ep.received(register(cseq, auth=answer({"realm": REALM, "nonce": old})), PHONE)
        assert last(wire).status == 401
    ep.received(register(9, auth=answer(challenge(wire))), PHONE)
    assert last(wire).status == 200


def authed(ep, wire, cseq: int, **kw) -> None:
    ep.received(register(cseq, **kw), ep and PHONE)
    params = challenge(wire)
    ep.received(register(cseq + 1, auth=answer(params), **kw), PHONE)


def test_expiry_below_minimum_is_423_above_maximum_is_cut():
    ep, calls, wire, clock = setup()
    authed(ep, wire, 1, expires="30")
    resp = last(wire)
    assert resp.status == 423 and resp.get("min-expires") == "60"
    authed(ep, wire, 3, expires=None, contact="<sip:alice@127.0.0.1:5071>;expires=999999")
    assert last(wire).status == 200
    assert calls.log[-1][3] == 3600.0


def test_default_expiry_when_the_register_says_nothing():
    ep, calls, wire, clock = setup()
    authed(ep, wire, 1, expires=None)
    assert calls.log[-1][3] == 3600.0


def test_expires_zero_and_star_unregister():
    ep, calls, wire, clock = setup()
    authed(ep, wire, 1)
    authed(ep, wire, 3, expires="0")
    assert calls.log[-1] == ("unregister", "alice") and last(wire).status == 200
    authed(ep, wire, 5, contact="*", expires="0")
    assert calls.log[-1] == ("unregister", "alice") and last(wire).status == 200
    authed(ep, wire, 7, contact="*", expires="60")
    assert last(wire).status == 400


def test_register_without_contact_lists_the_binding():
    ep, calls, wire, clock = setup()
    authed(ep, wire, 1)
    authed(ep, wire, 3, contact="", expires=None)
    resp = last(wire)
    assert resp.status == 200 and resp.get("contact").startswith("<sip:alice@127.0.0.1:5071>")


def test_out_of_order_cseq_is_refused():
    ep, calls, wire, clock = setup()
    authed(ep, wire, 10)
    ep.received(register(4, branch="z9hG4bKold"), PHONE)
    ep.received(register(5, auth=answer(challenge(wire)), branch="z9hG4bKold5"), PHONE)
    assert last(wire).status == 500


def test_unknown_scheme_is_challenged():
    ep, calls, wire, clock = setup()
    ep.received(register(1, auth="NoOneKnowsThisScheme opaque-data=here"), PHONE)
    assert last(wire).status == 401


def test_nonces_are_ours_and_expire():
    clock = Clock()
    nonces = Nonces(clock, 10, b"k")
    n = nonces.issue()
    assert nonces.check(n).ok
    assert not Nonces(clock, 10, b"other").check(n).ok
    clock.advance(11)
    assert nonces.check(n).stale


# ---------------------------------------------------------------- issue 13: hardening

ATTACKER = Flow("udp", "198.51.100.7", 5099)


def test_nonce_count_is_recorded_only_after_the_digest_is_verified():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    params = challenge(wire)
    # a forged request with nc=5 and a wrong response must not burn counts 1..5 of the phone
    ep.received(register(2, auth=answer(params, password="guess", nc="00000005")), ATTACKER)
    assert last(wire).status == 403
    ep.received(register(3, auth=answer(params, nc="00000001")), PHONE)
    assert last(wire).status == 200


def test_unknown_user_and_wrong_password_get_the_same_answer():
    ep, calls, wire, clock = setup()
    ep.received(register(1), PHONE)
    ep.received(register(2, auth=answer(challenge(wire), password="guess")), PHONE)
    wrong = last(wire)
    ep.received(register(3, user="mallory"), PHONE)
    ep.received(register(4, user="mallory", auth=answer(challenge(wire), user="mallory")),
                PHONE)
    unknown = last(wire)
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (403, "Forbidden")
    assert wrong.get("warning") is None and unknown.get("warning") is None


def brute(ep, wire, flow, n, user="alice", start=100):
    for i in range(n):
        ep.received(register(start + 2 * i, user=user), flow)
        ep.received(register(start + 2 * i + 1, user=user,
                             auth=answer(challenge(wire), password=f"guess{i}", user=user)),
                    flow)
        assert last(wire).status == 403


def test_lockout_per_source_and_per_user_spares_the_users_own_phone(caplog):
    ep, calls, wire, clock = setup(auth_max_failures=3, auth_failure_window=300)
    authed(ep, wire, 1)  # alice's phone is registered from PHONE
    assert last(wire).status == 200
    brute(ep, wire, ATTACKER, 3)
    # locked: even the right password from the attacker's address is refused, the same way
    ep.received(register(50), ATTACKER)
    ep.received(register(51, auth=answer(challenge(wire))), ATTACKER)
    assert (last(wire).status, last(wire).reason) == (403, "Forbidden")
    # the user is locked for any other address too...
    elsewhere = Flow("udp", "203.0.113.9", 5060)
    ep.received(register(52), elsewhere)
    ep.received(register(53, auth=answer(challenge(wire))), elsewhere)
    assert last(wire).status == 403
    # ...but not for the address her phone is registered from
    authed(ep, wire, 60)
    assert last(wire).status == 200
    # a window later, the attacker's address and the user are free again
    clock.advance(301)
    ep.received(register(70), elsewhere)
    ep.received(register(71, auth=answer(challenge(wire))), elsewhere)
    assert last(wire).status == 200
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) <= 3  # one line per source a minute, not one per attempt


def test_md5_only_for_phones_that_give_up_on_other_challenges():
    ep, calls, wire, clock = setup()
    ep.received(register(1, user_agent="baresip v1.0.0 (x86_64/linux)"), PHONE)
    algorithms = [parse_credentials(v)[1]["algorithm"] for v in last(wire).values(
        "www-authenticate")]
    assert algorithms == ["MD5"]
    ep.received(register(2, user_agent="baresip v1.0.0 (x86_64/linux)",
                         auth=answer(challenge(wire))), PHONE)
    assert last(wire).status == 200
