"""agent_console/auth.py binds the shared token rules to the console's settings: the maximum
lifetimes come from `[console] max_token_lifetime_seconds` and
`max_integration_token_lifetime_seconds`."""

from __future__ import annotations

import time

import jwt
import pytest

from agent_console.auth import TokenRefused, load_keys, verifier_for
from agent_console.config import ConsoleSettings
from dispatcher.service import tokens

SECRET = b"s" * 40


def token(role: str, lifetime: int) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "x", "role": role, "iat": now, "exp": now + lifetime,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def test_the_console_settings_set_the_longest_lifetimes(tmp_path):
    (tmp_path / "secret").write_bytes(SECRET)
    settings = ConsoleSettings(jwt_secret_file=str(tmp_path / "secret"),
                               max_token_lifetime_seconds=60,
                               max_integration_token_lifetime_seconds=120)
    verifier = verifier_for(settings, load_keys(settings))
    verifier.revoked = tokens.RevocationList()
    assert verifier.verify(token("agent", 60)).role == "agent"
    assert verifier.verify(token("integration", 120)).role == "integration"
    for role, lifetime in (("agent", 61), ("supervisor", 61), ("integration", 121)):
        with pytest.raises(TokenRefused, match="lifetime"):
            verifier.verify(token(role, lifetime))
    assert ConsoleSettings().max_token_lifetime_seconds == tokens.MAX_LIFETIME_SECONDS
