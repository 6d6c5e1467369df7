"""espeak-ng synthesis through the real binary, with its on-disk cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from modem_dialer.audio import tts
from modem_dialer.audio.prompts import active_rms_dbfs
from modem_dialer.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_synthesise_8k_and_cached(tmp_path: Path) -> None:
    x = tts.synthesise("Press one to confirm.", "en", tmp_path)
    assert x.dtype == np.int16 and 0.8 < len(x) / 8000 < 4
    assert active_rms_dbfs(x) > -40  # real speech, not silence
    files = list(tmp_path.glob("*.wav"))
    assert len(files) == 1
    # A cache hit must not run espeak-ng: make it unreachable and synthesise again.
    mtime = files[0].stat().st_mtime_ns
    saved = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path / "nowhere")
    try:
        y = tts.synthesise("Press one to confirm.", "en", tmp_path)
    finally:
        os.environ["PATH"] = saved
    assert np.array_equal(x, y) and files[0].stat().st_mtime_ns == mtime


def test_key_depends_on_voice_text_speed(tmp_path: Path) -> None:
    a = tts.synthesise("Hello there.", "en", tmp_path)
    b = tts.synthesise("Hello there.", "en", tmp_path, speed=220)
    c = tts.synthesise("Hello there.", "fr", tmp_path)
    assert len(list(tmp_path.glob("*.wav"))) == 3
    assert len(b) < len(a) and not np.array_equal(a[: len(c)], c[: len(a)])


def test_text_starting_with_dash_is_spoken(tmp_path: Path) -> None:
    x = tts.synthesise("-v xx --help", "en", tmp_path)
    assert len(x) > 4000


def test_unknown_voice(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown voice 'zz-nope'"):
        tts.synthesise("hi", "zz-nope", tmp_path)


def test_missing_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"espeak-ng not installed: apt-get install espeak-ng"):
        tts.synthesise("hi", "en", tmp_path / "cache")
