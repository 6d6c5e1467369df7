"""Voice through a USB Audio Class sound card (Quectel ``AT+QPCMV=1,2``), via PortAudio.

Two callback streams (playback and capture) in 20 ms blocks. PortAudio's real-time
callback thread takes frames from the shared prompt queue (the loop never writes audio,
so a stalled loop cannot open a hole) and posts to the loop only when a prompt ends;
captured audio goes back to the loop with ``call_soon_threadsafe``. The stream's output
latency (PortAudio's DAC time) feeds the playout model used by ``drain()``. If the device refuses 8 kHz we open it at its default rate and
resample with libsoxr streams in both directions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import numpy as np
import soxr

from modem_dialer.audio.path import FRAME_SAMPLES, AudioPath, AudioPathError
from modem_dialer.errors import UserError

RATE = 8000
CAPTURE_BACKLOG = 500  # frames (10 s)
MAX_DAC_DELAY = 1.0  # s: a DAC time further ahead than this is not believed


def _sd() -> Any:
    import sounddevice  # imported late: PortAudio reads the ALSA config at import

    return sounddevice


class UacAudio(AudioPath):
    def __init__(
        self, device: str | int, capture_device: str | int | None = None, name: str | None = None
    ) -> None:
        super().__init__(name or str(device))
        self.device = device
        self.capture_device = device if capture_device is None else capture_device
        self.rate = RATE
        self._out: Any = None
        self._in: Any = None
        self._up: soxr.ResampleStream | None = None
        self._down: soxr.ResampleStream | None = None
        self._out_fifo = np.zeros(0, dtype=np.int16)
        self._in_fifo = np.zeros(0, dtype=np.int16)
        # captured frames waiting for the loop; bounded so a loop stalled for over
        # CAPTURE_BACKLOG frames (or an unpaced device) drops the newest, not memory
        self._captured: collections.deque[np.ndarray] = collections.deque()
        self.capture_dropped = 0
        self.underruns = 0  # playback blocks PortAudio reported late (the callee heard a gap)
        self._out_latency = 0.0
        self._capture_posted = False

    def _pick_rate(self, sd: Any) -> int:
        for dev, check in (
            (self.device, sd.check_output_settings),
            (self.capture_device, sd.check_input_settings),
        ):
            try:
                sd.query_devices(dev)
            except (ValueError, sd.PortAudioError) as exc:
                raise UserError(f"{dev}: no such audio device ({exc})") from None
            try:
                check(device=dev, samplerate=RATE, channels=1, dtype="int16")
            except (ValueError, sd.PortAudioError):
                info = sd.query_devices(dev)
                return int(info["default_samplerate"])
        return RATE

    async def start(self) -> None:
        self._setup()
        sd = _sd()
        self.rate = self._pick_rate(sd)
        if self.rate != RATE:
            self._up = soxr.ResampleStream(RATE, self.rate, 1, dtype="int16")
            self._down = soxr.ResampleStream(self.rate, RATE, 1, dtype="int16")
        block = FRAME_SAMPLES * self.rate // RATE
        try:
            self._out = sd.OutputStream(
                samplerate=self.rate,
                channels=1,
                dtype="int16",
                device=self.device,
                blocksize=block,
                callback=self._play_cb,
                finished_callback=self._stream_finished,
            )
            self._in = sd.InputStream(
                samplerate=self.rate,
                channels=1,
                dtype="int16",
                device=self.capture_device,
                blocksize=block,
                callback=self._capture_cb,
            )
            self._out_latency = min(MAX_DAC_DELAY, float(self._out.latency))
            self._out.start()
            self._in.start()
        except (ValueError, sd.PortAudioError) as exc:
            await self._close_streams()
            raise UserError(f"{self.device}: cannot open audio device ({exc})") from None

    # -- PortAudio thread --

    def _play_cb(self, outdata: np.ndarray, frames: int, times: Any, status: Any) -> None:
        assert self._queue is not None and self._loop is not None
        if status.output_underflow:
            self.underruns += 1
        now = time.monotonic()
        # when this block reaches the DAC (0 if the host API does not say)
        dac = float(times.outputBufferDacTime - times.currentTime) if times is not None else -1.0
        if not 0.0 <= dac <= MAX_DAC_DELAY:
            # some host APIs / plugins give no (or a nonsense) DAC time: use the stream's latency
            dac = self._out_latency
        need = frames
        while len(self._out_fifo) < need:
            taken = self._queue.take()
            chunk = taken.samples()
            if self._up is not None:
                chunk = self._up.resample_chunk(chunk)
            self._out_fifo = np.concatenate([self._out_fifo, chunk])
            # the fifo's end is played after what precedes it in the fifo, then the DAC delay
            self._sent(taken, now, now + dac + len(self._out_fifo) / self.rate)
        outdata[:, 0] = self._out_fifo[:need]
        self._out_fifo = self._out_fifo[need:]

    def _capture_cb(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        assert self._loop is not None
        chunk = indata[:, 0].copy()
        if self._down is not None:
            chunk = self._down.resample_chunk(chunk)
        fifo = np.concatenate([self._in_fifo, chunk])
        n = len(fifo) // FRAME_SAMPLES
        for i in range(n):
            if len(self._captured) >= CAPTURE_BACKLOG:
                self.capture_dropped += 1
            else:
                self._captured.append(fifo[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
        self._in_fifo = fifo[n * FRAME_SAMPLES :]
        # one wake-up of the loop for whatever is pending, not one per frame
        if n and not self._capture_posted:
            self._capture_posted = True
            self._post(self._deliver_captured)

    def _deliver_captured(self) -> None:
        self._capture_posted = False  # before popping: a frame added after the last pop posts again
        while self._captured:
            self._deliver(self._captured.popleft())

    def _stream_finished(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_stream_end)

    def _on_stream_end(self) -> None:
        if self.running:  # the stream stopped without close(): device gone
            self._finish(AudioPathError(f"{self.device}: audio stream stopped"))

    # -- loop thread --

    async def _close_streams(self) -> None:
        for stream in (self._out, self._in):
            if stream is not None:
                with contextlib.suppress(Exception):
                    # stop() lets the buffers already handed to PortAudio play out;
                    # close() alone would discard the end of the last prompt.
                    await asyncio.to_thread(stream.stop)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(stream.close)
        self._out = self._in = None

    async def close(self) -> None:
        if self.ended is None:
            return
        self._finish(None)
        await self._close_streams()
