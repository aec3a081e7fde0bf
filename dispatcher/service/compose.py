"""Composing the e-mails we send (agents' replies, acknowledgements, automatic answers) with the
standard `email` package. Pure functions of their arguments: no store, no clock.

What it promises:
- Headers are set through `email.message.EmailMessage`, which refuses CR or LF in a value, so
  nothing an agent or a customer typed can add a header; display names are encoded as needed.
- A reply goes to the original's Reply-To, else its From; "reply all" keeps everyone else the
  customer's messages of the thread went to (To and Cc) as Cc, less our own addresses and
  duplicates.
- The text part carries the agent's text, the signature and the quoted original ("On …, … wrote:"
  and "> " lines); the HTML part (always present for replies) carries the agent's HTML
  (sanitised with nh3) or the text made HTML, the signature and the original in a blockquote.
- Automatic mail we send (acknowledgements, automatic answers) says so: `Auto-Submitted:
  auto-replied` (RFC 3834 5.2) and `X-Auto-Response-Suppress: All`, so robots do not answer it.
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import headerregistry
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr
from typing import Any

import nh3

from .ports import MailAttachment, MailMessage

MAX_REFERENCES = 20
QUOTED_CHARS = 20_000


def one_line(value: str | None) -> str:
    return re.sub(r"[\r\n]+", " ", value or "").strip()


def safe_html(html: str) -> str:
    """HTML an agent's console may show or we may send: scripts, styles, event handlers and
    unsafe URLs gone."""
    return nh3.clean(html or "")


def html_to_text(html: str) -> str:
    text = nh3.clean(html or "", tags=set())
    return html_lib.unescape(re.sub(r"\n\s*\n+", "\n\n", text)).strip()


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (escaped; blank lines split paragraphs)."""
    paragraphs = re.split(r"\n\s*\n", (text or "").strip())
    return "".join("<p>" + html_lib.escape(p).replace("\n", "<br>") + "</p>"
                   for p in paragraphs if p.strip())


def _bare(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def reply_recipients(answering: MailMessage, own: Iterable[str], own_domains: Iterable[str],
                     reply_all: bool, thread: Sequence[MailMessage] = ()
                     ) -> tuple[str, tuple[str, ...]]:
    """(To, Cc) of a reply to `answering`: its Reply-To or From; with `reply_all`, everyone
    else the customer's messages of the thread were sent to (To and Cc, in order of first
    appearance, as a ticket's Cc list), less ours (configured addresses and domains) and
    duplicates."""
    to = answering.reply_to or answering.from_addr or answering.peer or ""
    if not to:
        return "", ()
    if not reply_all:
        return to, ()
    mine = {_bare(a) for a in own}
    domains = {d.strip().lower() for d in own_domains}
    seen = {_bare(to)}
    cc: list[str] = []
    for msg in (*thread, answering):
        for address in (*msg.to_addrs, *msg.cc_addrs, msg.from_addr or ""):
            bare = _bare(address)
            if not bare or "@" not in bare or bare in seen or bare in mine:
                continue
            if bare.rpartition("@")[2] in domains:
                continue
            seen.add(bare)
            cc.append(address.strip())
    return to, tuple(cc)


def named(address: str, msg: MailMessage) -> str:
    """`address` with the display name `msg` gave it in From or Reply-To, if any."""
    try:
        headers = BytesHeaderParser(policy=email_policy.default).parsebytes(msg.raw or b"")
        for name in ("Reply-To", "From"):
            for a in getattr(headers.get(name), "addresses", ()) or ():
                if a.addr_spec.lower() == address.lower() and a.display_name:
                    return formataddr((one_line(a.display_name), address))
    except Exception:  # noqa: BLE001 - a header we cannot read: the bare address
        pass
    return address


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%a %d %b %Y %H:%M UTC")


def _sender(msg: MailMessage) -> str:
    return msg.from_addr or msg.peer or "you"


def quote_text(msg: MailMessage) -> str:
    body = (msg.text or html_to_text(msg.html)).strip()[:QUOTED_CHARS]
    lines = "\n".join("> " + line if line else ">" for line in body.splitlines())
    return f"On {_when(msg.created_at)}, {_sender(msg)} wrote:\n{lines}"


def quote_html(msg: MailMessage) -> str:
    body = safe_html(msg.html)[:QUOTED_CHARS * 2] if msg.html else text_to_html(
        msg.text[:QUOTED_CHARS])
    head = html_lib.escape(f"On {_when(msg.created_at)}, {_sender(msg)} wrote:")
    return f'<p>{head}</p><blockquote type="cite">{body}</blockquote>'


@dataclass(frozen=True)
class Draft:
    """What to send; `build` makes the message."""

    kind: str  # reply | ack | consult | redirect
    from_name: str
    from_address: str
    to: str
    subject: str
    text: str
    html: str | None = None  # the agent's own HTML (sanitised here); None: made from text
    cc: tuple[str, ...] = ()
    signature: str = ""
    answering: MailMessage | None = None  # threads the reply (In-Reply-To, References)
    quote: bool = False  # quote `answering` below the text
    automatic: bool = False  # Auto-Submitted: auto-replied
    attachments: tuple[MailAttachment, ...] = ()
    html_part: bool = True  # send an HTML alternative


@dataclass(frozen=True)
class Built:
    raw: bytes
    message_id: str  # without angle brackets
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str
    html: str


def unguessable_message_id(domain: str) -> str:
    """A Message-ID nobody can guess (128 random bits): a reply naming one of ours proves its
    sender received our mail, so it may join the thread (service/mail.py `_vouched`)."""
    return f"<sb.{secrets.token_hex(16)}@{domain}>"


class _Registry(headerregistry.HeaderRegistry):
    """The standard header registry, but making the class of each header name once: the
    standard one makes a new class (`type(...)`) for every header it is asked for, about 17 us
    each, 25 a message. Bounded: names past MAX_MADE are made as before, uncached."""

    MAX_MADE = 64

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = super().__getitem__(name)
            if len(self._made) < self.MAX_MADE:
                self._made[key] = made
        return made


# The header values `_Policy` keeps as they are: printable ASCII text of these forms.
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"  # atext less "=" and "?" (no encoded word)
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDRESS = rf"(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_DOT_ATOM}@{_DOT_ATOM}>|{_DOT_ATOM}@{_DOT_ATOM})"
_IS_ADDRESS = re.compile(_ADDRESS).fullmatch
_TEXT = re.compile(r"[ -~]+").fullmatch  # unstructured: printable ASCII (not empty)
_PLAIN = {
    "subject": _TEXT, "in-reply-to": _TEXT, "references": _TEXT, "auto-submitted": _TEXT,
    "x-auto-response-suppress": _TEXT,
    "from": _IS_ADDRESS, "to": _IS_ADDRESS,
    "message-id": re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>").fullmatch,
    "date": re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-3][0-9] (?:Jan|Feb|Mar|Apr|May|Jun"
                       r"|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-2][0-9]:[0-5][0-9]:[0-5][0-9] "
                       r"[+-][0-9]{4}").fullmatch,
}


