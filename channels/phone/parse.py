"""SIP messages (RFC 3261 §7, §20, §25): bytes → `Request` / `Response` and back.

Sits at the bottom of the phone edge; pure functions and plain objects, no I/O, no clock.
Promises: `parse()` and `StreamFramer.feed()` never raise anything but `ParseError` (fuzzed with
hypothesis); every message of RFC 4475's "valid" group parses; every one of its "invalid" group is
refused with a `ParseError` that says which status to answer (400, or 505 for another SIP
version) and, when the headers a response needs are there, carries the partly read request so the
transport can answer it.

What is understood: header folding (LWS), compact forms (`v`, `i`, `l`, ...), multi-valued
headers split on commas outside quoted strings and angle brackets, quoted strings with
quoted-pairs, escaped URI characters, SIP-URIs checked against the §25 grammar (other schemes
kept opaque), name-addr / addr-spec with parameters, Via with SWS around its separators, CSeq,
Max-Forwards, Content-Length and Date checked, single-valued headers refused when repeated.
Framing: over UDP the datagram is the message and Content-Length (when present) cuts the body,
extra octets are ignored (§18.3); over TCP, `StreamFramer` needs Content-Length.

Why not `twisted.protocols.sip`: fed the 49 RFC 4475 messages (see docs/phone.md for the
script), it parsed 11 of the 13 valid ones (wsinv.dat's Via failed in its structured parser,
mpart01.dat was dropped), accepted 9 of the 19 invalid ones as if they were fine, raised a
RuntimeError on clerr.dat, and has no TCP framing or transaction layer. So this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

SIP_VERSION = "SIP/2.0"
CRLF = "\r\n"
MAX_HEAD_BYTES = 64 * 1024  # header section of one message
MAX_BODY_BYTES = 1024 * 1024
MAX_CSEQ = 2**31 - 1  # §8.1.1.5: the sequence number MUST be less than 2**31
MAX_FORWARDS_LIMIT = 255
MAX_DELTA_SECONDS = 2**32 - 1  # §25: larger delta-seconds count as this
PARSED_CACHE_SIZE = 4096  # URIs, addresses and Vias recur (a call's messages, retransmissions)
BAD_REQUEST = 400
VERSION_NOT_SUPPORTED = 505

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "x": "session-expires", "y": "identity", "n": "identity-info",
}
DISPLAY = {n: "-".join(p.capitalize() for p in n.split("-")) for n in (
    "via", "from", "to", "contact", "content-length", "content-type", "content-encoding",
    "max-forwards", "route", "record-route", "expires", "allow", "supported", "require",
    "proxy-require", "unsupported", "subject", "server", "user-agent", "date", "accept",
    "min-expires", "retry-after", "warning", "reason", "event", "organization", "priority",
)} | {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "authorization": "Authorization", "proxy-authenticate": "Proxy-Authenticate",
    "proxy-authorization": "Proxy-Authorization", "authentication-info": "Authentication-Info",
}
# Headers whose values are comma-separated lists (§7.3.1); the others are never split.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "content-encoding", "allow-events", "in-reply-to", "warning", "error-info", "alert-info",
    "call-info",
})
# Headers that may appear once only (§20; a repeat is a 400, RFC 4475 §3.3.8, §3.3.9).
SINGLE_HEADERS = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
    "expires", "min-expires", "date",
})
RESPONSE_NEEDS = ("via", "from", "to", "call-id", "cseq")

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN = re.compile(TOKEN)
_TOKEN_FULL = re.compile(TOKEN + r"\Z")
_HEADER_LINE = re.compile(r"(" + TOKEN + r")[ \t]*:[ \t]*(.*)\Z", re.S)
_FOLD = re.compile(r"\r\n[ \t]+")
_VERSION = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.I)
_STATUS = re.compile(r"SIP/(\d+)\.(\d+) (\d{3})(?: (.*))?\Z", re.I | re.S)
_DIGITS = re.compile(r"\d+\Z")
_CSEQ = re.compile(r"(\d+)[ \t]+(" + TOKEN + r")\Z")
_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT\Z")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+"
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*"
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+"
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*"
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?)"
_SIP_URI = re.compile(
    rf"(?P<scheme>sips?):(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?"
    rf"(?P<params>(?:;{_PARAMCHAR}(?:={_PARAMCHAR})?)*)"
    rf"(?:\?(?P<headers>{_HNV}={_HNV}(?:&{_HNV}={_HNV})*))?\Z", re.I)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):(.+)\Z", re.S)
_OPAQUE = re.compile(rf"(?:[{_UNRESERVED};?:@&=+$,/\[\]]|{_ESC})+\Z")
_VIA_HEAD = re.compile(
    rf"({TOKEN})\s*/\s*({TOKEN})\s*/\s*({TOKEN})\s+({_HOST})(?:\s*:\s*(\d{{1,5}}))?\s*", re.S)
_GEN_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")
_GEN_VALUE_FULL = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+\Z")
_SWS = re.compile(r"\s*")


class ParseError(Exception):
    """A message that cannot be read. `status` is what to answer a request with (400, 505);
    `message` is the request as far as it was read when its headers allow an answer."""

    def __init__(self, reason: str, status: int = BAD_REQUEST,
                 message: Request | Response | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message

    def answerable(self) -> Request | None:
        """The partly read request, if a response to it can be built (§8.2.6.1 needs these
        headers to copy); None for responses and for what cannot be answered."""
        m = self.message
        if isinstance(m, Request) and all(m.get(n) is not None for n in RESPONSE_NEEDS):
            return m
        return None


# ---------------------------------------------------------------- structured values


@dataclass(frozen=True, slots=True)
class Uri:
    """A URI as written. SIP/SIPS URIs are split into their parts; other schemes keep `rest`
    opaque (the application answers 416 for what it cannot route)."""

    text: str
    scheme: str
    user: str | None = None
    host: str = ""
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k == name:
                return v if v is not None else ""
        return None

    @property
    def aor(self) -> str:
        """`user@host` (lower-cased host), the address of record / queue address key."""
        user = unescape(self.user) if self.user is not None else ""
        return f"{user}@{self.host.lower()}" if user else self.host.lower()

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Address:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route ...)."""

    uri: Uri
    display: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    text: str = ""
    star: bool = False  # Contact: *

    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k == name:
                return v if v is not None else ""
        return None

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()
    text: str = ""

    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k == name:
                return v if v is not None else ""
        return None

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def sent_by(self) -> str:
        return f"{self.host.lower()}:{self.port or 5060}"


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str


