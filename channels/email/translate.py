"""The edge's translations: a received message (envelope + parsed bytes) into the service's
`InboundMail`; attachments into the database or the configured folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dispatcher.service.mail import InboundMail
from dispatcher.service.ports import MailAttachment

from .authenticity import Verdict, domain_of
from .parse import Parsed, parse

PRIVATE_FOLDER_MODE, PRIVATE_FILE_MODE = 0o700, 0o600  # attachments kept in a folder
MAX_SUMMARY = 300  # characters of the sender checks' summary kept with the message


def store_attachment(folder: str, content: bytes) -> str:
    """Write `content` under `folder` by its SHA-256 (idempotent, crash-safe rename)."""
    digest = hashlib.sha256(content).hexdigest()
    path = Path(folder) / digest[:2] / digest
    if not path.exists():
        # Customers' files: the folders 0700 and the files 0600, whatever the umask.
        Path(folder).mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
        path.parent.mkdir(mode=PRIVATE_FOLDER_MODE, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with open(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return str(path)


def inbound(raw: bytes, queue: str, envelope_from: str, recipients: tuple[str, ...],
            source: str | None = None, attachments_dir: str = "",
            parsed: Parsed | None = None, verdict: Verdict | None = None) -> InboundMail:
    """`verdict`: the edge's sender checks (authenticity.py); it counts only for the domain
    of the From address the service reads (`p.from_address`), whatever parsed it."""
    p = parsed if parsed is not None else parse(raw)
    authenticated = bool(verdict is not None and verdict.authenticated and p.from_address
                         and verdict.domain == domain_of(p.from_address))
    attachments = tuple(
        MailAttachment(a.filename, a.content_type, len(a.content), None,
                       store_attachment(attachments_dir, a.content), a.content_id)
        if attachments_dir else
        MailAttachment(a.filename, a.content_type, len(a.content), a.content, None, a.content_id)
        for a in p.attachments
    )
    return InboundMail(
        raw=raw, queue=queue, envelope_from=envelope_from, recipients=recipients,
        from_address=p.from_address, from_name=p.from_name, to_addrs=p.to_addrs,
        cc_addrs=p.cc_addrs, reply_to=p.reply_to, automatic=p.automatic,
        suppress_auto=p.suppress_auto, dsn=p.dsn,
        subject=p.subject, message_id=p.message_id, in_reply_to=p.in_reply_to,
        references=p.references, text=p.text, html=p.html, attachments=attachments,
        defects=tuple(p.defects), malformed=p.malformed, auto_generated=p.auto_generated,
        source=source, authenticated=authenticated,
        auth_summary=(verdict.summary[:MAX_SUMMARY] if verdict is not None else ""),
    )
