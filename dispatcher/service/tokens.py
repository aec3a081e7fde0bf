"""Bearer tokens (JWT, RFC 7519) of every socket the edges open: verification and issuing.

Sits in `dispatcher.service` so that every edge (the agent console, the phone edge's CTI API)
checks tokens the same way without importing each other; each edge keeps its own settings and
passes the values here. What it promises (RFC 8725):
- the algorithm is the one configured (HS256 with a secret from a file, or RS256 with a public
  key), whatever the token's header says (`alg: none` and algorithm confusion fail);
- `exp`, `iat`, `aud`, `iss` and `sub` are required and checked; `role` is one of ROLES;
- every refusal is a `TokenRefused` whose message never contains the token;
- a token lives at most `max_lifetime` (`exp - iat`; MAX_LIFETIME_SECONDS for people,
  MAX_INTEGRATION_LIFETIME_SECONDS for PBXs, whose tokens sit in a PBX's configuration);
- a revoked token is refused (`RevocationList`): by its `jti` (every token we issue has a random
  one), or every token of a subject issued before a time (a disabled account, a new password,
  `switchboard token revoke --subject`). The list lives in memory, so `verify` stays synchronous
  and reads no database; the runtime loads it at start and refreshes it every
  REVOCATION_POLL_SECONDS from the `RevocationStore`, and the service updates it at once when it
  revokes something itself.
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
from typing import Any

import jwt
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from dispatcher.guard import Throttled

from .ports import Revocations, RevocationStore, SecretStore

log = logging.getLogger(__name__)

ALGORITHMS = ("HS256", "RS256")
ROLES = ("agent", "supervisor", "integration")
AGENT, SUPERVISOR, INTEGRATION = ROLES
# An HS256 secret shorter than the hash (RFC 7518 §3.2) is refused.
MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_TTL_SECONDS = 8 * 3600
# The longest `exp - iat` accepted: a person's token (console, reports) and a PBX's (CTI).
MAX_LIFETIME_SECONDS = 12 * 3600
MAX_INTEGRATION_LIFETIME_SECONDS = 400 * 86400
# How often a running server reads the revocations made by other processes (the CLI).
REVOCATION_POLL_SECONDS = 5.0
JTI_BYTES = 16
POLL_FAILURE_LOG_SECONDS = 60.0
# The HS256 secret kept in the database when no jwt_secret_file is configured.
STORED_SECRET_NAME = "tokens.hs256"
STORED_SECRET_BYTES = 64


class TokenRefused(Exception):
    """The token cannot be used; the message says why (safe to log, without the token)."""


class TokenRevoked(TokenRefused):
    """A valid token that was revoked; `claims` lets an edge tell why (a disabled account is
    answered as such, not as a bare revocation)."""

    def __init__(self, claims: Claims) -> None:
        super().__init__("token revoked")
        self.claims = claims


class KeyProblem(Exception):
    """The configured keys cannot be used (missing file, short secret, wrong algorithm)."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: str
    exp: float
    iat: float
    jti: str | None = None


class RevocationList:
    """The revocations a process knows, in memory; `revoked(claims)` is a dict lookup.
    `listeners` are called with the new `Revocations` after each change (the console closes
    the open sessions of a revoked token or subject)."""

    def __init__(self) -> None:
        self.current = Revocations()
        self.listeners: list[Callable[[Revocations], None]] = []

    def replace(self, revocations: Revocations) -> None:
        changed = revocations != self.current
        self.current = revocations
        if changed:
            for listener in list(self.listeners):
                try:
                    listener(revocations)
                except Exception:
                    log.exception("tokens: a revocation listener failed")

    def merge(self, revocations: Revocations) -> None:
        """Add what `revocations` holds (a read of the store): revocations only grow, so a
        read that started before this process's own latest revocation never undoes it."""
        subjects = dict(self.current.subjects)
        for subject, not_before in revocations.subjects.items():
            subjects[subject] = max(not_before, subjects.get(subject, not_before))
        self.replace(Revocations(self.current.jtis | revocations.jtis, subjects))

    def add_token(self, jti: str) -> None:
        self.replace(Revocations(self.current.jtis | {jti}, self.current.subjects))

    def add_subject(self, subject: str, not_before: float) -> None:
        subjects = dict(self.current.subjects)
        subjects[subject] = max(not_before, subjects.get(subject, not_before))
        self.replace(Revocations(self.current.jtis, subjects))

    def revoked(self, claims: Claims) -> bool:
        return is_revoked(self.current, claims)


def is_revoked(revocations: Revocations, claims: Claims) -> bool:
    if claims.jti is not None and claims.jti in revocations.jtis:
        return True
    not_before = revocations.subjects.get(claims.sub)
    return not_before is not None and claims.iat < not_before


# The revocations of this process: every Verifier consults it unless given another; the
# runtime loads and refreshes it (`RevocationWatch`).
REVOKED = RevocationList()


