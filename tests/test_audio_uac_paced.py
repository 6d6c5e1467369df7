"""UacAudio through real-time paced sound cards: PulseAudio null sinks started by the test
(tests/pulse.py, feasibility.md §2b), reached by PortAudio through the ALSA pulse plugin.

Unlike the ALSA ``file`` PCM of test_audio_uac.py, these devices consume and produce audio
at 8 kHz, so a prompt takes its length to play, keys pressed later are heard, and
barge-in can be timed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from pulse import Pulse, available, pulse_server

from modem_dialer.audio.dtmf import DtmfDetector, generate_dtmf
from modem_dialer.audio.path import PlayResult
from modem_dialer.audio.uac import UacAudio


def sd() -> ModuleType:
    """sounddevice, imported at first use: PortAudio initialises at import, which cost every
    xdist worker CPU at collection."""
    return pytest.importorskip("sounddevice")

pytestmark = [pytest.mark.skipif(not available(), reason="pulseaudio / ALSA pulse plugin not installed "
                                                         "(scripts/setup.sh installs them)"),
              pytest.mark.realtime]


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[Pulse]:
    with pulse_server(tmp_path) as pa:
        keys = ("PULSE_SERVER", "ALSA_CONFIG_PATH", "XDG_RUNTIME_DIR")
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: pa.env[k] for k in keys})
        sd()._terminate()  # PortAudio reads the ALSA config when it initialises
        sd()._initialize()
        try:
            yield pa
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            sd()._terminate()
            sd()._initialize()


def tone(ms: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(ms * 8) / 8000
    x = (np.sin(2 * np.pi * hz * t) * 6000 + 3000).astype(np.int16)
    x[x == 0] = 1  # no zero sample: the prompt is told from silence (and underrun gaps) exactly
    return x


async def started(path: UacAudio) -> None:
    """Open the path and let the streams settle: 0.4 s of silence fills the buffers between
    PortAudio and the null sink (tens of ms), so what the test times next is the steady
    state. (It was 1.5 s while the null sinks stalled a new stream for up to 2 s, which a
    1.5 s prompt took 3 s to get through: tests/pulse.py.)"""
    await path.start()
    await path.play(np.zeros(20 * 160, np.int16))  # 0.4 s of silence, sent


async def test_playback_is_paced_and_heard_whole(pulse: Pulse, tmp_path: Path) -> None:
    rec = pulse.record(tmp_path / "heard.raw")
    path = UacAudio("modem_spk", capture_device="modem_mic")
    await started(path)
    prompts = [tone(500, hz) for hz in (300, 400, 500, 600)]
    t = time.monotonic()
    for x in prompts:
        assert await path.play(x) is PlayResult.DONE
    took = time.monotonic() - t
    await path.drain()
    await asyncio.sleep(0.2)
    await path.close()
    rec.terminate()
    rec.wait()
    print(f"2 s of prompts played in {took:.3f} s, underruns: {path.underruns}")
    assert took >= 1.9, f"2 s of prompts took {took:.2f} s: not paced"  # the file PCM: ~0 s
    heard = np.fromfile(tmp_path / "heard.raw", "<i2")
    loud = heard[heard != 0]
    # Under CPU starvation the pulse plugin's own (normal priority) thread can underrun: a
    # gap of silence and a few lost samples mid-prompt. Every prompt must still be heard,
    # in order, from its first 20 ms to its last.
    pos = 0
    for x in prompts:
        at = _find(loud[pos:], x[:160])
        assert at >= 0, "a prompt's beginning was not heard"
        end = _find(loud[pos + at :], x[-160:])
        assert end >= 0, "a prompt's end was not heard"
        pos += at + end + 160
    assert len(loud) >= 0.97 * 16000


def _find(hay: np.ndarray, needle: np.ndarray) -> int:
    w = np.lib.stride_tricks.sliding_window_view(hay, len(needle)) if len(hay) >= len(needle) else None
    if w is None:
        return -1
    hits = np.flatnonzero((w == needle).all(axis=1))
    return int(hits[0]) if len(hits) else -1


async def test_keys_in_the_captured_audio_are_heard_in_time(pulse: Pulse, tmp_path: Path) -> None:
    path = UacAudio("modem_spk", capture_device="modem_mic")
    det = DtmfDetector()
    keys: list[tuple[str, int]] = []
    three = asyncio.Event()

    def capture(frame: np.ndarray) -> None:
        for key, start in det.feed(frame):
            keys.append((key, start))
            if len(keys) == 3:
                three.set()
    path.on_capture = capture
    await started(path)
    gap = np.zeros(8 * 400, np.int16)
    said = np.concatenate([gap, generate_dtmf("1", 100), gap, generate_dtmf("5", 100), gap,
                           generate_dtmf("#", 100), gap])
    said.astype("<i2").tofile(tmp_path / "keys.raw")
    n0, t0 = path.frames_captured, time.monotonic()
    callee = pulse.say(tmp_path / "keys.raw")
    try:
        await asyncio.wait_for(three.wait(), 10)
    finally:
        callee.wait(10)
        await path.close()
    rate = (path.frames_captured - n0) / (time.monotonic() - t0)
    # Under CPU starvation the pulse plugin's (normal priority) thread can drop a capture
    # block mid-tone, which splits one press in two: count a repeat within 200 ms once.
    keys = [k for i, k in enumerate(keys) if i == 0 or k[0] != keys[i - 1][0] or k[1] - keys[i - 1][1] > 1600]
    assert [k for k, _ in keys] == ["1", "5", "#"]
    spacing = np.diff([s for _, s in keys]) / 8000
    # heard as said; under CPU starvation the pulse plugin may drop at most one 20 ms block
    assert np.all(np.abs(spacing - 0.5) < 0.021), spacing
    assert 45 <= rate <= 55, rate  # 50 frames a second: paced (the file PCM gave thousands)


async def test_barge_in_stops_the_prompt_quickly(pulse: Pulse, tmp_path: Path) -> None:
    # Barge-in latency = the key's start in the captured stream -> its detection (measured in
    # samples by the detector) + what the callee still hears after stop_playback (measured
    # in the recording: prompt heard vs. prompt taken until the stop, same output path).
    heard_rec = pulse.record(tmp_path / "heard.raw")
    path = UacAudio("modem_spk", capture_device="modem_mic")
    det = DtmfDetector()
    fed = 0
    found: list[tuple[int, int, float]] = []  # (key start sample, samples fed, stop time)

    def capture(frame: np.ndarray) -> None:
        nonlocal fed
        fed += len(frame)
        for _key, start in det.feed(frame):
            if not found:
                path.stop_playback()  # what ActiveCall.play(barge_in=True) does on a key
                found.append((start, fed, time.monotonic()))
    path.on_capture = capture
    await started(path)
    x = tone(10_000, 300)
    fut = path.play(x)
    await asyncio.sleep(0.6)
    key = np.concatenate([generate_dtmf("2", 150), np.zeros(8 * 300, np.int16)])
    key.astype("<i2").tofile(tmp_path / "key.raw")
    callee = pulse.say(tmp_path / "key.raw")
    assert await asyncio.wait_for(fut, 5) is PlayResult.INTERRUPTED
    callee.wait(10)
    await asyncio.sleep(0.3)
    await path.close()
    heard_rec.terminate()
    heard_rec.wait()
    assert found and path.first_frame_sent_at is not None
    start, fed_then, stopped_at = found[0]
    detect_ms = (fed_then - start) / 8
    heard = np.fromfile(tmp_path / "heard.raw", "<i2")
    heard_ms = np.count_nonzero(heard) / 8
    taken_ms = (stopped_at - path.first_frame_sent_at) * 1000
    after_ms = heard_ms - taken_ms
    print(f"barge-in: detected {detect_ms:.0f} ms into the key; heard {after_ms:.0f} ms of prompt after the stop")
    assert 0 < detect_ms <= 60
    assert -25 <= after_ms <= 60  # one 20 ms block in the fifo + the stream's buffer
