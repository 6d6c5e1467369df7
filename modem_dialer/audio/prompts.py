"""Prompts: WAV in and out, telephone level, silence.

Every prompt inside the program is a ``numpy.int16`` array at 8 kHz mono (the modems'
voice ports all speak 8 kHz S16LE, modems.md §5). Files of any rate are resampled with
libsoxr (a band-limiting resampler, rules_and_signals.md B.4.3) and stereo is mixed down.

The WAV reader is our own small RIFF parser rather than :mod:`wave`, because ``wave`` on
Python < 3.12 refuses WAVE_FORMAT_EXTENSIBLE headers (what most editors write for 24-bit)
and trusts the header's data size (espeak-ng ``--stdout`` writes 0x7ffff024 there).
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from modem_dialer.errors import UserError

RATE = 8000
FULL_SCALE = 32767.0

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class Prompt:
    """A ready-to-play prompt: 8 kHz mono int16 samples and where they came from."""

    samples: np.ndarray
    source: str

    @property
    def duration_ms(self) -> float:
        return len(self.samples) * 1000.0 / RATE


def silence(ms: float) -> np.ndarray:
    """``ms`` milliseconds of digital silence at 8 kHz."""
    return np.zeros(round(ms * RATE / 1000), dtype=np.int16)


def _read_riff(path: Path) -> tuple[int, int, int, bytes]:
    """Return (rate, channels, bits, data) of a PCM WAV, or raise UserError."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise UserError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = struct.unpack_from("<4sI", blob, pos)
        body = blob[pos + 8 : pos + 8 + size]  # truncated if the header lies (streamed WAVs)
        if cid == b"fmt ":
            if len(body) < 16:
                raise UserError(f"{path}: corrupt WAV (short fmt chunk)")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            data = body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or data is None:
        raise UserError(f"{path}: corrupt WAV (missing fmt or data chunk)")
    tag, channels, rate, bits = fmt
    if tag == _FLOAT:
        raise UserError(f"{path}: unsupported WAV format: {bits}-bit float (convert to 16-bit PCM)")
    if tag != _PCM:
        raise UserError(f"{path}: unsupported WAV format: compressed (format tag 0x{tag:04x})")
    if bits not in (8, 16, 24, 32) or channels < 1 or rate < 1000:
        raise UserError(f"{path}: unsupported WAV format: {bits}-bit, {channels} channels, {rate} Hz")
    return rate, channels, bits, data


def _to_float(data: bytes, bits: int, channels: int) -> np.ndarray:
    """PCM bytes -> float64 frames x channels, scaled so int16 full scale is 32767."""
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)
    raw = np.frombuffer(data[:usable], dtype=np.uint8)
    if bits == 8:  # 8-bit WAV is unsigned
        x = (raw.astype(np.float64) - 128.0) * 256.0
    elif bits == 16:
        x = raw.view("<i2").astype(np.float64)
    elif bits == 24:
        b = raw.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - (1 << 24), v)
        x = v.astype(np.float64) / 256.0
    else:
        x = raw.view("<i4").astype(np.float64) / 65536.0
    return x.reshape(-1, channels)


def load_wav(path: str | Path) -> np.ndarray:
    """Read a PCM WAV (8/16/24/32-bit, any rate, mono or stereo) as 8 kHz mono int16."""
    path = Path(path)
    rate, channels, bits, data = _read_riff(path)
    frames = _to_float(data, bits, channels)
    mono = frames.mean(axis=1)
    if rate != RATE and len(mono):
        mono = soxr.resample(mono, rate, RATE, quality="HQ")
    return np.clip(np.round(mono), -32768, 32767).astype(np.int16)


def load_prompt(path: str | Path, target_dbfs: float | None = -22.0) -> Prompt:
    """Load a WAV as a :class:`Prompt`, normalised to telephone level unless ``target_dbfs`` is None."""
    samples = load_wav(path)
    if target_dbfs is not None:
        samples = normalise(samples, target_dbfs)
    return Prompt(samples=samples, source=str(path))


def save_wav(path: str | Path, samples: np.ndarray) -> None:
    """Write 8 kHz mono S16LE (recordings, generated prompts)."""
    pcm = np.asarray(samples, dtype=np.int16).astype("<i2", copy=False)
    try:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.tobytes())
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None


def active_rms_dbfs(samples: np.ndarray) -> float:
    """RMS of the active (speech) part, in dB relative to full-scale amplitude.

    A light version of ITU-T P.56: 20 ms frames count as active when they are above
    -55 dBFS and within 30 dB of the loudest frame, so pauses don't dilute the level
    (RFC 7874 §4: measure active speech only).
    """
    x = np.asarray(samples, dtype=np.float64)
    n = len(x) // 160 * 160
    if n == 0:
        return float("-inf") if not np.any(x) else 20 * np.log10(np.sqrt(np.mean(x**2)) / FULL_SCALE)
    frames = x[:n].reshape(-1, 160)
    energy = np.mean(frames**2, axis=1)
    loudest = energy.max()
    if loudest <= 0:
        return float("-inf")
    floor = max(loudest * 10 ** (-30 / 10), (FULL_SCALE * 10 ** (-55 / 20)) ** 2)
    active = energy[energy >= floor]
    return float(10 * np.log10(active.mean() / FULL_SCALE**2))


def _limit(x: np.ndarray, ceiling: float, window: int = 40) -> np.ndarray:
    """Smooth peak limiter: no sample above ``ceiling``, gain changes over ~5 ms.

    The needed per-sample gain is min-filtered then box-averaged over the same width,
    which keeps the smoothed gain below the needed gain at every peak (each averaged
    value covers the peak) while avoiding the clicks of a hard clip.
    """
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-9))
    if need.min() >= 1.0:
        return x
    w = 2 * window + 1
    padded = np.pad(need, window, constant_values=1.0)
    view = np.lib.stride_tricks.sliding_window_view(padded, w)
    floor = view.min(axis=1)
    smooth = np.convolve(np.pad(floor, window, mode="edge"), np.ones(w) / w, mode="valid")
    return np.clip(x * np.minimum(smooth, need), -ceiling, ceiling)


def normalise(samples: np.ndarray, target_dbfs: float = -22.0, peak_dbfs: float = -3.0) -> np.ndarray:
    """Scale to telephone level: active-speech RMS at ``target_dbfs`` (RFC 7874: -19 dBm0
    ≈ -22 dBFS), then peak-limit at ``peak_dbfs`` so the modem's own gain cannot clip it."""
    level = active_rms_dbfs(samples)
    if not np.isfinite(level):
        return np.asarray(samples, dtype=np.int16).copy()
    gain = 10 ** ((target_dbfs - level) / 20)
    x = np.asarray(samples, dtype=np.float64) * gain
    x = _limit(x, FULL_SCALE * 10 ** (peak_dbfs / 20))
    return np.round(x).astype(np.int16)
