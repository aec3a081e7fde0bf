"""dispatcher.service.tokens: the JWT rules every edge shares (the console's suite checks the
refusals at its handshake; here the pieces an edge binds to its own settings)."""

from __future__ import annotations

import os
import stat
import time

import jwt
import pytest

from dispatcher.service import tokens

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


def test_generated_secret_is_made_once_private_and_shared(tmp_path):
    where = tmp_path / "gen" / "s.secret"
    first = tokens.load_keys("HS256", generated_secret_file=str(where), label="console")
    second = tokens.load_keys("HS256", generated_secret_file=str(where), label="cti")
    assert first.verify == second.verify and first.generated == where
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
    with pytest.raises(tokens.KeyProblem, match="jwt_secret_file"):
        tokens.load_keys("HS256", generated_secret_file=str(where), generate=False)


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
