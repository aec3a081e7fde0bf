"""The registrar of agents' phones (RFC 3261 §10.3) with digest authentication (§22, RFC 7616
as RFC 8760 applies it to SIP: SHA-256 and MD5, qop=auth).

Sits in the phone edge as a transaction user of sip.py; credentials come from
`calls.account(sip_user)` (HA1s set with `switchboard phones set`), bindings go to
`calls.register` / `calls.unregister`, whose Deferreds fire after the commit: the 200 OK is sent
only then. Promises:
- a REGISTER is answered 200 only with a correct qop=auth digest response to a nonce we issued,
  not older than `nonce_seconds` (older: 401 `stale=true`), with a nonce count above every count
  already accepted for that nonce. Counts are checked and recorded only after the digest is
  verified, so a forged request cannot burn a phone's counts. An answer without qop (RFC 2069)
  is never accepted (a fresh challenge): it has no count, so it could be replayed.
- a nonce that is not ours (forged, or issued before a restart with a random `nonce_secret`:
  phones reuse their last nonce) gets a fresh challenge (401 `stale=true`), unchecked, so a
  restart does not count every phone's next REGISTER as a failure;
- a failure (wrong password, unknown user, unreadable credentials) is 403 with one
  reason text, whatever the cause, after the same work (an unknown user's response is checked
  against a decoy HA1), so the answers do not tell which users exist;
- after `auth_max_failures` failures within `auth_failure_window` from one source address, or
  for one user from any source, further attempts get the same 403 without being checked
  (`dispatcher.guard.Budget`); the user's lockout spares the address of the user's current
  live binding, so a brute force from elsewhere does not unplug the agent's own phone;
- every refusal is logged at most once a minute per source and kind (`guard.Throttled`);
- challenges: one WWW-Authenticate per algorithm of `digest_algorithms`, in that order
  (SHA-256 first by default, RFC 8760 §2.4), MD5 only for the User-Agents listed in
  `digest_md5_only_agents` (phones that give up on any other challenge);
- `Expires`/`expires=` below the minimum is 423 with Min-Expires, above the maximum is cut to
  it; `Contact: *` with Expires 0 removes the binding; a REGISTER without Contact lists it.

Nonces are stateless (timestamp, random and an HMAC of both under a per-process secret, unless
configured): no table to grow, and any of our nonces can be checked after the fact.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from twisted.internet.interfaces import IReactorTime

from dispatcher.guard import Budget, Throttled

from . import errors
from .config import PhoneSettings, algorithms, md5_only_agents
from .parse import Address, ParseError, parse_delta, unescape
from .sip import Flow, ServerTransaction

log = logging.getLogger(__name__)

NONCE_RANDOM_BYTES = 8
TAG_BYTES = 6
NONCE_MAC_CHARS = 32
MAX_TRACKED_NONCES = 10_000
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9\-_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|\Z)')
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
REQUIRED = ("username", "nonce", "uri", "response", "qop", "nc", "cnonce")


def parse_credentials(value: str) -> tuple[str, dict[str, str]] | None:
    """`Digest username="a", realm="r", ...` → ("digest", {...}); None if unreadable."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        params[m.group(1).lower()] = v
        pos = m.end()
    return scheme.lower(), params


