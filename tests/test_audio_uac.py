"""UacAudio through real PortAudio on ALSA ``file`` PCMs (feasibility.md §2a).

The file plugin is not paced (the null slave consumes instantly), so these tests check
bytes, not timing: what we play must appear in the output file exactly, and the input
file must come back as 160-sample frames.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from modem_dialer.audio.path import PlayResult
from modem_dialer.audio.uac import UacAudio
from modem_dialer.errors import UserError


def sd() -> ModuleType:
    """sounddevice, imported at first use: PortAudio initialises at import, which cost every
    xdist worker CPU at collection."""
    return pytest.importorskip("sounddevice")


ASOUNDRC = """
pcm.modem_out {{
    type file
    slave.pcm "null"
    file "{out}"
    format "raw"
}}
pcm.modem_in {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{inp}"
    format "raw"
}}
"""


@pytest.fixture
def alsa_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    files = {"out": tmp_path / "out.raw", "inp": tmp_path / "in.raw"}
    captured = np.random.default_rng(9).integers(-30000, 30000, 8000).astype("<i2")
    captured.tofile(files["inp"])
    rc = tmp_path / "modem.asoundrc"
    rc.write_text(ASOUNDRC.format(**files))
    saved = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{rc}"
    sd()._terminate()  # PortAudio reads the ALSA config when it initialises
    sd()._initialize()
    try:
        yield files
    finally:
        if saved is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = saved
        sd()._terminate()
        sd()._initialize()


def prompt(n: int) -> np.ndarray:
    x = np.random.default_rng(n).integers(-20000, 20000, n).astype(np.int16)
    x[x == 0] = 1
    return x


async def test_playback_bytes_and_capture(alsa_files: dict[str, Path]) -> None:
    path = UacAudio("modem_out", capture_device="modem_in")
    frames: list[np.ndarray] = []
    path.on_capture = frames.append
    await path.start()
    assert path.rate == 8000
    x = prompt(1234)
    assert await asyncio.wait_for(path.play(x), 5) is PlayResult.DONE
    assert path.first_frame_sent_at is not None and path.frames_sent >= 8
    for _ in range(200):  # capture runs on its own (unpaced) stream: wait for the whole file
        if path.frames_captured >= 50:
            break
        await asyncio.sleep(0.01)
    await path.close()
    out = np.fromfile(alsa_files["out"], "<i2")
    start = int(np.flatnonzero(out)[0])
    assert np.array_equal(out[start : start + len(x)], x)  # the prompt, exactly
    assert not out[start + len(x) : start + len(x) + 166].any()  # zero-padded frame, then silence
    inp = np.fromfile(alsa_files["inp"], "<i2")
    got = np.concatenate(frames)
    assert all(len(f) == 160 for f in frames)
    assert np.array_equal(got[: len(inp)], inp)  # past the file's end the plugin repeats stale data


async def test_barge_in_on_sound_card(alsa_files: dict[str, Path]) -> None:
    path = UacAudio("modem_out", capture_device="modem_in")
    await path.start()
    fut = path.play(prompt(8000 * 600))  # far longer than the unpaced test can play
    await asyncio.sleep(0.01)
    path.stop_playback()
    assert await asyncio.wait_for(fut, 1) is PlayResult.INTERRUPTED
    await path.close()


async def test_resamples_when_device_refuses_8k(alsa_files: dict[str, Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The file PCM takes any rate; make the 8 kHz check fail as a fussy USB card would, so
    # the path opens at the device's default rate and resamples.
    real = sd().check_output_settings

    def fussy(device=None, samplerate=None, **kw):  # type: ignore[no-untyped-def]
        if samplerate == 8000:
            raise sd().PortAudioError("Invalid sample rate")
        return real(device=device, samplerate=samplerate, **kw)

    monkeypatch.setattr(sd(), "check_output_settings", fussy)
    path = UacAudio("modem_out", capture_device="modem_in")
    await path.start()
    assert path.rate != 8000
    tone = (10000 * np.sin(2 * np.pi * 1000 * np.arange(4000) / 8000)).astype(np.int16)
    assert await asyncio.wait_for(path.play(tone), 5) is PlayResult.DONE
    # DONE means handed to the resampler, which holds ~120 ms: let silence push it out.
    frames = path.frames_sent
    for _ in range(400):
        if path.frames_sent >= frames + 10:
            break
        await asyncio.sleep(0.005)
    await path.close()
    out = np.fromfile(alsa_files["out"], "<i2").astype(float)
    spec = np.abs(np.fft.rfft(out)) ** 2
    f = np.fft.rfftfreq(len(out), 1 / path.rate)
    assert spec[np.abs(f - 1000) < 30].sum() > 0.95 * spec.sum()  # still a clean 1 kHz tone
    loud = np.flatnonzero(np.abs(out) > 1000)
    assert abs((loud[-1] - loud[0]) / path.rate - 0.5) < 0.01  # and still 500 ms long


async def test_missing_device_is_a_user_error(alsa_files: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="no-such-card"):
        await UacAudio("no-such-card").start()
