"""Who is who: is an inbound message really from the domain in its From header? (issue 13)

The e-mail edge asks `Authenticity.check(raw, client_ip, helo, envelope_from)` before it hands
a message to the service; the answer is a `Verdict` (data: `authenticated`, the From domain
it vouches for, a short `summary` for the trail). The service (dispatcher/service/mail.py)
decides what a verdict allows; this module only reads the evidence:

- `off`: nothing is authenticated (a reply still joins its thread through the unguessable
  Message-ID of ours it names; see the service).
- `relay`: a relay we trust (`auth_trusted_relays`, client IPs/CIDRs) checked the message and
  put its verdict on top: the topmost `Authentication-Results` header (RFC 8601, parsed with
  `authres`) must carry our `auth_serv_id`. From any other client the message is
  unauthenticated, whatever headers it carries.
- `local`: we check it ourselves: DKIM signatures with dkimpy, SPF of the client IP for the
  envelope sender (or HELO) with pyspf.

Either way a message is authenticated when a `pass` is aligned with its single From domain
(DMARC's relaxed alignment, RFC 7489 3.1: same organisational domain by the public suffix
list): `dmarc=pass header.from=D`, `dkim=pass header.d=D'` or `spf=pass smtp.mailfrom=x@D'`.

DNS lookups run in a thread, never on the reactor, each bounded by `auth_timeout`, at most
`MAX_CHECKS` at a time (the others wait their turn: nothing is dropped). A check that times out
or fails is "not authenticated" (the message is still stored). `auth_dns_servers` points
dnspython's resolver (process-wide: pyspf uses the default one) at given servers, e.g. a local
validating resolver, or the test's own DNS server.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32
from email.utils import getaddresses
from functools import lru_cache
from typing import Any

import authres
import dkim
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList
from twisted.internet import defer, threads

from dispatcher.domain.errors import InvalidValue
from dispatcher.guard import Throttled

log = logging.getLogger(__name__)

OFF, RELAY, LOCAL = "off", "relay", "local"
MODES = (OFF, RELAY, LOCAL)
MAX_CHECKS = 4  # local checks running at once (threads of the reactor's pool)
MAX_SIGNATURES = 3  # DKIM signatures verified on one message
MAX_HEADER_BYTES = 256 * 1024  # the header block read for From and Authentication-Results

# (method, result, domain): one piece of evidence, the domain it is about.
Evidence = tuple[str, str, str]
TxtLookup = Callable[..., bytes | None]


@dataclass(frozen=True)
class Verdict:
    authenticated: bool
    domain: str = ""  # the From domain the evidence vouches for ("" when none)
    summary: str = ""  # e.g. "dkim=pass header.d=example.com; spf=none"

    @classmethod
    def no(cls, summary: str) -> Verdict:
        return cls(False, "", summary)


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organisation(domain: str) -> str:
    """The organisational domain (`mail.example.co.uk` -> `example.co.uk`)."""
    domain = domain.strip().strip(".").lower()
    return _suffixes().privatesuffix(domain) or domain


def aligned(a: str, b: str) -> bool:
    """DMARC relaxed alignment: the same organisational domain."""
    return bool(a and b) and organisation(a) == organisation(b)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower() if "@" in address else ""


def _headers(raw: bytes) -> Any:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw[: end if 0 <= end < MAX_HEADER_BYTES else MAX_HEADER_BYTES]
    return message_from_bytes(head + b"\r\n\r\n", policy=compat32)


def from_domain(raw: bytes, head: Any = None) -> str:
    """The domain of the one address in the one From header; "" when there are several
    (RFC 7489 6.6.1: such a message cannot be aligned) or none."""
    values = (head if head is not None else _headers(raw)).get_all("From") or []
    if len(values) != 1:
        return ""
    found = [a for _, a in getaddresses([str(values[0])]) if a]
    return domain_of(found[0]) if len(found) == 1 else ""


def judge(evidence: Sequence[Evidence], domain: str, summary: str) -> Verdict:
    """Authenticated when a pass is aligned with the From domain."""
    if not domain:
        return Verdict.no(summary or "no single From domain")
    for method, result, about in evidence:
        if result == "pass" and method in ("dmarc", "dkim", "spf") and aligned(about, domain):
            return Verdict(True, domain, summary)
    return Verdict(False, "", summary)


def relay_evidence(raw: bytes, serv_id: str, head: Any = None) -> tuple[list[Evidence], str]:
    """The evidence of the topmost Authentication-Results header, if it is our relay's."""
    values = (head if head is not None else _headers(raw)).get_all(
        "Authentication-Results") or []
    if not values:
        return [], "no Authentication-Results"
    text = re.sub(r"\r?\n[ \t]+", " ", str(values[0]))
    try:
        header = authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:  # noqa: BLE001 - authres raises its own and ValueErrors
        return [], "unreadable Authentication-Results"
    if str(header.authserv_id).lower() != serv_id.lower():
        return [], f"Authentication-Results of {str(header.authserv_id)[:64]!r}, not ours"
    evidence = []
    for r in header.results:
        props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in r.properties}
        about = (props.get("header.from") or props.get("header.d")
                 or domain_of(props.get("smtp.mailfrom", "")) or props.get("smtp.helo", ""))
        evidence.append((str(r.method).lower(), str(r.result).lower(), about.lower()))
    return evidence, "relay: " + "; ".join(f"{m}={r}" + (f" ({d})" if d else "")
                                           for m, r, d in evidence)


