"""G.711 (ITU-T G.711, 1988): µ-law (PCMU, RTP payload type 0) and A-law (PCMA, 8) encoding
and decoding of 16-bit linear PCM, by the standard's segment algorithm, with 64 KiB lookup
tables built once at import (no `audioop`: removed from Python 3.13).

Sits under the phone edge's media (media_worker.py, sounds.py); pure functions, no I/O.
Promises: `encode_ulaw`/`encode_alaw` map little-endian PCM16 bytes to one byte per sample;
`decode_*` the other way; the encoders agree with the ITU reference values (e.g. 0 -> 0xFF
µ-law, 0xD5 A-law; full scale -> 0x00 / 0x2A or 0x80 / 0xAA).
"""

from __future__ import annotations

import array
import sys

ULAW_BIAS = 0x21  # 0x84 >> 2
ULAW_CLIP = 8159
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
SILENCE_ULAW = 0xFF
SILENCE_ALAW = 0xD5


def ulaw_from_linear(sample: int) -> int:
    """One signed 16-bit sample -> its µ-law byte (the reference g711.c: 14-bit magnitude,
    clipped at 8159, biased by 33, segment, 4 bits of mantissa, inverted)."""
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, ULAW_CLIP) + ULAW_BIAS
    segment = 0
    while segment < 8 and value > _ULAW_SEGMENT_ENDS[segment]:
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def linear_from_ulaw(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def alaw_from_linear(sample: int) -> int:
    """One signed 16-bit sample -> its A-law byte (even bits inverted, 0x55)."""
    if sample >= 0:
        sign = 0x80
    else:
        sign = 0
        sample = -sample - 1
    sample = min(sample, 32767) >> 3  # 13-bit magnitude
    if sample < 32:
        value = sample >> 1
    else:
        exponent = 1
        while sample >= 64 and exponent < 7:
            sample >>= 1
            exponent += 1
        value = (exponent << 4) | ((sample >> 1) & 0x0F)
    return (sign | value) ^ 0x55


def linear_from_alaw(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (mantissa << 4) + 8 if exponent == 0 \
        else ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


def _table(fn) -> bytes:
    # index: the 16-bit sample as unsigned (two's complement)
    return bytes(fn(i - 65536 if i >= 32768 else i) for i in range(65536))


_ULAW = _table(ulaw_from_linear)
_ALAW = _table(alaw_from_linear)
_ULAW_DEC = [linear_from_ulaw(b) for b in range(256)]
_ALAW_DEC = [linear_from_alaw(b) for b in range(256)]


def _unsigned(pcm16: bytes) -> array.array:
    samples = array.array("H")
    samples.frombytes(pcm16[: len(pcm16) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def encode_ulaw(pcm16: bytes) -> bytes:
    """Little-endian signed PCM16 -> µ-law bytes."""
    table = _ULAW
    return bytes(table[s] for s in _unsigned(pcm16))


def encode_alaw(pcm16: bytes) -> bytes:
    table = _ALAW
    return bytes(table[s] for s in _unsigned(pcm16))


def _decode(data: bytes, table: list[int]) -> bytes:
    out = array.array("h", (table[b] for b in data))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def decode_ulaw(data: bytes) -> bytes:
    return _decode(data, _ULAW_DEC)


def decode_alaw(data: bytes) -> bytes:
    return _decode(data, _ALAW_DEC)


# µ-law -> A-law through linear (for prompts stored in µ-law and played to a PCMA caller)
ULAW_TO_ALAW = bytes(alaw_from_linear(linear_from_ulaw(b)) for b in range(256))


def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(ULAW_TO_ALAW)
