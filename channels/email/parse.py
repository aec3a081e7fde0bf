"""Parsing a raw message with the standard `email` package (policy.default), never failing:
whatever cannot be read becomes a defect, and the message is still stored raw.

Besides addresses, subject, threading ids, bodies and attachments it reads what tells a person
from a robot: the kind of automatic mail (RFC 3834 `Auto-Submitted`, the de-facto
`X-Autoreply`/`X-Autorespond`, `Precedence`, list headers), `X-Auto-Response-Suppress`
(Microsoft's "send me no auto-replies"), and delivery status notifications (RFC 3464
`multipart/report; report-type=delivery-status`): the original message's id and, per
recipient, the action, status and diagnostic.

Before the parser sees it, the message is cut to `bounds.Limits` and its header section
repaired (bounds.py). Every text that leaves is clean: 8-bit header bytes read as UTF-8 (RFC
6532) or the configured fallback charset, bodies without a usable charset likewise, NUL
removed. A single part that is not text (an image, a PDF, S/MIME) is an attachment and leaves
the text empty (S/MIME: a short note); a message that only wraps another (message/rfc822)
shows the inner message's text.

Headers most mail spells plainly (one address, a Message-ID, ASCII text) are read without the
header parser, with the result it would give (PLAIN_ADDRESS; tests compare both ways), and
policy.default's header classes are made once per name: a plain message parses in a quarter of
the time (bench/smtp.py).

Sits in the e-mail edge; pure functions of bytes, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import headerregistry, policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from dispatcher.service.ports import DeliveryReport, DsnRecipient

from .bounds import DEFAULT_LIMITS, Limits, decode, prepare, text

MSGID = re.compile(r"<([^<>\s]+)>")
AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list"})
# X-Auto-Response-Suppress values that ask for no auto-reply of ours (acks, automatic answers)
SUPPRESS_VALUES = frozenset({"all", "autoreply", "oof"})
# Automatic mail, by kind (InboundMail.automatic): an answer of a robot to a message (an
# out-of-office), other robot mail (notifications), and mailing-list or bulk mail.
AUTO_REPLY, AUTO_GENERATED, BULK = "auto_reply", "auto_generated", "bulk"
MAX_DSN_RECIPIENTS = 50
SMIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
SMIME_NOTE = ("[S/MIME message: its content is encrypted or signed in the attached "
              "smime.p7m and cannot be shown here]")
# What most mail carries, read without the header parser (the same result, a tenth of the
# time): an address header that is one plain address, `local@domain`, `<local@domain>` or
# `Name <local@domain>` (dot-atoms; a name of single-space-separated letters and digits), a
# Message-ID `<dot-atom@dot-atom>`, and an unstructured header of printable ASCII without an
# encoded word. Anything else takes policy.default's parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
PLAIN_ADDRESS = re.compile(rf"(?:(?P<name>[A-Za-z0-9]+(?: [A-Za-z0-9]+)*) )?<(?P<bracketed>"
                           rf"{_ADDRESS})>|(?P<bare>{_ADDRESS})")
PLAIN_TEXT = re.compile(r"[\x20-\x7e\t]*")
PLAIN_MESSAGE_ID = re.compile(rf"<{_ADDRESS}>")


class _Registry(headerregistry.HeaderRegistry):
    """policy.default's header classes, each made once: the stock registry makes a new class
    for every header it reads (a tenth of a plain message's parse)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str | None, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        key = key if key in self.registry else None  # every other name: the default class
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def unstructured(self, name: str) -> bool:
        cls = self.registry.get(name.lower(), self.default_class)
        return issubclass(cls, headerregistry.UnstructuredHeader)


REGISTRY = _Registry()
POLICY = policy.default.clone(header_factory=REGISTRY)


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content: bytes
    content_id: str | None = None


@dataclass
class Parsed:
    from_address: str | None = None
    from_name: str = ""
    to_addrs: tuple[str, ...] = ()
    cc_addrs: tuple[str, ...] = ()
    reply_to: str | None = None
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    automatic: str | None = None  # AUTO_REPLY | AUTO_GENERATED | BULK | None (a person)
    suppress_auto: bool = False  # X-Auto-Response-Suppress asks for no auto-reply
    dsn: DeliveryReport | None = None

    @property
    def auto_generated(self) -> bool:
        """RFC 3834: mail that must never get an automatic answer."""
        return self.automatic is not None or self.dsn is not None

    @property
    def malformed(self) -> bool:
        return bool(self.defects)


def _raw(msg: EmailMessage, name: str) -> Any:
    """The first `name` header's value as stored, unparsed (None: there is none), as
    `msg.get(name)` finds it."""
    key = name.lower()
    for k, v in msg.raw_items():
        if k.lower() == key:
            return v
    return None


def _plain(name: str, raw: str) -> bool:
    """Does the header's parser read `raw` as it is (see PLAIN_ADDRESS)?"""
    if name.lower() == "message-id":
        return PLAIN_MESSAGE_ID.fullmatch(raw) is not None
    return ("=?" not in raw and PLAIN_TEXT.fullmatch(raw) is not None
            and REGISTRY.unstructured(name))


def _header(msg: EmailMessage, name: str, out: Parsed) -> str | None:
    raw = _raw(msg, name)
    if raw is None:
        return None
    if isinstance(raw, str) and _plain(name, raw):
        return raw  # what the header's parser gives for it
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception as exc:  # noqa: BLE001 - a header the parser cannot read is a defect
        out.defects.append(f"{name}: {type(exc).__name__}: {exc}")
        try:
            raw = msg.get_all(name, failobj=[None], )[0]
            return None if raw is None else str(raw)
        except Exception:  # noqa: BLE001 - the raw value unreadable too: none
            return None


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(MSGID.findall(value or ""))


def _addresses(msg: EmailMessage, name: str, out: Parsed) -> list[tuple[str, str]]:
    raw = _raw(msg, name)
    if raw is None:
        return []
    plain = PLAIN_ADDRESS.fullmatch(raw) if isinstance(raw, str) else None
    if plain is not None:
        return [(plain["name"] or "", plain["bracketed"] or plain["bare"])]
    try:
        header = msg.get(name)
        if header is None:
            return []
        return [(a.display_name or "", a.addr_spec) for a in getattr(header, "addresses", ())
                if a.addr_spec and "@" in a.addr_spec]
    except Exception as exc:  # noqa: BLE001 - an unreadable address header is a defect
        out.defects.append(f"{name}: {type(exc).__name__}: {exc}")
        return []


def _text_of(part: EmailMessage, out: Parsed, fallback: str) -> str:
    """The decoded text of a part: its declared charset when the bytes fit it, else UTF-8,
    else `fallback` (an unlabelled or mislabelled 8-bit body)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:  # noqa: BLE001 - a bad transfer encoding
        out.defects.append(f"body: {type(exc).__name__}: {exc}")
        payload = None
    if payload is None:
        payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
    try:
        declared = part.get_content_charset()
    except Exception:  # noqa: BLE001 - an unreadable charset: UTF-8, else the fallback
        declared = None
    if declared in ("us-ascii", "ascii"):
        declared = None  # the default when none is given: 8-bit bytes mean it is wrong
    decoded = decode(payload, fallback, declared)
    return text(decoded, fallback).replace("\r\n", "\n")


def _automatic(msg: EmailMessage, out: Parsed) -> str | None:
    """The kind of automatic mail by RFC 3834 signs (the null sender is the service's to
    check), None for mail a person wrote."""
    auto = (_header(msg, "Auto-Submitted", out) or "").strip().lower()
    if auto.startswith("auto-replied"):
        return AUTO_REPLY
    if any(msg.get(h) is not None for h in ("X-Autoreply", "X-Autorespond")):
        return AUTO_REPLY
    if auto and not auto.startswith("no"):
        return AUTO_GENERATED
    if (_header(msg, "Precedence", out) or "").strip().lower() in AUTO_PRECEDENCE:
        return BULK
    if msg.get("List-Id") is not None:
        return BULK
    return None


def _suppressed(msg: EmailMessage, out: Parsed) -> bool:
    value = (_header(msg, "X-Auto-Response-Suppress", out) or "").lower()
    return any(v.strip() in SUPPRESS_VALUES for v in value.split(","))


def _dsn(msg: EmailMessage, out: Parsed) -> DeliveryReport | None:
    """The delivery report of a `multipart/report; report-type=delivery-status`, else None."""
    if msg.get_content_type() != "multipart/report":
        return None
    if (msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    original: str | None = None
    recipients: list[DsnRecipient] = []
    mta = ""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            if not isinstance(blocks, list):
                continue
            for i, block in enumerate(blocks):
                if i == 0:
                    mta = _field(block.get("Reporting-MTA"))
                    continue
                if len(recipients) >= MAX_DSN_RECIPIENTS:
                    break
                recipient = _field(block.get("Final-Recipient") or block.get(
                    "Original-Recipient"))
                action = _field(block.get("Action")).lower()
                if recipient or action:
                    recipients.append(DsnRecipient(
                        recipient, action, _field(block.get("Status")),
                        _field(block.get("Diagnostic-Code"))[:500]))
        elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _original_id(part)
    if original is None:
        ids = _ids(_header(msg, "In-Reply-To", out)) or _ids(_header(msg, "References", out))
        original = ids[-1] if ids else None
    return DeliveryReport(original, tuple(recipients), mta)


def _field(value: object) -> str:
    """A DSN field without its type (`rfc822; ann@x.test` -> `ann@x.test`)."""
    text = " ".join(str(value or "").split())
    kind, sep, rest = text.partition(";")
    return rest.strip() if sep and kind.strip().isalnum() else text


def _original_id(part: EmailMessage) -> str | None:
    try:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) else inner
            ids = _ids(str(inner.get("Message-ID", "")))
        else:
            headers = BytesParser(policy=policy.default).parsebytes(
                part.get_payload(decode=True) or b"", headersonly=True)
            ids = _ids(str(headers.get("Message-ID", "")))
    except Exception:  # noqa: BLE001 - a report we cannot read is still a report
        return None
    return ids[0] if ids else None


def parse(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    out = Parsed()
    fallback = limits.fallback_charset
    try:
        prepared = prepare(raw, limits)
        out.defects.extend(prepared.defects)
        msg = BytesParser(policy=POLICY).parsebytes(prepared.bytes())
    except Exception as exc:  # noqa: BLE001 - never crash on input
        out.defects.append(f"message: {type(exc).__name__}: {exc}")
        out.text = text(decode(raw, fallback), fallback)
        return out
    try:
        _fill(msg, out, fallback)
    except Exception as exc:  # noqa: BLE001 - never crash on input: a defect, raw text kept
        out.defects.append(f"message: {type(exc).__name__}: {exc}")
        if not out.text:
            out.text = text(decode(raw, fallback), fallback)
    _clean(out, fallback)
    return out


def _clean(out: Parsed, fallback: str) -> None:
    """Every text field as clean text (no surrogates, no NUL)."""
    out.from_name = text(out.from_name, fallback)
    out.subject = text(out.subject, fallback)
    out.text = text(out.text, fallback)
    out.html = text(out.html, fallback)
    for name in ("from_address", "reply_to", "message_id", "in_reply_to"):
        value = getattr(out, name)
        if value is not None:
            setattr(out, name, text(value, fallback))
    out.to_addrs = tuple(text(a, fallback) for a in out.to_addrs)
    out.cc_addrs = tuple(text(a, fallback) for a in out.cc_addrs)
    out.references = tuple(text(a, fallback) for a in out.references)
    out.defects = [text(d, fallback) for d in out.defects]
    out.attachments = [
        ParsedAttachment(None if a.filename is None else text(a.filename, fallback),
                         text(a.content_type, fallback), a.content,
                         None if a.content_id is None else text(a.content_id, fallback))
        for a in out.attachments
    ]


def _inner(msg: EmailMessage, out: Parsed, fallback: str, bodies: set[int]) -> str:
    """The text of the first message/rfc822 part (a message that only wraps another)."""
    for part in msg.walk():
        if part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(inner, EmailMessage):
            continue
        body = inner.get_body(preferencelist=("plain", "html"))
        shown = [f"{name}: {inner.get(name)}" for name in ("From", "Date", "Subject")
                 if inner.get(name) is not None]
        if body is None:
            return "\n".join(shown)
        bodies.add(id(body))
        content = _text_of(body, out, fallback)
        if body.get_content_type() == "text/html":
            out.html = out.html or content
            return "\n".join(shown)
        return "\n".join([*shown, "", content])
    return ""


def _fill(  # noqa: C901 - each part of the message read in turn, a failure a defect
    msg: EmailMessage, out: Parsed, fallback: str
) -> None:
    senders = _addresses(msg, "From", out) or _addresses(msg, "Sender", out)
    if senders:
        out.from_name, out.from_address = senders[0]
    out.to_addrs = tuple(a for _, a in _addresses(msg, "To", out))
    out.cc_addrs = tuple(a for _, a in _addresses(msg, "Cc", out))
    reply_to = _addresses(msg, "Reply-To", out)
    out.reply_to = reply_to[0][1] if reply_to else None
    out.subject = " ".join((_header(msg, "Subject", out) or "").split())
    ids = _ids(_header(msg, "Message-ID", out))
    out.message_id = ids[0] if ids else None
    replied = _ids(_header(msg, "In-Reply-To", out))
    out.in_reply_to = replied[-1] if replied else None
    out.references = _ids(_header(msg, "References", out))
    out.automatic = _automatic(msg, out)
    out.suppress_auto = _suppressed(msg, out)
    try:
        out.dsn = _dsn(msg, out)
    except Exception as exc:  # noqa: BLE001 - an unreadable report is a defect
        out.defects.append(f"report: {type(exc).__name__}: {exc}")
    bodies = set()
    for kind in ("plain", "html"):
        try:
            part = msg.get_body(preferencelist=(kind,))
        except Exception as exc:  # noqa: BLE001 - an unreadable body is a defect
            out.defects.append(f"body: {type(exc).__name__}: {exc}")
            part = None
        if part is not None and part.get_content_type() == f"text/{kind}":
            bodies.add(id(part))
            setattr(out, "text" if kind == "plain" else "html", _text_of(part, out, fallback))
    if not out.text and not out.html:
        out.text = _inner(msg, out, fallback, bodies)
    for part in msg.walk():
        for defect in getattr(part, "defects", ()):
            out.defects.append(type(defect).__name__)
        if part.is_multipart() or id(part) in bodies:
            continue
        try:
            content = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - undecodable: kept as its raw payload
            content = None
        if content is None:
            content = str(part.get_payload()).encode("utf-8", "replace")
        try:
            filename = part.get_filename()
        except Exception:  # noqa: BLE001 - an unreadable filename: none
            filename = None
        if part is msg and not filename and part.get_content_maintype() == "text":
            continue  # a single-part message whose body was not text/plain or text/html
        cid = _ids(str(part.get("Content-ID", "") or ""))
        out.attachments.append(ParsedAttachment(filename, part.get_content_type(), content,
                                                cid[0] if cid else None))
    if not out.text and not out.html and not msg.is_multipart() \
            and msg.get_content_maintype() == "text":
        out.text = _text_of(msg, out, fallback)
    if not out.text and not out.html and any(a.content_type in SMIME for a in out.attachments):
        out.text = SMIME_NOTE