def mailbox_verdict(raw: bytes, trusted: bool, serv_id: str) -> Verdict:
    """Mail polled over IMAP: the mailbox server's Authentication-Results when it is trusted
    (`imap_trust_authentication_results`), else unauthenticated."""
    if not trusted or not serv_id.strip():
        return Verdict.no("IMAP: Authentication-Results not trusted")
    head = _headers(raw)
    evidence, summary = relay_evidence(raw, serv_id.strip(), head)
    return judge(evidence, from_domain(raw, head), summary)


def resolver_txt(resolver: dns.resolver.Resolver) -> TxtLookup:
    """A dkimpy `dnsfunc` on `resolver`: the first TXT record's strings, joined."""
    def txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii") if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(qname, dns.rdatatype.TXT, raise_on_no_answer=False,
                                      lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return None
        except dns.exception.Timeout as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(list(rrset.items)[0].strings)
        return None
    return txt


def local_evidence(raw: bytes, client_ip: str, helo: str, envelope_from: str,
                   timeout: float, txt: TxtLookup) -> tuple[list[Evidence], str]:
    """DKIM (every signature, up to MAX_SIGNATURES) and SPF. Runs in a thread (DNS)."""
    evidence: list[Evidence] = []
    signer = dkim.DKIM(raw, timeout=timeout)
    count = len(_headers(raw).get_all("DKIM-Signature") or [])
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            ok = signer.verify(idx=idx, dnsfunc=txt)
            result = "pass" if ok else "fail"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except dkim.DKIMException:  # a wrong body hash, a bad signature, a key it refuses
            result = "fail"
        except Exception:  # noqa: BLE001 - dkimpy raises many kinds on bad input
            result = "permerror"
        d = signer.signature_fields.get(b"d", b"").decode("ascii", "replace").lower()
        evidence.append(("dkim", result, d))
    if not count:
        evidence.append(("dkim", "none", ""))
    if client_ip:
        sender = envelope_from or f"postmaster@{helo}"
        try:
            result, _, _ = spf.query(i=client_ip, s=sender, h=helo or "unknown",
                                     timeout=timeout, querytime=timeout).check()
        except Exception:  # noqa: BLE001 - pyspf's own errors are results; the rest is ours
            result = "temperror"
        evidence.append(("spf", str(result), domain_of(sender)))
    return evidence, "; ".join(f"{m}={r}" + (f" ({d})" if d else "") for m, r, d in evidence)


def networks(spec: Sequence[str] | str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                  ...]:
    items = spec.split(",") if isinstance(spec, str) else spec
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items if i.strip())


