"""Downlink timestamps that show what the modem got, not when the simulator got scheduled.

The simulated PCM port (sim/audio_port.py) reads the dialer's downlink in a thread of the
simulator's process and stamps each read. That thread shares the process's GIL with the
simulator's event loop (every modem's AT dialogue and uplink clock) and, in the benches,
with the bench's own bookkeeping. On a loaded machine the OS may leave the loop thread off
the CPU for 50-150 ms *while it holds the GIL*: the reader then stamps frames late that
reached the port on time (several frames come in one read after the "hole"), and the bench
reports holes no modem would hear.

``install()`` makes every SimAudioPort started afterwards read through a *tap*: a small
process of its own per port, one thread, real-time priority when allowed (root; SCHED_FIFO
10 like the simulator's reader and the dialer's writer: higher, it would preempt the
dialer's writer at each write of its tick and cost the dialer context switches), that only
waits on the port, reads, stamps with CLOCK_MONOTONIC (shared by every process) and hands
``(stamp, bytes)`` to the simulator's thread, which plays them at those times. The
simulator's thread also notes when it handled each read (``_sim_times``) so a bench can
show both views, and every read of the port, in a call or not, is kept as ``(stamp, bytes)``
in ``tap_reads``: with the dialer's own record of its writes (MODEM_DIALER_PCM_TRACE,
audio/writer_trace.py) byte offsets pair each read with the write that sent it, which
tells a frame the dialer sent late from one the tap read late (bench/slow_disk.py).
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time

from modem_dialer.sim.audio_port import SimAudioPort

TAP = r"""
import os, select, struct, sys, time
port, out = int(sys.argv[1]), int(sys.argv[2])
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except (OSError, AttributeError):
    pass
while True:
    select.select([port], [], [])
    try:
        data = os.read(port, 65536)
    except BlockingIOError:
        continue
    except OSError:
        break
    if not data:
        break
    rec = memoryview(struct.pack("<dI", time.monotonic(), len(data)) + data)
    while rec:
        rec = rec[os.write(out, rec):]
"""
_HEAD = struct.Struct("<dI")


def install() -> None:
    """Every SimAudioPort of this process reads its downlink through a tap from now on."""
    SimAudioPort._read_loop = _tapped_read_loop  # type: ignore[method-assign]


def _tapped_read_loop(self: SimAudioPort) -> None:
    """SimAudioPort's reader thread, fed by a tap process instead of reading the port."""
    r, w = os.pipe()
    tap = subprocess.Popen([sys.executable, "-c", TAP, str(self.master), str(w)], pass_fds=(self.master, w))
    os.close(w)
    self._sim_times = []  # type: ignore[attr-defined]
    reads: list[tuple[float, int]] = []
    self.tap_reads = reads  # type: ignore[attr-defined]
    buf = b""
    try:
        while self._open:
            ready, _, _ = select.select([r, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            chunk = os.read(r, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= _HEAD.size:
                at, n = _HEAD.unpack_from(buf)
                if len(buf) < _HEAD.size + n:
                    break
                data, buf = buf[_HEAD.size:_HEAD.size + n], buf[_HEAD.size + n:]
                reads.append((at, n))
                self._downlink(data, at)
                now = time.monotonic()
                with self._lock:
                    if self.arrivals and self.arrivals[-1][0] == at:   # a read during a call
                        self._sim_times.append(now)  # type: ignore[attr-defined]
    finally:
        tap.kill()
        tap.wait()
        os.close(r)


