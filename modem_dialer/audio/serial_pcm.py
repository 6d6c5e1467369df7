"""Voice over a serial PCM port (Huawei voice port, SIM7600 if04, Quectel QPCMV=1,0).

Raw S16LE mono 8 kHz in 320-byte frames both ways (modems.md §5).

Playback does not run on the event loop: one real-time writer thread (:class:`PcmWriter`)
serves every serial PCM port of the process and writes one frame per port at each absolute
deadline ``t0 + n * 20 ms`` (no drift), silence whenever no prompt is queued during a
call (Huawei modems must be fed continuously; ``keep_fed``, set by the call layer while a
call is answered: between calls nothing is written). Frames are prepared ahead by ``play()`` (the queue holds
wire bytes), so a tick is a slice and a non-blocking ``write`` per port. A slow commit, a
garbage collection or a burst of URCs stalls the loop, not this thread: the GIL is
released by every blocking call the loop makes (fsync, sleep, select), and a thread
waiting for the GIL gets it within ``sys.getswitchinterval()`` (5 ms) otherwise. The
writer itself gives the GIL up only in its sleep between ticks: its writes, reads,
TIOCOUTQ and poll go through libc with the GIL kept (rtsys.py), and it wakes the loop
through a pipe written the same way (:class:`_LoopWaker`), so the loop thread cannot take
it (and, preempted, keep it) in the middle of a tick.

Why one thread for all ports rather than one per port: the ports share one clock, so one
wake-up every 20 ms serves 64 modems (64 threads would mean 3,200 wake-ups a second, each
fighting for the GIL), and a tick for 64 ports costs well under a millisecond. A port
that does not take its frame (full buffer) cannot block the others: the descriptors are
non-blocking and an unwritten frame waits for the next tick.

Capture is read by the same thread, after each tick's writes: one ``poll`` over every
port, then one ``read`` per port that has data. Each frame goes first to the path's
``on_capture_rt`` consumer right there (the call layer's in-band DTMF detector, which posts
only the keys it hears to the loop), then, if a consumer on the loop is set (``on_capture``:
AMD, recording, a bridge), to the loop. A call that only listens for keys therefore costs
the loop no wake-up per frame: with 64 modems that was up to 3,200 wake-ups a second
(``add_reader``), about 30 µs of CPU per frame against 10 µs read here (measured with 64
ptys fed at spread phases, docs/audio.md). The price: a frame waits up to one tick (20 ms)
in the tty before it is read, so an in-band key is heard up to 20 ms later.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import serial

from modem_dialer.audio.path import (
    BYTES_PER_SECOND,
    FRAME_BYTES,
    FRAME_SAMPLES,
    FRAME_SECONDS,
    IDLE,
    AudioPath,
    AudioPathError,
    PlayResult,
)
from modem_dialer.audio.rtsys import RtSys
from modem_dialer.audio.writer_trace import WriterTrace
from modem_dialer.errors import UserError

log = logging.getLogger(__name__)

# The writer thread asks for SCHED_FIFO at this priority (Linux, needs CAP_SYS_NICE; silently
# stays at normal priority otherwise). 0 = don't ask.
REALTIME_PRIORITY = 10
_LITTLE_ENDIAN = sys.byteorder == "little"   # the wire's S16LE is then the native int16
_INT16 = np.dtype(np.int16)
# If the thread itself was held up (the OS did not run it) for more than this many frames,
# the schedule is moved to now instead of sending the backlog in one burst: a burst would
# sit in the modem's buffer and delay everything after it, barge-in included.
MAX_LATE_FRAMES = 1
# Frames the modem holds just after each tick: the writer sends one frame per tick and, when
# the model says the modem then holds less than LEAD_FRAMES - 1/2 frames (a prompt's first
# frame on an idle line, the first silence of a call, a tick that came late), more at once
# (up to LEAD_FRAMES in all), so the modem holds (LEAD_FRAMES - 1) x 20 to LEAD_FRAMES x 20 ms
# when each tick comes instead of 0-20: a writer (or a USB transfer) held up by up to
# (LEAD_FRAMES - 1) x 20 ms opens no hole the callee hears, and the hang-up computed from the
# model does not depend on the writer's jitter. The price: a barge-in stops what the modem
# plays up to (LEAD_FRAMES - 1) x 20 ms later, and a bridge's relayed audio comes that much
# later. 1 = no lead. Per modem: ``audio.lead_frames`` (docs/audio.md "Frames written ahead").
LEAD_FRAMES = 2


# Frames read in one tick: rows of an array, or one frame alone.
FrameBatch = np.ndarray | tuple[np.ndarray, ...]


def _deliver_batch(batch: list[tuple[SerialPcm, FrameBatch]]) -> None:
    """On the loop: each port's frames of a tick to its ``on_capture``."""
    for port, frames in batch:
        port._deliver_frames(frames)


