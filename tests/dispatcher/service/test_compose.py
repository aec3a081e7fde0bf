"""Composing our e-mails (dispatcher.service.compose): recipients of a reply and a reply to
all, headers nobody can inject into, the signature and the quote in both parts, HTML sanitised,
automatic mail marked as such, attachments."""

from __future__ import annotations

import contextlib
import random
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from dispatcher.service import compose
from dispatcher.service.compose import Draft, build, reply_recipients, text_to_html
from dispatcher.service.ports import MailAttachment, MailMessage

T0 = 1_700_000_000.0


def customer(**kw) -> MailMessage:
    kw.setdefault("from_addr", "ann@c.test")
    return MailMessage(id="m1", task_id="t1", direction="in", kind="customer", created_at=T0,
                       raw=b"", message_id="q@c.test", text="Where is it?\nThanks", **kw)


def parsed(draft: Draft):
    return message_from_bytes(build(draft, T0, "x.test").raw, policy=policy.default)


def test_recipients_of_a_reply_and_of_a_reply_to_all() -> None:
    msg = customer(to_addrs=("help@x.test", "bob@c.test"), cc_addrs=("cc@other.test",
                                                                     "desk@x.test"))
    assert reply_recipients(msg, {"help@x.test"}, {"x.test"}, False) == ("ann@c.test", ())
    assert reply_recipients(msg, {"help@x.test"}, {"x.test"}, True) == (
        "ann@c.test", ("bob@c.test", "cc@other.test"))
    assert reply_recipients(customer(reply_to="ann@home.test"), (), (), True) == (
        "ann@home.test", ("ann@c.test",))


def test_no_header_can_be_injected() -> None:
    out = parsed(Draft("reply", "Support\r\nBcc: x@evil.test", "help@x.test",
                       "ann@c.test\r\nBcc: y@evil.test", "Hi\r\nBcc: z@evil.test", "text"))
    assert out["Bcc"] is None and "\n" not in out["Subject"]


def test_signature_and_quote_in_both_parts_and_sanitised_html() -> None:
    out = parsed(Draft("reply", "Support", "help@x.test", "ann@c.test", "Re: x", "Hello",
                       html='<p onclick="x()">Hello <script>bad()</script><b>Ann</b></p>',
                       signature="Alex\nSupport", answering=customer(), quote=True))
    text = out.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Hello\n\n-- \nAlex\nSupport\n\nOn ") and "> Where is it?" in text
    html = out.get_body(("html",)).get_content()
    assert "<script" not in html and "onclick" not in html and "<b>Ann</b>" in html
    assert '<blockquote type="cite">' in html and "Alex<br>Support" in html
    assert out["In-Reply-To"] == "<q@c.test>" and out["Auto-Submitted"] is None


def test_automatic_mail_says_so_and_files_are_attached() -> None:
    out = parsed(Draft("ack", "Support", "help@x.test", "ann@c.test", "We got it", "Hi",
                       automatic=True, html_part=False, attachments=(
                           MailAttachment("a b.pdf", "application/pdf", 4, b"%PDF"),)))
    assert out["Auto-Submitted"] == "auto-replied"
    assert out["X-Auto-Response-Suppress"] == "All"
    assert [(a.get_filename(), a.get_content_type(), a.get_content())
            for a in out.iter_attachments()] == [("a b.pdf", "application/pdf", b"%PDF")]
    assert out.get_body(("html",)) is None


def test_text_becomes_escaped_paragraphs() -> None:
    assert text_to_html("a <b>\nc\n\nd") == "<p>a &lt;b&gt;<br>c</p><p>d</p>"


def test_a_message_is_the_bytes_the_standard_smtp_policy_writes(monkeypatch) -> None:
    """`build` makes each header's class once (compose._Registry): the same bytes as with the
    standard policy, which makes a class for every header."""
    draft = Draft("reply", "Zoë Support", "help@x.test", "Ann Éclair <ann@c.test>",
                  "Re: your parcel, résumé [#SB-000042] " + "long words " * 12, "Hello\nÀ+",
                  signature="Alex", answering=customer(references=("a@c.test",)),
                  quote=True, automatic=True, cc=("bob@c.test",),
                  attachments=(MailAttachment("a b.pdf", "application/pdf", 4, b"%PDF"),))
    ours = build(draft, T0, "x.test")
    monkeypatch.setattr(compose, "_POLICY", policy.SMTP)
    standard = build(draft, T0, "x.test")

    def drawn(built) -> bytes:  # the Message-ID and the MIME boundaries are drawn anew
        raw = built.raw.replace(built.message_id.encode(), b"ID")
        return re.sub(rb"={15}\d+==", b"BOUNDARY", raw)

    assert drawn(ours) == drawn(standard)
    assert ours.raw.count(b"\r\n") > 10 and b"\n" not in ours.raw.replace(b"\r\n", b"")


