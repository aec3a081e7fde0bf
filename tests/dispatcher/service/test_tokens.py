"""dispatcher.service.tokens: the JWT rules every edge shares (the console's suite checks the
refusals at its handshake; here the pieces an edge binds to its own settings)."""

from __future__ import annotations

import time

import jwt
import pytest

from dispatcher.service import tokens
from dispatcher.storage.revocations import MemoryRevocations
from dispatcher.storage.secrets import MemorySecrets

SECRET = b"k" * 40


def keys(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    return tokens.load_keys("HS256", secret_file=str(path))


def test_a_token_is_issued_and_verified_with_its_role(tmp_path):
    k = keys(tmp_path)
    token = tokens.Signer(k, "iss", "aud").issue("pbx1", tokens.INTEGRATION, ttl=60)
    claims = tokens.Verifier(k, "iss", "aud").verify(token)
    assert (claims.sub, claims.role, claims.exp - claims.iat) == ("pbx1", "integration", 60)


@pytest.mark.parametrize("change, why", [
    ({"aud": "other"}, "wrong audience"), ({"iss": "other"}, "wrong issuer"),
    ({"role": "root"}, "unknown role"), ({"exp": None}, "missing claim exp"),
])
def test_refusals_say_why_without_the_token(tmp_path, change, why):
    now = int(time.time())
    claims = {"sub": "pbx1", "role": "integration", "iat": now, "exp": now + 60, "iss": "iss",
              "aud": "aud", **change}
    token = jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET,
                       algorithm="HS256")
    with pytest.raises(tokens.TokenRefused, match=why) as err:
        tokens.Verifier(keys(tmp_path), "iss", "aud").verify(token)
    assert token not in str(err.value)


def test_the_stored_secret_is_made_once_and_shared_by_every_edge():
    store = MemorySecrets()
    first = tokens.stored_secret(store, 1.0).result
    assert len(first) == tokens.STORED_SECRET_BYTES
    assert tokens.stored_secret(store, 2.0).result == first  # never made again
    console = tokens.load_keys("HS256", stored=first, label="console")
    cti = tokens.load_keys("HS256", stored=first, label="cti")
    assert console.verify == cti.verify == first and console.stored
    token = tokens.Signer(console, "iss", "aud").issue("a1")
    assert tokens.Verifier(cti, "iss", "aud").verify(token).sub == "a1"
    with pytest.raises(tokens.KeyProblem, match="jwt_secret_file"):
        tokens.load_keys("HS256")  # no file, no database secret: refused, never unsigned