def unescape(text: str) -> str:
    """%HH → the character (URI user parts, for comparison and queue lookup)."""
    if "%" not in text:
        return text
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


@lru_cache(maxsize=PARSED_CACHE_SIZE)
def parse_uri(text: str) -> Uri:
    if not text or any(c in text for c in " \t\r\n<>\""):
        raise ParseError(f"bad URI {text[:80]!r}")
    if text[:4].lower() in ("sip:", "sips"):
        m = _SIP_URI.match(text)
        if m is None:
            raise ParseError(f"bad SIP URI {text[:80]!r}")
        port = int(m["port"]) if m["port"] else None
        if port is not None and port > 65535:
            raise ParseError(f"bad port in {text[:80]!r}")
        params: list[tuple[str, str | None]] = []
        for item in m["params"].split(";")[1:]:
            k, eq, v = item.partition("=")
            params.append((k.lower(), v if eq else None))
        return Uri(text, m["scheme"].lower(), m["user"], m["host"], port, tuple(params),
                   m["headers"])
    m = _SCHEME.match(text)
    if m is None or not _OPAQUE.match(m.group(2)):
        raise ParseError(f"bad URI {text[:80]!r}")
    return Uri(text, m.group(1).lower(), host="")


def _quoted(s: str, i: int) -> tuple[str, int]:
    """Reads a quoted-string starting at s[i] == '"'; returns (content, index after it)."""
    out = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n or s[i + 1] in "\r\n":
                raise ParseError("bad quoted-pair")
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        if c in "\r\n":
            raise ParseError("line break in quoted string")
        out.append(c)
        i += 1
    raise ParseError("unterminated quoted string")


def _params(  # noqa: C901 - a hand-written scanner: a fast split, then the quoted path
    s: str, i: int, what: str
) -> tuple[tuple[str, str | None], ...]:
    """`*( SEMI generic-param )` from s[i:] to the end (SWS allowed around ; and =)."""
    rest = s[i:]
    if '"' not in rest:  # the common case: no quoted values, so split
        parts = rest.split(";")
        if parts[0].strip():
            raise ParseError(f"{what}: expected ';' at {parts[0][:20]!r}")
        out = []
        for part in parts[1:]:
            name, eq, value = part.partition("=")
            name = name.strip()
            if not _TOKEN_FULL.match(name):
                raise ParseError(f"{what}: empty or bad parameter name")
            if eq:
                value = value.strip()
                if not _GEN_VALUE_FULL.match(value):
                    raise ParseError(f"{what}: parameter {name} has no value")
                out.append((name.lower(), value))
            else:
                out.append((name.lower(), None))
        return tuple(out)
    params: list[tuple[str, str | None]] = []
    n = len(s)
    while True:
        i = _SWS.match(s, i).end()
        if i >= n:
            return tuple(params)
        if s[i] != ";":
            raise ParseError(f"{what}: expected ';' at {s[i:i + 20]!r}")
        i = _SWS.match(s, i + 1).end()
        m = _TOKEN.match(s, i)
        if m is None:
            raise ParseError(f"{what}: empty or bad parameter name")
        name = m.group(0).lower()
        i = _SWS.match(s, m.end()).end()
        value: str | None = None
        if i < n and s[i] == "=":
            i = _SWS.match(s, i + 1).end()
            if i < n and s[i] == '"':
                value, i = _quoted(s, i)
            else:
                v = _GEN_VALUE.match(s, i)
                if v is None:
                    raise ParseError(f"{what}: parameter {name} has no value")
                value, i = v.group(0), v.end()
        params.append((name, value))


