"""Prompt loading, levels and WAV writing, on real files in tmp_path."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from modem_dialer.audio.prompts import (
    Prompt,
    active_rms_dbfs,
    load_prompt,
    load_wav,
    normalise,
    save_wav,
    silence,
)
from modem_dialer.errors import UserError


def _write_pcm(path: Path, rate: int, channels: int, width: int, frames: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def _sine(rate: int, hz: float, seconds: float, amp: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * hz * t)


def _tone_at(x: np.ndarray, hz: float) -> float:
    """Share of the signal's energy within ±20 Hz of hz (8 kHz)."""
    spec = np.abs(np.fft.rfft(x.astype(float))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(spec[np.abs(f - hz) < 20].sum() / spec.sum())


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_resamples_any_rate_to_8k(tmp_path: Path, rate: int) -> None:
    x = np.round(_sine(rate, 1000, 1.0, 10000)).astype("<i2")
    _write_pcm(tmp_path / "a.wav", rate, 1, 2, x)
    y = load_wav(tmp_path / "a.wav")
    assert y.dtype == np.int16
    assert abs(len(y) - 8000) <= 1
    assert _tone_at(y[100:-100], 1000) > 0.99
    assert abs(np.abs(y[200:-200]).max() - 10000) < 200


def test_resampling_removes_content_above_4k(tmp_path: Path) -> None:
    x = np.round(_sine(48000, 6000, 1.0, 10000) + _sine(48000, 500, 1.0, 10000)).astype("<i2")
    _write_pcm(tmp_path / "a.wav", 48000, 1, 2, x)
    y = load_wav(tmp_path / "a.wav")
    assert _tone_at(y[200:-200], 500) > 0.99  # 6 kHz must not alias down to 2 kHz


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = _sine(8000, 500, 0.5, 8000)
    right = _sine(8000, 1500, 0.5, 8000)
    frames = np.round(np.stack([left, right], axis=1)).astype("<i2")
    _write_pcm(tmp_path / "s.wav", 8000, 2, 2, frames)
    y = load_wav(tmp_path / "s.wav")
    assert np.allclose(y, np.round((left + right) / 2), atol=1)


def test_8_and_24_bit(tmp_path: Path) -> None:
    x = _sine(8000, 700, 0.25, 0.5)  # half scale
    u8 = np.round(128 + 127 * x).astype(np.uint8)
    _write_pcm(tmp_path / "u8.wav", 8000, 1, 1, u8)
    i24 = np.round(x * 8388607).astype(np.int32)
    packed = np.stack([i24 & 0xFF, (i24 >> 8) & 0xFF, (i24 >> 16) & 0xFF], axis=1).astype(np.uint8)
    _write_pcm(tmp_path / "s24.wav", 8000, 1, 3, packed)
    a = load_wav(tmp_path / "u8.wav")
    b = load_wav(tmp_path / "s24.wav")
    ref = x * 32767
    assert np.abs(a - ref).max() < 300  # 8-bit quantisation
    assert np.abs(b - ref).max() <= 1


def _raw_wav(path: Path, tag: int, bits: int, data: bytes, channels: int = 1, rate: int = 8000) -> None:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_errors_name_the_file(tmp_path: Path) -> None:
    cases = {
        "missing.wav": ("file not found", None),
        "text.wav": ("not a WAV", b"hello world, not audio"),
        "empty.wav": ("not a WAV", b""),
    }
    for name, (msg, content) in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(UserError) as e:
            load_wav(p)
        assert str(p) in str(e.value) and msg in str(e.value) and "\n" not in str(e.value)
    _raw_wav(tmp_path / "float.wav", 3, 32, np.zeros(100, "<f4").tobytes())
    with pytest.raises(UserError, match=r"float\.wav: unsupported WAV format: 32-bit float"):
        load_wav(tmp_path / "float.wav")
    _raw_wav(tmp_path / "gsm.wav", 0x31, 0, b"\0" * 65)
    with pytest.raises(UserError, match=r"gsm\.wav: unsupported WAV format: compressed"):
        load_wav(tmp_path / "gsm.wav")
    d = tmp_path / "dir.wav"
    d.mkdir()
    with pytest.raises(UserError, match=r"dir\.wav: cannot read"):
        load_wav(d)


def test_streamed_wav_with_bogus_size(tmp_path: Path) -> None:
    """espeak-ng --stdout writes 0x7ffff024 as the data size."""
    x = np.arange(-500, 500, dtype="<i2")
    p = tmp_path / "bogus.wav"
    _raw_wav(p, 1, 16, x.tobytes())
    blob = bytearray(p.read_bytes())
    blob[40:44] = struct.pack("<I", 0x7FFFF024)
    p.write_bytes(bytes(blob))
    assert np.array_equal(load_wav(p), x)


def test_save_then_load_is_exact(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(-32768, 32767, 4000).astype(np.int16)
    save_wav(tmp_path / "r.wav", x)
    with wave.open(str(tmp_path / "r.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert np.array_equal(load_wav(tmp_path / "r.wav"), x)


def test_silence_length() -> None:
    assert len(silence(20)) == 160 and not silence(500).any() and silence(1).dtype == np.int16


def _speechlike(seconds: float, amp: float) -> np.ndarray:
    """Bursts of modulated harmonics with pauses: peaks well above the RMS, like speech."""
    rng = np.random.default_rng(1)
    t = np.arange(int(8000 * seconds)) / 8000
    x = sum(np.sin(2 * np.pi * 140 * h * t + rng.uniform(0, 6)) / h for h in range(1, 20))
    envelope = (np.sin(2 * np.pi * 3 * t) > 0.2) * np.abs(np.sin(2 * np.pi * 7 * t))
    return x * envelope * amp


@pytest.mark.parametrize("amp", [300.0, 3000.0, 30000.0])
def test_normalise_to_telephone_level(amp: float) -> None:
    x = np.clip(_speechlike(3, amp), -32768, 32767).astype(np.int16)
    y = normalise(x, -22.0)
    assert abs(active_rms_dbfs(y) - -22.0) < 1.0
    assert np.abs(y.astype(int)).max() <= round(32767 * 10 ** (-3 / 20)) + 1  # peak-limited, no clip
    assert not np.any(y[x == 0])  # pauses stay silent


def test_normalise_limits_peaks_without_clipping() -> None:
    x = _speechlike(3, 2000)
    x[4000:4004] = 30000  # a click that the gain alone would send far past full scale
    y = normalise(np.round(x).astype(np.int16), -16.0)
    ceiling = round(32767 * 10 ** (-3 / 20))
    assert np.abs(y.astype(int)).max() <= ceiling + 1
    assert abs(active_rms_dbfs(y) - -16.0) < 1.5
    # the limiter acts around the peak only: a second away the gain is the plain gain
    gain = y[12000:16000].astype(float) @ x[12000:16000] / (x[12000:16000] @ x[12000:16000])
    near = y[4000] / 30000
    assert near < gain / 2


def test_normalise_silence_is_unchanged() -> None:
    assert not normalise(np.zeros(800, np.int16)).any()


def test_load_prompt(tmp_path: Path) -> None:
    save_wav(tmp_path / "p.wav", np.clip(_speechlike(1, 1000), -32768, 32767).astype(np.int16))
    p = load_prompt(tmp_path / "p.wav")
    assert isinstance(p, Prompt) and p.source.endswith("p.wav")
    assert abs(active_rms_dbfs(p.samples) + 22) < 1 and abs(p.duration_ms - 1000) < 1
