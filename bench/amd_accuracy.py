"""Answering-machine detection accuracy on a synthetic set, and beep timing.

Humans: a short "hello" (one or two words, 0.3-0.9 s) after 0.1-1.2 s, then silence.
Machines: a greeting of 5-16 words (2-6 s) with short pauses, silence, then a 440-2000 Hz
beep. Each is heard at a random level with a comfort-noise floor, like GSM audio. The
detector (audio/amd.py, app_amd defaults) and the beep detector (audio/beep.py) get the
audio in 20 ms frames exactly as during a call.

    .venv/bin/python bench/amd_accuracy.py [N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem_dialer.audio.amd import AnsweringMachineDetector, Verdict
from modem_dialer.audio.beep import BeepDetector
from modem_dialer.sim.voice import pause, sine, word


def human(rng: np.random.Generator, i: int) -> np.ndarray:
    parts = [pause(int(rng.integers(100, 1200)))]
    for w in range(int(rng.choice([1, 1, 1, 2]))):
        parts += [word(int(rng.integers(300, 700 if w == 0 else 400)), float(rng.uniform(100, 250)), seed=i * 7 + w),
                  pause(int(rng.integers(80, 300)))]
    parts.append(pause(4000))
    return np.concatenate(parts)


def machine(rng: np.random.Generator, i: int) -> tuple[np.ndarray, int]:
    """The greeting, and the sample where its beep ends."""
    parts = [pause(int(rng.integers(100, 900)))]
    for w in range(int(rng.integers(5, 17))):
        parts += [word(int(rng.integers(150, 450)), float(rng.uniform(90, 220)), seed=i * 31 + w),
                  pause(int(rng.integers(40, 250)))]
    parts += [pause(int(rng.integers(200, 900))), sine(float(rng.uniform(450, 1900)), int(rng.integers(200, 800)))]
    beep_end = sum(len(p) for p in parts)
    parts.append(pause(1500))
    return np.concatenate(parts), beep_end


def heard(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random level (-12..+6 dB) plus a comfort-noise floor (mean |x| 10-60)."""
    gain = 10 ** (rng.uniform(-12, 6) / 20)
    noise = rng.normal(0, rng.uniform(12, 75), len(x))
    return np.clip(x * gain + noise, -32768, 32767).astype(np.int16)


def run(x: np.ndarray) -> tuple[Verdict, int, list[int]]:
    amd, beeps = AnsweringMachineDetector(), BeepDetector()
    verdict, at, found = Verdict.NOTSURE, -1, []
    for i in range(0, len(x) - 159, 160):
        frame = x[i : i + 160]
        r = amd.feed(frame)
        if r is not None and at < 0:
            verdict, at = r.verdict, r.at_ms
        b = beeps.feed(frame)
        if b is not None:
            found.append(b.end_ms)
    return verdict, at, found


def main(n: int) -> None:
    rng = np.random.default_rng(20261129)
    t0 = time.perf_counter()
    table = {"human": {v: 0 for v in Verdict}, "machine": {v: 0 for v in Verdict}}
    human_ms, machine_ms, beep_err, beep_miss, false_beeps = [], [], [], 0, 0
    audio_s = 0.0
    for i in range(n):
        x = heard(human(rng, i), rng)
        audio_s += len(x) / 8000
        v, at, found = run(x)
        table["human"][v] += 1
        false_beeps += len(found)
        if v is Verdict.HUMAN:
            human_ms.append(at)
        y, beep_end = machine(rng, i)
        y = heard(y, rng)
        audio_s += len(y) / 8000
        v, at, found = run(y)
        table["machine"][v] += 1
        if v is Verdict.MACHINE:
            machine_ms.append(at)
        if found:
            beep_err.append(min(abs(f - beep_end / 8) for f in found))
        else:
            beep_miss += 1
    wall = time.perf_counter() - t0
    print(f"synthetic set: {n} humans, {n} machines (app_amd defaults, silence threshold 256)")
    print(f"{'truth':<9}{'HUMAN':>8}{'MACHINE':>9}{'NOTSURE':>9}")
    for truth, row in table.items():
        print(f"{truth:<9}{row[Verdict.HUMAN]:>8}{row[Verdict.MACHINE]:>9}{row[Verdict.NOTSURE]:>9}")
    right = table["human"][Verdict.HUMAN] + table["machine"][Verdict.MACHINE]
    print(f"accuracy {100 * right / (2 * n):.1f} %  (NOTSURE counted wrong)")
    print(f"humans judged machines (would be abandoned calls in skip mode): "
          f"{100 * table['human'][Verdict.MACHINE] / n:.1f} %")
    print(f"decision time: human median {np.median(human_ms):.0f} ms, machine median {np.median(machine_ms):.0f} ms")
    print(f"beep: found on {100 * (n - beep_miss) / n:.1f} % of machines, end within "
          f"{np.percentile(beep_err, 95):.0f} ms (p95) of the truth; false beeps on humans: {false_beeps}")
    print(f"speed: {audio_s / wall:.0f}x real time (AMD + beep detector, one core)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
