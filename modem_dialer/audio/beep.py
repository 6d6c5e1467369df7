"""Voicemail beep detection: a steady sine between 440 and 2000 Hz (rules_and_signals.md B.2.4).

Like FreeSWITCH mod_avmd we look for constant frequency and constant amplitude, but with
a plain FFT per 20 ms frame: the frame is "tonal" when one narrow peak holds most of its
energy; a beep is a run of tonal frames whose frequency and level stay put. It is reported
on its trailing edge (as Genesys does), which is when the machine starts recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 8000
_NFFT = 1024
_WINDOW = np.hanning(160)


@dataclass(frozen=True)
class BeepParams:
    min_hz: float = 440.0
    max_hz: float = 2000.0
    min_ms: int = 120  # voicemail beeps last 200 ms to 1 s
    max_ms: int = 5000  # longer than this is a tone, not a beep (report it anyway, at max)
    min_level: float = 200.0  # RMS of the frame (int16 units), below it nothing counts
    purity: float = 0.85  # share of the frame's energy within ±90 Hz of the peak
    max_freq_spread_hz: float = 15.0  # peak frequency vs the run's first frame
    max_level_spread_db: float = 3.0


@dataclass(frozen=True)
class Beep:
    freq_hz: float
    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


class BeepDetector:
    """``feed(frame)`` (160 samples) returns a :class:`Beep` when one has just ended."""

    def __init__(self, params: BeepParams | None = None) -> None:
        self.params = params or BeepParams()
        self._t = 0  # ms of audio fed
        self._run: list[tuple[float, float]] = []  # (freq, rms) of the tonal frames in a row
        self._run_start = 0

    def _analyse(self, frame: np.ndarray) -> tuple[float, float] | None:
        p = self.params
        x = np.asarray(frame, dtype=np.float64)
        rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
        if rms < p.min_level or len(x) != len(_WINDOW):
            return None
        spec = np.abs(np.fft.rfft(x * _WINDOW, _NFFT)) ** 2
        k = int(spec.argmax())
        if 0 < k < len(spec) - 1:  # parabolic interpolation on log power
            a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
            k_f = k + 0.5 * (a - c) / (a - 2 * b + c)
        else:
            k_f = float(k)
        freq = k_f * RATE / _NFFT
        half = round(90 * _NFFT / RATE)
        if spec[max(0, k - half) : k + half + 1].sum() < p.purity * spec.sum():
            return None
        if not p.min_hz <= freq <= p.max_hz:
            return None
        return freq, rms

    def feed(self, frame: np.ndarray) -> Beep | None:
        p = self.params
        start = self._t
        self._t += round(len(frame) * 1000 / RATE)
        tone = self._analyse(frame)
        if tone is not None and self._run:
            f0, l0 = self._run[0]
            same = (
                abs(tone[0] - f0) <= p.max_freq_spread_hz
                and abs(20 * np.log10(tone[1] / l0)) <= p.max_level_spread_db
            )
            if not same:
                ended = self._end(start)
                self._run, self._run_start = [tone], start
                return ended
        if tone is not None:
            if not self._run:
                self._run_start = start
            self._run.append(tone)
            if self._t - self._run_start >= p.max_ms:
                return self._end(self._t)
            return None
        return self._end(start)

    def _end(self, end_ms: int) -> Beep | None:
        run, self._run = self._run, []
        if run and end_ms - self._run_start >= self.params.min_ms:
            return Beep(float(np.mean([f for f, _ in run])), self._run_start, end_ms)
        return None
