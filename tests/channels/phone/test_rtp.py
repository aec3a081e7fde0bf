"""RTP packets (RFC 3550), RFC 4733 digits and the SDP offer/answer of queue media (rtp.py)."""

from __future__ import annotations

from channels.phone import rtp

OFFER = (
    "v=0\r\no=c 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def test_packet_round_trip_and_numbering_wraps():
    s = rtp.Stream(0, ssrc=0xDEADBEEF, sequence=0xFFFF, timestamp=0xFFFFFF00)
    first = rtp.parse(s.packet(b"\xff" * 160))
    second = rtp.parse(s.packet(b"\xff" * 160))
    assert (first.payload_type, first.ssrc, first.sequence, first.marker) == (0, 0xDEADBEEF,
                                                                             0xFFFF, True)
    assert (second.sequence, second.marker) == (0, False)
    assert second.timestamp == (0xFFFFFF00 + 160) & 0xFFFFFFFF
    assert second.payload == b"\xff" * 160
    data = s.packet(b"x")
    assert data[0] == 0x80 and len(data) == 13  # V=2, no padding/extension/CSRC


def test_parse_refuses_what_is_not_rtp_and_skips_csrc_extension_padding():
    assert rtp.parse(b"\x80\x00") is None
    assert rtp.parse(b"\x40" + bytes(11)) is None  # version 1
    assert rtp.parse(b"\x80\xc8" + bytes(10)) is None  # RTCP SR on the same port
    # 1 CSRC, an extension of 1 word, 2 bytes of padding
    data = bytes([0xB1, 0x00]) + bytes(10) + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXTN" \
        + b"ab" + b"\x00\x02"
    assert rtp.parse(data).payload == b"ab"


def event(ts: int, digit: int, end: bool, seq: int = 0) -> rtp.Packet:
    return rtp.parse(rtp.build(101, seq, ts, 7, rtp.event_payload(digit, end)))


def test_dtmf_once_per_event_despite_repeated_end_packets():
    rx = rtp.DtmfReceiver(101)
    got = [rx.packet(event(1000, 1, False)), rx.packet(event(1000, 1, False)),
           rx.packet(event(1000, 1, True)), rx.packet(event(1000, 1, True)),
           rx.packet(event(1000, 1, True))]
    assert got == [None, None, "1", None, None]
    # the same digit again is a new event (another timestamp)
    assert [rx.packet(event(3000, 1, True)), rx.packet(event(3000, 1, True))] == ["1", None]
    # '#' and '*'; audio packets and flash (16) are no digits
    assert rx.packet(event(5000, 11, True)) == "#" and rx.packet(event(6000, 10, True)) == "*"
    assert rx.packet(rtp.parse(rtp.build(0, 1, 7000, 7, b"\xff" * 160))) is None
    assert rx.packet(event(8000, 16, True)) is None


def test_dtmf_whose_end_packets_were_lost_is_reported_by_the_next_event():
    rx = rtp.DtmfReceiver(101)
    assert rx.packet(event(1000, 4, False)) is None
    assert rx.packet(event(2000, 2, False)) == "4"
    assert rx.packet(event(2000, 2, True)) == "2"
    assert rx.packet(event(1000, 4, True)) is None  # late end of a reported event


def test_offer_and_choice_prefer_pcmu_and_find_telephone_event():
    offer = rtp.offer_of(OFFER)
    assert (offer.address, offer.port, offer.payload_types) == ("10.0.0.5", 40000, (8, 0, 101))
    choice = rtp.choose(offer)
    assert (choice.payload_type, choice.event_type) == (0, 101)
    pcma_only = rtp.offer_of(OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 8"))
    assert rtp.choose(pcma_only) == rtp.Choice(8, None)
    assert rtp.codec_of(rtp.choose(pcma_only), pcma_only) == rtp.PCMA
    # a dynamic type named PCMU is PCMU; G.722 alone is not for us; port 0 refuses the stream
    dyn = rtp.offer_of("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000")
    assert rtp.choose(dyn) == rtp.Choice(96, None)
    assert rtp.choose(rtp.offer_of(OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 9"))) is None
    assert rtp.offer_of(OFFER.replace("m=audio 40000", "m=audio 0")) is None
    assert rtp.choose(rtp.offer_of(OFFER + "a=inactive\r\n")) is None
    assert rtp.offer_of("v=0\r\nm=video 5 RTP/AVP 96\r\n") is None
    # media-level c= wins over the session's
    media_c = OFFER.replace("a=rtpmap:8", "c=IN IP4 192.0.2.9\r\na=rtpmap:8")
    assert rtp.offer_of(media_c).address == "192.0.2.9"


def test_answer_names_our_address_port_codec_and_events():
    offer = rtp.offer_of(OFFER)
    sdp = rtp.answer_sdp("127.0.0.1", 30000, rtp.choose(offer), offer, 42)
    assert "c=IN IP4 127.0.0.1\r\n" in sdp and "m=audio 30000 RTP/AVP 0 101\r\n" in sdp
    assert "a=rtpmap:0 PCMU/8000" in sdp and "a=fmtp:101 0-16" in sdp
    assert sdp.startswith("v=0\r\no=switchboard 42 42 IN IP4 127.0.0.1") and "a=sendrecv" in sdp
    back = rtp.offer_of(sdp)
    assert (back.address, back.port, back.payload_types) == ("127.0.0.1", 30000, (0, 101))
