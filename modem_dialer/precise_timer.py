"""A one-shot timer the event loop keeps to the microsecond (Linux ``timerfd``).

Why: asyncio's own timers (``call_at`` / ``call_later``) wake the loop through
``epoll_wait``, whose timeout is in whole milliseconds; ``selectors.EpollSelector`` rounds
it *up* so as never to wake early, so a timer fires 0–1 ms late (0.5 ms on average) on top
of the loop's own turn. For most waits that is nothing, but the hang-up after a message is
on every call's path: a line's cycle is answer + message + margin + a few ms, and with
0.7 s calls each millisecond is 0.14 % of the port time (bench/campaign_utilisation.py
--realistic: "model's playout end -> hang-up" was the 5 ms margin + 0.9 ms).

A ``timerfd`` armed with an absolute ``CLOCK_MONOTONIC`` time (the clock of
``time.monotonic()`` on Linux) becomes readable at that time to the kernel's high-resolution
timers, and the loop, watching it like any other descriptor, wakes then, whatever
millisecond its ``epoll_wait`` timeout was rounded to. Cost: one ``timerfd_settime`` per arm,
one ``read`` when it fires (through libc with the GIL kept: non-blocking, microseconds).

One deadline at a time per timer (arming again replaces it): a line keeps one for the
hang-up of its call (``call.line.Line.precise_timer``). Elsewhere than Linux, or if libc has
no ``timerfd_create``, it is the loop's ``call_at``, with its rounding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import time
import weakref
from collections.abc import Callable

from . import libc

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _load() -> ctypes.PyDLL | None:
    return libc.load({
        "timerfd_create": ([ctypes.c_int, ctypes.c_int], ctypes.c_int),
        "timerfd_settime": ([ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p], ctypes.c_int),
    })


_libc = _load()
# Patchable (tests, benches): False makes every PreciseTimer the loop's call_at.
ENABLED = True


class PreciseTimer:
    """``call_at(when, fn)``: ``fn()`` on the loop at ``when`` (``time.monotonic()``), never
    before it, within the kernel's timer latency after it; ``cancel()``; ``close()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._fn: Callable[[], object] | None = None
        self._handle: asyncio.TimerHandle | None = None     # the fallback's
        self._fd = -1
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        if ENABLED and _libc is not None:
            fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                try:
                    self._loop.add_reader(fd, self._fired)
                except Exception:   # a loop that watches no descriptors: the fallback
                    os.close(fd)
                else:
                    self._fd = fd
                    # a timer dropped without close() (its loop closed) still gives its descriptor back
                    self._finalizer = weakref.finalize(self, _close_quietly, fd)

    @property
    def precise(self) -> bool:
        """Whether the kernel's timerfd keeps the time (else the loop's ``call_at``)."""
        return self._fd >= 0

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """``fn()`` at monotonic time ``when`` (replacing any deadline not reached yet)."""
        self.cancel()
        if self._fd < 0:
            self._on_loop(when, fn)
            return
        self._fn = fn
        if when <= 0:
            when = 1e-9             # an all-zero it_value disarms: "now" is the past
        sec = int(when)
        self._spec.it_value.tv_sec = sec
        self._spec.it_value.tv_nsec = int((when - sec) * 1e9)
        assert _libc is not None
        if _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None) < 0:
            # (not expected: a valid descriptor and time) keep the promise with the loop's timer
            self._fn = None
            self._on_loop(when, fn)

    def _on_loop(self, when: float, fn: Callable[[], object]) -> None:
        """The fallback: the loop's own timer (its clock is not time.monotonic()'s everywhere)."""
        self._handle = self._loop.call_at(self._loop.time() + (when - time.monotonic()), fn)

    def cancel(self) -> None:
        """Drop the deadline (no call). An expiry already pending on the descriptor is
        ignored when read, and arming again resets it."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fn is not None:
            self._fn = None
            self._spec.it_value.tv_sec = self._spec.it_value.tv_nsec = 0
            assert _libc is not None
            _libc.timerfd_settime(self._fd, 0, self._spec_ref, None)     # disarm

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)        # the expiry count: readable again only at the next one
        except (BlockingIOError, InterruptedError):
            return                      # disarmed or re-armed since it became readable
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()

    def close(self) -> None:
        self.cancel()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
            self._finalizer.detach()
            _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