def test_the_registry_makes_a_class_once_per_name_within_a_bound() -> None:
    registry = compose._Registry()
    assert registry["Subject"] is registry["subject"] is registry["SUBJECT"]
    for n in range(compose._Registry.MAX_MADE + 10):
        registry[f"X-Name-{n}"]
    assert len(registry._made) == compose._Registry.MAX_MADE
    assert registry["X-Name-70"] is not registry["X-Name-70"]  # past the bound: as before


ROUNDS = 150  # of `values` per header (5,000 each ran once: the same bytes every time)


def header_block(pol, name: str, value: str) -> object:
    """The header as `pol` writes it, or the error it raises."""
    em = EmailMessage(policy=pol)
    try:
        em[name] = value
        return em.as_bytes().split(b"\r\n\r\n")[0]
    except Exception as exc:  # noqa: BLE001 - compared, whatever it is
        return type(exc)


def values(rng: random.Random, name: str) -> list[str]:
    """Values of the header `name` as `build` writes them (of every simple form), and others:
    printable junk, words near the line's length, encoded words, quoted names."""
    def atom() -> str:
        return "".join(rng.choice(string.ascii_letters + string.digits + "!#$%&'*+/^_`{|}~-")
                       for _ in range(rng.randrange(1, 12)))

    def dot() -> str:
        return ".".join(atom() for _ in range(rng.randrange(1, 4)))

    def words() -> str:
        return " ".join(atom() for _ in range(rng.randrange(1, 12)))

    zone = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1, 15)))
    junk = "".join(rng.choice(string.printable[:95]) for _ in range(rng.randrange(0, 90)))
    return [
        words(), f"{dot()}@{dot()}", f"{words()} <{dot()}@{dot()}>", f"<{dot()}@{dot()}>",
        " ".join(f"<{dot()}@{dot()}>" for _ in range(rng.randrange(1, 4))),
        format_datetime(datetime.fromtimestamp(rng.uniform(0, 4e9), zone)),
        format_datetime(datetime.fromtimestamp(rng.uniform(0, 4e9), UTC)),
        junk, junk.strip(), f"=?utf-8?q?{atom()}?=", f'"{words()}" <{dot()}@{dot()}>',
        "x" * (78 - len(name) - 2), "x" * (79 - len(name) - 2), f"{atom()}  {atom()}", "",
        " ", f" {atom()}", f"{atom()} ",
    ]


@pytest.mark.parametrize("name", ["Subject", "In-Reply-To", "References", "Auto-Submitted",
                                  "X-Auto-Response-Suppress", "From", "To", "Message-ID",
                                  "Date"])
def test_a_header_build_keeps_plain_is_the_bytes_the_standard_policy_writes(name) -> None:
    """`compose._Policy` keeps simple values of the headers `build` writes as strings instead
    of parsing them (the standard policy's cost): whatever the value, the same bytes or the
    same refusal as with the standard policy; and `build`'s own values take the short cut."""
    rng = random.Random(name)
    plain = 0
    for _ in range(ROUNDS):
        for value in values(rng, name):
            assert header_block(compose._POLICY, name, value) == header_block(
                policy.SMTP, name, value), (name, value)
            with contextlib.suppress(Exception):  # the standard path's own refusal
                plain += type(compose._POLICY.header_store_parse(name, value)[1]) is str
    assert plain > ROUNDS  # the short cut is taken


def test_an_acknowledgement_is_the_standard_bytes_and_takes_the_short_cut(monkeypatch) -> None:
    """An acknowledgement as `build` makes it: every header but the content ones kept plain,
    and the bytes the standard policy writes (Message-ID and boundaries aside)."""
    ack = Draft("ack", "Support", "help@x.test", "ann@c.test", "We received it [#SB-000042]",
                "Thank you. " * 20, answering=customer(references=("a@c.test",)),
                automatic=True, html_part=False)
    kept: list[str] = []
    store = compose._Policy.header_store_parse

    def recorded(self, name, value):
        out = store(self, name, value)
        if type(out[1]) is str:
            kept.append(name)
        return out

    monkeypatch.setattr(compose._Policy, "header_store_parse", recorded)
    ours = build(ack, T0, "x.test")
    assert set(kept) == {"From", "To", "Subject", "Date", "Message-ID", "In-Reply-To",
                         "References", "Auto-Submitted", "X-Auto-Response-Suppress"}
    monkeypatch.setattr(compose, "_POLICY", policy.SMTP)
    standard = build(ack, T0, "x.test")
    assert ours.raw.replace(ours.message_id.encode(), b"ID") == standard.raw.replace(
        standard.message_id.encode(), b"ID")
