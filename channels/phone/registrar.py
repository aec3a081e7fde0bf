"""The registrar of agents' phones (RFC 3261 §10.3) with digest authentication (§22, RFC 7616
as RFC 8760 applies it to SIP: SHA-256 and MD5, qop=auth or none).

Sits in the phone edge as a transaction user of sip.py; credentials come from
`calls.account(sip_user)` (HA1s set with `switchboard phones set`), bindings go to
`calls.register` / `calls.unregister`, whose Deferreds fire after the commit: the 200 OK is sent
only then. Promises: a REGISTER is answered 200 only with a correct digest response to a nonce
we issued and that is not older than `nonce_seconds` (older: 401 with `stale=true`); a replayed
nonce count is challenged again; a wrong password is 403; `Expires`/`expires=` below the
minimum is 423 with Min-Expires, above the maximum is cut to it; `Contact: *` with Expires 0
removes the binding; a REGISTER without Contact lists the current one.

Nonces are stateless (timestamp, random and an HMAC of both under a per-process secret, unless
configured): no table to grow, and any of our nonces can be checked after the fact.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from twisted.internet.interfaces import IReactorTime

from . import errors
from .config import PhoneSettings, algorithms
from .parse import Address, ParseError, parse_delta, unescape
from .sip import ServerTransaction

log = logging.getLogger(__name__)

NONCE_RANDOM_BYTES = 8
TAG_BYTES = 6
NONCE_MAC_CHARS = 32
MAX_TRACKED_NONCES = 10_000
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9\-_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|\Z)')
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


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
    """RFC 7616 §3.4.1 (qop=auth) and RFC 2069 compatibility (no qop)."""
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass(frozen=True)
class NonceCheck:
    ok: bool
    stale: bool = False


class Nonces:
    """Issues and checks our nonces; remembers the highest nonce count seen per nonce."""

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

    def check(self, nonce: str, nc: str | None) -> NonceCheck:
        parts = nonce.split(".")
        if len(parts) != 3:
            return NonceCheck(False)
        stamp, rand, mac = parts
        if not hmac.compare_digest(mac, self._mac(stamp, rand)):
            return NonceCheck(False)
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return NonceCheck(False)
        now = self.clock.seconds()
        if now - issued > self.lifetime:
            return NonceCheck(False, stale=True)
        if nc is not None:
            try:
                count = int(nc, 16)
            except ValueError:
                return NonceCheck(False)
            last = self._counts.get(nonce)
            if last is not None and count <= last[0]:
                return NonceCheck(False, stale=True)  # a replay: a fresh nonce, please
            if len(self._counts) >= MAX_TRACKED_NONCES:
                self._counts = {k: v for k, v in self._counts.items()
                                if now - v[1] <= self.lifetime}
            self._counts[nonce] = (count, issued)
        return NonceCheck(True)


class Registrar:
    def __init__(self, clock: IReactorTime, calls: Any, settings: PhoneSettings) -> None:
        self.clock = clock
        self.calls = calls
        self.settings = settings
        secret = settings.nonce_secret.encode() if settings.nonce_secret else os.urandom(32)
        self.nonces = Nonces(clock, settings.nonce_seconds, secret)
        self.algorithms = algorithms(settings)

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
        user = unescape(to.uri.user)
        account = self.calls.account(user)
        realm = account.realm if account is not None else self.settings.realm
        credentials = self._credentials(req.values("authorization"), realm)
        if credentials is None:
            self._challenge(txn, realm, stale=False)
            return
        verdict = self._verify(req.method, credentials, account, user)
        if verdict == "stale":
            self._challenge(txn, realm, stale=True)
            return
        if verdict != "ok":
            log.info("REGISTER for %s refused: %s", user, verdict)
            txn.reply(errors.FORBIDDEN, f"Forbidden ({verdict})")
            return
        self._bind(txn, account)

    def _credentials(self, values: list[str], realm: str) -> dict[str, str] | None:
        for value in values:
            parsed = parse_credentials(value)
            if parsed is None or parsed[0] != "digest":
                continue
            scheme, params = parsed
            if params.get("realm") == realm:
                return params
        return None

    def _verify(self, method: str, c: dict[str, str], account: Any, user: str) -> str:
        algorithm = c.get("algorithm", "MD5").upper()
        if algorithm not in self.algorithms:
            return "stale"  # offer what we support again
        for name in ("username", "nonce", "uri", "response"):
            if name not in c:
                return f"no {name}"
        qop = c.get("qop")
        if qop is not None and qop.lower() != "auth":
            return "unsupported qop"
        if qop is not None and ("nc" not in c or "cnonce" not in c):
            return "qop without nc/cnonce"
        check = self.nonces.check(c["nonce"], c.get("nc") if qop else None)
        if check.stale:
            return "stale"
        if not check.ok:
            return "not our nonce"
        if account is None or account.sip_user is None or c["username"] != user:
            return "unknown user"
        ha1 = account.ha1_sha256 if algorithm == "SHA-256" else account.ha1_md5
        if not ha1:
            return "no credentials for " + algorithm
        expected = digest_response(algorithm, ha1, c["nonce"], method, c["uri"], qop,
                                   c.get("nc", ""), c.get("cnonce", ""))
        if not hmac.compare_digest(expected, c["response"].lower()):
            return "wrong password"
        return "ok"

    def _challenge(self, txn: ServerTransaction, realm: str, stale: bool) -> None:
        nonce = self.nonces.issue()
        headers = []
        for algorithm in self.algorithms:
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
        d.addErrback(self._failed, txn, agent_id)

    def _unbind(self, txn: ServerTransaction, agent_id: str) -> None:
        d = self.calls.unregister(agent_id)
        d.addCallback(lambda _: self._ok(txn, None))
        d.addErrback(self._failed, txn, agent_id)

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
