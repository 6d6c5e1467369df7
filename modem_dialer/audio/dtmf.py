"""In-band DTMF: a streaming detector and a generator.

Detector (rules_and_signals.md B.1): single-bin DFTs at the 8 DTMF frequencies over
102-sample windows (what a Goertzel filter computes, done as one matrix product for all
8 frequencies and all blocks of a chunk instead of a per-sample Python recursion).

The windows advance by half a block (51 samples). Each window is tested like Asterisk and
spandsp do (absolute level, twist, relative peak within each group, tones-to-total energy).
A key starts when three consecutive windows (two full 102-sample blocks of signal) hit the
same key *and* two checks that a single 102-sample Goertzel cannot make pass:

- steadiness: the two tone powers stay within ``steady_db`` across those windows, so
  windows only partly filled by a short burst do not count (≤ 20 ms bursts are rejected,
  ≥ 40 ms tones always contain three full windows);
- frequency: the phase advance of each tone's DFT between windows 51 samples apart gives
  its frequency to a fraction of a hertz, unambiguous within ±78 Hz; keys whose tones are
  off by more than ``max_freq_dev`` are rejected. A 102-sample bin is ~78 Hz wide, so
  power alone cannot tell 1.5 % (accept) from 3.5 % (reject) at 697 Hz (10 vs 24 Hz).

A key ends after ``misses_to_end`` windows that do not hit it, so a held key is one press,
a 10 ms drop-out inside a tone is tolerated, and a 40 ms pause separates two presses.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RATE = 8000
HALF = 51
WIN = 2 * HALF  # 102 samples, 12.75 ms: the classic DTMF block
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
FREQS = np.array(ROWS + COLS)
KEYS = "123A456B789C*0#D"
FULL_SCALE = 32767.0

_w = 2 * np.pi * FREQS / RATE
_n = np.arange(HALF)
_BASIS_C = np.exp(-1j * np.outer(_n, _w))  # half-block DFT at the 8 frequencies
_TWIST_SLACK_DB = 2.0
_ROT = np.exp(-1j * _w * HALF)  # brings the second half's phase reference to the window start
_INT16 = np.dtype(np.int16)
# Quiet frames (the usual case: a callee listening) are recognised on their bytes: a sample
# in [-256, 255] has a high byte of 0x00 or 0xff, so deleting those from the high bytes
# leaves nothing. One C pass, no float conversion (see DtmfDetector.feed).
_HIGH_BYTE = 1 if sys.byteorder == "little" else 0
_SMALL_HIGH_BYTES = b"\x00\xff"
_SMALL_PEAK = 256


@dataclass(frozen=True)
class DtmfParams:
    """Receiver limits (defaults: the AT&T column of Q.24 as used by Asterisk/spandsp)."""

    min_level_dbfs: float = -40.0  # per tone, 0 dBFS = full-scale sine
    normal_twist_db: float = 8.0  # row (low group) louder than column
    reverse_twist_db: float = 4.0  # column louder than row
    relative_peak_db: float = 8.0  # best tone vs others in its group
    energy_ratio_db: float = -0.7  # both tones vs all energy, over the run, off-bin loss undone
    window_ratio_db: float = -1.5  # same, per window, before correction (a pre-screen)
    max_freq_dev: float = 0.025  # midway between must-accept 1.5 % and must-reject 3.5 %
    steady_db: float = 2.5
    hits_to_begin: int = 4  # consecutive windows (hop 51): 255 samples, 32 ms
    misses_to_end: int = 4


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


_NO_SAMPLES = _readonly(np.zeros(0, dtype=np.float64))
_NO_DFT = _readonly(np.zeros(8, dtype=np.complex128))
_NO_HX = _readonly(np.empty((0, 8), dtype=np.complex128))
_DEFAULT_PARAMS = DtmfParams()


@functools.lru_cache(maxsize=16)
def _limits(p: DtmfParams) -> tuple[float, ...]:
    """A detector's thresholds from its params, in the units feed() compares (computed once
    per set of params: every answered call makes a detector)."""
    min_power = 10 ** (p.min_level_dbfs / 10)
    normal = 10 ** (p.normal_twist_db / 10)
    reverse = 10 ** (p.reverse_twist_db / 10)
    # Per window the twist is only pre-screened: leakage from the other group's tone
    # makes one window's reading wobble by ±1 dB; the limit proper applies to the
    # powers summed over the run (in _confirm).
    normal_loose = normal * 10 ** (_TWIST_SLACK_DB / 10)
    reverse_loose = reverse * 10 ** (_TWIST_SLACK_DB / 10)
    relpeak = 10 ** (-p.relative_peak_db / 10)
    ratio = 10 ** (p.window_ratio_db / 10)
    run_ratio = 10 ** (p.energy_ratio_db / 10) * WIN / 2
    steady = 10 ** (-p.steady_db / 10)
    # |X|^2 of a sine of amplitude A is (A*WIN/2)^2 and its window energy A^2*WIN/2:
    # compare tone powers with energies in the same |X|^2 units.
    min_power = min_power * (WIN * FULL_SCALE / 2) ** 2
    ratio = ratio * WIN / 2
    # A window below this energy cannot hold two tones at the minimum level.
    energy_floor = 2 * min_power / (WIN / 2)
    return (min_power, normal, reverse, normal_loose, reverse_loose, relpeak, ratio, run_ratio, steady,
            energy_floor)


class DtmfDetector:
    """Streaming detector: ``feed(samples) -> [(key, start_sample), ...]``.

    ``start_sample`` counts from the first sample ever fed. A key is reported once, when it
    is recognised (about 30 ms after the tone starts).
    """

    def __init__(self, rate: int = RATE, params: DtmfParams | None = None) -> None:
        if rate != RATE:
            raise ValueError(f"DtmfDetector works at {RATE} Hz, got {rate}")
        self.params = p = params or _DEFAULT_PARAMS
        (self._min_power, self._normal, self._reverse, self._normal_loose, self._reverse_loose, self._relpeak,
         self._ratio, self._run_ratio, self._steady, self._energy_floor) = _limits(p)
        # shared read-only empties (a call makes a detector: no arrays of its own until it
        # hears sound); each is replaced, never written in place
        self._pending = _NO_SAMPLES
        self._half_index = 0  # global index of the next half-block
        self._prev_x = _NO_DFT
        self._prev_tail: np.ndarray | None = None  # the last half-block, its DFT not taken yet
        self._prev_e = 0.0
        self._hx = _NO_HX
        self._he_buf = _NO_SAMPLES
        self._run_key = -1
        self._run: list[tuple[int, np.ndarray, float]] = []  # (start sample, X[8], energy) per window
        self._before_run: tuple[int, np.ndarray] | None = None  # the window just before the run
        self._last_win: tuple[int, np.ndarray] | None = None
        self._active = -1
        self._misses = 0
        # Quiet chunks taken without analysis (see feed): the last one and how many samples.
        # Sound only if a window of such samples is under the energy floor (default params: yes).
        self._skip_small = WIN * _SMALL_PEAK**2 < self._energy_floor
        self._small_before = False   # the last chunk fed was all small samples (and >= one window)
        self._skipped: np.ndarray | None = None
        self._skipped_n = 0

    def reset(self) -> None:
        self.__init__(RATE, self.params)  # type: ignore[misc]

    def feed(self, samples: np.ndarray) -> list[tuple[str, int]]:
        # Fastest path, for frame after frame of a quiet line: every sample of this chunk and
        # of the one before is in [-256, 255] (-42 dBFS), so no window that ends in this chunk
        # can reach the energy floor (102 * 256^2 < floor): nothing to analyse. The chunk is
        # only remembered; the state the full path needs (pending samples, the last
        # half-block) is rebuilt from it when a chunk that is not quiet comes (_catch_up).
        small = (self._skip_small and samples.dtype is _INT16 and len(samples) >= WIN
                 and not samples.tobytes()[_HIGH_BYTE::2].translate(None, _SMALL_HIGH_BYTES))
        if small and self._small_before and self._active < 0 and not self._run:
            self._skipped = samples
            self._skipped_n += len(samples)
            return []
        if self._skipped is not None:
            self._catch_up()
        self._small_before = small
        if self._pending.size:
            x = np.concatenate((self._pending, samples), dtype=np.float64)   # one copy, not two
        else:
            x = np.asarray(samples, dtype=np.float64)
        n_half = len(x) // HALF
        self._pending = x[n_half * HALF :]
        if n_half == 0:
            return []
        if self._active < 0 and not self._run and self._half_index > 0:
            # Quiet chunk (the usual case: a callee listening): if even the energy of all of
            # it plus the carried half-block is under the floor, no window can hold a tone.
            # Keep only the state the next chunk needs, at a fraction of the full analysis
            # (this runs for every 20 ms frame of every call).
            # (np.dot: a third of the cost of ``@`` on vectors this short; the last
            # half-block's DFT is taken only if the next chunk needs it)
            whole = x[: n_half * HALF]
            if self._prev_e + float(np.dot(whole, whole)) < self._energy_floor:
                tail = whole[-HALF:]
                self._prev_tail, self._prev_e = tail, float(np.dot(tail, tail))
                self._half_index += n_half
                self._last_win = None
                return []
        # Row 0 holds the previous chunk's last half-block, so windows straddle chunks.
        halves = x[: n_half * HALF].reshape(n_half, HALF)
        hx = self._hx_buf(n_half + 1)
        he = self._he_buf[: n_half + 1]
        if self._prev_tail is not None:
            self._prev_x, self._prev_tail = self._prev_tail @ _BASIS_C, None
        hx[0], he[0] = self._prev_x, self._prev_e
        hx[1:] = halves @ _BASIS_C
        np.einsum("ij,ij->i", halves, halves, out=he[1:])
        first = (self._half_index - 1) * HALF  # start sample of the first window
        self._half_index += n_half
        self._prev_x, self._prev_e = hx[-1].copy(), float(he[-1])
        if first < 0:  # very first chunk: there is no previous half-block
            hx, he, first = hx[1:], he[1:], 0
            if len(hx) < 2:
                return []
        energy = he[:-1] + he[1:]
        last = self._last_win
        if self._active < 0 and not self._run and energy.max() < self._energy_floor:
            self._last_win = None  # silence: nothing before a future run worth keeping
            return []
        win = hx[:-1] + hx[1:] * _ROT  # windows of 102 samples, hop 51
        self._last_win = (first + (len(win) - 1) * HALF, win[-1])
        keys = self._hits(win, energy)
        if self._active < 0 and not self._run and keys.max() < 0:
            return []  # fast path: speech or noise with no candidate at all
        return self._track(keys, win, energy, first, last)

    def _catch_up(self) -> None:
        """The state after the skipped quiet chunks, as the quiet path below leaves it: the
        stream's last samples that do not fill a half-block are pending, the half-block
        before them is the last one (its DFT not taken yet). The last skipped chunk holds
        them all (chunks of at least WIN samples; pending + half-block < WIN)."""
        x, n = self._skipped, self._skipped_n
        assert x is not None
        self._skipped, self._skipped_n = None, 0
        total = self._half_index * HALF + len(self._pending) + n
        self._half_index, rest = divmod(total, HALF)
        end = len(x) - rest
        self._pending = x[end:].astype(np.float64)
        tail = x[end - HALF : end].astype(np.float64)
        self._prev_tail, self._prev_e = tail, float(np.dot(tail, tail))
        self._last_win = None

    def _hx_buf(self, n: int) -> np.ndarray:
        if len(self._hx) < n:
            self._hx = np.empty((n, 8), dtype=np.complex128)
            self._he_buf = np.empty(n)
        return self._hx[:n]

    def _hits(self, win: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Per-window key index (0..15) or -1, all tests vectorised over windows."""
        power = (win.real**2 + win.imag**2).reshape(-1, 2, 4)  # [window, group, tone]
        best_i = power.argmax(axis=2)
        ranked = np.sort(power, axis=2)
        best, second = ranked[:, :, 3], ranked[:, :, 2]
        rp, cp = best[:, 0], best[:, 1]
        ok = (rp >= self._min_power) & (cp >= self._min_power)
        ok &= (cp <= rp * self._reverse_loose) & (rp <= cp * self._normal_loose)
        ok &= np.all(second <= best * self._relpeak, axis=1)
        ok &= (rp + cp) >= self._ratio * energy  # the pair carries nearly all the energy
        return np.where(ok, best_i[:, 0] * 4 + best_i[:, 1], -1)

    def _track(
        self,
        keys: np.ndarray,
        win: np.ndarray,
        energy: np.ndarray,
        first: int,
        last: tuple[int, np.ndarray] | None,
    ) -> list[tuple[str, int]]:
        p = self.params
        out: list[tuple[str, int]] = []
        for i, k in enumerate(keys.tolist()):
            if self._active >= 0:
                if k == self._active:
                    self._misses = 0
                    continue
                self._misses += 1
                if self._misses < p.misses_to_end:
                    continue
                self._active = -1
                self._run_key, self._run = -1, []
            if k < 0:
                self._run_key, self._run = -1, []
                continue
            if k != self._run_key:
                self._run_key, self._run = k, []
                self._before_run = (first + (i - 1) * HALF, win[i - 1]) if i > 0 else last
            self._run.append((first + i * HALF, win[i], float(energy[i])))
            if len(self._run) >= p.hits_to_begin and self._confirm(k):
                out.append((KEYS[k], self._start_estimate(k)))
                self._active, self._misses = k, 0
                self._run_key, self._run = -1, []
        return out

    def _confirm(self, k: int) -> bool:
        """Steadiness and frequency checks over the last ``hits_to_begin`` windows."""
        r, c = k // 4, 4 + k % 4
        run = self._run[-self.params.hits_to_begin :]
        xs = np.array([x for _, x, _ in run])[:, [r, c]]
        # Sum of both tones: with 8 dB twist, leakage from the strong tone makes the weak
        # one's power wobble by ~2 dB from window to window; the sum does not.
        tone_pw = xs.real**2 + xs.imag**2
        pw = tone_pw.sum(axis=1)
        if pw.min() < pw.max() * self._steady:
            return False
        row, col = tone_pw.sum(axis=0)
        if col > row * self._reverse or row > col * self._normal:
            return False
        adv = np.sum(xs[1:] * np.conj(xs[:-1]), axis=0) * np.exp(-1j * _w[[r, c]] * HALF)
        dev_hz = np.angle(adv) * RATE / (2 * np.pi * HALF)
        if np.any(np.abs(dev_hz) > self.params.max_freq_dev * FREQS[[r, c]]):
            return False
        # Energy test with each tone's power divided by the window's response at the
        # measured offset: a 1.5 % tone at 1633 Hz loses 1.4 dB in a 102-sample bin,
        # which would otherwise force a loose threshold that lets vowels through.
        gain = _window_gain(dev_hz)
        energy = sum(e for _, _, e in run)
        return bool((tone_pw / gain).sum() >= self._run_ratio * energy)

    def _start_estimate(self, k: int) -> int:
        """Tone start: the earliest window that holds a good part of the tone, moved right
        by the part of it the tone did not fill (a window filled over a fraction f has f
        times the steady DFT amplitude). The window before the run often holds part of
        the tone without passing the hit tests.
        """
        r, c = k // 4, 4 + k % 4
        steady = float(np.abs(self._run[-1][1][[r, c]]).sum())
        before = (self._before_run[0], self._before_run[1]) if self._before_run is not None else None
        first = (self._run[0][0], self._run[0][1])
        candidates = [before, first] if before is not None else [first]
        for start, x in candidates:
            frac = min(1.0, float(np.abs(x[[r, c]]).sum()) / steady) if steady > 0 else 1.0
            if frac >= 0.2:
                return start + round((1.0 - frac) * WIN)
        return self._run[0][0]


