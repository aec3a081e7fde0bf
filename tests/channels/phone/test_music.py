"""Music on hold (music.py): the project's own tune, and the file formats of `music_file`."""

from __future__ import annotations

import wave

import pytest

from channels.phone import g711, music


def test_default_tune_is_whole_packets_and_not_silence():
    tune = music.load(None)
    assert len(tune) % 160 == 0 and 8 < len(tune) / 8000 < 12
    assert tune.count(g711.SILENCE_ULAW) < len(tune) // 4


def test_music_files(tmp_path):
    wav = tmp_path / "m.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 1000)
    assert len(music.load(wav)) == 960  # whole 20 ms packets
    (tmp_path / "m.al").write_bytes(bytes([0xD5]) * 320)
    assert music.load(tmp_path / "m.al") == bytes([g711.ulaw_from_linear(8)]) * 320  # A-law 0
    bad = tmp_path / "stereo.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(bytes(400))
    with pytest.raises(ValueError, match="8000 Hz mono"):
        music.load(bad)
    with pytest.raises(ValueError, match="use .wav"):
        music.load(tmp_path / "song.mp3")
