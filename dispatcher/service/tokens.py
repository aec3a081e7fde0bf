"""Bearer tokens (JWT, RFC 7519) of every socket the edges open: verification and issuing.

Sits in `dispatcher.service` so that every edge (the agent console, the phone edge's CTI API)
checks tokens the same way without importing each other; each edge keeps its own settings and
passes the values here. What it promises (RFC 8725):
- the algorithm is the one configured (HS256 with a secret from a file, or RS256 with a public
  key), whatever the token's header says (`alg: none` and algorithm confusion fail);
- `exp`, `iat`, `aud`, `iss` and `sub` are required and checked; `role` is one of ROLES;
- every refusal is a `TokenRefused` whose message never contains the token.
Keys are read once, when an edge starts or a command runs (`load_keys`): from the files the
settings name, or, for HS256 without a secret file, the secret kept in the database
(`stored_secret`: 64 random bytes made on first use and shared by every process on that
database, so `switchboard token` signs with the server's key wherever it runs).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from twisted.internet.defer import Deferred

from .ports import SecretStore

log = logging.getLogger(__name__)

ALGORITHMS = ("HS256", "RS256")
ROLES = ("agent", "supervisor", "integration")
AGENT, SUPERVISOR, INTEGRATION = ROLES
# An HS256 secret shorter than the hash (RFC 7518 §3.2) is refused.
MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_TTL_SECONDS = 8 * 3600
# The HS256 secret kept in the database when no jwt_secret_file is configured.
STORED_SECRET_NAME = "tokens.hs256"
STORED_SECRET_BYTES = 64


class TokenRefused(Exception):
    """The token cannot be used; the message says why (safe to log, without the token)."""


class KeyProblem(Exception):
    """The configured keys cannot be used (missing file, short secret, wrong algorithm)."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: str
    exp: float
    iat: float


@dataclass(frozen=True, slots=True)
class Keys:
    algorithm: str
    verify: str | bytes
    sign: str | bytes | None  # None: this process can verify only (RS256 without private key)
    stored: bool = False  # HS256 with the secret kept in the database (no secret file)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyProblem(f"cannot read the {what} {path}: {exc.strerror}") from None


def load_keys(algorithm: str, *, secret_file: str = "", public_key_file: str = "",
              private_key_file: str = "", stored: bytes | None = None,
              label: str = "tokens") -> Keys:
    """The keys the settings name. HS256 without a secret file: `stored`, the secret kept in
    the database (see `stored_secret`), else refused. `label` names the edge in messages."""
    if algorithm not in ALGORITHMS:
        raise KeyProblem(f"jwt_algorithm must be one of {', '.join(ALGORITHMS)}, "
                         f"not {algorithm!r}")
    if algorithm == "RS256":
        if not public_key_file:
            raise KeyProblem("RS256 needs jwt_public_key_file")
        public = _read(public_key_file, "public key")
        private = _read(private_key_file, "private key") if private_key_file else None
        return Keys(algorithm, public, private)
    if secret_file:
        secret = _read(secret_file, "secret").strip()
    elif stored is not None:
        log.debug("%s: no jwt_secret_file configured; using the secret kept in the database",
                  label)
        secret = stored
    else:
        raise KeyProblem("HS256 needs jwt_secret_file (or the secret kept in the database)")
    if len(secret) < MIN_SECRET_BYTES:
        raise KeyProblem(f"the HS256 secret must have at least {MIN_SECRET_BYTES} bytes")
    return Keys(algorithm, secret, secret, stored=not secret_file)


def stored_secret(store: SecretStore, now: float) -> Deferred[bytes]:
    """The HS256 secret kept in the database, generated there on first use
    (`secrets.token_bytes`); every process on the same database gets the same one."""
    return store.shared_secret(STORED_SECRET_NAME, secrets.token_bytes(STORED_SECRET_BYTES),
                               now)


class Verifier:
    def __init__(self, keys: Keys, issuer: str, audience: str,
                 leeway: float = DEFAULT_LEEWAY_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys, self.issuer, self.audience = keys, issuer, audience
        self.leeway, self.clock = leeway, clock

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("malformed token") from None
        if header.get("alg") != self.keys.algorithm:
            raise TokenRefused(f"algorithm {header.get('alg')!r} is not accepted")
        try:
            claims = jwt.decode(
                token, self.keys.verify, algorithms=[self.keys.algorithm],
                audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"missing claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad signature") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"invalid token ({type(exc).__name__})") from None
        sub, role = claims.get("sub"), claims.get("role", AGENT)
        if not isinstance(sub, str) or not sub:
            raise TokenRefused("missing claim sub")
        if role not in ROLES:
            raise TokenRefused(f"unknown role {role!r}")
        return Claims(sub, role, float(claims["exp"]), float(claims["iat"]))


class Signer:
    def __init__(self, keys: Keys, issuer: str, audience: str,
                 clock: Callable[[], float] = time.time) -> None:
        if keys.sign is None:
            raise KeyProblem("no signing key: RS256 needs jwt_private_key_file to issue tokens")
        self.keys, self.issuer, self.audience, self.clock = keys, issuer, audience, clock

    def issue(self, sub: str, role: str = AGENT, ttl: float = DEFAULT_TTL_SECONDS) -> str:
        if role not in ROLES:
            raise KeyProblem(f"role must be one of {', '.join(ROLES)}")
        now = int(self.clock())
        claims = {"sub": sub, "role": role, "iat": now, "exp": now + int(ttl),
                  "iss": self.issuer, "aud": self.audience}
        return jwt.encode(claims, self.keys.sign, algorithm=self.keys.algorithm)