def _window_gain(dev_hz: np.ndarray) -> np.ndarray:
    """Power response of a 102-sample rectangular DFT bin to a tone ``dev_hz`` away."""
    a = np.pi * np.asarray(dev_hz) / RATE
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (np.sin(a * WIN) / (WIN * np.sin(a))) ** 2
    return np.where(np.abs(a) < 1e-9, 1.0, g)


def _key_freqs(key: str) -> tuple[float, float]:
    i = KEYS.find(key.upper()) if len(key) == 1 else -1
    if i < 0:
        raise ValueError(f"not a DTMF key: {key!r} (expected one of {KEYS})")
    return ROWS[i // 4], COLS[i % 4]


def generate_dtmf(
    key: str,
    ms: float,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    freq_dev: float | tuple[float, float] = 0.0,
    rate: int = RATE,
) -> np.ndarray:
    """One DTMF tone as int16.

    ``level_dbfs``: peak of the two-tone sum (0 = just reaches full scale, never clips).
    ``twist_db``: row level minus column level (> 0 "normal twist", < 0 "reverse twist").
    ``freq_dev``: relative frequency error, one value for both tones or (row, column).
    """
    fr, fc = _key_freqs(key)
    dr, dc = (freq_dev, freq_dev) if isinstance(freq_dev, (int, float)) else freq_dev
    ar = 1.0
    ac = 10 ** (-twist_db / 20)
    peak = FULL_SCALE * 10 ** (level_dbfs / 20) / (ar + ac)
    t = np.arange(round(ms * rate / 1000)) / rate
    x = peak * (ar * np.sin(2 * np.pi * fr * (1 + dr) * t) + ac * np.sin(2 * np.pi * fc * (1 + dc) * t))
    return np.round(x).astype(np.int16)


def detect_keys(x: np.ndarray, frame: int = 160) -> list[tuple[str, int]]:
    """Run a fresh detector over ``x`` fed in ``frame``-sample chunks, as a call would."""
    d = DtmfDetector()
    out: list[tuple[str, int]] = []
    for i in range(0, len(x), frame):
        out += d.feed(x[i : i + frame])
    return out


def generate_sequence(
    keys: str | Sequence[str],
    on_ms: float = 80.0,
    off_ms: float = 80.0,
    level_dbfs: float = -10.0,
    lead_ms: float = 0.0,
    rate: int = RATE,
) -> np.ndarray:
    """Keys separated by ``off_ms`` of silence, after ``lead_ms`` of silence."""
    gap = np.zeros(round(off_ms * rate / 1000), dtype=np.int16)
    parts = [np.zeros(round(lead_ms * rate / 1000), dtype=np.int16)]
    for k in keys:
        parts += [generate_dtmf(k, on_ms, level_dbfs, rate=rate), gap]
    return np.concatenate(parts)
