"""The simulated modem's PCM port: 8 kHz S16LE mono in 320-byte frames, both directions.

Downlink (what the dialer sends, i.e. what the callee hears) is recorded per call while
the family's audio switch is on, and dropped otherwise, as a real modem does. It is read
by a thread of its own, as a modem's DSP takes it whatever the event loop does, and it
is consumed at the real rate: bytes that arrive while earlier ones are still playing
wait their turn, and what has not been played when the call ends is never heard
(``per_call`` holds what reached the modem, ``per_call_cut_ms`` how much of that audio
the callee never heard because the call ended first). A dialer that hangs up "when the last frame was sent" loses the
frames still buffered here; one that sends in bursts sees its audio delayed.
Arrival times of the current call are kept (``arrivals``) so tests see holes, and so are
the times the DSP ran dry in the middle of the call (``dry``: a frame came after everything
before it had been played): those are the holes a callee hears. They differ from arrival
gaps when the dialer writes ahead: frames it sent early keep the DSP playing through a gap
in its writes (and a modem is hardware: a stalled host does not stall its playout).
Uplink (the callee's voice and in-band DTMF) is written every 20 ms while audio is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import threading
import time
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    # numpy imported here, not at the top: a simulator whose callees press no key and play no
    # voice never needs it, and its import was ~0.15 s of the ~0.4 s of CPU of a
    # `modem-dialer sim --modems 16` start (issue 15)
    import numpy as np

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
        self.per_call: list[bytes] = []    # downlink of every finished call, as received
        self.per_call_cut_ms: list[float] = []  # audio that arrived but was not played before the end
        self.arrivals: list[tuple[float, int]] = []  # (time, bytes) of each read in the current call
        self.played_until = 0.0            # when the downlink received so far is played out
        self.audible_until = 0.0           # when its last non-silent byte is played out
        self.per_call_audio_end: list[float | None] = []  # audible_until of each finished call
        self.per_call_max_gap_ms: list[float] = []  # longest wait between two downlink reads
        self.dry: list[float] = []         # s of silence the DSP played because it ran dry (this call)
        self.per_call_dry: list[list[float]] = []   # the same for every finished call
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_r = self._stop_w = -1
        self.dropped = 0                   # bytes that arrived while audio was off
        self.answered_at: float | None = None
        self.first_audio_at: float | None = None   # first non-silent downlink byte after answer
        self._uplink = bytearray()
        self.uplink_override: bytes | None = None  # e.g. a greeting, played once after answer
        self._task: asyncio.Task | None = None
        self._open = False
        # set when a call takes the line: the uplink clock waits on it instead of ticking every
        # 20 ms for nothing (a bank of idle modems cost the simulator most of its CPU)
        self._call_up = asyncio.Event()

    async def start(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._stop_r, self._stop_w = os.pipe()
        self._open = True
        self._thread = threading.Thread(target=self._read_loop, name=f"sim-pcm-{self.path}", daemon=True)
        self._thread.start()
        self._task = asyncio.get_running_loop().create_task(self._uplink_loop())

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join()
        # the slave stays open until the modem's stop(): its pty number is not reused meanwhile
        for fd in (self.master, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._task:
            self._task.cancel()

    def wake(self) -> None:
        """A call took the line (the modem's ``call`` was set): start the uplink clock."""
        self._call_up.set()

    @property
    def enabled(self) -> bool:
        call = self.modem.call
        return call is not None and self.modem.dialect.audio_enabled(call)

    def call_started(self, call) -> None:
        with self._lock:
            self.received = bytearray()
            self.arrivals = []
            self.dry = []
            self.audible_until = 0.0
            self.answered_at = call.answered_at
            self.first_audio_at = None
        self._uplink = bytearray()

    def call_ended(self) -> None:
        with self._lock:
            unheard = max(0.0, self.played_until - time.monotonic())
            n = min(len(self.received), int(unheard * RATE) * 2)
            whole = bytes(self.received)
            times = [t for t, _ in self.arrivals]
            self.per_call_dry.append(self.dry)
        self.per_call_max_gap_ms.append(max((b - a for a, b in itertools.pairwise(times)), default=0.0) * 1000)
        # the unheard tail up to its last non-zero S16LE sample (bytes, not numpy: see tone())
        loud = (len(whole[len(whole) - n :].rstrip(b"\0")) + 1) // 2
        self.per_call.append(whole)
        self.per_call_audio_end.append(self.audible_until or None)
        self.per_call_cut_ms.append(loud / 8)

    def send_tone(self, key: str, ms: int) -> None:
        self._uplink += tone(key, ms).tobytes() + bytes(FRAME * 3)

    def send_audio(self, samples: np.ndarray) -> None:
        self._uplink += samples.astype("<i2").tobytes()

    def _read_loop(self) -> None:
        # a modem's DSP runs on its own clock: give the thread real-time priority when allowed,
        # so arrival times are the writer's, not this process's scheduling delays
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        while self._open:
            try:
                ready, _, _ = select.select([self.master, self._stop_r], [], [])
            except (OSError, ValueError):
                return
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            self._downlink(data, time.monotonic())

    def _downlink(self, data: bytes, now: float) -> None:
        with self._lock:
            if self.enabled:
                if self.first_audio_at is None and any(data):
                    self.first_audio_at = now
                self.received += data
                if self.arrivals and now > self.played_until:      # ran dry mid-call
                    self.dry.append(now - self.played_until)
                self.arrivals.append((now, len(data)))
                # the DSP plays at 8 kHz: after what it still holds, or now if it ran dry
                self.played_until = max(self.played_until, now) + len(data) / (2 * RATE)
                if any(data):
                    self.audible_until = self.played_until
            else:
                self.dropped += len(data)

    async def _uplink_loop(self) -> None:
        t0 = time.monotonic()
        n = 0
        while self._open:
            if self.modem.call is None:     # the line is free: nothing to send until a call comes
                self._call_up.clear()
                await self._call_up.wait()
                t0, n = time.monotonic(), 0
                continue
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