def test_a_secret_file_wins_over_the_stored_secret(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    k = tokens.load_keys("HS256", secret_file=str(path), stored=b"d" * 64)
    assert k.verify == SECRET and not k.stored


def test_bad_key_settings_are_refused(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    with pytest.raises(tokens.KeyProblem, match="at least"):
        tokens.load_keys("HS256", secret_file=str(short))
    with pytest.raises(tokens.KeyProblem, match="jwt_algorithm"):
        tokens.load_keys("none")
    with pytest.raises(tokens.KeyProblem, match="jwt_public_key_file"):
        tokens.load_keys("RS256")
    with pytest.raises(tokens.KeyProblem, match="private"):
        tokens.Signer(tokens.Keys("RS256", b"pub", None), "iss", "aud")


# ---------------------------------------------------------------------- lifetime, revocation


def signed(claims: dict) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def claims_for(sub="a1", role="agent", lifetime=600, **more):
    now = int(time.time())
    return {"sub": sub, "role": role, "iat": now, "exp": now + lifetime, "iss": "iss",
            "aud": "aud", **more}


@pytest.mark.parametrize("role, lifetime, ok", [
    ("agent", tokens.MAX_LIFETIME_SECONDS, True),
    ("agent", tokens.MAX_LIFETIME_SECONDS + 1, False),
    ("supervisor", 30 * 86400, False),
    ("integration", 365 * 86400, True),  # a PBX's configured token
    ("integration", tokens.MAX_INTEGRATION_LIFETIME_SECONDS + 1, False),
])
def test_a_token_living_longer_than_the_maximum_is_refused(tmp_path, role, lifetime, ok):
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", revoked=tokens.RevocationList())
    token = signed(claims_for(role=role, lifetime=lifetime))
    if ok:
        assert verifier.verify(token).role == role
        return
    with pytest.raises(tokens.TokenRefused, match="lifetime") as err:
        verifier.verify(token)
    assert token not in str(err.value)


def test_the_maximum_lifetime_is_a_setting(tmp_path):
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", max_lifetime=60,
                               revoked=tokens.RevocationList())
    with pytest.raises(tokens.TokenRefused, match="lifetime over 60 s"):
        verifier.verify(signed(claims_for(lifetime=61)))


def test_issued_tokens_carry_a_random_jti_and_millisecond_iat(tmp_path):
    signer = tokens.Signer(keys(tmp_path), "iss", "aud")
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", revoked=tokens.RevocationList())
    first, second = (verifier.verify(signer.issue("a1")) for _ in range(2))
    assert first.jti and second.jti and first.jti != second.jti
    assert len(first.jti) >= 20


def test_issued_jtis_are_hex_so_the_cli_can_take_each_as_given(tmp_path):
    """`switchboard tokens revoke --jti X`: argparse takes an X that starts with "-" for an
    option (a url-safe jti did, one time in 64)."""
    signer = tokens.Signer(keys(tmp_path), "iss", "aud")
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", revoked=tokens.RevocationList())
    jtis = [verifier.verify(signer.issue("a1")).jti for _ in range(300)]
    assert all(int(j, 16) >= 0 and not j.startswith("-") for j in jtis)


def test_a_token_revoked_by_jti_is_refused_and_others_are_not(tmp_path):
    revoked = tokens.RevocationList()
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", revoked=revoked)
    bad, good = signed(claims_for(jti="j-1")), signed(claims_for(jti="j-2"))
    store = MemoryRevocations()
    d = tokens.revoke_token(store, "j-1", time.time(), "operator", revoked=revoked)
    assert d.called
    with pytest.raises(tokens.TokenRefused, match="token revoked"):
        verifier.verify(bad)
    assert verifier.verify(good).jti == "j-2"
    assert "j-1" in store.revocations(time.time()).result.jtis


def test_revoking_a_subject_refuses_its_older_tokens_only(tmp_path):
    revoked = tokens.RevocationList()
    verifier = tokens.Verifier(keys(tmp_path), "iss", "aud", revoked=revoked)
    now = time.time()
    old = signed(claims_for(iat=int(now) - 10, exp=int(now) + 600))
    other = signed(claims_for(sub="a2", iat=int(now) - 10, exp=int(now) + 600))
    tokens.revoke_subject(MemoryRevocations(), "a1", now, "operator", revoked=revoked)
    with pytest.raises(tokens.TokenRefused, match="token revoked"):
        verifier.verify(old)
    assert verifier.verify(other).sub == "a2"
    fresh = tokens.Signer(keys(tmp_path), "iss", "aud", clock=lambda: now + 0.01).issue("a1")
    assert verifier.verify(fresh).sub == "a1"  # a sign-in right after: accepted


def test_the_watch_loads_at_start_and_hears_other_processes_within_the_interval(tmp_path):
    from twisted.internet.task import Clock

    clock, store, revoked = Clock(), MemoryRevocations(), tokens.RevocationList()
    clock.advance(1_000_000)
    store.revoke_token("early", clock.seconds() + 60, clock.seconds(), "cli")
    watch = tokens.RevocationWatch(store, clock, revoked, interval=5)
    heard: list = []
    revoked.listeners.append(heard.append)
    assert watch.start().called
    assert "early" in revoked.current.jtis
    store.revoke_subject("a1", clock.seconds(), clock.seconds(), "cli")  # another process
    clock.advance(4.9)
    assert "a1" not in revoked.current.subjects
    clock.advance(0.2)
    assert revoked.current.subjects["a1"] == pytest.approx(1_000_000)
    assert len(heard) == 2
    watch.stop()


def test_a_role_a_socket_does_not_serve_is_refused():
    claims = tokens.Claims("pbx1", "integration", 2.0, 1.0)
    with pytest.raises(tokens.TokenRefused, match="role integration is not accepted by x"):
        tokens.require_role(claims, (tokens.AGENT, tokens.SUPERVISOR), "x")
    tokens.require_role(claims, (tokens.INTEGRATION,), "cti")
