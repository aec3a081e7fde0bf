"""The API's settings: the `[api]` section of switchboard.toml, overridden by
`SWITCHBOARD_API_*`. The token settings default to the console's, so the same tokens (from
`POST /login` or `switchboard token`) are accepted here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool = True
    # RFC 8725: the algorithm is pinned here, never taken from the token's header.
    jwt_algorithm: str = "HS256"
    jwt_secret_file: str = ""  # HS256; empty: the secret kept in the database
    jwt_public_key_file: str = ""  # RS256: PEM public key
    issuer: str = "switchboard"
    audience: str = "switchboard-console"
    leeway_seconds: int = 30
    max_token_lifetime_seconds: int = 12 * 3600
    max_integration_token_lifetime_seconds: int = 400 * 86400
    max_body_bytes: int = 256 * 1024  # a larger request body is refused (413) before reading
    # Requests per token holder (role and subject): a bucket of `rate_limit_burst` refilled at
    # `rate_limit_per_second`; past it 429 with Retry-After. 0 turns the limit off.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 100
