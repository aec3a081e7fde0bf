"""Parsing (channels/email/parse.py): encoded words, charsets, text and HTML bodies,
attachments, RFC 3834 signs, and malformed input that is flagged, never fatal."""

from __future__ import annotations

import pytest

from channels.email.parse import parse


def test_encoded_words_charsets_bodies_and_attachments() -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.org>\r\n"
        b"Subject: =?iso-8859-1?q?r=E9sum=E9?=\r\nMessage-ID: <a@b>\r\n"
        b"In-Reply-To: <p@b>\r\nReferences: <o@b> <p@b>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n"
        b"--X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n"
        b"--Y\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n"
        b"--Y\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9</p>\r\n--Y--\r\n"
        b"--X\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--X--\r\n"
    )
    p = parse(raw)
    assert (p.from_name, p.from_address, p.subject) == ("José", "jose@example.org", "résumé")
    assert (p.message_id, p.in_reply_to, p.references) == ("a@b", "p@b", ("o@b", "p@b"))
    assert p.text.strip() == "café" and "café" in p.html
    [att] = p.attachments
    assert (att.filename, att.content_type, att.content) == ("a.pdf", "application/pdf", b"%PDF-")
    assert not p.malformed and not p.auto_generated


@pytest.mark.parametrize("header", [
    b"Auto-Submitted: auto-replied", b"Precedence: bulk", b"List-Id: <l.example.org>",
    b"X-Autoreply: yes",
])
def test_rfc3834_signs(header: bytes) -> None:
    assert parse(b"From: a@b\r\n" + header + b"\r\n\r\nx\r\n").auto_generated


def test_auto_submitted_no_is_a_person() -> None:
    assert not parse(b"From: a@b\r\nAuto-Submitted: no\r\n\r\nx\r\n").auto_generated


@pytest.mark.parametrize("raw", [
    b"", b"\xff\xfe\x00garbage", b"From: <<<@@@>>>\r\nSubject: =?bogus?x?zz?=\r\n\r\nbody",
    b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nno end",
    b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xe9t\xe9",
    b"Content-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
])
def test_malformed_input_never_raises(raw: bytes) -> None:
    p = parse(raw)
    assert isinstance(p.text, str) and isinstance(p.defects, list)