def _display_tokens(text: str) -> str:
    words = text.split()
    for w in words:
        if not _TOKEN_FULL.match(w):
            raise ParseError(f"bad display name {text[:40]!r}")
    return " ".join(words)


@lru_cache(maxsize=PARSED_CACHE_SIZE)
def parse_address(value: str, *, allow_star: bool = False) -> Address:
    s = value.strip()
    if allow_star and s == "*":
        return Address(Uri("*", "*"), text="*", star=True)
    if not s:
        raise ParseError("empty address")
    display: str | None = None
    if s[0] == '"':
        display, i = _quoted(s, 0)
        i = _SWS.match(s, i).end()
        if i >= len(s) or s[i] != "<":
            raise ParseError("quoted display name without <URI>")
    else:
        lt = s.find("<")
        semi = s.find(";")
        if lt < 0 or (0 <= semi < lt):
            lt = -1
        if lt >= 0:
            display = _display_tokens(s[:lt]) or None
        i = lt
    if i >= 0 and s[i] == "<":
        gt = s.find(">", i)
        if gt < 0:
            raise ParseError("missing '>'")
        uri = parse_uri(s[i + 1:gt])
        params = _params(s, gt + 1, "address")
    else:
        semi = s.find(";")
        uri_text = s if semi < 0 else s[:semi].rstrip()
        if uri_text.lower().startswith(("sip:", "sips:")) and ("?" in uri_text):
            raise ParseError("addr-spec with headers must be in <>")  # RFC 4475 §3.1.2.13
        if "," in uri_text:
            raise ParseError("addr-spec with ',' must be in <>")
        uri = parse_uri(uri_text)
        params = _params(s, len(uri_text), "address") if semi >= 0 else ()
    return Address(uri, display, params, s)


@lru_cache(maxsize=PARSED_CACHE_SIZE)
def parse_via(value: str) -> Via:
    m = _VIA_HEAD.match(value)
    if m is None:
        raise ParseError(f"bad Via {value[:80]!r}")
    proto, version, transport, host, port = m.groups()
    if proto.upper() != "SIP" or version != "2.0":
        raise ParseError(f"bad Via protocol {proto}/{version}")
    p = int(port) if port else None
    if p is not None and p > 65535:
        raise ParseError("bad Via port")
    params = _params(value, m.end(), "Via")
    return Via(transport.upper(), host, p, params, value.strip())


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ.match(value.strip())
    if m is None:
        raise ParseError(f"bad CSeq {value[:40]!r}")
    number = int(m.group(1)) if len(m.group(1)) <= 12 else MAX_CSEQ + 1
    if number > MAX_CSEQ:
        raise ParseError("CSeq number too large")
    return CSeq(number, m.group(2))


def parse_delta(value: str) -> int:
    """delta-seconds (Expires, expires=): digits; larger than 2**32-1 counts as that (§25)."""
    v = value.strip()
    if not _DIGITS.match(v):
        raise ParseError(f"bad delta-seconds {v[:40]!r}")
    return min(int(v) if len(v) <= 12 else MAX_DELTA_SECONDS, MAX_DELTA_SECONDS)


def split_list(value: str) -> list[str]:
    """Splits a list header's value on commas outside quoted strings and <...>."""
    if '"' not in value and "<" not in value:
        return [p.strip() for p in value.split(",")]
    parts: list[str] = []
    start = 0
    quoted = angle = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts


# ---------------------------------------------------------------- messages


