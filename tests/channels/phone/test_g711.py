"""G.711 against the ITU-T reference points and the reference codec's round trip (g711.py)."""

from __future__ import annotations

import array
import sys

from channels.phone import g711


def pcm(*samples: int) -> bytes:
    a = array.array("h", samples)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def test_reference_points_ulaw():
    # G.711 Table 2a: 0 -> 0xFF (positive zero), full scale -> 0x80 / 0x00; -1 -> 0x7E as in
    # the reference codec (Sun g711.c, audioop: arithmetic shift of the 14-bit value)
    assert g711.encode_ulaw(pcm(0, 32767, -32768, -1, 1)) == bytes([0xFF, 0x80, 0x00, 0x7E, 0xFF])
    # the boundary of segments 0 and 1: 120 is the last of segment 0, 124 the first of 1
    assert g711.ulaw_from_linear(120) == 0xF0 and g711.ulaw_from_linear(124) == 0xEF
    assert g711.linear_from_ulaw(0xFF) == 0 and g711.linear_from_ulaw(0x80) == 32124
    assert g711.linear_from_ulaw(0x00) == -32124


def test_reference_points_alaw():
    # G.711 Table 1a: even bits inverted; 0 -> 0xD5, +full -> 0xAA, -full -> 0x2A
    assert g711.encode_alaw(pcm(0, 32767, -32768)) == bytes([0xD5, 0xAA, 0x2A])
    assert g711.linear_from_alaw(0xD5) == 8 and g711.linear_from_alaw(0x55) == -8
    assert g711.linear_from_alaw(0xAA) == 32256


def test_round_trip_is_within_a_quantisation_step_and_monotonic():
    samples = list(range(-32768, 32768, 97))
    for encode, decode, one in ((g711.encode_ulaw, g711.decode_ulaw, g711.ulaw_from_linear),
                                (g711.encode_alaw, g711.decode_alaw, g711.alaw_from_linear)):
        back = array.array("h")
        back.frombytes(decode(encode(pcm(*samples))))
        if sys.byteorder == "big":
            back.byteswap()
        for s, b in zip(samples, back, strict=True):
            assert abs(s - b) <= max(16, abs(s) // 16), (one.__name__, s, b)
        assert list(back) == sorted(back)  # monotonic: louder never decodes quieter


def test_ulaw_to_alaw_translation_matches_the_decoded_value():
    for byte in range(256):
        direct = g711.alaw_from_linear(g711.linear_from_ulaw(byte))
        assert g711.ulaw_to_alaw(bytes([byte])) == bytes([direct])
