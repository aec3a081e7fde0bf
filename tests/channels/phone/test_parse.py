"""The SIP parser: RFC 4475's torture messages, the grammar corners they test, framing over UDP
and TCP, and hypothesis: whatever the bytes, parse() raises nothing but ParseError."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.phone.parse import (
    FramingError,
    ParseError,
    Request,
    Response,
    StreamFramer,
    parse,
    parse_address,
    parse_uri,
    split_list,
    unescape,
)
from tests.channels.phone import messages as m
from tests.corpora import MISSING_PARAMS, RFC4475_SIP_TORTURE, corpus, find


def manifest() -> list[tuple[str, str, str]]:
    """(section, file, group) of every torture message; [] when the corpus is missing (read at
    collection, so it never fails: the tests then skip through `torture_file`)."""
    found = find(RFC4475_SIP_TORTURE)
    if found is None:
        return []
    with open(found / "MANIFEST.tsv") as f:
        return [tuple(r) for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]


def torture_file(name: str) -> Path:
    """One torture message; skips (strict: fails) with the reason when the corpus is missing."""
    return corpus(RFC4475_SIP_TORTURE) / name


# Application-layer and compatibility cases: parse (the server then answers 416, 420, 415, 401
# ...), except those whose headers break a parse-level rule (a repeated single header, missing
# From/To/Call-ID).
REFUSED_BY_PARSE = {"insuf.dat", "multi01.dat", "mcl01.dat"}


def torture(*groups: str) -> list:
    """The files of these groups, as parameters (one that skips when the corpus is missing)."""
    if find(RFC4475_SIP_TORTURE) is None:
        return MISSING_PARAMS
    return [name for _, name, g in manifest() if g.startswith(groups)]


@pytest.mark.parametrize("name", torture("valid"))
def test_valid_torture_messages_parse(name):
    msg = parse(torture_file(name).read_bytes())
    assert isinstance(msg, Request | Response)
    msg.vias, msg.from_, msg.to, msg.cseq, msg.contacts()


@pytest.mark.parametrize("name", torture("invalid"))
def test_invalid_torture_messages_are_refused(name):
    with pytest.raises(ParseError) as err:
        parse(torture_file(name).read_bytes())
    e = err.value
    if name == "badvers.dat":
        assert e.status == 505
    else:
        assert e.status == 400
    # requests carry what a 400 needs; responses (scalarlg, bigcode) are just dropped
    is_response = torture_file(name).read_bytes().startswith(b"SIP/")
    assert (e.answerable() is None) == is_response


@pytest.mark.parametrize("name", torture("application", "transaction", "RFC 2543"))
def test_semantic_torture_messages(name):
    data = torture_file(name).read_bytes()
    if name in REFUSED_BY_PARSE:
        with pytest.raises(ParseError):
            parse(data)
    else:
        parse(data)


def test_folding_compact_forms_and_sws():
    msg = parse(torture_file("wsinv.dat").read_bytes())
    assert msg.method == "INVITE"
    assert msg.get("max-forwards") == "0068"
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    vias = msg.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[1].branch == "z9hG4bK9ikj8" and vias[2].branch == "z9hG4bK30239"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    (contact,) = msg.contacts()
    assert contact.display == 'Quoted string ""' and contact.param("q") == "0.33"
    assert msg.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.get("subject") == ""  # `s :` compact form, empty
    assert len(msg.body) == 150


def test_escaped_and_unusual_uris():
    msg = parse(torture_file("esc01.dat").read_bytes())
    assert unescape(msg.request_uri.user) == "sips:user@example.com"
    msg = parse(torture_file("intmeth.dat").read_bytes())
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.request_uri.host == "example.com"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    msg = parse(torture_file("semiuri.dat").read_bytes())
    assert msg.request_uri.user == "user;par=u%40example.net"
    assert split_list(msg.get("accept"))[-1] == "message/sipfrag"


def test_udp_body_cut_by_content_length_and_extra_octets_ignored():
    msg = parse(torture_file("dblreq.dat").read_bytes())
    assert msg.method == "REGISTER" and msg.body == b""
    with pytest.raises(ParseError) as err:  # Content-Length beyond the datagram
        parse(torture_file("clerr.dat").read_bytes())
    assert err.value.answerable() is not None


def test_without_content_length_udp_body_is_the_rest():
    data = m.request("MESSAGE", body="hello").replace(b"Content-Length: 5\r\n", b"")
    assert parse(data).body == b"hello"


def test_round_trip():
    original = parse(torture_file("wsinv.dat").read_bytes())
    again = parse(original.to_bytes())
    assert again.method == original.method and again.uri == original.uri
    assert [v.branch for v in again.vias] == [v.branch for v in original.vias]
    assert again.body == original.body
    assert again.get("content-length") == "150"


def test_address_forms():
    a = parse_address('"A \\"B\\"" <sip:a@b.c;transport=tcp>;tag=x;expires=60')
    assert a.display == 'A "B"' and a.uri.param("transport") == "tcp" and a.tag == "x"
    a = parse_address("sip:a@b.c;tag=y")
    assert a.uri.params == () and a.tag == "y"
    assert parse_address("*", allow_star=True).star
    for bad in ("<sip:a@b.c", '"unterminated <sip:a@b.c>', "A, B <sip:a@b.c>",
                "< sip:a@b.c>", "sip:a@b.c;;", "sip:a@b.c?x=y"):
        with pytest.raises(ParseError):
            parse_address(bad)


def test_uris():
    u = parse_uri("sip:%61lice:pw@[2001:db8::1]:5070;lr;transport=udp?subject=hi")
    assert (u.user, u.host, u.port, u.headers) == ("%61lice", "[2001:db8::1]", 5070,
                                                   "subject=hi")
    assert u.param("lr") == "" and u.aor == "alice@[2001:db8::1]"
    assert parse_uri("tel:+331555").scheme == "tel"
    for bad in ("sip:a@", "sip:a@b:99999", "sip:a b@c", "sip:a@b;%zz", "nocolon"):
        with pytest.raises(ParseError):
            parse_uri(bad)


def test_stream_framer_cuts_messages_and_keeps_partial_ones():
    framer = StreamFramer()
    one = m.request("OPTIONS", transport="TCP")
    two = m.request("MESSAGE", body="hi there", transport="TCP")
    got = framer.feed(b"\r\n\r\n" + one + two[:30])
    assert [x.method for x in got] == ["OPTIONS"]
    got = framer.feed(two[30:-3])
    assert got == []
    (msg,) = framer.feed(two[-3:])
    assert msg.body == b"hi there"


def test_stream_framer_needs_content_length_and_reports_bad_messages():
    framer = StreamFramer()
    bad = m.request("OPTIONS", extra=["CSeq: 2 OPTIONS"])  # CSeq twice: this one is refused
    good = m.request("OPTIONS")
    items = framer.feed(bad + good)
    assert isinstance(items[0], ParseError) and isinstance(items[1], Request)
    with pytest.raises(FramingError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")


# ------------------------------------------------------------------ fuzzing

@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    """The torture messages, for the fuzzers to mutate; missing: skip (strict: fail)."""
    torture = corpus(RFC4475_SIP_TORTURE)
    return [(torture / name).read_bytes() for _, name, _ in manifest()]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_only_parse_error(data):
    with contextlib.suppress(ParseError):
        parse(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=8),
                                     st.integers(0, 8)), max_size=6))
def test_fuzz_mutated_torture_messages_only_parse_error(seeds, data_, edits):
    data = bytearray(data_.draw(st.sampled_from(seeds), label="seed"))
    for pos, insert, delete in edits:
        pos = pos % (len(data) + 1)
        data[pos:pos + delete] = insert
    try:
        msg = parse(bytes(data))
    except ParseError:
        return
    msg.to_bytes()  # what parsed can be written back
    try:
        items = StreamFramer().feed(bytes(data))
    except FramingError:
        return
    for item in items:
        assert isinstance(item, Request | Response | ParseError)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 64))
def test_fuzz_stream_in_pieces_only_framing_errors(seeds, data, size):
    seed = data.draw(st.sampled_from(seeds), label="seed")
    framer = StreamFramer()
    try:
        for i in range(0, len(seed), size):
            for item in framer.feed(seed[i:i + size]):
                assert isinstance(item, Request | Response | ParseError)
    except FramingError:
        pass


TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"


@settings(max_examples=200, deadline=None)
@given(method=st.text(TOKEN_CHARS, min_size=1, max_size=12),
       user=st.text("abcdefghijklmnopqrstuvwxyz0123456789+-_.", min_size=1, max_size=20),
       display=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                     blacklist_characters='"\\'), max_size=20),
       cseq=st.integers(0, 2**31 - 1), body=st.binary(max_size=200))
def test_generated_valid_requests_round_trip(method, user, display, cseq, body):
    raw = "\r\n".join([
        f"{method} sip:{user}@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgen",
        f'From: "{display}" <sip:{user}@example.com>;tag=t1',
        f"To: <sip:{user}@example.com>",
        "Call-ID: gen@192.0.2.1",
        f"CSeq: {cseq} {method}",
        f"Content-Length: {len(body)}",
        "", "",
    ]).encode() + body
    msg = parse(raw)
    again = parse(msg.to_bytes())
    assert (again.method, again.cseq.number, again.body) == (method, cseq, body)
    assert again.from_.display == display
