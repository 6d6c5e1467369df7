"""What every modem audio path offers: paced 20 ms playback with a prompt queue, capture
of the callee's direction in 20 ms frames, barge-in, and a clean end on errors.

Threading model (docs/audio.md): frames leave from a real-time thread that the event loop
never blocks — the serial PCM writer thread (serial_pcm.py) or PortAudio's callback thread
(uac.py). The loop only feeds and controls them through the prompt queue
(:class:`PlayQueue`, thread-safe): ``play()`` appends a prompt already converted to the
wire format, ``stop_playback()`` empties the queue (barge-in), and silence goes out
whenever it is empty. Prompt futures are always completed on the loop, posted once per
prompt (not per frame) by the audio thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import gc
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES
FRAME_SECONDS = 0.020
BYTES_PER_SECOND = 16000
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE_BYTES = bytes(FRAME_BYTES)

log = logging.getLogger(__name__)


_frozen = False
# The collector's first threshold once audio starts (Python's default: 700). A campaign's
# calls in progress keep a couple of thousand young objects alive at any time (their
# coroutines, futures, timers), so with 700 the loop thread ran a young collection every
# few calls, each walking all of them (~0.4 ms): ~2 % of a call's CPU (issue 10). At this
# value it runs about ten times less often and walks about as many objects each time (those
# alive then), which the audio threads' one-frame lead absorbs. 0 leaves the default.
GC_YOUNG_THRESHOLD = 10_000


def freeze_heap() -> None:
    """Once per process, when the first audio path starts: move every object alive now
    (modules, libraries, configuration: nearly all of the heap) out of the garbage
    collector's reach (``gc.freeze``). Why: a full collection walks the whole heap while
    holding the GIL, and the audio threads need the GIL to send their frames: measured
    180-240 ms in a campaign process, which the callees would hear as a hole. Objects
    created afterwards are collected as usual (young collections less often:
    GC_YOUNG_THRESHOLD); the frozen ones are still freed by reference counting when they
    go (only cycles among them would stay)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
        young, middle, old = gc.get_threshold()
        if GC_YOUNG_THRESHOLD and young < GC_YOUNG_THRESHOLD:
            gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class PlayResult(enum.Enum):
    DONE = "done"  # the last frame of the prompt has been sent
    INTERRUPTED = "interrupted"  # stop_playback() or close() before the end


class AudioPathError(Exception):
    """The audio path ended on its own (port vanished, device error)."""


@dataclass
class _Item:
    data: bytes  # S16LE, zero-padded to whole frames: the audio thread only slices it
    future: asyncio.Future[PlayResult]
    pos: int = 0  # byte offset of the next frame


class Taken:
    """One frame to send (320 bytes S16LE), and which prompts it starts or completes.

    A plain class with slots: one is made per prompt frame on the audio thread (a dataclass
    with a list per frame cost twice as much)."""

    __slots__ = ("finished", "frame", "started")

    def __init__(self, frame: bytes, started: _Item | None = None, finished: tuple[_Item, ...] = ()) -> None:
        self.frame = frame
        self.started = started
        self.finished = finished

    @property
    def prompt(self) -> bool:
        """Whether the frame is prompt audio (not idle silence)."""
        return self.frame is not SILENCE_BYTES

    def samples(self) -> np.ndarray:
        return np.frombuffer(self.frame, dtype="<i2").astype(np.int16, copy=False)


# The frame sent when no prompt is queued. Shared: never mutated (``finished`` stays empty).
IDLE = Taken(SILENCE_BYTES)