class RevocationWatch:
    """Keeps a `RevocationList` in step with the store: loaded by `start`, then read again
    every `interval` seconds (revocations made by another process, e.g. the CLI, are known
    within that bound). A failed read keeps the list as it was and is logged (throttled)."""

    def __init__(self, store: RevocationStore, clock: Any,
                 revoked: RevocationList | None = None,
                 interval: float = REVOCATION_POLL_SECONDS) -> None:
        self.store, self.clock, self.interval = store, clock, interval
        self.revoked = revoked if revoked is not None else REVOKED
        self._poll: LoopingCall | None = None
        self._failures = Throttled(log, POLL_FAILURE_LOG_SECONDS)

    def load(self) -> Deferred[None]:
        d = self.store.revocations(self.clock.seconds())
        d.addCallback(self.revoked.merge)
        return d

    def start(self) -> Deferred[None]:
        d = self.load()
        d.addCallback(lambda _: self._loop())
        return d

    def _loop(self) -> None:
        self._poll = LoopingCall(self._refresh)
        self._poll.clock = self.clock
        self._poll.start(self.interval, now=False)

    def _refresh(self) -> Deferred[None]:
        d = self.load()
        d.addErrback(lambda f: self._failures.warning(
            "poll", self.clock.seconds(), "tokens: cannot read the revocations: %s",
            f.getErrorMessage()[:200]))
        return d

    def stop(self) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()


def revoke_subject(store: RevocationStore, subject: str, now: float, actor: str,
                   revoked: RevocationList | None = None) -> Deferred[None]:
    """Revoke every token of `subject` issued before `now` (stored, then known in memory).
    The tokens we issue carry `iat` in milliseconds, so a sign-in right after a password
    change gets a token that is not revoked."""
    not_before = float(now)
    d = store.revoke_subject(subject, not_before, now, actor)
    d.addCallback(lambda _: (revoked or REVOKED).add_subject(subject, not_before))
    return d


def revoke_token(store: RevocationStore, jti: str, now: float, actor: str,
                 expires_at: float | None = None,
                 revoked: RevocationList | None = None) -> Deferred[None]:
    """Revoke one token by its `jti`; kept until `expires_at` (default: the longest lifetime
    any token may have, from now)."""
    until = expires_at if expires_at is not None else now + MAX_INTEGRATION_LIFETIME_SECONDS
    d = store.revoke_token(jti, until, now, actor)
    d.addCallback(lambda _: (revoked or REVOKED).add_token(jti))
    return d


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
                 clock: Callable[[], float] = time.time,
                 max_lifetime: float = MAX_LIFETIME_SECONDS,
                 max_integration_lifetime: float = MAX_INTEGRATION_LIFETIME_SECONDS,
                 revoked: RevocationList | None = None) -> None:
        self.keys, self.issuer, self.audience = keys, issuer, audience
        self.leeway, self.clock = leeway, clock
        self.max_lifetime = max_lifetime
        self.max_integration_lifetime = max_integration_lifetime
        self.revoked = revoked if revoked is not None else REVOKED

    def verify(self, token: str) -> Claims:  # noqa: C901 - one refusal per JWT check, top to bottom
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
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti):
            raise TokenRefused("malformed claim jti")
        result = Claims(sub, role, float(claims["exp"]), float(claims["iat"]), jti)
        longest = self.max_integration_lifetime if role == INTEGRATION else self.max_lifetime
        if result.exp - result.iat > longest:
            raise TokenRefused(f"token lifetime over {int(longest)} s (exp - iat)")
        if self.revoked.revoked(result):
            raise TokenRevoked(result)
        return result


def require_role(claims: Claims, allowed: tuple[str, ...], where: str) -> None:
    """TokenRefused unless the token's role is one `where` serves."""
    if claims.role not in allowed:
        raise TokenRefused(f"role {claims.role} is not accepted by {where}")


class Signer:
    def __init__(self, keys: Keys, issuer: str, audience: str,
                 clock: Callable[[], float] = time.time) -> None:
        if keys.sign is None:
            raise KeyProblem("no signing key: RS256 needs jwt_private_key_file to issue tokens")
        self.keys, self.issuer, self.audience, self.clock = keys, issuer, audience, clock

    def issue(self, sub: str, role: str = AGENT, ttl: float = DEFAULT_TTL_SECONDS) -> str:
        """A signed token with a random `jti` (so that it can be revoked alone), in hex: it never
        starts with "-", which `switchboard tokens revoke --jti` would take for an option."""
        if role not in ROLES:
            raise KeyProblem(f"role must be one of {', '.join(ROLES)}")
        now = round(self.clock(), 3)
        claims = {"sub": sub, "role": role, "iat": now, "exp": round(now + ttl, 3),
                  "iss": self.issuer, "aud": self.audience,
                  "jti": secrets.token_hex(JTI_BYTES)}
        return jwt.encode(claims, self.keys.sign, algorithm=self.keys.algorithm)
