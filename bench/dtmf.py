"""DTMF detector figures: speed (× real time, one channel, one core), detection rate on
the Q.24 sweeps, false detections on speech-like audio.

    .venv/bin/python bench/dtmf.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem_dialer.audio.dtmf import KEYS, DtmfDetector, generate_dtmf, generate_sequence
from modem_dialer.audio.dtmf import detect_keys as detect
from modem_dialer.audio.prompts import normalise
from modem_dialer.sim.voice import VOWEL_FORMANTS, vowel


def speed(x: np.ndarray, frame: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        d = DtmfDetector()
        t = time.perf_counter()
        for i in range(0, len(x), frame):
            d.feed(x[i : i + frame])
        best = min(best, time.perf_counter() - t)
    return len(x) / 8000 / best


def sweep_rate(make, cases: int = 4) -> float:  # type: ignore[no-untyped-def]
    ok = total = 0
    for k in KEYS:
        for lead in range(cases):
            x = np.concatenate([np.zeros(400 + 29 * lead, np.int16), make(k), np.zeros(800, np.int16)])
            got = detect(x)
            total += 1
            ok += [g[0] for g in got] == [k]
    return ok / total


def main() -> None:
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(0, 3000, 8000 * 60), -32768, 32767).astype(np.int16)
    keys = generate_sequence(KEYS * 40, 60, 60)
    print("speed (× real time, one channel, one core):")
    for name, x in (
        ("noise (speech level)", noise),
        ("back-to-back keys", keys),
        ("silence", np.zeros(8000 * 60, np.int16)),
    ):
        print(f"  {name:22s} 20 ms frames {speed(x, 160):7.0f}×   1 s chunks {speed(x, 8000):7.0f}×")

    print("detection rate (16 keys × 4 alignments):")
    for dev in (0.0, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.05):
        r = sweep_rate(lambda k: generate_dtmf(k, 60, freq_dev=dev))  # noqa: B023
        r2 = sweep_rate(lambda k: generate_dtmf(k, 60, freq_dev=(-dev, dev)))  # noqa: B023
        print(
            f"  freq dev ±{dev * 100:4.1f} %       {r * 100:5.1f} % (same sign)  {r2 * 100:5.1f} % (opposite)"
        )
    for lvl in (0, -10, -20, -30, -33, -36, -40):
        print(f"  level {lvl:4d} dBFS peak   {sweep_rate(lambda k: generate_dtmf(k, 60, lvl)) * 100:5.1f} %")  # noqa: B023
    for tw in (-5, -4, -3.5, 0, 7, 8, 9):
        print(
            f"  twist {tw:+5.1f} dB         {sweep_rate(lambda k, tw=tw: generate_dtmf(k, 60, twist_db=tw)) * 100:5.1f} %"
        )
    for ms in (20, 24, 26, 30, 35, 40):
        print(f"  duration {ms:3d} ms        {sweep_rate(lambda k: generate_dtmf(k, ms), 12) * 100:5.1f} %")  # noqa: B023
    for snr in (20, 15, 12, 10):
        ok = total = 0
        for k in KEYS:
            for _ in range(4):
                tone = generate_dtmf(k, 50, -12).astype(float)
                x = np.concatenate([np.zeros(400), tone, np.zeros(800)])
                x += rng.normal(0, np.sqrt(np.mean(tone**2) / 10 ** (snr / 10)), len(x))
                total += 1
                ok += [g[0] for g in detect(np.clip(x, -32768, 32767).astype(np.int16))] == [k]
        print(f"  white noise S/N {snr} dB   {ok / total * 100:5.1f} %")

    print("false detections:")
    print(f"  white noise 60 s            {len(detect(noise))}")
    formants = VOWEL_FORMANTS
    for bw, label in ((0.1, "vowels, formant Q 10"), (0.04, "vowels, formant Q 25 (adversarial)")):
        false, secs = 0, 0.0
        for f0 in np.arange(80, 320, 2.1):
            for fm in formants:
                false += len(detect(vowel(float(f0), fm, 0.5, rng, bandwidth=bw)))
                secs += 0.5
        print(f"  {label:34s} {false} in {secs / 60:.1f} min")
    if shutil.which("espeak-ng"):
        from modem_dialer.audio.tts import synthesise

        text = Path(__file__).read_text()[:3000]  # any English-ish text will do
        false_s: list[tuple[str, int]] = []
        secs = 0.0
        with tempfile.TemporaryDirectory() as cache:
            for voice in ("en", "en-us", "en+f3", "en+m3", "fr", "de", "es", "it"):
                for speed_wpm in (130, 180):
                    x = normalise(synthesise(text, voice, cache, speed_wpm), -16.0)
                    secs += len(x) / 8000
                    false_s += detect(x)
        print(f"  espeak-ng speech             {len(false_s)} in {secs / 60:.1f} min")


if __name__ == "__main__":
    main()
