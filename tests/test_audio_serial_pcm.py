"""SerialPcm against a pseudo-terminal playing the modem (feasibility.md §1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until
from timing import cpu_wait, waited_for_cpu

from modem_dialer.audio import writer_trace
from modem_dialer.audio.path import AudioPathError, PlayResult
from modem_dialer.audio.serial_pcm import WRITER, SerialPcm
from modem_dialer.call.line import make_audio_path
from modem_dialer.errors import UserError
from modem_dialer.modems.options import ModemConfig


class FakeModemPcm:
    """The modem's side of the PCM port: records what we send, with arrival times.

    It reads in its own thread, as a modem's DSP would, at real-time priority where allowed
    (as the simulator's reader, sim/audio_port.py). Its arrival stamps are still this
    process's view: on a loaded machine the thread waits for the GIL or a CPU, so they are
    upper bounds of when the bytes came, and the tests bound times with the writer's own
    stamps (``on_tick``, ``first_frame_sent_at``) and use what arrived for content only."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # keep the slave open: closing it would hang up the master
        self.path = os.ttyname(self.slave)
        self.data = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (time, total bytes so far)
        self.open = True
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, daemon=True)

    def start(self) -> None:
        os.set_blocking(self.master, False)
        self._thread.start()

    def _read_loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        while True:
            ready, _, _ = select.select([self.master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            self.data += chunk
            self.arrivals.append((time.monotonic(), len(self.data)))

    def send(self, b: bytes) -> None:
        os.write(self.master, b)

    async def received(self, frames: int) -> None:
        """Until ``frames`` whole frames have come (the reader thread may lag the writer)."""
        await wait_until(lambda: len(self.data) >= frames * 320, 10)

    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.data[: len(self.data) // 2 * 2]), "<i2")

    def unplug(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        os.close(self.master)
        self.open = False

    def close(self) -> None:
        if self.open:
            self.unplug()
        os.close(self.slave)
        os.close(self._stop_r)
        os.close(self._stop_w)


@pytest.fixture
async def modem() -> AsyncIterator[FakeModemPcm]:
    m = FakeModemPcm()
    m.start()
    yield m
    m.close()


@pytest.fixture
async def pcm(modem: FakeModemPcm) -> AsyncIterator[SerialPcm]:
    p = SerialPcm(modem.path)
    await p.start()
    yield p
    await p.close()


def prompt(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)
    x[x == 0] = 1  # no zero samples, so silence and prompt are told apart exactly
    return x


async def test_prompt_bytes_framed_with_silence(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    await wait_until(lambda: pcm.frames_sent >= 3, 10)   # silence first (counted, not slept for)
    x = prompt(1000)
    assert await pcm.play(x) is PlayResult.DONE
    after = pcm.frames_sent
    await wait_until(lambda: pcm.frames_sent >= after + 3, 10)  # and silence again after it
    await pcm.close()
    await modem.received(pcm.frames_sent)
    assert len(modem.data) % 320 == 0 and len(modem.data) // 320 == pcm.frames_sent
    y = modem.samples()
    start = int(np.flatnonzero(y)[0])
    assert start % 160 == 0 and start >= 160 * 3  # silence before, prompt starts on a frame
    assert np.array_equal(y[start : start + 1000], x)
    assert not y[start + 1000 :].any() and len(y) - start - 1000 >= 40 + 160 * 3  # padded, then silence


async def test_prompts_queue_back_to_back(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # Which frame finished each prompt, as the writer thread posts it: the loop may run both
    # completions in one go after a stall, so "b not done yet when a is" is not the check.
    finished_at: dict[asyncio.Future, int] = {}
    post = pcm._post

    def recording_post(fn: Callable[..., None], *args: object) -> None:
        for item in args[0] if args and isinstance(args[0], tuple) else ():
            finished_at[item.future] = pcm.frames_sent
        post(fn, *args)
    pcm._post = recording_post
    a, b = prompt(480, 1), prompt(330, 2)
    fa, fb = pcm.play(a), pcm.play(b)
    assert await fa is PlayResult.DONE
    assert await fb is PlayResult.DONE
    assert finished_at[fb] == finished_at[fa] + 3   # b's three frames (330 samples, padded) after a's
    await modem.received(pcm.frames_sent)
    y = modem.samples()
    start = int(np.flatnonzero(y)[0])
    expected = np.concatenate([a, b, np.zeros(160 * 3 - 330, np.int16)])
    assert np.array_equal(y[start : start + len(expected)], expected)


async def test_pacing_50_frames_per_second(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    ticks: list[float] = []
    pcm.on_tick = ticks.append
    await asyncio.sleep(1.0)
    # one second by the writer's own stamps: the loop's sleep ends late on a loaded machine,
    # and the ticks it let through meanwhile are not the writer's doing
    await wait_until(lambda: ticks and ticks[-1] - ticks[0] >= 1.0, 10)
    second = [t for t in ticks if t - ticks[0] < 1.0]
    n = len(second)
    assert 48 <= n <= 52
    gaps = np.diff(second)
    assert abs(np.mean(gaps) - 0.020) < 0.001
    # absolute deadlines: tick k is at t0 + k*20 ms, whatever the jitter of each sleep
    drift = second[-1] - second[0] - 0.020 * (n - 1)
    assert abs(drift) < 0.005


async def test_new_prompt_goes_out_within_one_frame(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # The writer thread's own stamps: the prompt is the very next frame written after play()
    # (no silence tick in between: ticks are 20 ms apart, test_pacing_50_frames_per_second),
    # and within 21 ms of play() by the writer's clock, less what the machine kept this
    # process off the CPU (tests/timing.py): the writer waiting for a CPU or the GIL is not
    # the path's delay. The fake modem's arrival stamps (its reader's scheduling) bound nothing.
    ticks: list[float] = []
    pcm.on_tick = ticks.append
    await wait_until(lambda: pcm.frames_sent >= 10, 10)  # plenty of silence already sent
    for i in range(5):
        await asyncio.sleep(0.013 * i)
        load = cpu_wait()
        t = time.monotonic()
        fut = pcm.play(prompt(160, i))
        queued = time.monotonic()       # (a tick stamped before this may have begun before the put)
        await fut
        first = pcm.first_frame_sent_at
        assert first is not None
        assert [x for x in ticks if queued < x < first] == [], "a silence frame went out before the prompt"
        waited = waited_for_cpu(load, cpu_wait())
        assert first - t - waited <= 0.021, f"{(first - t) * 1000:.1f} ms, {waited * 1000:.1f} ms waiting for a CPU"
        # ...and what the modem got last is that prompt, whole, on a frame boundary
        await modem.received(pcm.frames_sent)
        y = modem.samples()
        end = int(np.flatnonzero(y)[-1]) + 1
        assert end % 160 == 0 and np.array_equal(y[end - 160 : end], prompt(160, i))


async def test_an_idle_modem_gets_one_frame_of_lead(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # Between calls nothing is sent; a prompt then finds the modem empty: its first two
    # frames go at once (LEAD_FRAMES), so the modem holds 20-40 ms when each tick comes and
    # a tick up to 20 ms late opens no hole. The model counts both frames from the write.
    pcm.keep_fed = False
    sent = pcm.frames_sent
    await asyncio.sleep(0.1)
    assert pcm.frames_sent == sent           # idle: nothing written
    t = time.monotonic()
    fut = pcm.play(prompt(160 * 5, 9))
    assert pcm.frames_sent == sent + 2       # written by play() itself, before any tick
    first = pcm.first_frame_sent_at
    assert first is not None and t <= first
    assert pcm.prompt_played_until >= first + 0.040 - 1e-6
    assert await fut is PlayResult.DONE
    assert pcm.frames_sent == sent + 5       # the rest one per tick, no silence (not fed)
    # the model never runs ahead of 20 ms per frame from the first write
    assert pcm.prompt_played_until >= first + 5 * 0.020 - 1e-6
    await modem.received(sent + 5)
    y = modem.samples()
    assert np.array_equal(y[len(y) - 800 :], prompt(160 * 5, 9))


async def test_capture_keeps_sample_phase_across_partial_reads(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    frames: list[np.ndarray] = []
    pcm.on_capture = frames.append
    x = prompt(1000, 3).tobytes()
    for piece in (x[:333], x[333:334], x[334:1001], x[1001:1640], x[1640:]):
        modem.send(piece)
        await asyncio.sleep(0.01)
    await wait_until(lambda: pcm.frames_captured >= 6, 10)
    await asyncio.sleep(0.05)  # (a seventh frame, were one made up, would come now)
    assert len(frames) == 6 and all(f.dtype == np.int16 and len(f) == 160 for f in frames)
    assert np.array_equal(np.concatenate(frames), np.frombuffer(x[: 6 * 320], "<i2"))
    assert pcm.frames_captured == 6


async def test_capture_is_read_on_the_writer_thread(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # on_capture_rt gets each frame on the writer thread (no loop wake-up per frame: the
    # in-band DTMF detector runs there), on_capture the same frames on the loop, in order
    rt: list[tuple[str, bytes]] = []
    on_loop: list[tuple[str, bytes]] = []
    pcm.on_capture_rt = lambda f: rt.append((threading.current_thread().name, f.tobytes()))
    pcm.on_capture = lambda f: on_loop.append((threading.current_thread().name, f.tobytes()))
    x = prompt(800, 2).tobytes()
    modem.send(x)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(on_loop) == 5:
            break
    assert [t for t, _ in rt] == ["pcm-writer"] * 5
    assert [t for t, _ in on_loop] == [threading.current_thread().name] * 5
    assert b"".join(f for _, f in rt) == b"".join(f for _, f in on_loop) == x


async def test_barge_in(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    long, nxt = pcm.play(prompt(16000, 4)), pcm.play(prompt(800, 5))
    await asyncio.sleep(0.2)
    pcm.stop_playback()
    mark = pcm.frames_sent  # by the writer's count: the fake modem's reader may lag behind it
    assert long.done() and long.result() is PlayResult.INTERRUPTED  # at once, not on a tick
    assert await nxt is PlayResult.INTERRUPTED
    await wait_until(lambda: pcm.frames_sent >= mark + 5, 10)
    await modem.received(pcm.frames_sent)
    # at most the frame the writer was writing meanwhile, then silence again
    assert not np.frombuffer(bytes(modem.data[(mark + 1) * 320 :]), "<i2").any()
    assert await pcm.play(prompt(160, 6)) is PlayResult.DONE  # and the path still plays


async def test_a_blocked_loop_opens_no_hole_in_the_audio(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # A slow fsync, a GC pause, a burst of URCs: the loop stops for 300 ms mid-prompt. The
    # writer thread does not depend on it, so the modem still gets a frame every 20 ms
    # and the prompt goes on (without skipping any of it).
    # The writer's own stamps say when each frame went to the modem (the pty passes it on at
    # once); the fake modem's reader, a thread of this process, stamps when it got a CPU and
    # the GIL, which on a loaded machine is later: its stamps bound nothing.
    ticks: list[float] = []
    pcm.on_tick = ticks.append
    x = prompt(8000, 8)
    fut = pcm.play(x)
    await asyncio.sleep(0.2)
    # Within the block only: while the loop runs Python it holds the GIL, and a loaded
    # machine that takes its CPU then holds up the writer too (a limit of one process, not
    # the loop's blocking); while it blocks in a system call, as here, it holds nothing.
    late = pcm.late_frames
    cpu = cpu_wait()
    blocked = time.monotonic()
    time.sleep(0.3)  # noqa: ASYNC251 -- deliberately block the event loop
    unblocked = time.monotonic()
    waited = waited_for_cpu(cpu, cpu_wait())   # the machine's doing, not the writer's (tests/timing.py)
    late = pcm.late_frames - late
    await asyncio.sleep(0.2)
    times = np.array([t for t in ticks if blocked <= t <= unblocked])
    # frames all through the block
    assert times[0] < blocked + 0.02 + waited and times[-1] > unblocked - 0.02 - waited, waited
    assert np.diff(times).max() < 0.060, np.diff(times).max()
    assert abs(len(times) - 1 - (times[-1] - times[0]) / 0.020) <= 2  # one frame per 20 ms: no burst, no hole
    assert late == 0
    assert await asyncio.wait_for(fut, 2) is PlayResult.DONE
    await modem.received(pcm.frames_sent)
    y = modem.samples()
    start = int(np.flatnonzero(y)[0])
    assert np.array_equal(y[start : start + len(x)], x)  # whole, in order


async def test_one_writer_thread_serves_every_port(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    other = FakeModemPcm()
    other.start()
    p2 = SerialPcm(other.path)
    await p2.start()
    try:
        names = [t.name for t in threading.enumerate()]
        assert names.count("pcm-writer") == 1
        assert WRITER._ports == [pcm, p2]
    finally:
        await p2.close()
        other.close()
    assert WRITER._ports == [pcm]


async def test_drain_waits_for_the_modem_to_play_the_prompt(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # The prompt's future is DONE when its last frame is written; the modem still has that
    # frame to play: drain() returns when it has (frames written vs. time), plus the margin.
    # (The model is checked against the writer's own clock: the fake modem's reader thread
    # stamps a frame when it gets scheduled, which on a loaded machine is milliseconds
    # after the write, so its stamps bound nothing.)
    await asyncio.sleep(0.05)
    load = cpu_wait()
    await pcm.play(prompt(1600, 9))  # ten 20 ms frames
    first = pcm.first_frame_sent_at
    assert first is not None
    # Frames are paced from the first one's write: the tenth cannot have played before
    # 200 ms after it, nor can the model say so.
    assert pcm.prompt_played_until >= first + 10 * 0.020 - 1e-6
    await pcm.drain(0.01)
    assert time.monotonic() >= pcm.prompt_played_until + 0.01  # waited for the modem + margin
    # ...and no longer than what the modem still held: less than the prompt again (on the
    # loop's clock, less what the machine kept this process off the CPU: tests/timing.py)
    took, waited = time.monotonic() - first, waited_for_cpu(load, cpu_wait())
    assert took - waited < 0.2 + 0.19, f"{took * 1000:.0f} ms, {waited * 1000:.0f} ms of it waiting for a CPU"
    load, t = cpu_wait(), time.monotonic()
    await pcm.drain(0.0)  # nothing buffered any more: at once
    took, waited = time.monotonic() - t, waited_for_cpu(load, cpu_wait())
    assert took - waited < 0.005, f"{took * 1000:.1f} ms, {waited * 1000:.1f} ms of it waiting for a CPU"


async def test_unplug_ends_the_path_with_an_error(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    fut = pcm.play(prompt(8000, 7))
    await asyncio.sleep(0.1)
    load, t = cpu_wait(), time.monotonic()
    modem.unplug()
    err = await asyncio.wait_for(pcm.ended, 1.0)
    took, waited = time.monotonic() - t, waited_for_cpu(load, cpu_wait())
    assert took - waited < 0.2, f"{took * 1000:.0f} ms, {waited * 1000:.0f} ms of it waiting for a CPU"
    assert isinstance(err, AudioPathError) and modem.path in str(err)
    with pytest.raises(AudioPathError):
        await fut
    with pytest.raises(AudioPathError):
        pcm.play(prompt(160))
    await asyncio.sleep(0.05)  # the loop goes on
    await pcm.close()


async def test_missing_port_is_a_user_error() -> None:
    p = SerialPcm("/dev/ttyUSB-does-not-exist")
    with pytest.raises(UserError, match="/dev/ttyUSB-does-not-exist"):
        await p.start()


async def test_capture_callback_errors_do_not_stop_audio(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    def bad(frame: np.ndarray) -> None:
        raise RuntimeError("consumer bug")

    pcm.on_capture = bad
    modem.send(bytes(640))
    await wait_until(lambda: pcm.frames_captured >= 2, 10)
    assert pcm.frames_captured == 2 and pcm.running
    assert await pcm.play(prompt(160)) is PlayResult.DONE


async def test_the_heap_is_frozen_once_audio_starts(modem: FakeModemPcm, pcm: SerialPcm) -> None:
    # a full garbage collection holds the GIL for 100-250 ms in a campaign process: the
    # writer thread would miss frames. Once audio runs, start-up objects are out of its way.
    import gc
    assert gc.get_freeze_count() > 0


async def test_trace_records_every_write_and_tick(modem: FakeModemPcm, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # MODEM_DIALER_PCM_TRACE (audio/writer_trace.py): what bench/slow_disk.py pairs with its
    # own reads to tell a frame the writer sent late from one the reader read late. Every
    # byte the port took must be in the record, stamped no later than it arrived.
    monkeypatch.setenv(writer_trace.ENV, str(tmp_path))
    trace = writer_trace.WriterTrace.from_env()
    assert trace is not None
    monkeypatch.setattr(WRITER, "trace", trace)
    try:
        p = SerialPcm(modem.path)
        await p.start()
        assert await p.play(prompt(1600)) is PlayResult.DONE     # 10 frames, after some silence
        await wait_until(lambda: len(trace.woke) >= 20, 10)
        await p.close()
        trace.dump()
    finally:
        trace.close()
    doc = json.loads(trace.path.read_text())
    w = doc["writes"][modem.path]
    total = sum(w["n"])
    assert total >= 10 * 320 and len(w["sent_at"]) == len(w["n"])
    await wait_until(lambda: len(modem.data) >= total, 10)
    await asyncio.sleep(0.05)           # (a write the record missed would show up by now)
    assert len(modem.data) == total
    # each write's stamp is before the arrival of its last byte (the reader's stamps are late, never early)
    done = 0
    for sent_at, n in zip(w["sent_at"], w["n"], strict=True):
        done += n
        arrived = next(t for t, got in modem.arrivals if got >= done)
        assert sent_at <= arrived
    t = doc["ticks"]
    assert len(t["deadline"]) == len(t["woke"]) >= 20
    assert all(woke >= d for d, woke in zip(t["deadline"], t["woke"], strict=True))
    assert len(t["wait_ns"]) >= len(t["woke"])
    if os.path.exists("/proc/thread-self/schedstat"):    # (a kernel without schedstats records -1)
        assert t["run_ns"][-1] > t["run_ns"][0] > 0


async def test_lead_frames_are_written_ahead_at_once(modem: FakeModemPcm) -> None:
    # audio.lead_frames: a prompt on an idle modem goes out that many frames at once (a stall
    # of the dialer up to (lead - 1) x 20 ms then opens no hole), the rest one per tick; the
    # config key reaches the path, and a lead of 0 is refused.
    cfg = ModemConfig.model_validate({"name": "m", "port": "/dev/null",
                                      "audio": {"kind": "serial", "port": modem.path, "lead_frames": 5}})
    pcm = make_audio_path(cfg)
    assert isinstance(pcm, SerialPcm) and pcm.lead_frames == 5
    with pytest.raises(ValueError, match="lead_frames"):
        ModemConfig.model_validate({"name": "m", "port": "/dev/null",
                                    "audio": {"kind": "serial", "port": modem.path, "lead_frames": 0}})
    pcm.keep_fed = False                  # before start(): not one silence frame goes first
    await pcm.start()
    try:
        sent = pcm.frames_sent
        fut = pcm.play(prompt(160 * 8, 4))
        assert pcm.frames_sent == sent + 5       # written by play() itself, before any tick
        first = pcm.first_frame_sent_at
        assert first is not None and pcm.prompt_played_until >= first + 5 * 0.020 - 1e-6
        assert await fut is PlayResult.DONE
        assert pcm.frames_sent == sent + 8
        await modem.received(sent + 8)
        y = modem.samples()
        assert np.array_equal(y[len(y) - 160 * 8 :], prompt(160 * 8, 4))
    finally:
        await pcm.close()


async def test_the_writer_wakes_the_loop_without_call_soon_threadsafe(modem: FakeModemPcm, pcm: SerialPcm,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # call_soon_threadsafe's socket send gives the GIL up: from the writer thread, in the
    # middle of a tick, the loop thread then took it and the next ports' frames waited for
    # it back (serial_pcm._LoopWaker). Prompts done and captured frames still reach the loop.
    loop = asyncio.get_running_loop()
    from_writer: list[object] = []
    real = loop.call_soon_threadsafe

    def spy(fn: Callable[..., object], *args: object, **kw: object) -> asyncio.Handle:
        if threading.current_thread().name == "pcm-writer":
            from_writer.append(fn)
        return real(fn, *args, **kw)   # type: ignore[arg-type]
    monkeypatch.setattr(loop, "call_soon_threadsafe", spy)
    got: list[bytes] = []
    pcm.on_capture = lambda f: got.append(f.tobytes())
    assert await asyncio.wait_for(pcm.play(prompt(160 * 3, 5)), 10) is PlayResult.DONE
    modem.send(prompt(320, 6).tobytes())
    await wait_until(lambda: len(got) >= 2, 10)
    assert b"".join(got[:2]) == prompt(320, 6).tobytes()
    assert from_writer == []
