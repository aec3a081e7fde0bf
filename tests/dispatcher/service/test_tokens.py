"""dispatcher.service.tokens: the JWT rules every edge shares (the console's suite checks the
refusals at its handshake; here the pieces an edge binds to its own settings)."""

from __future__ import annotations

import time

import jwt
import pytest

from dispatcher.service import tokens
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