class _Policy(email_policy.EmailPolicy):
    """SMTP's policy (CRLF line ends), with a short cut for the headers `build` writes whose
    value is simple (`_PLAIN`: printable ASCII text, a plain address, a Message-ID, a date as
    `format_datetime` writes it) and fits on its line: kept as the string itself, as the
    `compat32` policy keeps every header, instead of parsed into a header object whose parse
    tree is folded back (most of a message's build). The standard policy writes such a value
    as it is, alone on its line: the same bytes (tested). Any other header or value
    (non-ASCII, a control character, an encoded word, a quoted name, longer than a line) takes
    the standard path, which also refuses CR and LF."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if type(value) is str and len(name) + 2 + len(value) <= self.max_line_length:
            simple = _PLAIN.get(name.lower())
            if (simple is not None and simple(value) and "=?" not in value
                    and value == value.strip()):
                return (name, value)
        return super().header_store_parse(name, value)


# What `build` writes with: SMTP's policy, simple values kept plain, header classes made once.
_POLICY = _Policy(linesep="\r\n", header_factory=_Registry())


def build(draft: Draft, now: float, message_id_domain: str) -> Built:
    em = EmailMessage(policy=_POLICY)
    em["From"] = formataddr((one_line(draft.from_name), one_line(draft.from_address)))
    em["To"] = one_line(draft.to)
    if draft.cc:
        em["Cc"] = ", ".join(one_line(c) for c in draft.cc)
    em["Subject"] = one_line(draft.subject)
    em["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message_id = unguessable_message_id(message_id_domain)
    em["Message-ID"] = message_id
    in_reply_to, references = None, ()
    answering = draft.answering
    if answering is not None and answering.message_id:
        in_reply_to = answering.message_id
        references = (tuple(answering.references) + (answering.message_id,))[-MAX_REFERENCES:]
        em["In-Reply-To"] = f"<{one_line(in_reply_to)}>"
        em["References"] = " ".join(f"<{one_line(r)}>" for r in references)
    if draft.automatic:
        em["Auto-Submitted"] = "auto-replied"  # RFC 3834 5.2
        em["X-Auto-Response-Suppress"] = "All"
    text, html = _bodies(draft)
    em.set_content(text)
    if html:
        em.add_alternative(html, subtype="html")
    for a in draft.attachments:
        maintype, _, subtype = (a.content_type or "application/octet-stream").partition("/")
        em.add_attachment(a.content or b"", maintype=maintype or "application",
                          subtype=subtype or "octet-stream",
                          filename=one_line(a.filename) or "attachment")
    return Built(em.as_bytes(), message_id.strip("<>"), in_reply_to, references, text,
                 html or "")


def _bodies(draft: Draft) -> tuple[str, str | None]:
    text = draft.text.rstrip()
    signature = draft.signature.strip("\n")
    quoted = draft.quote and draft.answering is not None
    parts = [text]
    if signature:
        parts.append("-- \n" + signature)
    if quoted:
        parts.append(quote_text(draft.answering))
    full_text = "\n\n".join(p for p in parts if p) + "\n"
    if not draft.html_part and not draft.html:
        return full_text, None
    html = [safe_html(draft.html) if draft.html else text_to_html(text)]
    if signature:
        html.append('<div class="signature">' + text_to_html(signature) + "</div>")
    if quoted:
        html.append(quote_html(draft.answering))
    return full_text, "<!doctype html><html><body>" + "".join(html) + "</body></html>"
