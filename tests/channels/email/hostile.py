"""The hostile corpus (tests/data/mail/hostile/) and what a person must see of each message:
shared by the in-process tests (test_hostile.py) and the real-SMTP ones (test_hostile_e2e.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "data" / "mail" / "hostile"


@dataclass(frozen=True)
class Expected:
    subject: str
    from_address: str
    from_name: str = ""
    text: str | None = None  # contained in the text (None: the text must be empty)
    attachments: tuple[str, ...] = ()  # content types


EXPECTED: dict[str, Expected] = {
    "utf8-display-name.eml": Expected("Grüße aus Köln", "jm@x.test", "Jörg Müller", "Hallo."),
    "latin1-display-name.eml": Expected("Grüße", "jl@x.test", "Jörg Müller", "Hallo."),
    "qp-nul.eml": Expected("qp nul", "nul@x.test", text="helloworld"),
    "image-single-part.eml": Expected("a photo", "img@x.test", attachments=("image/png",)),
    "pdf-single-part.eml": Expected("invoice", "pdf@x.test", attachments=("application/pdf",)),
    "long-line.eml": Expected("long line", "long@x.test", text="0123456789" * 500),
    "leading-space-line.eml": Expected("leading space", "ws@x.test", text="body"),
    "colonless-first-line.eml": Expected("colonless", "cl@x.test", text="body"),
    "leading-blank-line.eml": Expected("leading blank", "bl@x.test", text="body"),
    "subject-space-colon.eml": Expected("spaced colon", "sc@x.test", text="body"),
    "unlabelled-8bit-body.eml": Expected("unlabelled", "u8@x.test", text="Grüße"),
    "latin1-body-no-charset.eml": Expected("latin1 body", "l1@x.test", text="Grüße"),
    "rfc822-only.eml": Expected("Fwd: order", "fw@x.test", text="The inner text."),
    "smime.eml": Expected("secret", "sm@x.test", text="S/MIME",
                          attachments=("application/pkcs7-mime",)),
}

# What our SMTP intake puts first (smtp.py Delivery.receivedHeader), for in-process parsing.
RECEIVED = (b"Received: from c.org ([127.0.0.1])\r\n\tby mx.example.com with ESMTP "
            b"(switchboard); Fri, 04 Dec 2026 17:00:00 +0000\r\n")


def raw(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def encoded_subject(size: int) -> bytes:
    """A message whose Subject is `size` bytes of folded encoded words."""
    word = b"=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="
    words = b"\r\n ".join([word] * (size // (len(word) + 3)))
    return (b"From: big@x.test\r\nTo: support@example.com\r\nSubject: " + words
            + b"\r\nMessage-ID: <big@x.test>\r\n\r\nbig subject\r\n")


def long_to(count: int) -> bytes:
    to = b",\r\n ".join(b"user%d@x.test" % i for i in range(count))
    return (b"From: many@x.test\r\nSubject: many recipients\r\nTo: " + to
            + b"\r\n\r\nmany\r\n")
