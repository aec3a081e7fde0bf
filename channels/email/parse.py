"""Parsing a raw message with the standard `email` package (policy.default), never failing:
whatever cannot be read becomes a defect, and the message is still stored raw.

Sits in the e-mail edge; pure functions of bytes, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

MSGID = re.compile(r"<([^<>\s]+)>")
AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list"})


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content: bytes


@dataclass
class Parsed:
    from_address: str | None = None
    from_name: str = ""
    to_addrs: tuple[str, ...] = ()
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    auto_generated: bool = False

    @property
    def malformed(self) -> bool:
        return bool(self.defects)


def _header(msg: EmailMessage, name: str, out: Parsed) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception as exc:  # noqa: BLE001 - a header the parser cannot read is a defect
        out.defects.append(f"{name}: {type(exc).__name__}: {exc}")
        try:
            raw = msg.get_all(name, failobj=[None], )[0]
            return None if raw is None else str(raw)
        except Exception:  # noqa: BLE001
            return None


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(MSGID.findall(value or ""))


def _addresses(msg: EmailMessage, name: str, out: Parsed) -> list[tuple[str, str]]:
    try:
        header = msg.get(name)
        if header is None:
            return []
        return [(a.display_name or "", a.addr_spec) for a in getattr(header, "addresses", ())
                if a.addr_spec and "@" in a.addr_spec]
    except Exception as exc:  # noqa: BLE001
        out.defects.append(f"{name}: {type(exc).__name__}: {exc}")
        return []


def _text_of(part: EmailMessage, out: Parsed) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content.replace("\r\n", "\n")
    except Exception as exc:  # noqa: BLE001 - unknown charset, bad transfer encoding...
        out.defects.append(f"body: {type(exc).__name__}: {exc}")
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        payload = str(part.get_payload()).encode("utf-8", "replace")
    return payload.decode("utf-8", "replace").replace("\r\n", "\n")


def _is_auto(msg: EmailMessage, out: Parsed) -> bool:
    """RFC 3834 signs of automatic mail (the null sender is the service's to check)."""
    auto = (_header(msg, "Auto-Submitted", out) or "").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if (_header(msg, "Precedence", out) or "").strip().lower() in AUTO_PRECEDENCE:
        return True
    return any(msg.get(h) is not None for h in ("List-Id", "X-Autoreply", "X-Autorespond"))


def parse(raw: bytes) -> Parsed:
    out = Parsed()
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 - never crash on input
        out.defects.append(f"message: {type(exc).__name__}: {exc}")
        out.text = raw.decode("utf-8", "replace")
        return out
    try:
        _fill(msg, out)
    except Exception as exc:  # noqa: BLE001
        out.defects.append(f"message: {type(exc).__name__}: {exc}")
        if not out.text:
            out.text = raw.decode("utf-8", "replace")
    return out


def _fill(msg: EmailMessage, out: Parsed) -> None:
    senders = _addresses(msg, "From", out) or _addresses(msg, "Sender", out)
    if senders:
        out.from_name, out.from_address = senders[0]
    out.to_addrs = tuple(a for _, a in _addresses(msg, "To", out) + _addresses(msg, "Cc", out))
    out.subject = " ".join((_header(msg, "Subject", out) or "").split())
    ids = _ids(_header(msg, "Message-ID", out))
    out.message_id = ids[0] if ids else None
    replied = _ids(_header(msg, "In-Reply-To", out))
    out.in_reply_to = replied[-1] if replied else None
    out.references = _ids(_header(msg, "References", out))
    out.auto_generated = _is_auto(msg, out)
    bodies = set()
    for kind in ("plain", "html"):
        try:
            part = msg.get_body(preferencelist=(kind,))
        except Exception as exc:  # noqa: BLE001
            out.defects.append(f"body: {type(exc).__name__}: {exc}")
            part = None
        if part is not None and part.get_content_type() == f"text/{kind}":
            bodies.add(id(part))
            setattr(out, "text" if kind == "plain" else "html", _text_of(part, out))
    for part in msg.walk():
        for defect in getattr(part, "defects", ()):
            out.defects.append(type(defect).__name__)
        if part.is_multipart() or id(part) in bodies:
            continue
        try:
            content = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001
            content = None
        if content is None:
            content = str(part.get_payload()).encode("utf-8", "replace")
        try:
            filename = part.get_filename()
        except Exception:  # noqa: BLE001
            filename = None
        if part is msg and not filename and part.get_content_maintype() == "text":
            continue  # a single-part message whose body was not text/plain or text/html
        out.attachments.append(ParsedAttachment(filename, part.get_content_type(), content))
    if not out.text and not out.html and not msg.is_multipart():
        out.text = _text_of(msg, out)