def _h(algorithm: str, text: str) -> str:
    return HASHES[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def digest_response(algorithm: str, ha1: str, nonce: str, method: str, uri: str,
                    qop: str | None = None, nc: str = "", cnonce: str = "") -> str:
    """RFC 7616 §3.4.1 (qop=auth) and RFC 2069 (no qop; for clients and tests only: the
    registrar accepts qop=auth alone)."""
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass(frozen=True)
class NonceCheck:
    ok: bool
    stale: bool = False


class Nonces:
    """Issues and checks our nonces; remembers the highest nonce count accepted per nonce."""

    def __init__(self, clock: IReactorTime, lifetime: float, secret: bytes) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.secret = secret
        self._counts: dict[str, tuple[int, float]] = {}  # nonce -> (last nc, issued at)

    def _mac(self, stamp: str, rand: str) -> str:
        return hmac.new(self.secret, f"{stamp}:{rand}".encode(), hashlib.sha256).hexdigest()[
            :NONCE_MAC_CHARS]

    def issue(self) -> str:
        stamp = f"{int(self.clock.seconds() * 1000):x}"
        rand = os.urandom(NONCE_RANDOM_BYTES).hex()
        return f"{stamp}.{rand}.{self._mac(stamp, rand)}"

    def _issued(self, nonce: str) -> float | None:
        parts = nonce.split(".")
        if len(parts) != 3:
            return None
        stamp, rand, mac = parts
        if not hmac.compare_digest(mac, self._mac(stamp, rand)):
            return None
        try:
            return int(stamp, 16) / 1000
        except ValueError:
            return None

    def check(self, nonce: str) -> NonceCheck:
        """Ours and fresh? Records nothing (see `count`)."""
        issued = self._issued(nonce)
        if issued is None:
            return NonceCheck(False)
        if self.clock.seconds() - issued > self.lifetime:
            return NonceCheck(False, stale=True)
        return NonceCheck(True)

    def count(self, nonce: str, nc: str) -> bool:
        """Accept nonce count `nc` (hex) for a checked nonce if above every count accepted
        for it before, and remember it; False for a replayed or lower count."""
        count = int(nc, 16)
        now = self.clock.seconds()
        last = self._counts.get(nonce)
        if last is not None and count <= last[0]:
            return False
        if len(self._counts) >= MAX_TRACKED_NONCES:
            self._counts = {k: v for k, v in self._counts.items()
                            if now - v[1] <= self.lifetime}
        issued = self._issued(nonce)
        self._counts[nonce] = (count, issued if issued is not None else now)
        return True


@dataclass(frozen=True)
class Verdict:
    """What a REGISTER's credentials earn: "ok", "challenge" (a fresh 401), "stale", "replay"
    or "foreign" (401 stale=true: an old nonce, a nonce count already used, a nonce that is
    not ours, say from before a restart) or "failed" (403); `why` is for the log only."""

    outcome: str
    why: str = ""


class Registrar:
    def __init__(self, clock: IReactorTime, calls: Any, settings: PhoneSettings) -> None:
        self.clock = clock
        self.calls = calls
        self.settings = settings
        secret = settings.nonce_secret.encode() if settings.nonce_secret else os.urandom(32)
        self.nonces = Nonces(clock, settings.nonce_seconds, secret)
        self._decoy_key = hashlib.sha256(b"decoy:" + secret).digest()
        self.algorithms = algorithms(settings)
        self.md5_only = md5_only_agents(settings)
        rate = settings.auth_max_failures / settings.auth_failure_window
        self.failed_users = Budget(rate, settings.auth_max_failures)
        self.failed_sources = Budget(rate, settings.auth_max_failures)
        self.refusals = Throttled(log)
        # (agent id, binding or None, the REGISTER) after each change is committed and answered
        self.on_binding: Callable[[str, Any, Any], None] | None = None

    # ---------------------------------------------------------------- REGISTER

    def register(self, txn: ServerTransaction) -> None:
        req = txn.request
        txn.to_tag = txn.to_tag or os.urandom(TAG_BYTES).hex()
        try:
            to = req.to
        except ParseError:
            txn.reply(errors.BAD_REQUEST)
            return
        if not to.uri.is_sip or not to.uri.user:
            txn.reply(errors.UNSUPPORTED_URI_SCHEME if not to.uri.is_sip else errors.NOT_FOUND)
            return
        account = self.authenticate(txn, unescape(to.uri.user))
        if account is not None:
            self._bind(txn, account)

    def authenticate(self, txn: ServerTransaction, user: str) -> Any | None:
        """The digest check of a request from `user` (a REGISTER's To, a SUBSCRIBE's From:
        presence.py), with every promise above: the user's phone account when it passes;
        otherwise None, and the challenge (401) or the refusal (403) has been sent."""
        req = txn.request
        account = self.calls.account(user)
        realm = account.realm if account is not None else self.settings.realm
        offered = self._offered(req.get("user-agent") or "")
        credentials = self._credentials(req.values("authorization"), realm)
        if credentials is None:
            self._challenge(txn, realm, offered, stale=False)
            return None
        verdict = self._verify(txn, credentials, account, user, offered)
        if verdict.outcome == "ok":
            return account
        if verdict.outcome == "failed":
            self._refuse(txn.flow, user, verdict.why, req.method)
            txn.reply(errors.FORBIDDEN, errors.AUTH_FAILED_REASON)
            return None
        if verdict.outcome != "stale":
            self.refusals.log(logging.INFO, (txn.flow.host, verdict.outcome),
                              self.clock.seconds(), "%s for %s from %s challenged again: %s",
                              req.method, user, txn.flow, verdict.why)
        self._challenge(txn, realm, offered,
                        stale=verdict.outcome in ("stale", "replay", "foreign"))
        return None

    def _offered(self, user_agent: str) -> tuple[str, ...]:
        ua = user_agent.strip().lower()
        if "MD5" in self.algorithms and any(ua.startswith(p) for p in self.md5_only):
            return ("MD5",)
        return self.algorithms

    def _credentials(self, values: list[str], realm: str) -> dict[str, str] | None:
        for value in values:
            parsed = parse_credentials(value)
            if parsed is None or parsed[0] != "digest":
                continue
            scheme, params = parsed
            if params.get("realm") == realm:
                return params
        return None

    def _locked(self, flow: Flow, user: str, account: Any, now: float) -> str | None:
        if self.failed_sources.left(flow.host, now) < 1:
            return "source locked out"
        if self.failed_users.left(user, now) < 1:
            binding = self.calls.binding(account.agent_id) if account is not None else None
            try:
                home = Flow.from_text(binding.source).host if binding is not None else None
            except ValueError:
                home = None
            if home != flow.host:
                return "user locked out"
        return None

    def _refuse(self, flow: Flow, user: str, why: str, method: str = "REGISTER") -> None:
        now = self.clock.seconds()
        self.failed_sources.take(flow.host, now)
        self.failed_users.take(user, now)
        self.refusals.warning((flow.host, "403"), now, "%s for %s from %s refused: %s",
                              method, user, flow, why)

    def _verify(  # noqa: C901 - one verdict per digest check, read top to bottom
        self, txn: ServerTransaction, c: dict[str, str], account: Any, user: str,
        offered: tuple[str, ...],
    ) -> Verdict:
        algorithm = c.get("algorithm", "MD5").upper()
        if algorithm not in offered:
            return Verdict("challenge", f"algorithm {algorithm} not offered")
        qop = c.get("qop")
        if qop is None:
            return Verdict("challenge", "no qop (RFC 2069 answers can be replayed)")
        if qop.lower() != "auth":
            return Verdict("challenge", f"qop {qop} not offered")
        missing = [name for name in REQUIRED if not c.get(name)]
        if missing:
            return Verdict("failed", "no " + ", ".join(missing))
        locked = self._locked(txn.flow, user, account, self.clock.seconds())
        if locked:
            return Verdict("failed", locked)
        check = self.nonces.check(c["nonce"])
        if check.stale:
            return Verdict("stale")
        if not check.ok:  # not ours, or from before a restart (a phone reusing its last one):
            return Verdict("foreign", "not our nonce")  # a fresh one, nothing checked
        try:
            int(c["nc"], 16)
        except ValueError:
            return Verdict("failed", "unreadable nc")
        known = (account is not None and account.sip_user is not None
                 and c["username"] == user)
        ha1 = (account.ha1_sha256 if algorithm == "SHA-256" else account.ha1_md5) \
            if known else None
        if not ha1:  # unknown user: the same work against a decoy, the same answer
            ha1 = self._decoy(algorithm, c["username"])
            known = False
        expected = digest_response(algorithm, ha1, c["nonce"], txn.request.method, c["uri"],
                                   "auth", c["nc"], c["cnonce"])
        good = hmac.compare_digest(expected, c["response"].lower())
        if not known:
            return Verdict("failed", "unknown user")
        if not good:
            return Verdict("failed", "wrong password")
        if not self.nonces.count(c["nonce"], c["nc"]):
            return Verdict("replay", f"nonce count {c['nc']} already used")
        return Verdict("ok")

    def _decoy(self, algorithm: str, username: str) -> str:
        return hmac.new(self._decoy_key, f"{algorithm}:{username}".encode(
            "utf-8", "surrogateescape"), HASHES[algorithm]).hexdigest()

    def _challenge(self, txn: ServerTransaction, realm: str, offered: tuple[str, ...],
                   stale: bool) -> None:
        nonce = self.nonces.issue()
        headers = []
        for algorithm in offered:
            value = (f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, '
                     f'qop="auth"')
            if stale:
                value += ", stale=true"
            headers.append(("WWW-Authenticate", value))
        txn.reply(errors.UNAUTHORIZED, headers=headers)

    # ---------------------------------------------------------------- bindings

    def _expiry(self, contact: Address, header: str | None) -> int:
        value = contact.param("expires")
        if value is not None:
            try:
                return parse_delta(value)
            except ParseError:
                pass  # RFC 4475 §3.1.2.4: a bad expiry may count as the default
        if header is not None:
            try:
                return parse_delta(header)
            except ParseError:
                pass
        return self.settings.register_default

    def _bind(self, txn: ServerTransaction, account: Any) -> None:
        req = txn.request
        s = self.settings
        try:
            contacts = req.contacts()
            cseq = req.cseq.number
        except ParseError as e:
            txn.reply(errors.BAD_REQUEST, f"Bad Request ({e.reason})")
            return
        agent_id = account.agent_id
        if not contacts:  # a query (§10.2.3)
            self._ok(txn, self.calls.binding(agent_id))
            return
        header = req.get("expires")
        if any(c.star for c in contacts):
            if len(contacts) != 1 or header is None or header.strip() != "0":
                txn.reply(errors.BAD_REQUEST, "Bad Request (* needs Expires: 0)")
                return
            self._unbind(txn, agent_id)
            return
        current = self.calls.binding(agent_id)
        if current is not None and current.call_id == req.call_id and cseq <= current.cseq:
            txn.reply(errors.SERVER_ERROR, "Server Internal Error (CSeq out of order)")
            return
        wanted = [(c, self._expiry(c, header)) for c in contacts]
        live = [(c, e) for c, e in wanted if e > 0]
        if not live:
            self._unbind(txn, agent_id)
            return
        contact, expires = live[-1]
        if expires < s.register_min:
            txn.reply(errors.INTERVAL_TOO_BRIEF,
                      headers=[("Min-Expires", str(s.register_min))])
            return
        expires = min(expires, s.register_max)
        d = self.calls.register(agent_id, contact.uri.text, float(expires), str(txn.flow),
                                req.call_id, cseq)
        d.addCallback(lambda binding: self._ok(txn, binding))
        d.addCallback(lambda _: self._changed(agent_id, req))
        d.addErrback(self._failed, txn, agent_id)

    def _unbind(self, txn: ServerTransaction, agent_id: str) -> None:
        d = self.calls.unregister(agent_id)
        d.addCallback(lambda _: self._ok(txn, None))
        d.addCallback(lambda _: self._changed(agent_id, txn.request))
        d.addErrback(self._failed, txn, agent_id)

    def _changed(self, agent_id: str, request: Any) -> None:
        """Tell `on_binding` (the dialog watch, watch.py) that the agent's binding changed."""
        if self.on_binding is not None:
            self.on_binding(agent_id, self.calls.binding(agent_id), request)

    def _ok(self, txn: ServerTransaction, binding: Any) -> None:
        headers = []
        if binding is not None:
            left = max(0, int(round(binding.expires_at - self.clock.seconds())))
            headers.append(("Contact", f"<{binding.contact}>;expires={left}"))
        headers.append(("Date", formatdate(usegmt=True)))
        txn.reply(errors.OK, headers=headers)

    def _failed(self, failure: Any, txn: ServerTransaction, agent_id: str) -> None:
        log.error("registration of %s not stored: %s", agent_id, failure.getErrorMessage())
        txn.reply(errors.SERVER_ERROR, errors.STORE_FAILED_REASON)
