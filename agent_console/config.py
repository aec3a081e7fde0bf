"""The console's settings: the `[console]` section of switchboard.toml, overridden by
`SWITCHBOARD_CONSOLE_*` (the runtime reads them with the core's layering and reports every
problem at once). Plain str/int/float/bool fields, each with a default."""

from __future__ import annotations

from dataclasses import dataclass

# The token rules are shared with the other edges (dispatcher/service/tokens.py).
from dispatcher.service.tokens import ALGORITHMS, MIN_SECRET_BYTES, ROLES  # noqa: F401


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8081  # the WebSocket server; the page is served by the runtime's HTTP server
    # RFC 8725: the algorithm is pinned here, never taken from the token's header.
    jwt_algorithm: str = "HS256"
    jwt_secret_file: str = ""  # HS256: the shared secret (signs and verifies)
    jwt_public_key_file: str = ""  # RS256: PEM public key (verifies)
    jwt_private_key_file: str = ""  # RS256: PEM private key (`switchboard token` signs with it)
    # HS256 with no secret file: the secret kept in the database (64 random bytes made on first
    # use), shared by `serve` and every command on that database; never unsigned tokens.
    issuer: str = "switchboard"
    audience: str = "switchboard-console"
    leeway_seconds: int = 30  # clock skew allowed on exp / iat
    token_ttl_seconds: int = 8 * 3600  # default lifetime of `switchboard token`
    # The longest token accepted (`exp - iat`): people's (agent, supervisor) and PBXs'
    # (integration); longer ones are refused (dispatcher/service/tokens.py, docs/operations.md).
    max_token_lifetime_seconds: int = 12 * 3600
    max_integration_token_lifetime_seconds: int = 400 * 86400
    # Sign-in with a password (POST /login, login.py): the token it gives lives this long; the
    # page refreshes it (POST /login/refresh) while the account stays enabled.
    login_token_ttl_seconds: int = 15 * 60
    # More failed sign-ins than this per client address, or per account id, within the window
    # are answered 429 with Retry-After until the window has passed.
    login_max_failures: int = 5
    login_window_seconds: float = 60.0
    login_max_body_bytes: int = 4096  # a larger POST /login body is refused (413)
    # Browser pages allowed to open a socket (comma-separated origins, e.g. the runtime's HTTP
    # address); a request without Origin (not a browser) is accepted unless this is false.
    allowed_origins: str = "http://127.0.0.1:8080,http://localhost:8080"
    allow_missing_origin: bool = True
    max_frame_bytes: int = 64 * 1024  # larger frames close the socket with 1009
    max_upload_bytes: int = 10 * 1024 * 1024  # one file an agent attaches (POST /console/upload)
    grace_seconds: float = 60.0  # a dropped agent keeps their assigned tasks this long
    queues_interval_seconds: float = 2.0  # supervisors' queue snapshot period
    timeline_limit: int = 20

    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    def origin_allowed(self, origin: str | None) -> bool:
        """The one Origin rule of the console's sockets and HTTP requests: a listed origin, or
        none at all (not a browser) unless `allow_missing_origin` is false."""
        if origin is None:
            return self.allow_missing_origin
        return origin.rstrip("/") in self.origins()
