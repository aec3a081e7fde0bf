"""The prompt set (prompts.py): announcements composed from position and wait, the shipped
default set complete in both languages, and building with espeak-ng."""

from __future__ import annotations

import shutil

import pytest

from channels.phone import prompts


def test_announcement_names():
    assert prompts.announcement("en", 3, 100.0) == [
        "en/you_are_number", "en/n_3", "en/in_queue", "en/expected_wait", "en/min_2"]
    assert prompts.announcement("fr", 21, 31 * 60.0 + 1, "1") == [
        "fr/more_than_20", "fr/expected_wait", "fr/more_than_30_minutes",
        "fr/callback_press", "fr/n_1"]
    # no figures from the core: nothing but the callback offer (if any)
    assert prompts.announcement("en", None, None) == []
    assert prompts.announcement("en", 1, 0.0) == ["en/you_are_number", "en/n_1", "en/in_queue",
                                                  "en/expected_wait", "en/min_1"]


def test_default_set_is_shipped_complete_at_8khz_ulaw():
    loaded = prompts.load(None)
    for lang in prompts.LANGUAGES:
        for name in prompts.texts(lang):
            audio = loaded[f"{lang}/{name}"]
            assert 0.2 < len(audio) / 8000 < 6.0, (lang, name, len(audio))
            assert len(set(audio)) > 20  # speech, not silence
    assert len(loaded) == 2 * len(prompts.texts("en"))


def test_build_with_espeak(tmp_path):
    if shutil.which("espeak-ng") is None:
        from tests.support import missing
        missing("espeak-ng is not installed")
    assert prompts.build(tmp_path, ("fr",), only=("callback_confirm", "n_7")) == 2
    audio = (tmp_path / "fr" / "callback_confirm.ul").read_bytes()
    assert 1.0 < len(audio) / 8000 < 6.0


@pytest.mark.parametrize("samples", [[0] * 441, [1000, -1000] * 300])
def test_resample_length(samples):
    out = prompts.resample(samples, 22050)
    assert abs(len(out) - len(samples) * 8000 / 22050) <= 1
