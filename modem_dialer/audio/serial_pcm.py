"""Voice over a serial PCM port (Huawei voice port, SIM7600 if04, Quectel QPCMV=1,0).

Raw S16LE mono 8 kHz in 320-byte frames both ways (modems.md §5). We write one frame
every 20 ms on an absolute schedule ``t0 + n * 20 ms`` (no drift), with silence whenever
no prompt is queued: Huawei modems must be fed continuously. Nothing is buffered ahead,
so a newly queued prompt goes out at the next tick (within 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import serial
import serial_asyncio

from modem_dialer.audio.path import FRAME_BYTES, FRAME_SECONDS, AudioPath, AudioPathError
from modem_dialer.errors import UserError

MAX_BURST = 3  # frames sent back to back when the loop was late
MAX_BACKLOG = 2  # frames the OS may hold unsent before we stop adding (flow control, CTS)


class _Proto(asyncio.Protocol):
    def __init__(self, path: SerialPcm) -> None:
        self.path = path
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = len(self.buf) // FRAME_BYTES * FRAME_BYTES
        if n == 0:
            return
        # Whole frames only: the remainder stays, so a read that stops mid-sample never
        # shifts the 16-bit phase of what follows.
        frames = np.frombuffer(bytes(self.buf[:n]), dtype="<i2").astype(np.int16).reshape(-1, 160)
        del self.buf[:n]
        for f in frames:
            self.path._deliver(f)

    def connection_lost(self, exc: Exception | None) -> None:
        self.path._lost(exc)


class SerialPcm(AudioPath):
    def __init__(self, port: str, baudrate: int = 115200, name: str | None = None) -> None:
        super().__init__(name or port)
        self.port = port
        self.baudrate = baudrate
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self.late_frames = 0  # ticks that went out more than a frame late
        self.skipped_frames = 0  # ticks dropped because the port did not take our data
        self.on_tick = None  # test/bench hook: called with the send time of each frame

    async def start(self) -> None:
        self._setup()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await serial_asyncio.create_serial_connection(
                loop, lambda: _Proto(self), self.port, baudrate=self.baudrate
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise UserError(f"{self.port}: cannot open audio port ({exc})") from None
        self._transport = transport
        self._task = asyncio.create_task(self._pace(), name=f"pcm-{self.name}")

    async def _pace(self) -> None:
        assert self._queue is not None and self._transport is not None
        t0 = time.monotonic()
        n = 0
        try:
            while self.running:
                deadline = t0 + n * FRAME_SECONDS
                delay = deadline - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if not self.running:
                        break
                behind = (time.monotonic() - deadline) / FRAME_SECONDS
                if behind > MAX_BURST:
                    # Too late to catch up without a burst: move the schedule instead.
                    skip = int(behind) - 1
                    t0 += skip * FRAME_SECONDS
                    self.late_frames += skip
                self._tick()
                n += 1
        except Exception as exc:  # keep the loop alive; report through `ended`
            self._finish(AudioPathError(f"{self.port}: {exc}"))
            self._transport.close()

    def _tick(self) -> None:
        tr = self._transport
        assert tr is not None and self._queue is not None
        if tr.is_closing():
            return
        if tr.get_write_buffer_size() > MAX_BACKLOG * FRAME_BYTES:
            self.skipped_frames += 1  # the port is not draining: don't build up latency
            return
        taken = self._queue.take()
        tr.write(taken.frame.astype("<i2", copy=False).tobytes())
        if self.on_tick is not None:
            self.on_tick(time.monotonic())
        self._after_send(taken)

    def _lost(self, exc: Exception | None) -> None:
        if self.running:
            self._finish(AudioPathError(f"{self.port}: port lost ({exc or 'closed by peer'})"))

    async def close(self) -> None:
        if self.ended is None:
            return
        self._finish(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)  # let connection_lost run