class PlayQueue:
    """Prompts waiting to be played, prepared ahead as whole 320-byte frames (the last one
    zero-padded), so that the real-time thread taking them does no conversion."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[_Item] = collections.deque()
        self._lock = threading.Lock()

    def put(self, samples: np.ndarray) -> asyncio.Future[PlayResult]:
        fut: asyncio.Future[PlayResult] = self._loop.create_future()
        pcm = np.ascontiguousarray(samples, dtype=np.int16).ravel()
        if len(pcm) == 0:
            fut.set_result(PlayResult.DONE)
            return fut
        pad = -len(pcm) % FRAME_SAMPLES
        data = pcm.astype("<i2", copy=False).tobytes() + bytes(2 * pad)
        with self._lock:
            self._items.append(_Item(data, fut))
        return fut

    def take(self) -> Taken:
        """The next frame: prompt audio if any is queued, else :data:`IDLE` (silence, always
        the same object: the audio thread's idle tick allocates nothing)."""
        if not self._items:       # a racing put() is seen at the next tick
            return IDLE
        with self._lock:
            if not self._items:
                return IDLE
            item = self._items[0]
            started = item if item.pos == 0 else None
            frame = item.data[item.pos : item.pos + FRAME_BYTES]
            item.pos += FRAME_BYTES
            if item.pos >= len(item.data):
                self._items.popleft()
                return Taken(frame, started, (item,))
            return Taken(frame, started)

    def clear(self) -> list[_Item]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def __bool__(self) -> bool:
        return bool(self._items)     # no lock: a deque's length is read atomically

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

    ``on_capture(frame)`` receives each captured 160-sample frame of the callee's direction
    on the event loop (possibly a read-only array: copy it to change it).
    ``on_capture_rt(frame)`` receives the same frames first, on the thread that reads the
    capture (the serial PCM writer thread; the loop for a sound card), never two at once:
    for a quick consumer that posts only its results to the loop (the in-band DTMF
    detector posts keys), so that a frame costs no loop wake-up. It must not block.
    ``ended`` resolves (with the error, or None on close) when the path stops.
    """

    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_capture: Callable[[np.ndarray], None] | None = None
        self.on_capture_rt: Callable[[np.ndarray], None] | None = None
        self.frames_sent = 0
        self.frames_captured = 0
        self.first_frame_sent_at: float | None = None
        # When the modem will have played the last prompt frame sent (monotonic): the
        # audio thread's model of what is still buffered downstream (see drain()).
        self.prompt_played_until = 0.0
        self.error: BaseException | None = None
        # Whether the audio thread sends silence while no prompt is queued. The call layer
        # clears it between calls (a line has nobody to hear, and 64 idle serial ports cost
        # 3,200 writes a second) and sets it while a call is answered; a queued prompt is
        # always played. Only serial ports act on it (a sound card's stream runs anyway).
        self.keep_fed = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: PlayQueue | None = None
        self.ended: asyncio.Future[BaseException | None] | None = None

    def _setup(self) -> None:
        freeze_heap()
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

    async def drain(self, margin: float = 0.0) -> None:
        """Until the modem has played every prompt frame sent so far, plus ``margin`` s
        (the family's own playout buffer, a setting). Returns at once when nothing is
        buffered: the time is computed from frames written vs. elapsed time, never a guess."""
        wait = self.buffered(margin)
        if wait > 0:
            await asyncio.sleep(wait)

    def buffered(self, margin: float = 0.0) -> float:
        """Seconds until the prompt audio sent so far has been played (+ ``margin``), 0 if it has."""
        return max(0.0, self.prompt_played_until + margin - time.monotonic())

    # -- helpers for implementations --

    def _sent(self, taken: Taken, at: float, played_until: float) -> None:
        """On the audio thread, after a frame left: counters, the playout model, and the
        prompts it started/finished posted to the loop (once per prompt, not per frame)."""
        self.frames_sent += 1
        if taken.prompt:
            self.prompt_played_until = played_until
        if taken.started is not None:
            self.first_frame_sent_at = at
        if taken.finished:
            self._post(self._resolve_done, taken.finished)

    def post_from_capture(self, fn: Callable[..., None], *args: object) -> None:
        """For an ``on_capture_rt`` consumer: ``fn(*args)`` on the loop, soon (a serial
        port's writer thread wakes the loop without giving the GIL up: serial_pcm._LoopWaker)."""
        self._post(fn, *args)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn, *args)

    @staticmethod
    def _resolve_done(items: tuple[_Item, ...]) -> None:
        for item in items:
            _resolve(item, PlayResult.DONE)

    def _deliver(self, frame: np.ndarray) -> None:
        """A captured frame, for a path that reads its capture on the loop (sound cards):
        both consumers, here."""
        self.frames_captured += 1
        if self.on_capture_rt is not None:
            self._deliver_rt(frame)
        if self.on_capture is not None:
            self._deliver_loop(frame)

    def _deliver_rt(self, frame: np.ndarray) -> None:
        self._consume(self.on_capture_rt, frame)

    def _deliver_loop(self, frame: np.ndarray) -> None:
        self._consume(self.on_capture, frame)

    def _consume(self, cb: Callable[[np.ndarray], None] | None, frame: np.ndarray) -> None:
        if cb is None:
            return
        try:
            cb(frame)
        except Exception:  # a faulty consumer must not stop the audio
            log.exception("%s: capture consumer %r failed", self.name, cb)

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