@dataclass(eq=False, slots=True)
class Message:
    """Headers in order as (lower-case long name, name as written/canonical, value). The
    structured views (`vias`, `from_`, `cseq` ...) are parsed once and kept until a header
    changes through `add`/`set`/`remove`."""

    headers: list[tuple[str, str, str]] = field(default_factory=list)
    body: bytes = b""
    _cache: dict | None = field(default=None, init=False, repr=False)

    def get(self, name: str) -> str | None:
        key = name.lower()
        for k, _, v in self.headers:
            if k == key:
                return v
        return None

    def values(self, name: str) -> list[str]:
        """Every value of a header; list headers split into their elements."""
        key = name.lower()
        out: list[str] = []
        for k, _, v in self.headers:
            if k == key:
                if key in LIST_HEADERS:
                    out.extend(split_list(v))
                else:
                    out.append(v)
        return out

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        key = name.lower()
        entry = (key, DISPLAY.get(key, name), value)
        self._cache = None
        if first:
            self.headers.insert(0, entry)
        else:
            self.headers.append(entry)

    def set(self, name: str, value: str) -> None:
        """Replaces every value of the header by one (added at the end when absent)."""
        key = name.lower()
        self._cache = None
        for i, (k, _, _) in enumerate(self.headers):
            if k == key:
                self.headers[i] = (key, DISPLAY.get(key, name), value)
                self.headers[i + 1:] = [h for h in self.headers[i + 1:] if h[0] != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = name.lower()
        self._cache = None
        self.headers = [h for h in self.headers if h[0] != key]

    def _view(self, name: str, make):
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        try:
            return cache[name]
        except KeyError:
            value = cache[name] = make()
            return value

    # structured views
    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> CSeq:
        return self._view("cseq", lambda: parse_cseq(self.get("cseq") or ""))

    @property
    def vias(self) -> list[Via]:
        return self._view("vias", lambda: [parse_via(v) for v in self.values("via")])

    @property
    def top_via(self) -> Via:
        def first() -> Via:
            cache = self._cache
            if cache is not None and cache.get("vias"):
                return cache["vias"][0]
            value = self.get("via")
            if value is None:
                raise ParseError("no Via")
            return parse_via(split_list(value)[0])

        return self._view("top_via", first)

    @property
    def from_(self) -> Address:
        return self._view("from", lambda: parse_address(self.get("from") or ""))

    @property
    def to(self) -> Address:
        return self._view("to", lambda: parse_address(self.get("to") or ""))

    def contacts(self) -> list[Address]:
        return self._view("contacts", lambda: [parse_address(v, allow_star=True)
                                               for v in self.values("contact")])

    def serialize(self, start: str) -> bytes:
        lines = [start]
        for k, name, v in self.headers:
            if k != "content-length":
                lines.append(f"{name}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return CRLF.join(lines).encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=False, slots=True)
class Request(Message):
    method: str = ""
    uri: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def to_bytes(self) -> bytes:
        return self.serialize(self.start_line())

    @property
    def request_uri(self) -> Uri:
        return self._view("ruri", lambda: parse_uri(self.uri))


@dataclass(eq=False, slots=True)
class Response(Message):
    status: int = 0
    reason: str = ""

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        return self.serialize(self.start_line())


# ---------------------------------------------------------------- parsing


def _head_and_rest(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ParseError("no end of the header section")
    if end > MAX_HEAD_BYTES:
        raise ParseError("header section too large")
    return data[:end], data[end + 4:]


def _read_headers(lines: list[str]) -> list[tuple[str, str, str]]:
    headers = []
    for line in lines:
        m = _HEADER_LINE.match(line)
        if m is None:
            raise ParseError(f"bad header line {line[:60]!r}")
        name, value = m.group(1), m.group(2).strip()
        key = name.lower()
        key = COMPACT.get(key, key)
        headers.append((key, DISPLAY.get(key, name), value))
    return headers


def _start(line: str, headers: list[tuple[str, str, str]]) -> Request | Response:
    if line[:4].upper() == "SIP/":
        m = _STATUS.match(line)
        if m is None:
            raise ParseError(f"bad status line {line[:60]!r}")
        if (m.group(1), m.group(2)) != ("2", "0"):
            raise ParseError("not SIP/2.0", VERSION_NOT_SUPPORTED)
        code = int(m.group(3))
        if not 100 <= code <= 699:
            raise ParseError(f"status code out of range: {code}")
        return Response(headers, b"", code, m.group(4) or "")
    parts = line.split(" ")
    method = parts[0]
    if not _TOKEN_FULL.match(method):
        raise ParseError(f"bad start line {line[:60]!r}")
    partial = Request(headers, b"", method, "")
    if len(parts) != 3 or not parts[1]:
        raise ParseError("bad request line (exactly one SP between its parts)", message=partial)
    v = _VERSION.match(parts[2])
    if v is None:
        raise ParseError("bad SIP version", message=partial)
    if v.groups() != ("2", "0"):
        raise ParseError(f"{parts[2]} not supported", VERSION_NOT_SUPPORTED, partial)
    partial.uri = parts[1]
    return partial


def _check(msg: Request | Response) -> int | None:  # noqa: C901 - one branch per SIP header rule
    """Checks the headers the transaction and dialog layers rely on; returns Content-Length."""
    seen: set[str] = set()
    for k, _, _ in msg.headers:
        if k in SINGLE_HEADERS:
            if k in seen:
                raise ParseError(f"{DISPLAY.get(k, k)} more than once")
            seen.add(k)
    for name in RESPONSE_NEEDS:
        if name not in seen and name != "via":
            raise ParseError(f"missing {DISPLAY[name]}")
    vias = msg.vias
    if not vias:
        raise ParseError("missing Via")
    cseq = msg.cseq
    if not msg.call_id or any(c in msg.call_id for c in " \t"):
        raise ParseError("bad Call-ID")
    msg.from_  # noqa: B018 - parsed to be checked
    msg.to  # noqa: B018
    msg.contacts()
    for name in ("route", "record-route"):
        for v in msg.values(name):
            parse_address(v)
    mf = msg.get("max-forwards")
    if mf is not None and (not _DIGITS.match(mf) or int(mf) > MAX_FORWARDS_LIMIT):
        raise ParseError("bad Max-Forwards")
    date = msg.get("date")
    if date is not None and not _DATE.match(date):
        raise ParseError("bad Date (RFC 1123, GMT)")
    if isinstance(msg, Request):
        uri = msg.request_uri
        if uri.is_sip and uri.headers is not None:
            raise ParseError("headers in the Request-URI")  # §19.1.1, RFC 4475 §3.1.2.11
        if cseq.method != msg.method:
            raise ParseError("CSeq method differs from the request method")
    length = msg.get("content-length")
    if length is None:
        return None
    if not _DIGITS.match(length) or len(length) > 10:
        raise ParseError("bad Content-Length")
    return int(length)


def _message(head: bytes) -> Request | Response:
    text = head.decode("utf-8", "surrogateescape")
    while text.startswith(CRLF):  # §7.5: CRLFs before the start line are ignored
        text = text[2:]
    if "\r\n" in text and _FOLD.search(text):
        text = _FOLD.sub(" ", text)
    lines = text.split(CRLF)
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ParseError("bare CR or LF in the header section")
    headers = _read_headers(lines[1:]) if len(lines) > 1 else []
    return _start(lines[0], headers)


def _finish(msg: Request | Response) -> int | None:
    try:
        return _check(msg)
    except ParseError as e:
        e.message = msg
        raise


def parse(data: bytes) -> Request | Response:
    """One message from one datagram (§18.3: a Content-Length cuts the body, octets after it
    are ignored; without one the body is the rest of the datagram)."""
    head, rest = _head_and_rest(data)
    msg = _message(head)
    length = _finish(msg)
    if length is None:
        body = rest
    elif length > len(rest):
        raise ParseError("Content-Length larger than the datagram", message=msg)
    else:
        body = rest[:length]
    if len(body) > MAX_BODY_BYTES:
        raise ParseError("body too large", message=msg)
    msg.body = body
    return msg


class FramingError(ParseError):
    """The stream cannot be cut into messages any more: close the connection."""


class StreamFramer:
    """Cuts a TCP byte stream into messages (§18.3: Content-Length is mandatory there).
    `feed(data)` returns the messages and the per-message errors completed by `data`;
    it raises `FramingError` when the stream is beyond repair."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[Request | Response | ParseError]:
        self.buffer += data
        out: list[Request | Response | ParseError] = []
        while True:
            buf = self.buffer.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 §3.5.1)
            if len(buf) != len(self.buffer):
                self.buffer = buf
            if not buf:
                return out
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise FramingError("header section too large")
                return out
            if end > MAX_HEAD_BYTES:
                raise FramingError("header section too large")
            try:
                msg = _message(buf[:end])
            except ParseError as e:
                raise FramingError(e.reason, e.status, e.message) from None
            length_text = msg.get("content-length")
            if length_text is None or not _DIGITS.match(length_text) or len(length_text) > 10:
                raise FramingError("Content-Length missing or bad on a stream", message=msg)
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                raise FramingError("body too large", message=msg)
            total = end + 4 + length
            if len(buf) < total:
                return out
            self.buffer = buf[total:]
            msg.body = buf[end + 4:total]
            try:
                _finish(msg)
            except ParseError as e:
                out.append(e)
                continue
            out.append(msg)
