"""Hostile and odd messages, in process (channels/email/parse.py, bounds.py, translate.py,
reading.py): every corpus file reads as a person must see it, bounds cut hostile headers in
bounded time, and a hypothesis fuzz of parse + translate never raises and keeps the raw."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.bounds import Limits, prepare, scan
from channels.email.parse import parse
from channels.email.reading import scanned
from channels.email.translate import inbound
from dispatcher.storage.sql import storable
from tests.channels.email.hostile import EXPECTED, RECEIVED, encoded_subject, long_to, raw

SECONDS = 2.0  # far above what each case takes; the unbounded parser took 11-21 s


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_message_reads_as_a_person_must_see_it(name: str) -> None:
    want = EXPECTED[name]
    p = parse(RECEIVED + raw(name))
    assert (p.subject, p.from_address, p.from_name) == (
        want.subject, want.from_address, want.from_name), p.defects
    if want.text is None:
        assert p.text == ""
    else:
        assert want.text in p.text
    assert "\x00" not in p.text and "\ufffd" not in p.text + p.subject + p.from_name
    assert tuple(a.content_type for a in p.attachments) == want.attachments


def test_the_8bit_display_name_and_nul_texts_are_storable() -> None:
    for name in ("latin1-display-name.eml", "qp-nul.eml", "pdf-single-part.eml"):
        m = inbound(raw(name), "support", "a@x.test", ("support@example.com",))
        for value in (m.from_name, m.subject, m.text, m.html):
            value.encode("utf-8")  # no surrogates
            assert "\x00" not in value


def test_a_1_mb_encoded_word_subject_is_cut_in_bounded_time() -> None:
    start = time.perf_counter()
    p = parse(encoded_subject(1_000_000))
    assert time.perf_counter() - start < SECONDS
    assert p.subject.startswith("Grüße aus KölnGrüße") and p.from_address == "big@x.test"
    assert any("subject" in d and "cut" in d for d in p.defects)
    assert p.message_id is None or p.message_id == "big@x.test"


def test_a_long_address_list_is_cut_to_the_address_bound() -> None:
    start = time.perf_counter()
    p = parse(long_to(50_000), Limits(header_bytes=4_000_000, field_bytes=4_000_000))
    assert time.perf_counter() - start < SECONDS
    assert len(p.to_addrs) == 200 and p.subject == "many recipients"
    assert any("over 200 addresses" in d for d in p.defects)


def test_many_mime_parts_are_cut() -> None:
    parts = b"".join(b"--X\r\nContent-Type: text/plain\r\n\r\np\r\n" for _ in range(50_000))
    start = time.perf_counter()
    p = parse(b"From: a@x.test\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n" + parts)
    assert time.perf_counter() - start < SECONDS
    assert any("MIME parts" in d for d in p.defects)


def test_the_scan_reads_what_routing_needs_cheaply() -> None:
    msg = (b'From: "J\xf6rg" <jm@x.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= [#SB-000042]'
           b'\r\nMessage-ID: <m1@x.test>\r\nIn-Reply-To: <p@x.test>\r\nReferences: <o@x.test>'
           b' <p@x.test>\r\n\r\nbody\r\n')
    s = scan(prepare(msg))
    assert (s.from_address, s.from_name, s.subject) == ("jm@x.test", "Jörg", "Grüße [#SB-000042]")
    assert (s.message_id, s.in_reply_to, s.references) == ("m1@x.test", "p@x.test",
                                                           ("o@x.test", "p@x.test"))
    m = scanned(msg, "support", "", (), Limits(), "parse budget exceeded (2 s)")
    assert m.raw == msg and m.subject == "Grüße [#SB-000042]" and m.malformed
    assert "parse budget exceeded (2 s)" in m.defects


def test_storable_removes_nul_and_lone_surrogates_everywhere() -> None:
    assert storable("a\x00b") == "ab"
    clean = storable("J\udcc3\udcb6rg")
    assert clean[0] == "J" and clean[-2:] == "rg" and set(clean[1:-2]) == {"\ufffd"}
    clean.encode("utf-8")
    assert storable({"s": ["x\x00", ("\ud800",)], "n": 1}) == {
        "s": ["x", ["\ufffd" * 3]], "n": 1}
    assert storable(b"\x00raw") == b"\x00raw"


# ------------------------------------------------------------------------ fuzz

HEADERS = st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Message-ID", b"References",
                           b"Content-Type", b"Content-Transfer-Encoding", b"MIME-Version",
                           b"Subject ", b" ", b"", b"From "])
VALUES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"=?utf-8?q?=C3=A9?=", b'"J\xf6rg" <a@b>', b"multipart/mixed; boundary=B",
                     b"text/plain; charset=bogus", b"base64", b"quoted-printable",
                     b"message/rfc822", b"application/pkcs7-mime", b"<a@b> <c@d>",
                     b"a@b, c@d, \"x, y\" <e@f>", b"=00", b"\x00", b"\r\n\t"]),
)
BODIES = st.one_of(st.binary(max_size=2000), st.sampled_from([
    b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n", b"hello=00world\r\n",
    b"--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n--B--\r\n",
    b"\xff\xfe\x00\x01" * 50, b"\r\n\r\n\r\n", b"x" * 3000]))
MESSAGES = st.builds(
    lambda fields, sep, body: b"".join(n + b":" + v + b"\r\n" for n, v in fields) + sep + body,
    st.lists(st.tuples(HEADERS, VALUES), max_size=12), st.sampled_from([b"\r\n", b"\n", b""]),
    BODIES)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(MESSAGES, st.binary(max_size=3000)))
def test_fuzz_parse_and_translate_never_raise_and_keep_the_raw(message: bytes) -> None:
    tiny = Limits(header_bytes=300, field_bytes=120, fields=5, addresses=2, parts=3)
    for limits in (Limits(), tiny):
        m = inbound(message, "support", "", (), parsed=parse(message, limits))
        assert m.raw == message
        for text in (m.subject, m.text, m.html, m.from_name, *m.defects):
            text.encode("utf-8")
            assert "\x00" not in text
        s = scanned(message, "support", "", (), limits, "why")
        assert s.raw == message and "why" in s.defects
