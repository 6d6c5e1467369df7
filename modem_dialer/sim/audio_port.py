"""The simulated modem's PCM port: 8 kHz S16LE mono in 320-byte frames, both directions.

Downlink (what the dialer sends, i.e. what the callee hears) is recorded per call while
the family's audio switch is on, and dropped otherwise, as a real modem does. Uplink
(the callee's voice and in-band DTMF) is written every 20 ms while audio is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty

import numpy as np

FRAME = 320
RATE = 8000

_DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


def tone(key: str, ms: int, level: float = 0.25) -> np.ndarray:
    """A DTMF tone pair (kept separate from the dialer's detector code on purpose)."""
    lo, hi = _DTMF[key]
    t = np.arange(int(RATE * ms / 1000)) / RATE
    x = level * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t))
    return (x * 32767 / 2).astype(np.int16)


class SimAudioPort:
    def __init__(self, modem) -> None:
        self.modem = modem
        self.master = self.slave = -1
        self.path = ""
        self.received = bytearray()        # downlink of the current (or last) call
        self.per_call: list[bytes] = []    # downlink of every finished call
        self.dropped = 0                   # bytes that arrived while audio was off
        self.answered_at: float | None = None
        self.first_audio_at: float | None = None   # first non-silent downlink byte after answer
        self._uplink = bytearray()
        self.uplink_override: bytes | None = None  # e.g. a greeting, played once after answer
        self._task: asyncio.Task | None = None
        self._open = False

    async def start(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        asyncio.get_running_loop().add_reader(self.master, self._readable)
        self._open = True
        self._task = asyncio.get_running_loop().create_task(self._uplink_loop())

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._task:
            self._task.cancel()

    @property
    def enabled(self) -> bool:
        call = self.modem.call
        return call is not None and self.modem.dialect.audio_enabled(call)

    def call_started(self, call) -> None:
        self.received = bytearray()
        self.answered_at = call.answered_at
        self.first_audio_at = None
        self._uplink = bytearray()

    def call_ended(self) -> None:
        self.per_call.append(bytes(self.received))

    def send_tone(self, key: str, ms: int) -> None:
        self._uplink += tone(key, ms).tobytes() + bytes(FRAME * 3)

    def send_audio(self, samples: np.ndarray) -> None:
        self._uplink += samples.astype("<i2").tobytes()

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if self.enabled:
            if self.first_audio_at is None and any(data):
                self.first_audio_at = time.monotonic()
            self.received += data
        else:
            self.dropped += len(data)

    async def _uplink_loop(self) -> None:
        t0 = time.monotonic()
        n = 0
        while self._open:
            n += 1
            delay = t0 + n * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:        # we were starved: restart the clock instead of bursting
                t0, n = time.monotonic(), 0
            if not self.enabled:
                continue
            frame = bytes(self._uplink[:FRAME])
            del self._uplink[:FRAME]
            frame += bytes(FRAME - len(frame))
            try:
                os.write(self.master, frame)
            except (BlockingIOError, OSError):
                pass
