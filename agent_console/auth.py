"""Tokens of the agent console: JWTs checked at the WebSocket handshake (RFC 8725).

The checks live in `dispatcher.service.tokens` (shared with the phone edge's CTI API); this
module binds them to the console's settings. What it promises: the algorithm is the one
configured (HS256 with a secret from a file, or RS256 with a public key), whatever the token's
header says (`alg: none` and algorithm confusion fail); `exp`, `iat`, `aud`, `iss` and `sub` are
required and checked; `role` is one of agent, supervisor, integration. Every refusal is a
`TokenRefused` whose message never contains the token. `Signer` issues tokens for
`switchboard token` and `POST /login`.
"""

from __future__ import annotations

from dispatcher.service import tokens
from dispatcher.service.tokens import (
    REQUIRED_CLAIMS,
    Claims,
    KeyProblem,
    Keys,
    Signer,
    TokenRefused,
    TokenRevoked,
    Verifier,
)

from .config import ConsoleSettings

__all__ = ["REQUIRED_CLAIMS", "Claims", "KeyProblem", "Keys", "Signer", "TokenRefused",
           "TokenRevoked", "Verifier", "bearer", "load_keys", "signer_for", "verifier_for"]


def load_keys(settings: ConsoleSettings, stored: bytes | None = None) -> Keys:
    """The keys the settings name. HS256 without a secret file: `stored`, the secret kept in
    the database (the runtime hands it over), else refused."""
    return tokens.load_keys(
        settings.jwt_algorithm, secret_file=settings.jwt_secret_file,
        public_key_file=settings.jwt_public_key_file,
        private_key_file=settings.jwt_private_key_file, stored=stored, label="console")


def bearer(authorization: bytes | None) -> str:
    """The token of an HTTP `Authorization: Bearer <token>` header; TokenRefused otherwise."""
    scheme, _, token = (authorization or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("a bearer token is required")
    return token.strip()


def verifier_for(settings: ConsoleSettings, keys: Keys) -> Verifier:
    return Verifier(keys, settings.issuer, settings.audience, settings.leeway_seconds,
                    max_lifetime=settings.max_token_lifetime_seconds,
                    max_integration_lifetime=settings.max_integration_token_lifetime_seconds)


def signer_for(settings: ConsoleSettings, keys: Keys) -> Signer:
    return Signer(keys, settings.issuer, settings.audience)
