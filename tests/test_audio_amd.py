"""Answering-machine and beep detection on synthetic calls and espeak-ng speech."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from modem_dialer.audio.amd import AmdParams, AmdResult, AnsweringMachineDetector, Verdict
from modem_dialer.audio.beep import Beep, BeepDetector

RNG = np.random.default_rng(11)


def words(pattern: list[tuple[int, int]], amp: float = 4000) -> np.ndarray:
    """(voice ms, silence ms) pairs -> voiced noise bursts with pauses, plus a little line noise."""
    parts = []
    for voice, gap in pattern:
        parts.append(RNG.normal(0, amp, voice * 8))
        parts.append(np.zeros(gap * 8))
    x = np.concatenate(parts) + RNG.normal(0, 30, sum(v + g for v, g in pattern) * 8)
    return np.clip(x, -32768, 32767).astype(np.int16)


def tone(hz: float, ms: int, amp: float = 8000) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(ms * 8) / 8000)).astype(np.int16)


def run_amd(x: np.ndarray, params: AmdParams | None = None) -> AmdResult | None:
    amd = AnsweringMachineDetector(params)
    for i in range(0, len(x) - 159, 160):
        r = amd.feed(x[i : i + 160])
        if r is not None:
            assert amd.feed(x[i : i + 160]) is None  # a verdict is given once
            return r
    return None


def run_beep(x: np.ndarray) -> list[Beep]:
    det = BeepDetector()
    return [b for i in range(0, len(x) - 159, 160) if (b := det.feed(x[i : i + 160])) is not None]


def test_short_hello_then_silence_is_human() -> None:
    x = np.concatenate([np.zeros(4000, np.int16), words([(400, 2000)])])
    r = run_amd(x)
    assert r is not None and r.verdict is Verdict.HUMAN
    assert r.reason.startswith("HUMAN-800") and r.at_ms == 500 + 400 + 800


def test_two_words_then_silence_is_human() -> None:
    r = run_amd(words([(300, 150), (350, 1500)]))
    assert r is not None and r.verdict is Verdict.HUMAN


def test_long_greeting_then_beep_is_machine_and_beep_found() -> None:
    greeting = words([(1200, 120), (900, 150), (1300, 400)])
    x = np.concatenate([np.zeros(2400, np.int16), greeting, tone(1000, 400), np.zeros(8000, np.int16)])
    r = run_amd(x)
    assert r is not None and r.verdict is Verdict.MACHINE
    assert r.reason.split("-")[0] in {"LONGGREETING", "MAXWORDS"}
    beeps = run_beep(x)
    assert len(beeps) == 1 and abs(beeps[0].freq_hz - 1000) < 5
    start = (2400 // 8) + 1200 + 120 + 900 + 150 + 1300 + 400
    assert abs(beeps[0].start_ms - start) <= 20 and abs(beeps[0].duration_ms - 400) <= 40


def test_many_short_words_is_machine() -> None:
    r = run_amd(words([(150, 80)] * 6 + [(0, 1000)]))
    assert r is not None and r.verdict is Verdict.MACHINE and r.reason == "MAXWORDS-3-2"


def test_initial_silence_is_machine() -> None:
    r = run_amd(np.zeros(8000 * 4, np.int16))
    assert r is not None and r.verdict is Verdict.MACHINE and r.reason == "INITIALSILENCE-2500-2500"


def test_undecided_is_notsure_and_params_apply() -> None:
    # words separated by pauses too short to be "after greeting silence", few enough words,
    # greeting threshold raised: nothing decides before the total analysis time.
    p = AmdParams(greeting_ms=10_000, maximum_number_of_words=50, total_analysis_ms=3000)
    r = run_amd(words([(200, 300)] * 12), p)
    assert r is not None and r.verdict is Verdict.NOTSURE and r.at_ms == 3000
    loud_floor = AmdParams(silence_threshold=20_000)  # everything counts as silence
    r2 = run_amd(words([(2000, 0)] * 2), loud_floor)
    assert r2 is not None and r2.reason.startswith("INITIALSILENCE")


def test_beep_not_found_in_speech_or_noise() -> None:
    assert run_beep(words([(500, 100)] * 8)) == []
    assert run_beep(tone(1000, 60)) == []  # too short
    assert run_beep(tone(300, 600)) == []  # out of band
    chirp = (8000 * np.sin(2 * np.pi * np.cumsum(np.linspace(600, 1600, 4800)) / 8000)).astype(np.int16)
    assert run_beep(chirp) == []  # not constant frequency


@pytest.mark.parametrize("hz", [440.0, 850.0, 1400.0, 1950.0])
def test_beep_frequencies(hz: float) -> None:
    x = np.concatenate([np.zeros(800, np.int16), tone(hz, 300, 3000), np.zeros(800, np.int16)])
    beeps = run_beep(x)
    assert len(beeps) == 1 and abs(beeps[0].freq_hz - hz) < 5


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_hello_vs_voicemail(tmp_path: Path) -> None:
    from modem_dialer.audio.prompts import normalise
    from modem_dialer.audio.tts import synthesise

    hello = normalise(synthesise("Hello?", "en", tmp_path), -22.0)
    human = np.concatenate([np.zeros(3200, np.int16), hello, np.zeros(16000, np.int16)])
    r = run_amd(human)
    assert r is not None and r.verdict is Verdict.HUMAN
    greeting = normalise(
        synthesise(
            "Hi, you have reached Sam. I cannot take your call right now, leave a message.", "en", tmp_path
        ),
        -22.0,
    )
    machine = np.concatenate([np.zeros(3200, np.int16), greeting, tone(1000, 500), np.zeros(8000, np.int16)])
    r = run_amd(machine)
    assert r is not None and r.verdict is Verdict.MACHINE
    beeps = run_beep(machine)
    assert len(beeps) == 1 and abs(beeps[0].end_ms - (400 + len(greeting) // 8 + 500)) <= 20
