"""Parsing (channels/email/parse.py): encoded words, charsets, text and HTML bodies,
attachments, RFC 3834 signs, and malformed input that is flagged, never fatal."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from channels.email import parse as parse_module
from channels.email.parse import Parsed, parse


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


@pytest.mark.parametrize(("header", "kind"), [
    (b"Auto-Submitted: auto-replied", "auto_reply"), (b"X-Autoreply: yes", "auto_reply"),
    (b"Auto-Submitted: auto-generated", "auto_generated"), (b"Precedence: list", "bulk"),
    (b"List-Id: <l.example.org>", "bulk"), (b"Auto-Submitted: no", None),
])
def test_the_kind_of_automatic_mail(header: bytes, kind: str | None) -> None:
    assert parse(b"From: a@b\r\n" + header + b"\r\n\r\nx\r\n").automatic == kind


@pytest.mark.parametrize(("value", "suppressed"), [
    (b"All", True), (b"DR, OOF, AutoReply", True), (b"NDR", False), (b"", False)])
def test_x_auto_response_suppress(value: bytes, suppressed: bool) -> None:
    raw = b"From: a@b\r\nX-Auto-Response-Suppress: " + value + b"\r\n\r\nx\r\n"
    assert parse(raw).suppress_auto is suppressed


def test_to_cc_and_reply_to_apart() -> None:
    p = parse(b"From: Ann <ann@c.test>\r\nTo: support@x.test, Bob <bob@c.test>\r\n"
              b"Cc: cat@c.test\r\nReply-To: Ann Home <ann@home.test>\r\n\r\nx\r\n")
    assert p.to_addrs == ("support@x.test", "bob@c.test") and p.cc_addrs == ("cat@c.test",)
    assert p.reply_to == "ann@home.test"


def test_an_inline_part_keeps_its_content_id() -> None:
    raw = (b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=R\r\n"
           b"\r\n--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:p1@x\">\r\n"
           b"--R\r\nContent-Type: image/png\r\nContent-ID: <p1@x>\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n--R--\r\n")
    [att] = parse(raw).attachments
    assert (att.content_type, att.content_id) == ("image/png", "p1@x")


POSTFIX_DSN = (
    b"From: MAILER-DAEMON@mx.c.test (Mail Delivery System)\r\nTo: help@x.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.c.test\r\nArrival-Date: Fri,  4 Dec 2026 10:00:00 +0000\r\n\r\n"
    b"Final-Recipient: rfc822; bob@c.test\r\nOriginal-Recipient: rfc822;bob@c.test\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.c.test\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 <bob@c.test>: Recipient address rejected\r\n\r\n"
    b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: help@x.test\r\nTo: bob@c.test\r\nMessage-ID: <ours-1@x.test>\r\n"
    b"Subject: Re: Order\r\n\r\nHello Bob\r\n--B--\r\n")


def test_a_delivery_status_notification() -> None:
    p = parse(POSTFIX_DSN)
    assert p.dsn is not None and p.dsn.failed
    assert p.dsn.original_message_id == "ours-1@x.test"
    assert p.dsn.reporting_mta == "mx.c.test"
    [r] = p.dsn.recipients
    assert (r.recipient, r.action, r.status) == ("bob@c.test", "failed", "5.1.1")
    assert "Recipient address rejected" in r.diagnostic
    assert p.auto_generated  # never acknowledged


def test_a_report_with_only_headers_and_a_delay() -> None:
    raw = POSTFIX_DSN.replace(b"Action: failed", b"Action: delayed").replace(
        b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers")
    p = parse(raw)
    assert p.dsn.original_message_id == "ours-1@x.test" and not p.dsn.failed


def test_other_reports_are_not_delivery_reports() -> None:
    raw = POSTFIX_DSN.replace(b"report-type=delivery-status",
                              b"report-type=disposition-notification")
    assert parse(raw).dsn is None


def _both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Parsed, Parsed]:
    """`raw` parsed as parse.py does, and with every header through policy.default's parser
    (the plain-value shortcuts switched off)."""
    fast = parse(raw)
    with monkeypatch.context() as m:
        never = re.compile(r"(?!)")
        m.setattr(parse_module, "PLAIN_ADDRESS", never)
        m.setattr(parse_module, "PLAIN_TEXT", never)
        m.setattr(parse_module, "PLAIN_MESSAGE_ID", never)
        slow = parse(raw)
    return fast, slow


NAMES = ["", "John Smith", "J0 42", "John  Smith", "John\tSmith", "John.Smith", "\"J S\"",
         "Jos\xe9"]
LOCALS = ["a.b", "o'neil+x", "a..b", ".a", "\"q r\"", "x=?y"]
DOMAINS = ["b.c", "b", "-b.c", "b..c", "[1.2.3.4]", "b.c "]
WRAPS = ["{a}", "<{a}>", "{n} <{a}>", "{n}<{a}>", "{n} <{a}> ", "{n} <{a}>(c)", "{a}, x@y.z"]


def test_plain_addresses_and_ids_read_without_the_parser_are_what_the_parser_reads(monkeypatch) -> None:
    checked = shortcut = 0
    for name, local, domain, wrap in itertools.product(NAMES, LOCALS, DOMAINS, WRAPS):
        value = wrap.format(n=name, a=f"{local}@{domain}")
        raw = (f"From: {value}\r\nTo: {value}\r\nReply-To: {value}\r\nMessage-ID: {value}"
               "\r\n\r\nx\r\n").encode("utf-8", "surrogateescape")
        fast, slow = _both_ways(raw, monkeypatch)
        assert (fast.from_name, fast.from_address, fast.to_addrs, fast.reply_to,
                fast.message_id, fast.defects) == (
            slow.from_name, slow.from_address, slow.to_addrs, slow.reply_to, slow.message_id,
            slow.defects), value
        checked += 1
        shortcut += parse_module.PLAIN_ADDRESS.fullmatch(value) is not None
    assert checked > 1500 and shortcut > 50  # both ways were taken, many times


def test_plain_text_headers_read_without_the_parser_are_what_the_parser_reads(
        monkeypatch) -> None:
    rnd = random.Random(15)
    pieces = ["a", "Re:", " ", "  ", "\t", "=?", "?=", "=?utf-8?q?x?=", "<m@x>", "[#SB-000001]",
              "\x01", "\xe9", "(", ")", '"', "auto-replied", "bulk", "=", "?"]
    for _ in range(1000):
        value = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))
        raw = (f"From: a@b.c\r\nSubject: {value}\r\nIn-Reply-To: {value}\r\n"
               f"References: {value}\r\nAuto-Submitted: {value}\r\nPrecedence: {value}\r\n"
               f"X-Auto-Response-Suppress: {value}\r\n\r\nx\r\n").encode()
        fast, slow = _both_ways(raw, monkeypatch)
        assert fast == slow, value


def test_header_classes_are_made_once_per_known_name_and_once_for_all_others() -> None:
    names = "".join(f"X-Made-Up-{i}: v\r\n" for i in range(500))
    parse(f"From: a@b.c\r\nSubject: s\r\n{names}\r\nx\r\n".encode())
    registry = parse_module.REGISTRY
    assert registry["Subject"] is registry["subject"]
    assert registry["X-One"] is registry["X-Other"]  # the default class, made once
    assert len(registry._made) <= len(registry.registry) + 1  # bounded whatever mail says
    assert str(registry("Subject", "=?utf-8?q?caf=C3=A9?=")) == "café"
