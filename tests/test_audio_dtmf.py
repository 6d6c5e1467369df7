"""In-band DTMF detector against synthetic sweeps (Q.24 limits) and speech-like signals.

Each sweep asserts a detection rate over all 16 keys and several tone alignments with the
20 ms frame grid, since a detector can pass at one phase and fail at another.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_dialer.audio.dtmf import KEYS, DtmfDetector, generate_dtmf, generate_sequence
from modem_dialer.audio.dtmf import detect_keys as detect
from modem_dialer.audio.prompts import normalise
from modem_dialer.sim.voice import VOWEL_FORMANTS, vowel

LEADS = (0, 37, 77, 130)


def pad(tone: np.ndarray, lead: int = 400, tail: int = 800) -> np.ndarray:
    return np.concatenate([np.zeros(lead, np.int16), tone, np.zeros(tail, np.int16)])


def rate(make: Callable[[str], np.ndarray]) -> float:
    """Share of (key, alignment) cases detected as exactly one press of the right key."""
    ok = total = 0
    for k in KEYS:
        for lead in LEADS:
            got = detect(pad(make(k), 400 + lead))
            total += 1
            ok += got == [(k, got[0][1])] if got else False
    return ok / total


def test_every_key_and_its_start() -> None:
    for k in KEYS:
        for lead in range(0, 160, 9):
            got = detect(pad(generate_dtmf(k, 60), 400 + lead))
            assert len(got) == 1 and got[0][0] == k
            assert abs(got[0][1] - (400 + lead)) <= 16  # within 2 ms


@pytest.mark.parametrize("dev", [0.0, 0.005, 0.01, 0.015])
def test_accepts_frequency_within_1_5_percent(dev: float) -> None:
    for sign in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
        assert rate(lambda k: generate_dtmf(k, 60, freq_dev=(sign[0] * dev, sign[1] * dev))) == 1.0  # noqa: B023


@pytest.mark.parametrize("dev", [0.035, 0.045, 0.06, 0.1])
def test_rejects_frequency_beyond_3_5_percent(dev: float) -> None:
    for which in ((dev, 0), (-dev, 0), (0, dev), (0, -dev), (dev, dev), (-dev, -dev)):
        assert rate(lambda k: generate_dtmf(k, 60, freq_dev=which)) == 0.0  # noqa: B023


@pytest.mark.parametrize("level", [0.0, -6.0, -15.0, -24.0, -30.0])
def test_levels_down_to_minus_30(level: float) -> None:
    assert rate(lambda k: generate_dtmf(k, 50, level)) == 1.0


def test_too_quiet_is_ignored() -> None:
    assert rate(lambda k: generate_dtmf(k, 100, -45.0)) == 0.0


@pytest.mark.parametrize("twist", [-3.5, -2.0, 0.0, 4.0, 7.0])
def test_twist_accepted(twist: float) -> None:
    assert rate(lambda k: generate_dtmf(k, 60, -10, twist_db=twist)) == 1.0


@pytest.mark.parametrize("twist", [-5.0, -8.0, 9.5, 12.0])
def test_twist_rejected(twist: float) -> None:
    assert rate(lambda k: generate_dtmf(k, 60, -10, twist_db=twist)) == 0.0


@pytest.mark.parametrize("ms", [40, 45, 60, 200, 1000])
def test_durations_from_40ms_detected_once(ms: int) -> None:
    assert rate(lambda k: generate_dtmf(k, ms)) == 1.0


@pytest.mark.parametrize("ms", [10, 15, 20])
def test_bursts_up_to_20ms_ignored(ms: int) -> None:
    for k in KEYS:
        for lead in range(0, 102, 3):
            assert detect(pad(generate_dtmf(k, ms), 400 + lead)) == []


def test_held_key_is_one_press_and_gap_makes_two() -> None:
    held = generate_dtmf("5", 3000)
    assert [k for k, _ in detect(pad(held))] == ["5"]
    two = np.concatenate([generate_dtmf("5", 60), np.zeros(320, np.int16), generate_dtmf("5", 60)])
    assert [k for k, _ in detect(pad(two))] == ["5", "5"]


def test_short_dropout_inside_a_tone_is_tolerated() -> None:
    tone = generate_dtmf("9", 200)
    tone[800:880] = 0  # 10 ms interruption
    assert [k for k, _ in detect(pad(tone))] == ["9"]


def test_fast_sequence_and_chunk_sizes() -> None:
    keys = "1234567890*#ABCD"
    x = generate_sequence(keys * 3, on_ms=45, off_ms=45, lead_ms=100)
    expected = detect(x, 160)
    assert "".join(k for k, _ in expected) == keys * 3
    for frame in (1, 51, 101, 333, 4000, len(x)):
        assert detect(x, frame) == expected  # streaming is independent of how audio is cut


def test_quiet_chunks_skipped_without_changing_what_is_found() -> None:
    # The shortcut for quiet int16 chunks (every sample within [-256, 255]) must report the
    # same keys at the same samples as the full analysis, which float input always takes.
    rng = np.random.default_rng(7)
    skipped = cases = 0
    for _ in range(60):
        parts = []
        for _ in range(int(rng.integers(3, 10))):
            kind, n = int(rng.integers(0, 5)), int(rng.integers(50, 2500))
            if kind == 0:
                parts.append(np.zeros(n, np.int16))
            elif kind == 1:
                parts.append(rng.integers(-256, 256, n).astype(np.int16))     # quiet, just
            elif kind == 2:
                parts.append(rng.integers(-400, 400, n).astype(np.int16))     # not quiet
            elif kind == 3:
                parts.append(generate_dtmf(KEYS[int(rng.integers(0, 16))], float(rng.integers(30, 150)),
                                           level_dbfs=float(rng.uniform(-36, -3))))
            else:
                parts.append(rng.normal(0, 3000, n).astype(np.int16))         # speech level
        x = np.concatenate(parts)
        frame = int(rng.choice([160, 320, 102, 400]))
        fast, full = DtmfDetector(), DtmfDetector()
        got: list[tuple[str, int]] = []
        want: list[tuple[str, int]] = []
        for i in range(0, len(x), frame):
            got += fast.feed(x[i : i + frame])
            want += full.feed(x[i : i + frame].astype(np.float64))
            skipped += fast._skipped_n > 0
        cases += len(want)
        assert got == want
    assert skipped > 200 and cases > 30    # both paths were exercised


@pytest.mark.parametrize("snr_db", [30, 20, 15])
def test_white_noise(snr_db: float) -> None:
    rng = np.random.default_rng(int(snr_db))
    ok = total = 0
    for k in KEYS:
        for lead in LEADS:
            tone = generate_dtmf(k, 50, -12).astype(float)
            sigma = np.sqrt(np.mean(tone**2) / 10 ** (snr_db / 10))
            clean = pad(tone.astype(np.int16), 400 + lead).astype(float)
            x = clean + rng.normal(0, sigma, len(clean))
            got = detect(np.clip(np.round(x), -32768, 32767).astype(np.int16))
            total += 1
            ok += [g[0] for g in got] == [k]
    assert ok / total >= (1.0 if snr_db >= 20 else 0.95)


def test_noise_alone_gives_nothing() -> None:
    x = np.random.default_rng(5).normal(0, 4000, 8000 * 20)
    assert detect(np.clip(x, -32768, 32767).astype(np.int16)) == []


def test_synthetic_vowels_do_not_talk_off() -> None:
    rng = np.random.default_rng(7)
    formant_sets = VOWEL_FORMANTS
    false = 0
    seconds = 0.0
    for f0 in np.arange(85, 300, 4.3):
        for fm in formant_sets[:3]:
            x = vowel(float(f0), fm, 0.5, rng)
            false += len(detect(x))
            seconds += 0.5
    assert seconds >= 75
    assert false == 0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_speech_does_not_talk_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modem_dialer.audio.tts import synthesise

    text = (
        "Hello, this is a test call. Press one to confirm, or nine to stop receiving calls. "
        "Seven wise owls sing in the evening; please hold the line. Meow, eeee, oooh, aaah."
    )
    seconds = 0.0
    false: list[tuple[str, int]] = []
    for voice in ("en", "en-us", "fr", "de", "en+f3"):
        x = normalise(synthesise(text, voice, tmp_path), -16.0)
        seconds += len(x) / 8000
        false += detect(x)
    assert seconds > 40 and false == []


def test_dtmf_over_speech_still_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    speech = vowel(120.0, (640, 1190, 2390), 1.0, rng).astype(float) * 10 ** (-20 / 20)
    tone = np.zeros(8000)
    tone[3000:3480] = generate_dtmf("#", 60, -6)
    x = np.clip(speech + tone, -32768, 32767).astype(np.int16)
    assert [k for k, _ in detect(x)] == ["#"]


def test_generate_dtmf_contract() -> None:
    x = generate_dtmf("1", 100, level_dbfs=-6.0)
    assert x.dtype == np.int16 and len(x) == 800
    assert abs(np.abs(x).max() - 32767 * 10 ** (-6 / 20)) < 200
    with pytest.raises(ValueError, match="not a DTMF key"):
        generate_dtmf("x", 50)
    seq = generate_sequence("12", on_ms=50, off_ms=50, lead_ms=20)
    assert len(seq) == 160 + 2 * 800


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.text(alphabet=KEYS, min_size=1, max_size=6),
    on_ms=st.integers(45, 150),
    off_ms=st.integers(45, 150),
    level=st.floats(-28, -1),
    frame=st.sampled_from([80, 160, 320, 1000]),
)
def test_property_sequences_decode(keys: str, on_ms: int, off_ms: int, level: float, frame: int) -> None:
    x = generate_sequence(keys, on_ms, off_ms, level, lead_ms=30)
    got = detect(x, frame)
    assert "".join(k for k, _ in got) == keys
    starts = [round((30 + i * (on_ms + off_ms)) * 8) for i in range(len(keys))]
    assert all(abs(s - g) <= 24 for s, (_, g) in zip(starts, got, strict=True))
