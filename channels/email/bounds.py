"""Bounds and repairs applied to a raw message's header section BEFORE the standard `email`
package sees it (parse.py), and a cheap scan of the few headers routing needs.

The `email` package's header parser costs far more than the bytes it reads (a 0.8 MB Subject
of encoded words took 11-21 s and 4.7 GB), so a message is cut to `Limits` first: the header
section, each header field, the number of fields, the addresses of an address list, the
number of MIME parts. What is
cut is reported as a defect, never refused; the raw bytes are stored whole by the caller.

An 8-bit field that is not UTF-8 is read as the fallback charset and passed on as UTF-8.

Repairs (each reported as a defect): a line of the header section that is neither a field
(`Name:`) nor a continuation is dropped (it would make the parser take every later header as
body); `Name :` loses the space before its colon (RFC 5322 obsolete syntax, which the parser
does not take); a blank line between our trace fields (Received) and what clearly is the
client's header section is dropped.

`scan` reads From, Subject and the threading ids with bounded regular expressions only: what
a message is routed with when the full parse ran over its time budget.

Sits in the e-mail edge; pure functions of bytes, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header

# Postfix cuts a header field at 102400 bytes (header_size_limit); the `email` package spends
# about 1.5 s and 1 GB per MB of encoded words, so we cut much earlier.
DEFAULT_MAX_HEADER_BYTES = 256 * 1024  # the whole header section
DEFAULT_MAX_FIELD_BYTES = 16 * 1024  # one field with its continuation lines
DEFAULT_MAX_FIELDS = 500
DEFAULT_MAX_ADDRESSES = 200  # per address list (To, Cc, ...)
# MIME parts (lines starting with "--" in the body): the parser spends ~0.3 ms per part,
# and 100k tiny parts fit in 4 MB
DEFAULT_MAX_PARTS = 1000
DEFAULT_FALLBACK_CHARSET = "windows-1252"
SCAN_CHARS = 2048  # what `scan` decodes of a Subject or From

FIELD = re.compile(rb"([!-9;-~]+)([ \t]*):")
TRACE = frozenset({b"received", b"return-path", b"x-original-to", b"delivered-to"})
ORIGINATOR = frozenset({b"from", b"to", b"subject", b"date", b"message-id", b"cc", b"sender",
                        b"reply-to", b"mime-version", b"content-type", b"in-reply-to",
                        b"references"})
ADDRESS_FIELDS = frozenset({b"from", b"to", b"cc", b"bcc", b"reply-to", b"sender",
                            b"resent-to", b"resent-cc", b"resent-bcc", b"resent-from"})
LINE = re.compile(rb"[^\n]*\n|[^\n]+")
BLANK = re.compile(rb"\n\r?\n")
DASHES = re.compile(rb"\n--")
MSGID = re.compile(rb"<([^<>\s]{1,500})>")
ADDRESS = re.compile(rb"<([^<>\s@]{1,64}@[^<>\s@]{1,255})>|([^<>\s@,;:\"()]{1,64}@[^<>\s@,;:\"()]{1,255})")


@dataclass(frozen=True)
class Limits:
    """What a message is cut to before the parser sees it (configured in [email], see
    config.py `limits_from`)."""

    header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    fields: int = DEFAULT_MAX_FIELDS
    addresses: int = DEFAULT_MAX_ADDRESSES
    parts: int = DEFAULT_MAX_PARTS
    fallback_charset: str = DEFAULT_FALLBACK_CHARSET


DEFAULT_LIMITS = Limits()


@dataclass
class Prepared:
    """The header fields kept (each one bytes, continuation lines included, ending in a line
    break), the body (bytes after the blank line, untouched) and what was repaired or cut."""

    fields: list[bytes] = field(default_factory=list)
    body: bytes = b""
    separator: bytes = b"\r\n"
    defects: list[str] = field(default_factory=list)

    def bytes(self) -> bytes:
        return b"".join(self.fields) + self.separator + self.body

    def get(self, name: bytes) -> bytes | None:
        """The value of the first field called `name` (lower case), unfolded."""
        for f in self.fields:
            m = FIELD.match(f)
            if m and m.group(1).lower() == name:
                return re.sub(rb"\r?\n[ \t]", b" ", f[m.end():]).strip()
        return None


def _split(raw: bytes, limit: int) -> tuple[list[bytes], bytes, bytes, bool]:
    """The header section's lines (at most `limit` bytes of them), the blank line that ends
    it, the body, and whether the section was longer than `limit`."""
    if raw[:1] == b"\n" or raw[:2] == b"\r\n":
        sep = b"\n" if raw[:1] == b"\n" else b"\r\n"
        return [], sep, raw[len(sep):], False
    m = BLANK.search(raw)
    if m is None:
        head, sep, body = raw, b"\r\n", b""
    else:
        head, sep, body = raw[:m.start() + 1], raw[m.start() + 1:m.end()], raw[m.end():]
    cut = len(head) > limit
    if cut:
        head = head[:limit]  # a field cut here is cut again to field_bytes
    return LINE.findall(head), sep, body, cut


def _ends(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\r\n"


def prepare(  # noqa: C901 - one repair per header-section limit, read top to bottom
    raw: bytes, limits: Limits = DEFAULT_LIMITS
) -> Prepared:
    out = Prepared()
    lines, out.separator, out.body, cut = _split(raw, limits.header_bytes)
    if not cut and all(_trace(x) or x[:1] in (b" ", b"\t") for x in lines):
        # Nothing or only our trace fields, then a blank line: the client's headers may
        # follow it (Twisted's SMTP put one there when the first line had no colon).
        more, sep, body, cut = _split(out.body, limits.header_bytes)
        client = [x for x in more if FIELD.match(x) or x[:1] in (b" ", b"\t")]
        if client and any(_name(x) in ORIGINATOR for x in client):
            out.defects.append("blank line before the header section: removed")
            lines, out.separator, out.body = lines + more, sep, body
        else:
            cut = False
    if cut:
        out.defects.append(f"header section over {limits.header_bytes} bytes: cut")
    size = 0
    fields: list[list[bytes]] = []
    dropped = 0
    for i, line in enumerate(lines):
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1].append(line)
            else:
                dropped += 1
            continue
        m = FIELD.match(line)
        if m is None:
            if not (i == 0 and line.startswith(b"From ")):  # an mbox From_ line is harmless
                dropped += 1
            continue
        if m.group(2):
            out.defects.append(f"space before the colon of {_show(m.group(1))}: removed")
            line = m.group(1) + line[m.end() - 1:]
        fields.append([line])
    if dropped:
        out.defects.append(f"{dropped} header line(s) without a colon: dropped")
    if len(fields) > limits.fields:
        out.defects.append(f"over {limits.fields} header fields: the rest dropped")
        del fields[limits.fields:]
    for parts in fields:
        one = b"".join(parts)
        name = _name(one)
        if len(one) > limits.field_bytes:
            out.defects.append(f"header {_show(name)} over {limits.field_bytes} bytes: cut")
            one = _ends(one[:limits.field_bytes].rstrip(b"\r\n"))
        else:
            one = _ends(one)
        if name in ADDRESS_FIELDS:
            one = _cut_addresses(one, limits.addresses, out.defects, name)
        if not one.isascii():
            one = _utf8(one, limits.fallback_charset, out.defects, name)
        if size + len(one) > limits.header_bytes:
            out.defects.append(f"header section over {limits.header_bytes} bytes: the rest "
                               "dropped")
            break
        size += len(one)
        out.fields.append(one)
    out.body = _cut_parts(out.body, limits.parts, out.defects)
    return out


def _cut_parts(body: bytes, limit: int, defects: list[str]) -> bytes:
    """The body up to the line that would open MIME part `limit` + 1 (boundary lines start
    with "--"); the parser reports the missing end boundary."""
    if body.count(b"\n--") <= limit:
        return body
    for n, m in enumerate(DASHES.finditer(body)):
        if n == limit:
            defects.append(f"over {limit} MIME parts: the rest not read")
            return body[:m.start() + 1]
    return body


def _utf8(one: bytes, fallback: str, defects: list[str], name: bytes) -> bytes:
    """An 8-bit field as UTF-8 (RFC 6532), which the parser reads: kept when it is UTF-8
    already, else read as `fallback` (Latin-1 and windows-1252 occur in the wild)."""
    try:
        one.decode("utf-8")
        return one
    except UnicodeDecodeError:
        defects.append(f"header {_show(name)}: not UTF-8, read as {fallback}")
        return decode(one, fallback).encode("utf-8")


def _name(line: bytes) -> bytes:
    m = FIELD.match(line)
    return m.group(1).lower() if m else b""


def _trace(line: bytes) -> bool:
    return _name(line) in TRACE


def _show(name: bytes) -> str:
    return name[:60].decode("ascii", "replace")


def _cut_addresses(one: bytes, limit: int, defects: list[str], name: bytes) -> bytes:
    """Keep the first `limit` addresses of an address list (commas outside quotes, comments
    and angle brackets separate them)."""
    if one.count(b",") < limit:
        return one
    quoted = False
    depth = 0
    commas = 0
    i = 0
    n = len(one)
    while i < n:
        c = one[i]
        if c == 0x5C:  # backslash: quoted pair
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif not quoted:
            if c in (0x28, 0x3C):  # ( <
                depth += 1
            elif c in (0x29, 0x3E) and depth:
                depth -= 1
            elif c == 0x2C and not depth:
                commas += 1
                if commas >= limit:
                    defects.append(f"header {_show(name)}: over {limit} addresses: cut")
                    return one[:i] + b"\r\n"
        i += 1
    return one


# --------------------------------------------------------------------------- cheap scan


def text(value: str, fallback: str = DEFAULT_FALLBACK_CHARSET) -> str:
    """`value` as clean text: bytes the parser kept as surrogates (8-bit headers) decoded as
    UTF-8 (RFC 6532), else as `fallback`; NUL removed (PostgreSQL refuses it in text)."""
    if not value.isascii():
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "replace")
        value = decode(raw, fallback)
    return value.replace("\x00", "") if "\x00" in value else value


def decode(raw: bytes, fallback: str = DEFAULT_FALLBACK_CHARSET,
           declared: str | None = None) -> str:
    """Bytes as text: the declared charset when it fits, else UTF-8, else `fallback`."""
    for charset in (declared, "utf-8"):
        if charset:
            try:
                return raw.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
    try:
        return raw.decode(fallback, "replace")
    except LookupError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class Scanned:
    from_address: str | None = None
    from_name: str = ""
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


def _words(value: bytes, fallback: str) -> str:
    head = value[:SCAN_CHARS]
    try:
        return text(str(make_header(decode_header(decode(head, fallback)))), fallback)
    except Exception:  # noqa: BLE001 - an encoded word we cannot read: show it as it is
        return text(decode(head, fallback), fallback)


def scan(prepared: Prepared, fallback: str = DEFAULT_FALLBACK_CHARSET) -> Scanned:
    """From, Subject and the threading ids read with bounded regular expressions (the
    fields are already cut to `Limits.field_bytes`)."""
    sender = prepared.get(b"from") or prepared.get(b"sender") or b""
    m = ADDRESS.search(sender)
    address = (m.group(1) or m.group(2)).decode("ascii", "replace") if m else None
    name = sender[:m.start()] if m and m.group(1) else b""
    subject = prepared.get(b"subject") or b""
    ids = MSGID.findall(prepared.get(b"message-id") or b"")
    replied = MSGID.findall(prepared.get(b"in-reply-to") or b"")
    refs = MSGID.findall(prepared.get(b"references") or b"")
    return Scanned(
        from_address=address,
        from_name=_words(name.strip().strip(b'"'), fallback).strip(),
        subject=" ".join(_words(subject, fallback).split()),
        message_id=ids[0].decode("ascii", "replace") if ids else None,
        in_reply_to=replied[-1].decode("ascii", "replace") if replied else None,
        references=tuple(r.decode("ascii", "replace") for r in refs),
    )