def is_trusted(client_ip: str, trusted: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(client_ip.strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def make_resolver(servers: Sequence[str] | str, timeout: float) -> dns.resolver.Resolver:
    """A resolver on "ip" or "ip:port" servers ("" = the system's configuration)."""
    items = [s.strip() for s in (servers.split(",") if isinstance(servers, str) else servers)
             if s.strip()]
    if not items:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        found = []
        for item in items:
            host, port = item, 53
            if item.count(":") == 1:
                host, _, p = item.partition(":")
                port = int(p)
            found.append(dns.nameserver.Do53Nameserver(host.strip("[]"), port))
        resolver.nameservers = found
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


class Authenticity:
    """The edge's sender checks, as configured (`auth_*` in channels/email/config.py)."""

    def __init__(self, mode: str = OFF, serv_id: str = "", trusted_relays: str = "",
                 dns_servers: str = "", timeout: float = 5.0, reactor: Any = None,
                 txt: TxtLookup | None = None) -> None:
        if mode not in MODES:
            raise InvalidValue(f"email.auth_mode: one of {', '.join(MODES)}, got {mode!r}")
        if mode == RELAY and not serv_id.strip():
            raise InvalidValue("email.auth_serv_id: required with auth_mode relay")
        if not timeout > 0:
            raise InvalidValue(f"email.auth_timeout: must be > 0, got {timeout}")
        self.mode = mode
        self.serv_id = serv_id.strip()
        try:
            self.trusted = networks(trusted_relays)
        except ValueError as exc:
            raise InvalidValue(f"email.auth_trusted_relays: {exc}") from None
        self.timeout = timeout
        if reactor is None and mode == LOCAL:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        self.txt = txt
        if mode == LOCAL and txt is None:
            try:
                resolver = make_resolver(dns_servers, timeout)
            except ValueError as exc:
                raise InvalidValue(f"email.auth_dns_servers: {exc}") from None
            if dns_servers.strip():
                dns.resolver.default_resolver = resolver  # pyspf asks the default resolver
            self.txt = resolver_txt(resolver)
        if mode != OFF:
            _suffixes()  # load the public suffix list now, not on the first message
        self._turns = defer.DeferredSemaphore(MAX_CHECKS)
        self._noisy = Throttled(log)

    @classmethod
    def from_settings(cls, s: Any, reactor: Any = None) -> Authenticity:
        return cls(s.auth_mode, s.auth_serv_id, s.auth_trusted_relays, s.auth_dns_servers,
                   s.auth_timeout, reactor)

    def check(self, raw: bytes, client_ip: str = "", helo: str = "",
              envelope_from: str = "") -> defer.Deferred[Verdict]:
        """The verdict on one message; never fails (a failed check is "not authenticated")."""
        if self.mode == OFF:
            return defer.succeed(Verdict.no("not checked (auth_mode off)"))
        if self.mode == RELAY:
            return defer.succeed(self.relayed(raw, client_ip))
        d = self._turns.run(self._local, raw, client_ip, helo, envelope_from)
        d.addErrback(self._failed, client_ip)
        return d

    def relayed(self, raw: bytes, client_ip: str | None) -> Verdict:
        """`relay` mode: the trusted relay's Authentication-Results (client_ip None: the
        message came from a source trusted as a whole, e.g. the IMAP server)."""
        if client_ip is not None and not is_trusted(client_ip, self.trusted):
            return Verdict.no(f"client {client_ip} is not a trusted relay")
        head = _headers(raw)
        evidence, summary = relay_evidence(raw, self.serv_id, head)
        return judge(evidence, from_domain(raw, head), summary)

    def _local(self, raw: bytes, client_ip: str, helo: str, envelope_from: str
               ) -> defer.Deferred[Verdict]:
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                      local_evidence, raw, client_ip, helo, envelope_from,
                                      self.timeout, self.txt)
        d.addTimeout(2 * self.timeout + 1, self.reactor)
        d.addCallback(lambda found: judge(found[0], from_domain(raw), found[1]))
        return d

    def _failed(self, failure: Any, client_ip: str) -> Verdict:
        self._noisy.warning(client_ip or "-", self.reactor.seconds(),
                            "sender checks failed for a message from %s: %s", client_ip,
                            failure.getErrorMessage())
        return Verdict.no(f"temperror: {failure.getErrorMessage()[:80]}")
