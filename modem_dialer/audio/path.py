"""What every modem audio path offers: paced 20 ms playback with a prompt queue, capture
of the callee's direction in 20 ms frames, barge-in, and a clean end on errors.

The prompt queue (:class:`PlayQueue`) is shared by the implementations. It is thread-safe
because the sound-card path takes frames from PortAudio's callback thread while prompts
are queued from the event loop; futures are always completed on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES
FRAME_SECONDS = 0.020
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)

log = logging.getLogger(__name__)


class PlayResult(enum.Enum):
    DONE = "done"  # the last frame of the prompt has been sent
    INTERRUPTED = "interrupted"  # stop_playback() or close() before the end


class AudioPathError(Exception):
    """The audio path ended on its own (port vanished, device error)."""


@dataclass
class _Item:
    samples: np.ndarray
    future: asyncio.Future[PlayResult]
    pos: int = 0


@dataclass
class Taken:
    """One frame to send, and which prompts it starts or completes."""

    frame: np.ndarray
    started: _Item | None = None
    finished: list[_Item] = field(default_factory=list)


class PlayQueue:
    """Prompts waiting to be played, cut into 160-sample frames (the last one zero-padded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[_Item] = collections.deque()
        self._lock = threading.Lock()

    def put(self, samples: np.ndarray) -> asyncio.Future[PlayResult]:
        fut: asyncio.Future[PlayResult] = self._loop.create_future()
        pcm = np.ascontiguousarray(samples, dtype=np.int16).ravel()
        with self._lock:
            if len(pcm) == 0:
                fut.set_result(PlayResult.DONE)
            else:
                self._items.append(_Item(pcm, fut))
        return fut

    def take(self) -> Taken:
        """The next frame: prompt audio if any is queued, else silence."""
        with self._lock:
            if not self._items:
                return Taken(SILENCE)
            item = self._items[0]
            started = item if item.pos == 0 else None
            chunk = item.samples[item.pos : item.pos + FRAME_SAMPLES]
            item.pos += FRAME_SAMPLES
            taken = Taken(chunk, started)
            if item.pos >= len(item.samples):
                self._items.popleft()
                taken.finished.append(item)
                if len(chunk) < FRAME_SAMPLES:
                    taken.frame = np.concatenate([chunk, SILENCE[: FRAME_SAMPLES - len(chunk)]])
            return taken

    def clear(self) -> list[_Item]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _resolve(item: _Item, result: PlayResult | BaseException) -> None:
    """Complete a prompt's future (on the loop's thread) unless someone cancelled it."""
    if item.future.done():
        return
    if isinstance(result, BaseException):
        item.future.set_exception(result)
        item.future.exception()  # mark retrieved: a caller who stopped waiting is not an error
    else:
        item.future.set_result(result)


class AudioPath(ABC):
    """Playback and capture for one modem's voice channel, 8 kHz mono int16, 20 ms frames.

    ``on_capture(frame)`` receives each captured 160-sample frame of the callee's direction.
    ``ended`` resolves (with the error, or None on close) when the path stops.
    """

    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_capture: Callable[[np.ndarray], None] | None = None
        self.frames_sent = 0
        self.frames_captured = 0
        self.first_frame_sent_at: float | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: PlayQueue | None = None
        self.ended: asyncio.Future[BaseException | None] | None = None

    def _setup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = PlayQueue(self._loop)
        self.ended = self._loop.create_future()

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @property
    def running(self) -> bool:
        return self.ended is not None and not self.ended.done()

    def play(self, samples: np.ndarray) -> asyncio.Future[PlayResult]:
        """Queue a prompt; the future resolves when its last frame has been sent."""
        if self._queue is None:
            raise RuntimeError(f"{self.name}: play() before start()")
        if not self.running:
            raise AudioPathError(f"{self.name}: audio path is closed ({self.error or 'closed'})")
        return self._queue.put(samples)

    def stop_playback(self) -> None:
        """Barge-in: drop everything queued; unfinished prompts resolve INTERRUPTED."""
        if self._queue is not None:
            for item in self._queue.clear():
                _resolve(item, PlayResult.INTERRUPTED)

    @property
    def playing(self) -> bool:
        return self._queue is not None and len(self._queue) > 0

    # -- helpers for implementations (call on the loop thread) --

    def _after_send(self, taken: Taken) -> None:
        self.frames_sent += 1
        if taken.started is not None:
            self.first_frame_sent_at = time.monotonic()
        for item in taken.finished:
            _resolve(item, PlayResult.DONE)

    def _deliver(self, frame: np.ndarray) -> None:
        self.frames_captured += 1
        cb = self.on_capture
        if cb is None:
            return
        try:
            cb(frame)
        except Exception:  # a faulty consumer must not stop the audio
            log.exception("%s: on_capture callback failed", self.name)

    def _finish(self, error: BaseException | None) -> None:
        """Stop for good: fail or interrupt queued prompts, resolve ``ended``."""
        if self.ended is None or self.ended.done():
            return
        self.error = error
        items = self._queue.clear() if self._queue is not None else []
        for item in items:
            _resolve(item, AudioPathError(f"{self.name}: {error}") if error else PlayResult.INTERRUPTED)
        self.ended.set_result(error)
        if error is not None:
            log.warning("%s: audio path ended: %s", self.name, error)
