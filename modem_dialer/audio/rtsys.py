"""The PCM writer's system calls, made *without* giving up the GIL (Linux, through libc).

Why: ``os.write``, ``os.read``, ``fcntl.ioctl`` and ``select.poll`` each release the GIL
for the duration of the call, and take it back afterwards. On the writer thread that was
up to a hundred chances a tick (64 ports in calls: a write, a TIOCOUTQ and a read each)
for the event loop thread to take the GIL; the writer then waits until that thread gives
it back, and on a loaded machine that thread (normal priority) may be off the CPU for tens
of milliseconds while holding it: a late frame, a hole the callee hears, and a playout
model stamped late. The calls here are on non-blocking descriptors and return within
microseconds, so holding the GIL through them costs the loop nothing, and the writer
gives the GIL up once a tick, in its sleep. The price: a call through ctypes costs about
1 µs of CPU more than the ``os`` one (~3 µs per frame sent and read, docs/audio.md
"Figures"). Elsewhere than Linux (or if libc cannot be
loaded) the standard ``os`` calls are used, with the same results.

Only ever give these functions non-blocking descriptors: a call that blocked while
holding the GIL would stop every Python thread of the process.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import struct
import termios

import numpy as np

from .. import libc

_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
READ_SIZE = 65536

# struct pollfd {int fd; short events; short revents;}
_POLLFD = np.dtype([("fd", np.int32), ("events", np.int16), ("revents", np.int16)])


def _load() -> ctypes.PyDLL | None:
    return libc.load({
        "write": ([ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_ssize_t),
        "read": ([ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_ssize_t),
        "ioctl": ([ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p], ctypes.c_int),
        "poll": ([ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int], ctypes.c_int),
    })


_libc = _load()
# Patchable: False makes the writer use the os calls (which give the GIL up), for comparison
# (bench/campaign_utilisation.py --pcm-os-calls).
KEEP_GIL = True


def _error() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


class RtSys:
    """The buffers of the calls: not thread-safe; the PCM writer uses its one instance
    under its lock."""

    def __init__(self) -> None:
        self._outq = ctypes.c_int(0)
        self._outq_ref = ctypes.byref(self._outq)
        self._buf = ctypes.create_string_buffer(READ_SIZE)
        self._view = memoryview(self._buf).cast("B")     # what read() copies out (cheaper than string_at)
        self._pollfds = np.zeros(0, dtype=_POLLFD)
        self._poll = select.poll()     # the same set, for the os calls

    def write(self, fd: int, data: bytes) -> int:
        """Bytes written (0 if the descriptor takes none now); OSError on a real error."""
        libc = _libc if KEEP_GIL else None
        if libc is None:
            try:
                return os.write(fd, data)
            except (BlockingIOError, InterruptedError):
                return 0
        n: int = libc.write(fd, data, len(data))
        if n >= 0:
            return n
        if ctypes.get_errno() in _RETRY:
            return 0
        raise _error()

    def read(self, fd: int) -> bytes | None:
        """What the descriptor holds (b"" at end of file), None if nothing now; OSError on a
        real error."""
        libc = _libc if KEEP_GIL else None
        if libc is None:
            try:
                return os.read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return None
        n: int = libc.read(fd, self._buf, READ_SIZE)
        if n > 0:
            return bytes(self._view[:n])
        if n == 0:
            return b""
        if ctypes.get_errno() in _RETRY:
            return None
        raise _error()

    def outq(self, fd: int) -> int:
        """Bytes the tty still holds unsent (TIOCOUTQ, what tcdrain waits for); 0 if unknown."""
        libc = _libc if KEEP_GIL else None
        if libc is None:
            try:
                return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0])
            except OSError:
                return 0
        if libc.ioctl(fd, termios.TIOCOUTQ, self._outq_ref) < 0:
            return 0
        return self._outq.value

    def watch(self, fds: list[int]) -> None:
        """The descriptors :meth:`readable` polls (replaces the previous set)."""
        self._poll = select.poll()
        for fd in fds:
            self._poll.register(fd, select.POLLIN)
        p = np.zeros(len(fds), dtype=_POLLFD)
        p["fd"] = fds
        p["events"] = select.POLLIN
        self._pollfds = p

    def readable(self) -> list[int]:
        """The watched descriptors with something to read (or an error or hang-up to
        report), without waiting."""
        libc = _libc if KEEP_GIL else None
        if libc is None:
            return [fd for fd, _ in self._poll.poll(0)]
        p = self._pollfds
        if not len(p):
            return []
        if libc.poll(p.ctypes.data, len(p), 0) <= 0:
            return []
        fds: list[int] = p["fd"][p["revents"] != 0].tolist()
        return fds