class _LoopWaker:
    """What the writer thread posts to one event loop (a prompt done, a port lost, captured
    frames): queued here and the loop woken through a pipe written with the GIL kept
    (rtsys.py), not with ``call_soon_threadsafe``, whose socket ``send`` gives the GIL up in
    the middle of a tick: the loop thread, often waiting for it, then took it, and the
    writer waited for it back (5 ms, the switch interval, or as long as the loop thread was
    kept off a CPU) before the next ports' frames; bench/slow_disk.py saw such ticks when
    16 prompts ended together. One byte per batch: the loop runs everything queued."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rt: RtSys) -> None:
        self.loop = loop
        self.users = 0          # ports of this loop on the writer
        self._rt = rt
        self._calls: collections.deque[tuple[Callable[..., None], tuple[object, ...]]] = collections.deque()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._armed = False     # a byte is in the pipe: the loop will run what is queued
        self.closed = False
        loop.add_reader(self._r, self._run)

    def post(self, fn: Callable[..., None], *args: object) -> None:
        """From the writer thread (or the loop's, under the writer's lock)."""
        if self.closed or self.loop.is_closed():
            return
        self._calls.append((fn, args))
        if not self._armed:
            self._armed = True
            try:
                self._rt.write(self._w, b"x")
            except OSError:     # (the pipe's end is ours: not expected)
                self._armed = False

    def _run(self) -> None:
        """On the loop: everything queued, in order."""
        with contextlib.suppress(OSError):
            os.read(self._r, 4096)
        self._armed = False     # before running: a post from now on writes a byte again
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("pcm writer: %r failed on the loop", fn)

    def close(self) -> None:
        """On the loop, under the writer's lock (nothing is posted meanwhile); what was
        queued still runs, on the loop."""
        self.closed = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._r)
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._calls and not self.loop.is_closed():
            self.loop.call_soon(self._run_left, list(self._calls))
        self._calls.clear()

    @staticmethod
    def _run_left(calls: list[tuple[Callable[..., None], tuple[object, ...]]]) -> None:
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                log.exception("pcm writer: %r failed on the loop", fn)


class PcmWriter:
    """The real-time thread that writes every serial PCM port's frames (see module doc)."""

    def __init__(self) -> None:
        self._ports: list[SerialPcm] = []
        self.lock = threading.Lock()  # held for a whole tick: remove() never races a write or a read
        # the tick's system calls, made without giving up the GIL (rtsys.py), under the lock
        self.sys = RtSys()
        self._reading: dict[int, SerialPcm] = {}   # the ports' capture descriptors
        self._to_loop: list[tuple[SerialPcm, FrameBatch]] = []   # frames read this tick for on_capture
        self._thread: threading.Thread | None = None
        self.late_ticks = 0  # ticks whose deadline had passed by more than MAX_LATE_FRAMES
        self.realtime = False  # whether SCHED_FIFO was granted
        # what each tick and write did, when MODEM_DIALER_PCM_TRACE asks for it (writer_trace.py)
        self.trace = WriterTrace.from_env()
        self._wakers: dict[asyncio.AbstractEventLoop, _LoopWaker] = {}

    def waker(self, loop: asyncio.AbstractEventLoop) -> _LoopWaker | None:
        """The waker of ``loop`` (lock held), None if it has no port here any more."""
        return self._wakers.get(loop)

    def add(self, port: SerialPcm) -> None:
        """On the port's loop."""
        with self.lock:
            loop = port._loop
            if loop is not None:
                waker = self._wakers.get(loop)
                if waker is None:
                    waker = self._wakers[loop] = _LoopWaker(loop, self.sys)
                waker.users += 1
            self._ports.append(port)
            self._reading[port._fd] = port
            self.sys.watch(list(self._reading))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pcm-writer", daemon=True)
                self._thread.start()

    def remove(self, port: SerialPcm) -> None:
        """On the port's loop."""
        with self.lock:
            if port in self._ports:
                self._ports.remove(port)
                waker = self._wakers.get(port._loop) if port._loop is not None else None
                if waker is not None:
                    waker.users -= 1
                    if waker.users <= 0:
                        del self._wakers[waker.loop]
                        waker.close()
            self._unwatch(port)

    def _unwatch(self, port: SerialPcm) -> None:
        """Stop reading ``port``'s capture (lock held)."""
        if self._reading.get(port._fd) is port:
            del self._reading[port._fd]
            self.sys.watch(list(self._reading))

    def _run(self) -> None:
        if REALTIME_PRIORITY:
            try:  # pid 0 = the calling thread on Linux
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
                self.realtime = True
            except (OSError, AttributeError) as exc:
                log.debug("pcm writer stays at normal priority (%s)", exc)
        t0 = time.monotonic()
        n = 0
        while True:
            n += 1
            deadline = t0 + n * FRAME_SECONDS
            trace = self.trace
            if trace is not None:
                trace.before_sleep()
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if trace is not None:
                trace.tick(deadline, time.monotonic())
            late = -delay > MAX_LATE_FRAMES * FRAME_SECONDS
            if late:
                self.late_ticks += 1
                t0, n = time.monotonic(), 0
            with self.lock:
                if not self._ports:
                    self._thread = None
                    if trace is not None:
                        trace.thread_stopped()
                    return
                if late:
                    for port in self._ports:
                        port.late_frames += 1
                for port in self._ports:
                    port._tick()
                written = time.monotonic() if trace is not None else 0.0
                # capture, after the writes: what a read costs never delays a frame out
                if self._reading:
                    for fd in self.sys.readable():
                        readable = self._reading.get(fd)
                        if readable is not None:
                            readable._capture()
                    if self._to_loop:
                        self._post_captured()
                if trace is not None:
                    trace.tick_done(written, time.monotonic())

    def _post_captured(self) -> None:
        """The frames this tick read for consumers on a loop (``on_capture``): one post per
        loop and tick for every port, not one per port (lock held)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[SerialPcm, FrameBatch]]] = {}
        for port, frames in self._to_loop:
            if port._loop is not None:
                by_loop.setdefault(port._loop, []).append((port, frames))
        self._to_loop = []
        for loop, batch in by_loop.items():
            waker = self._wakers.get(loop)
            if waker is not None:
                waker.post(_deliver_batch, batch)


WRITER = PcmWriter()


class SerialPcm(AudioPath):
    def __init__(self, port: str, baudrate: int = 115200, name: str | None = None,
                 lead_frames: int | None = None) -> None:
        super().__init__(name or port)
        self.port = port
        self.baudrate = baudrate
        self.lead_frames = lead_frames or LEAD_FRAMES   # see LEAD_FRAMES
        self._lead_floor = (self.lead_frames - 0.5) * FRAME_SECONDS
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._rbuf = bytearray()
        self._pending = b""  # the part of a frame the tty did not take yet
        self._played_until = 0.0  # when the modem will have played everything written
        self._writing = False
        self.late_frames = 0  # ticks written more than a frame after their deadline
        self.skipped_frames = 0  # ticks the port did not take (full buffer): nothing new queued
        # test/bench hook, called on the writer thread with the send time of each tick's
        # frame (not of the frame a refill adds: LEAD_FRAMES)
        self.on_tick: Callable[[float], None] | None = None

    async def start(self) -> None:
        self._setup()
        try:
            # pyserial sets the tty raw and the speed; we then use the descriptor directly
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise UserError(f"{self.port}: cannot open audio port ({exc})") from None
        self._fd = self._serial.fileno()
        os.set_blocking(self._fd, False)
        self._writing = True
        WRITER.add(self)

    def play(self, samples: np.ndarray) -> asyncio.Future[PlayResult]:
        fut = super().play(samples)
        # The modem has nothing left to play (a call just answered, no silence sent yet):
        # the first frame goes now rather than at the next tick, up to 20 ms sooner. The
        # frames after it follow on the writer's ticks, which come less than 20 ms later,
        # so the modem never runs dry in between.
        if not self._pending and self._played_until <= time.monotonic():
            with WRITER.lock:
                if self._writing and not self._pending and self._played_until <= time.monotonic():
                    self._tick()
        return fut

    # -- writer thread --

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        # Under the writer's lock (a tick, or play()'s first frame): through the loop's waker,
        # which keeps the GIL (_LoopWaker); call_soon_threadsafe once the port has left.
        waker = WRITER.waker(self._loop) if self._loop is not None else None
        if waker is not None:
            waker.post(fn, *args)
        else:
            super()._post(fn, *args)

    def _tick(self) -> None:
        # Runs for every port every 20 ms: kept to one write (plus one ioctl for prompt
        # frames) and no allocation on an idle tick.
        if not self._writing or not (self.keep_fed or self._pending or self._queue):
            return                           # between calls with nothing queued: nobody to hear
        if self._write_frame():
            # The modem holds less than its lead (a first frame, or a tick that came late):
            # frames more now, up to the lead (LEAD_FRAMES), not the whole backlog of a stall.
            for _ in range(self.lead_frames - 1):
                if not (self.keep_fed or self._queue) or not self._write_frame(refill=True):
                    break

    def _write_frame(self, refill: bool = False) -> bool:
        """One frame (or the rest of one) to the port; True if the port took it whole and the
        modem still holds less than its lead (the writer then tops it up)."""
        if self._pending:
            data, taken = self._pending, None
        else:
            queue = self._queue
            assert queue is not None
            taken = queue.take()     # IDLE (silence, most ticks) without its lock when empty
            data = taken.frame
        # The modem plays at 8 kHz from when a frame reaches it: what it still holds is what
        # we wrote minus the time elapsed since, plus what the tty has not sent yet. The
        # tty's queue is asked for prompt frames only (the model is read for them: drain());
        # a silence frame just extends the model, and the next prompt frame corrects it.
        # (Asking at a prompt's last frame only was tried: a backlog that cleared before it
        # leaves the modem behind for the rest of the prompt, and the model no longer knew:
        # test_call_realtime heard cut messages under load.)
        rt = WRITER.sys
        queued = rt.outq(self._fd) / BYTES_PER_SECOND if taken is not IDLE else 0.0
        sent_at = time.monotonic()    # when the frame went: the stamp tests and benches see
        try:
            n = rt.write(self._fd, data)
        except OSError as exc:
            self._writing = False
            self._post(self._lost, exc)
            return False
        # The model's stamp is taken per port and after the write, not once per tick before
        # all of them: the ports before this one (and the GIL, which every write and ioctl
        # gives up, and which another thread may keep for milliseconds before this one gets
        # it back) made a tick-start or pre-write stamp earlier than the write, the model
        # ahead of the modem, and the hang-up came before the end of the message had played.
        # After the write, with the queue read before it (it only shrinks), the model errs
        # late, never early. (``sent_at``, before the write, says when the frame went: the
        # GIL taken back after the write is no part of that.)
        now = time.monotonic()
        start = now + queued
        self._pending = data[n:]
        if n == 0:
            self.skipped_frames += 1
        played_until = self._played_until
        if start > played_until:
            played_until = start
        self._played_until = played_until = played_until + n / BYTES_PER_SECOND
        if taken is IDLE:
            self.frames_sent += 1       # all _sent does for silence (no prompt starts or ends)
        elif taken is not None:
            self._sent(taken, sent_at, played_until)
        if self.on_tick is not None and not refill:
            self.on_tick(sent_at)
        trace = WRITER.trace
        if trace is not None:
            trace.wrote(self.port, sent_at, n)
        return n == len(data) and played_until - now < self._lead_floor

    def _capture(self) -> None:
        """The callee's audio, read on the writer thread (lock held): whole frames to
        ``on_capture_rt`` here, and to ``on_capture`` on the loop when one is set."""
        try:
            data = WRITER.sys.read(self._fd)
        except OSError as exc:
            self._read_failed(exc)
            return
        if data is None:
            return
        if not data:
            self._read_failed(None)
            return
        if len(data) == FRAME_BYTES and not self._rbuf and _LITTLE_ENDIAN:
            # the usual read: one frame (the modem sends one every 20 ms), as a read-only
            # view of the bytes read (consumers copy what they keep or change)
            self.frames_captured += 1
            frame = np.frombuffer(data, dtype=_INT16)
            rt_consumer = self.on_capture_rt
            if rt_consumer is not None:
                try:                # _deliver_rt, inlined: this runs for every frame of every call
                    rt_consumer(frame)
                except Exception:   # a faulty consumer must not stop the audio
                    log.exception("%s: capture consumer %r failed", self.name, rt_consumer)
            if self.on_capture is not None:
                WRITER._to_loop.append((self, (frame,)))
            return
        if not self._rbuf and len(data) % FRAME_BYTES == 0:
            # several frames (two ticks' worth: the clocks drift): views of the bytes read
            frames = np.frombuffer(data, dtype="<i2").reshape(-1, FRAME_SAMPLES)
        else:
            self._rbuf += data
            n = len(self._rbuf) // FRAME_BYTES * FRAME_BYTES
            if n == 0:
                return
            # Whole frames only: the remainder stays, so a read that stops mid-sample never
            # shifts the 16-bit phase of what follows.
            frames = np.frombuffer(bytes(self._rbuf[:n]), dtype="<i2").reshape(-1, FRAME_SAMPLES)
            del self._rbuf[:n]
        if not _LITTLE_ENDIAN:
            frames = frames.astype(np.int16)
        self.frames_captured += len(frames)
        if self.on_capture_rt is not None:
            for f in frames:
                self._deliver_rt(f)
        if self.on_capture is not None:
            WRITER._to_loop.append((self, frames))

    def _read_failed(self, exc: BaseException | None) -> None:
        WRITER._unwatch(self)        # lock held: this port is not polled again
        self._post(self._lost, exc)

    # -- loop thread --

    def _deliver_frames(self, frames: FrameBatch) -> None:
        if self.running:
            for f in frames:
                self._deliver_loop(f)

    def _lost(self, exc: BaseException | None) -> None:
        if self.running:
            self._finish(AudioPathError(f"{self.port}: port lost ({exc or 'closed by peer'})"))
            self._release()

    def _release(self) -> None:
        self._writing = False
        WRITER.remove(self)  # after this the writer thread never touches our descriptor
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
        self._serial, self._fd = None, -1

    async def close(self) -> None:
        if self.ended is None:
            return
        self._finish(None)
        self._release()
