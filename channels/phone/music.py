"""Music on hold: the project's own default tune, synthesised by this code (no third-party
audio: a short melody in C major over a bass line, soft sine tones with attack and release,
looped), or `[phone] music_file` in its place.

Sits under the phone edge's media: media_worker.py loads it once at start (about 0.2 s of CPU
for the default tune). Promises: `load(path)` returns 8 kHz mono µ-law bytes, a whole number of
20 ms packets long; a WAV file must be 8 kHz mono PCM16; a `.ul`/`.ulaw`/`.mu` file is raw
µ-law, `.al`/`.alaw` raw A-law; anything else raises ValueError (checked at the edge's start).
"""

from __future__ import annotations

import array
import math
import sys
import wave
from pathlib import Path

from . import g711

RATE = 8000
PACKET = 160
BEAT = 0.30  # seconds per beat
# (MIDI note, beats) — an original melody, 32 beats, written for this project
MELODY = [
    (72, 1), (76, 1), (79, 2), (77, 1), (76, 1), (74, 2),
    (72, 1), (74, 1), (76, 1), (79, 1), (77, 2), (76, 2),
    (74, 1), (77, 1), (81, 2), (79, 1), (77, 1), (76, 2),
    (74, 1), (72, 1), (71, 1), (74, 1), (72, 4),
]
BASS = [(48, 4), (53, 4), (55, 4), (48, 4), (50, 4), (53, 4), (55, 4), (48, 4)]
RAW_ULAW = (".ul", ".ulaw", ".mu")
RAW_ALAW = (".al", ".alaw")


def _freq(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _voice(notes: list[tuple[int, int]], amplitude: float, out: list[float]) -> None:
    pos = 0
    for note, beats in notes:
        n = int(beats * BEAT * RATE)
        step = 2 * math.pi * _freq(note) / RATE
        attack, release = int(0.02 * RATE), int(0.08 * RATE)
        for i in range(n):
            env = min(1.0, i / attack, (n - i) / release) if n > release else 0.0
            env *= math.exp(-1.5 * i / n)
            s = math.sin(step * i) + 0.3 * math.sin(2 * step * i)
            if pos + i < len(out):
                out[pos + i] += amplitude * env * s
        pos += n


def default_tune() -> bytes:
    """The default tune as 8 kHz PCM16 (little-endian), about 9.6 s."""
    total = int(sum(b for _, b in MELODY) * BEAT * RATE)
    total -= total % PACKET
    mix = [0.0] * total
    _voice(MELODY, 5000.0, mix)
    _voice(BASS, 3500.0, mix)
    pcm = array.array("h", (max(-32768, min(32767, int(v))) for v in mix))
    if sys.byteorder == "big":
        pcm.byteswap()
    return pcm.tobytes()


def _whole_packets(data: bytes) -> bytes:
    usable = len(data) - len(data) % PACKET
    if usable <= 0:
        raise ValueError("music: shorter than one 20 ms packet")
    return data[:usable]


def load(path: str | Path | None) -> bytes:
    """The music as µ-law bytes (the default tune when `path` is empty)."""
    if not path:
        return _whole_packets(g711.encode_ulaw(default_tune()))
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in RAW_ULAW:
        return _whole_packets(p.read_bytes())
    if suffix in RAW_ALAW:
        return _whole_packets(g711.encode_ulaw(g711.decode_alaw(p.read_bytes())))
    if suffix == ".wav":
        try:
            with wave.open(str(p), "rb") as w:
                if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                    raise ValueError(f"music_file {p}: need 8000 Hz mono 16-bit PCM, got "
                                     f"{w.getframerate()} Hz, {w.getnchannels()} channel(s), "
                                     f"{8 * w.getsampwidth()}-bit")
                frames = w.readframes(w.getnframes())
        except wave.Error as e:
            raise ValueError(f"music_file {p}: {e}") from None
        return _whole_packets(g711.encode_ulaw(frames))
    raise ValueError(f"music_file {p}: use .wav (8 kHz mono PCM16), .ul (µ-law) or .al (A-law)")
