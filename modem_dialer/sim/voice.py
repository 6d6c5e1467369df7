"""Synthetic callee audio for the simulator: voice-like greetings and measuring tones.

Kept separate from the dialer's audio code on purpose (like ``audio_port.tone``): the
simulator must not share code with what it tests. A "word" is a burst of harmonics with
a syllable-rate envelope, loud enough to be voice for an energy detector; a human says
one short word then waits; an answering machine speaks several seconds, pauses, beeps.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000


def word(ms: int, pitch: float = 140.0, level: float = 3000.0, seed: int = 0) -> np.ndarray:
    """One voiced burst: harmonics of ``pitch`` with a smooth attack/decay and some noise."""
    rng = np.random.default_rng(seed)
    n = int(RATE * ms / 1000)
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 12))
    x = x + 0.2 * rng.standard_normal(n)
    env = np.sin(np.pi * np.arange(n) / max(n, 1)) ** 0.5
    x = x * env * (4 + np.sin(2 * np.pi * 4 * t)) / 5
    return (x / (np.abs(x).max() or 1) * level).astype(np.int16)


def pause(ms: int) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000), dtype=np.int16)


def write_tone_wav(path: str | Path, seconds: float, hz: float = 440.0, level: float = 8000.0) -> None:
    """A mono 8 kHz WAV of a pure tone: the message file of tests and benches."""
    n = int(RATE * seconds)
    s = (np.sin(np.arange(n) * 2 * np.pi * hz / RATE) * level).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(s.tobytes())


def sine(hz: float, ms: int, level: float = 6000.0) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def human_greeting(seed: int = 0) -> np.ndarray:
    """A short "Hello?" (one word, ~0.5 s) after a short delay, then silence."""
    return np.concatenate([pause(300), word(500, 160, seed=seed), pause(3000)])


def machine_greeting(seed: int = 0, words: int = 10, beep_hz: float = 1000.0) -> np.ndarray:
    """"Hi, you've reached … leave a message after the tone" (~3.5 s of words), silence, beep."""
    rng = np.random.default_rng(seed)
    parts = [pause(200)]
    for i in range(words):
        parts += [word(int(rng.integers(180, 420)), float(rng.uniform(110, 190)), seed=seed + i),
                  pause(int(rng.integers(60, 160)))]
    parts += [pause(600), sine(beep_hz, 400), pause(200)]
    return np.concatenate(parts)


def greeting(kind: str, seed: int = 0) -> np.ndarray:
    if kind == "human":
        return human_greeting(seed)
    if kind == "machine":
        return machine_greeting(seed)
    raise ValueError(f"unknown greeting {kind!r} (human or machine)")


def tone_share(pcm: bytes | np.ndarray, hz: float, frame: int = 160) -> float:
    """Share of 20 ms frames whose energy is mostly at ``hz`` (±40 Hz): how much of a
    recorded direction carried that tone. Used to check what each side of a bridge heard."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray)) else np.asarray(pcm)
    n = len(x) // frame
    if n == 0:
        return 0.0
    frames = x[: n * frame].reshape(n, frame).astype(np.float64)
    spec = np.abs(np.fft.rfft(frames * np.hanning(frame), 1024, axis=1)) ** 2
    freqs = np.fft.rfftfreq(1024, 1 / RATE)
    band = (freqs > hz - 40) & (freqs < hz + 40)
    total = spec.sum(axis=1)
    loud = total > 1e6 * frame
    hit = loud & (spec[:, band].sum(axis=1) > 0.6 * total)
    return float(hit.sum()) / n


# First three formants (Hz) of eight vowels, for speech-like test signals (talk-off checks).
VOWEL_FORMANTS: list[tuple[float, float, float]] = [
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
    (660, 1720, 2410), (490, 1350, 1690), (640, 1190, 2390), (440, 1020, 2240),
]


def vowel(f0: float, formants: tuple[float, ...], seconds: float, rng: np.random.Generator,
          bandwidth: float = 0.1) -> np.ndarray:
    """A sung vowel: glottal harmonics (−12 dB/octave) through formant resonances, slight
    vibrato. A narrow ``bandwidth`` puts most energy in few harmonics (adversarial for DTMF)."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = np.zeros(len(t))
    for h in range(1, int(3400 / f0)):
        f = h * f0
        gain = sum(1 / np.sqrt((1 - (f / fm) ** 2) ** 2 + (f * bandwidth / fm) ** 2) for fm in formants) / h
        x += gain * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    return (x / np.abs(x).max() * 20000).astype(np.int16)
