"""The spoken prompts queued callers hear: their texts (English and French), the announcement a
caller gets from their position and expected wait, building the set with espeak-ng, and loading
a set (the default one shipped in channels/phone/sounds/, or `[phone] prompts_dir`).

Sits under the phone edge's media: media.py composes announcements (names), media_worker.py
loads the audio. Building is a build-time tool:

    python -m channels.phone.prompts build DIR     # needs espeak-ng (Debian package)

writes DIR/<lang>/<name>.ul: 8 kHz mono G.711 µ-law, no header (the file names below are the
contract for a recorded set: `prompts_dir` must hold the same names; a missing file is skipped
with a warning when loaded).
"""

from __future__ import annotations

import argparse
import array
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

from . import g711

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent / "sounds"
LANGUAGES = ("en", "fr")
VOICES = {"en": "en-us", "fr": "fr-fr"}
MAX_NUMBER = 20  # positions said as numbers; beyond, "more than twenty callers ahead"
MAX_MINUTES = 30  # expected waits said in minutes; beyond, "more than thirty minutes"
RATE = 8000

FIXED = {
    "welcome": ("Thank you for calling. Please hold, an agent will be with you shortly.",
                "Merci de votre appel. Veuillez patienter, un conseiller va vous répondre."),
    "you_are_number": ("You are number", "Vous êtes le numéro"),
    "in_queue": ("in the queue.", "dans la file d'attente."),
    "more_than_20": ("There are more than twenty callers ahead of you.",
                     "Plus de vingt personnes attendent avant vous."),
    "expected_wait": ("The expected wait is about", "L'attente estimée est d'environ"),
    "more_than_30_minutes": ("more than thirty minutes.", "plus de trente minutes."),
    "callback_press": ("To keep your place and be called back, press",
                       "Pour garder votre place et être rappelé, tapez"),
    "callback_confirm": ("Thank you. We will call you back. Goodbye.",
                         "Merci. Nous vous rappellerons. Au revoir."),
}
FR_MINUTES = {1: "une minute"}


def texts(lang: str) -> dict[str, str]:
    """Every prompt of a language: name -> text."""
    i = LANGUAGES.index(lang)
    out = {name: pair[i] for name, pair in FIXED.items()}
    for n in range(0, MAX_NUMBER + 1):
        out[f"n_{n}"] = str(n)
    for m in range(1, MAX_MINUTES + 1):
        if lang == "fr":
            out[f"min_{m}"] = FR_MINUTES.get(m, f"{m} minutes") + "."
        else:
            out[f"min_{m}"] = f"{m} minute{'s' if m > 1 else ''}."
    return out


def announcement(lang: str, position: int | None, expected_wait: float | None,
                 callback_digit: str = "") -> list[str]:
    """The prompt names of one position announcement (pure): "You are number 3 in the queue.
    The expected wait is about 2 minutes. To keep your place ..., press 1"."""
    names: list[str] = []
    if position is not None and position >= 1:
        if position <= MAX_NUMBER:
            names += ["you_are_number", f"n_{position}", "in_queue"]
        else:
            names.append("more_than_20")
    if expected_wait is not None and expected_wait >= 0:
        minutes = max(1, math.ceil(expected_wait / 60))
        names += ["expected_wait", f"min_{minutes}" if minutes <= MAX_MINUTES
                  else "more_than_30_minutes"]
    if callback_digit.isdigit() and len(callback_digit) == 1:
        names += ["callback_press", f"n_{callback_digit}"]
    return [f"{lang}/{n}" for n in names]


def load(directory: Path | str | None) -> dict[str, bytes]:
    """Every prompt of a set: "<lang>/<name>" -> µ-law bytes (the default set if None)."""
    root = Path(directory) if directory else DEFAULT_DIR
    out: dict[str, bytes] = {}
    for lang in LANGUAGES:
        for name in texts(lang):
            path = root / lang / f"{name}.ul"
            try:
                out[f"{lang}/{name}"] = path.read_bytes()
            except OSError:
                log.warning("prompt %s missing in %s: skipped", f"{lang}/{name}", root)
    return out


# ---------------------------------------------------------------------- building


def _lowpass_taps(cutoff: float, rate: float, count: int = 63) -> list[float]:
    mid = (count - 1) / 2
    taps = []
    for i in range(count):
        x = i - mid
        sinc = 2 * cutoff / rate if x == 0 else math.sin(2 * math.pi * cutoff / rate * x) / (
            math.pi * x)
        window = 0.54 - 0.46 * math.cos(2 * math.pi * i / (count - 1))  # Hamming
        taps.append(sinc * window)
    total = sum(taps)
    return [t / total for t in taps]


def resample(samples: list[int], rate: int, to: int = RATE) -> list[int]:
    """Low-pass (3.4 kHz, windowed sinc) then linear interpolation to `to` Hz. Build time
    only: slow but exact enough for speech."""
    if rate == to:
        return list(samples)
    taps = _lowpass_taps(min(3400.0, to * 0.45), rate)
    half = len(taps) // 2
    n = len(samples)
    out = []
    step = rate / to
    pos = 0.0
    while pos < n - 1:
        i = int(pos)
        frac = pos - i
        acc = 0.0
        for j in (i, i + 1):
            v = 0.0
            for k, t in enumerate(taps):
                idx = j + k - half
                if 0 <= idx < n:
                    v += samples[idx] * t
            acc += v * ((1 - frac) if j == i else frac)
        out.append(max(-32768, min(32767, int(round(acc)))))
        pos += step
    return out


def _trim(samples: list[int], threshold: int = 300, keep: int = 400) -> list[int]:
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    if not loud:
        return samples
    return samples[max(0, loud[0] - keep): loud[-1] + keep]


def speak(text: str, lang: str, espeak: str = "espeak-ng") -> bytes:
    """One prompt: espeak-ng's WAV, trimmed, at 8 kHz, in µ-law."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "p.wav"
        subprocess.run([espeak, "-v", VOICES[lang], "-s", "150", "-w", str(wav_path), text],
                       check=True, capture_output=True)
        with wave.open(str(wav_path), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            frames = w.readframes(w.getnframes())
    if width != 2 or channels != 1:
        raise ValueError(f"espeak-ng wrote {channels} channels of {width} bytes")
    pcm = array.array("h")
    pcm.frombytes(frames)
    if sys.byteorder == "big":
        pcm.byteswap()
    low = resample(_trim(list(pcm)), rate)
    out = array.array("h", low)
    if sys.byteorder == "big":
        out.byteswap()
    return g711.encode_ulaw(out.tobytes())


def build(directory: Path, languages: tuple[str, ...] = LANGUAGES,
          only: tuple[str, ...] | None = None) -> int:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng not found (Debian: apt-get install espeak-ng)")
    count = 0
    for lang in languages:
        (directory / lang).mkdir(parents=True, exist_ok=True)
        for name, text in texts(lang).items():
            if only is not None and name not in only:
                continue
            (directory / lang / f"{name}.ul").write_bytes(speak(text, lang, espeak))
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels.phone.prompts")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the prompt set with espeak-ng")
    b.add_argument("directory", type=Path, nargs="?", default=DEFAULT_DIR)
    b.add_argument("--language", action="append", choices=LANGUAGES)
    args = parser.parse_args(argv)
    n = build(args.directory, tuple(args.language or LANGUAGES))
    print(f"{n} prompts written to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
