"""One call's life: dial → ringing → answered → ended, with a script run while it is up.

``place_call`` writes the journal row before ATD, follows the driver's events, enforces
our own ring timeout, runs the script (a message, an IVR flow, an alert) once the callee
answers, routes keys from URCs and/or the in-band detector, hangs up, and completes the
row. Whatever happens — remote hang-up mid-prompt, modem unplugged, Ctrl-C — the row ends
with an outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import webhooks
from ..at.errors import ATError
from ..audio.dtmf import DtmfDetector
from ..audio.path import AudioPathError, PlayResult
from ..modems.driver import LineBusy
from ..modems.events import Answered, Ended, HangupBy, KeyPressed, ModemLost, Ringing
from ..numbers import dial_string
from ..precise_timer import PreciseTimer
from ..store import Connection
from ..store.call_journal import CallJournal
from .line import Line
from .outcome import LINE_BUSY, OUTCOMES, classify

log = logging.getLogger("modem_dialer.call")

# Regulators count shorter rings as abandoned calls (rules_and_signals.md A.2.6, A.3.2).
MIN_RING_TIMEOUT = 15.0
DEFAULT_RING_TIMEOUT = 45.0
# The same key seen by URC and by the in-band detector within this window is one press.
DUPLICATE_KEY_WINDOW = 0.15


class NotClaimed(Exception):
    """place_call's ``claim`` said no: nothing was journaled or dialed."""


class CallEnded(Exception):
    """The callee (or network) ended the call while the script was waiting."""


@dataclass
class KeyEvent:
    key: str
    source: str
    at: float                 # monotonic
    since_answer: float


@dataclass
class CallResult:
    call_id: int
    row: dict[str, Any]
    keys: list[KeyEvent] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)     # the script's state (ActiveCall.vars)

    @property
    def outcome(self) -> str:
        return self.row["outcome"]

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {
            "call_id": self.call_id, "number": r["number"], "outcome": r["outcome"], "modem": r["modem"],
            "imei": r["imei"], "iccid": r["iccid"], "started_at": r["started_at"],
            "answered_at": r["answered_at"], "ended_at": r["ended_at"], "duration_s": r["duration_s"],
            "keys": [{"key": k["key"], "at": k["at"], "source": k["source"]} for k in r.get("keys", [])],
            "hangup_by": r["hangup_by"], "cause": r["cause"], "cause_text": r["cause_text"],
        }


class ActiveCall:
    """What a script sees of an answered call."""

    def __init__(self, line: Line, number: str, call_id: int, journal: CallJournal) -> None:
        self.line = line
        self.number = number
        self.call_id = call_id
        self.journal = journal
        self.answered_at = time.monotonic()
        self.keys: list[KeyEvent] = []
        self._keyq: asyncio.Queue[KeyEvent] = asyncio.Queue()
        self.ended = asyncio.Event()
        # consumers of the callee's audio on the loop (AMD, recording, a bridge), frame by frame:
        # the audio path sends frames to the loop only while there is one
        self.capture_listeners: list[Callable[[np.ndarray], None]] = _Listeners(self._listening)
        self.vars: dict[str, Any] = {}    # scripts keep their state here (answers, flags)
        self._detector = DtmfDetector() if line.inband_dtmf else None
        self._loop = asyncio.get_running_loop()
        self._capturing = True    # cleared when the call lets go of its line's audio

    # ---- keys ----------------------------------------------------------------------
    def key_arrived(self, key: str, source: str) -> None:
        now = time.monotonic()
        for k in reversed(self.keys):
            if now - k.at > DUPLICATE_KEY_WINDOW:
                break
            if k.key == key and k.source != source:
                return        # the same press seen both ways
        ev = KeyEvent(key, source, now, now - self.answered_at)
        self.keys.append(ev)
        self.journal.key(self.call_id, key, source)
        self._keyq.put_nowait(ev)

    async def get_key(self, timeout: float | None) -> str | None:
        """The next key pressed (already pressed keys first); None on timeout."""
        self._check()
        try:
            ev = await asyncio.wait_for(self._keyq.get(), timeout)
        except asyncio.TimeoutError:
            self._check()
            return None
        return ev.key

    def flush_keys(self) -> None:
        while not self._keyq.empty():
            self._keyq.get_nowait()

    # ---- audio ---------------------------------------------------------------------
    def _capture_rt(self, frame: np.ndarray) -> None:
        """Each frame of the callee's audio, on the audio path's capture thread (the serial
        writer thread: AudioPath.on_capture_rt). The in-band DTMF detector runs here and
        posts only the keys it hears; frames go to the loop only while someone there
        listens (AMD, recording, a bridge). A call that just plays a message wakes the
        loop for none of its 50 frames a second."""
        if self._detector is not None:
            for key, _ in self._detector.feed(frame):
                self._post(self._inband_key, key)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        audio = self.line.audio      # the path whose capture thread we are on
        if audio is not None:
            audio.post_from_capture(fn, *args)
            return
        with contextlib.suppress(RuntimeError):       # the loop closed meanwhile
            self._loop.call_soon_threadsafe(fn, *args)

    def _inband_key(self, key: str) -> None:
        if self._capturing:         # not a key heard after the call let go of the line
            self.key_arrived(key, "inband")

    def _capture(self, frame: np.ndarray) -> None:
        """Each frame on the loop (AudioPath.on_capture), while someone there listens."""
        if self._capturing:
            for cb in list(self.capture_listeners):
                cb(frame)

    def _listening(self, on: bool) -> None:
        audio = self.line.audio
        if audio is not None and self._capturing:
            audio.on_capture = self._capture if on else None

    async def play(self, samples: np.ndarray, *, name: str = "prompt", barge_in: bool = False) -> str | None:
        """Play a prompt to the callee. With ``barge_in`` a key stops it and is returned
        (and consumed); without, keys wait in the queue for the next ``get_key``."""
        self._check()
        audio = self.line.audio
        if audio is None:
            self.event("prompt", name=name, result="no_audio_path")
            return None
        # one journal row per prompt, written when it ends (an fsync per row is not free on an
        # SD card): its length, and how much of it was played before it ended
        ms = round(len(samples) / 8)
        started = time.monotonic()
        fut = audio.play(samples)
        try:
            if barge_in:
                key_task = asyncio.ensure_future(self._keyq.get())
                try:
                    racing: set[asyncio.Future[Any]] = {fut, key_task}   # the prompt's end or a key
                    done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not key_task.done():
                        key_task.cancel()
                if key_task in done and not key_task.cancelled():
                    audio.stop_playback()
                    ev = key_task.result()
                    self.event("prompt", name=name, state="interrupted", key=ev.key, ms=ms,
                               played_ms=round((time.monotonic() - started) * 1000))
                    return ev.key
            result = await fut
        except AudioPathError as exc:
            self.event("error", where="audio", error=str(exc))
            self._check()
            raise CallEnded(str(exc)) from None
        finally:
            # a cancelled task cancels fut too: the prompt must stop all the same
            if fut.cancelled() or not fut.done():
                audio.stop_playback()
        self.event("prompt", name=name, state="done" if result == PlayResult.DONE else "interrupted", ms=ms,
                   played_ms=round((time.monotonic() - started) * 1000))
        self._check()
        return None

    # ---- misc ----------------------------------------------------------------------
    def event(self, kind: str, **data: Any) -> None:
        self.journal.event(self.call_id, kind, **data)

    def _check(self) -> None:
        if self.ended.is_set():
            raise CallEnded("call ended")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.answered_at


Script = Callable[[ActiveCall], Awaitable[None]]


class _Listeners(list[Callable[[np.ndarray], None]]):
    """A call's capture consumers on the loop: says when the first one comes and the last
    one goes (the audio path then starts or stops posting frames to the loop).

    It holds the call's method weakly: a strong one made a reference cycle (the call, its
    listeners, the method bound to the call) of every call, with its key queue, events and
    DTMF detector, which only the garbage collector could free: a collection more every few
    calls on the loop thread (issue 10: CPU per call), and the GIL held meanwhile."""

    def __init__(self, on_change: Callable[[bool], None]) -> None:
        super().__init__()
        self._on_change = weakref.WeakMethod(on_change)

    def _changed(self, on: bool) -> None:
        on_change = self._on_change()
        if on_change is not None:
            on_change(on)

    def append(self, cb: Callable[[np.ndarray], None]) -> None:
        super().append(cb)
        self._changed(True)

    def remove(self, cb: Callable[[np.ndarray], None]) -> None:
        super().remove(cb)
        self._changed(bool(self))


class _Inbox:
    """The driver's events for one call: a deque and at most one waiter future.

    Cheaper than an asyncio.Queue read through wait_for/asyncio.wait (a task, a waiter and
    two extra loop turns per event): with 64 lines, every loop turn on a call's path is
    paid behind all the other lines' work.
    """

    def __init__(self) -> None:
        self.items: deque = deque()
        self._waiter: asyncio.Future | None = None

    def put(self, ev: Any) -> None:
        self.items.append(ev)
        self.wake()

    def wake(self, _: Any = None) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, until: float | None, timer: PreciseTimer | None = None) -> None:
        """Until an event arrives, :meth:`wake` is called, or monotonic time ``until``: kept
        by ``timer`` when given (a line's: to the microsecond, where the loop's own timers
        wake up to 1 ms late, precise_timer.py), else by the loop."""
        loop = asyncio.get_running_loop()
        self._waiter = w = loop.create_future()
        cancel: Callable[[], object] | None = None
        if until is not None:
            if timer is not None:
                timer.call_at(until, self.wake)
                cancel = timer.cancel
            else:
                cancel = loop.call_at(loop.time() + (until - time.monotonic()), self.wake).cancel
        try:
            await w
        finally:
            self._waiter = None
            if cancel is not None:
                cancel()


async def place_call(line: Line, number: str, script: Script, journal: CallJournal, *,
                     ring_timeout: float = DEFAULT_RING_TIMEOUT, min_ring_timeout: float = MIN_RING_TIMEOUT,
                     campaign_id: int | None = None, contact_id: int | None = None,
                     alert_id: int | None = None,
                     claim: Callable[[Connection], bool] | None = None,
                     committed: bool = True, call_id: int | None = None) -> CallResult:
    """Place one call on ``line`` and run ``script`` when answered. Never raises for call
    failures (they are outcomes); re-raises cancellation after recording the call.

    The call row is committed before ATD; the other rows are queued to the journal writer
    (the call path never waits for the disk) and the result is returned once the outcome is
    committed (``committed=False``: once the writer has run it, about one fsync sooner; the
    campaign controller frees the line that way). ``claim`` runs in the call row's
    transaction (see CallJournal.start_call): when it returns False nothing is dialed and
    :class:`NotClaimed` is raised. A journal that cannot write raises
    :class:`~..store.writer.DatabaseFault` (before ATD, or after the call was hung up).
    ``call_id``: the row was written and committed by the caller ahead of this call
    (``CallJournal.start_call_soon``, a campaign line's armed next call): ATD goes at once."""
    number = dial_string(number)
    if ring_timeout < min_ring_timeout:
        raise ValueError(f"ring timeout {ring_timeout:g} s is under the {min_ring_timeout:g} s minimum")
    ident = line.identity
    await line.ready_to_dial()          # the per-modem dial_gap, if any (default: none)
    if call_id is None:
        call_id = await journal.start_call(number, line.name, ident.imei, ident.iccid, campaign_id=campaign_id,
                                           contact_id=contact_id, alert_id=alert_id, claim=claim)
    if call_id is None:
        raise NotClaimed(number)
    result = await drive(_Call(line, number, call_id, journal, script, ring_timeout), committed=committed)
    row = result.row
    if row["outcome"] != LINE_BUSY and webhooks.configured():
        webhooks.emit("call.ended", {
            "call_id": call_id, "direction": "out", "number": number, "modem": line.name, "outcome": row["outcome"],
            "keys": "".join(k["key"] for k in row["keys"]), "duration_s": row["duration_s"],
            "campaign_id": campaign_id, "contact_id": contact_id, "alert_id": alert_id})
    return result


async def drive(call: _Call, *, committed: bool = True) -> CallResult:
    """Run one call (placed or taken) on its line, the line marked busy meanwhile."""
    call.line.busy = True
    try:
        await call.run()
    finally:
        call.line.busy = False
        call.line.free_at = time.monotonic()
    # read through the writer: queued after the outcome, so it returns once that is committed
    row = await call.journal.get_call(call.call_id, committed=committed)
    active = call.active
    return CallResult(call.call_id, row, active.keys if active else [], active.vars if active else {})


class _Call:
    def __init__(self, line: Line, number: str, call_id: int, journal: CallJournal, script: Script,
                 ring_timeout: float) -> None:
        self.line, self.number, self.call_id, self.journal = line, number, call_id, journal
        self.script, self.ring_timeout = script, ring_timeout
        self.driver = line.driver
        self.active: ActiveCall | None = None
        self.ended: Ended | None = None
        self.lost: ModemLost | None = None
        self.note: str | None = None       # cause text of our own (ring timeout, error)
        self.by: HangupBy | None = None
        self.finished = False
        self.finish_future: concurrent.futures.Future | None = None

    async def run(self) -> None:
        q = _Inbox()
        remove = self.driver.add_listener(q.put)
        try:
            await self._run(q)
        except asyncio.CancelledError as exc:
            # Ctrl-C / shutdown, or a fenced box (its message says why): hang up and record,
            # then let the cancellation go on
            why = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
            self.note = self.note or why or "cancelled by the operator"
            await asyncio.shield(self._abort(q))
            raise
        except Exception as exc:   # a bug must still leave a completed journal row
            log.exception("%s: call %s failed", self.line.name, self.call_id)
            self.journal.event(self.call_id, "error", where="call", error=repr(exc))
            self.note = self.note or f"internal error: {exc}"
            await asyncio.shield(self._abort(q))
        finally:
            remove()
            self._detach()

    async def _run(self, q: _Inbox) -> None:
        try:
            await self.driver.dial(self.number)
        except ATError as exc:
            self.journal.event(self.call_id, "error", where="dial", error=str(exc))
            self.note = str(exc)
            # someone called in on this line as we dialed: not an attempt (campaign retries)
            return self._finish(force_outcome=LINE_BUSY if isinstance(exc, LineBusy) else None)
        self.journal.mark_dialed(self.call_id)
        deadline = time.monotonic() + self.ring_timeout
        while True:
            ev = await self._next(q, deadline)
            if ev is None:                                   # our ring timeout
                self.journal.event(self.call_id, "state", state="ring_timeout", seconds=self.ring_timeout)
                self.note = f"no answer within {self.ring_timeout:g} s"
                self.by = HangupBy.DIALER
                await self._hangup_and_wait(q)
                return self._finish(force_outcome="no_answer")
            if isinstance(ev, Ringing):
                self.journal.event(self.call_id, "state", state="ringing")
            elif isinstance(ev, Answered):
                break
            elif isinstance(ev, (Ended, ModemLost)):
                self._record_end(ev)
                return self._finish()
        await self._answered(q)

    async def _answered(self, q: _Inbox) -> None:
        self.journal.mark_answered(self.call_id)
        active = self.active = ActiveCall(self.line, self.number, self.call_id, self.journal)
        try:
            await self.driver.audio_on()
        except ATError as exc:
            self.journal.event(self.call_id, "error", where="audio_on", error=str(exc))
        audio = self.line.audio
        if audio is not None:
            audio.on_capture_rt = active._capture_rt
        script_task = asyncio.ensure_future(self._run_script(active))
        if audio is not None:
            # silence between prompts while the call is up, from just after the script's
            # first step: a prompt it starts at once finds the modem empty and leaves at once
            asyncio.get_running_loop().call_soon(setattr, audio, "keep_fed", True)
        script_task.add_done_callback(q.wake)
        try:
            while True:
                if q.items:
                    ev = q.items.popleft()
                    if isinstance(ev, KeyPressed):
                        if self.line.urc_dtmf:
                            active.key_arrived(ev.key, "urc")
                    elif isinstance(ev, (Ended, ModemLost)):
                        self._record_end(ev)
                        active.ended.set()
                        script_task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, CallEnded):
                            await script_task
                        break
                    continue
                if script_task.done():
                    # the script is over (events that came with it are handled above): we hang
                    # up once the modem has played what it was sent (the audio thread's model:
                    # frames written vs. time) plus the family's margin — no fixed guard
                    audio = self.line.audio
                    if audio is not None:
                        # at that moment to the microsecond (the line's timerfd): the loop's own
                        # timers wake it up to 1 ms late, on every call's path (precise_timer.py)
                        ev = await self._next(q, audio.prompt_played_until + self.line.playout_margin,
                                             self.line.precise_timer())
                        if isinstance(ev, (Ended, ModemLost)):
                            self._record_end(ev)
                            break
                        if ev is not None:
                            q.items.appendleft(ev)   # a late key: handled above, then we come back
                            continue
                    self.by = self.by or HangupBy.DIALER
                    await self._hangup_and_wait(q)
                    break
                await q.wait(None)
        finally:
            if not script_task.done():
                script_task.cancel()
        with contextlib.suppress(ATError):
            await self.driver.audio_off()
        self._finish()

    async def _run_script(self, active: ActiveCall) -> None:
        try:
            await self.script(active)
        except CallEnded:
            pass
        except Exception as exc:
            log.exception("%s: script failed on call %s", self.line.name, self.call_id)
            self.journal.event(self.call_id, "error", where="script", error=repr(exc))

    async def _next(self, q: _Inbox, until: float, timer: PreciseTimer | None = None):
        """The next event, or None at monotonic time ``until`` (kept by ``timer`` when given)."""
        if until <= time.monotonic():
            return None
        if not q.items:
            await q.wait(until, timer)
        return q.items.popleft() if q.items else None

    def _record_end(self, ev: Ended | ModemLost) -> None:
        if isinstance(ev, Ended):
            self.ended = ev     # finish_call journals the end (one commit, not two)
        else:
            self.lost = ev
            self.journal.event(self.call_id, "error", where="modem", error=ev.error)

    async def _hangup_and_wait(self, q: _Inbox) -> None:
        try:
            await self.driver.hangup()
        except ATError as exc:
            self.journal.event(self.call_id, "error", where="hangup", error=str(exc))
        deadline = time.monotonic() + 5
        while self.ended is None and self.lost is None:
            ev = await self._next(q, deadline)
            if ev is None:
                break
            if isinstance(ev, (Ended, ModemLost)):
                self._record_end(ev)

    async def _abort(self, q: _Inbox) -> None:
        if not self.finished:
            if self.ended is None and self.lost is None and self.driver.is_open:
                self.by = HangupBy.DIALER
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._hangup_and_wait(q), 6)
            answered = self.active is not None
            self._finish(force_outcome=None if answered else "interrupted")
        # cancelled or failed: the caller gets no CallResult, so wait here until the outcome
        # is committed (a journal that cannot write has said so in the log already)
        if self.finish_future is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self.finish_future)

    def _detach(self) -> None:
        if self.active is not None:
            self.active._capturing = False
        if self.line.audio is not None:
            self.line.audio.on_capture_rt = None
            self.line.audio.on_capture = None
            self.line.audio.keep_fed = False
            self.line.audio.stop_playback()

    def _finish(self, force_outcome: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        ev = self.ended
        outcome = force_outcome or classify(self.active is not None, ev)
        # a script may classify an answered call itself (e.g. "machine" from AMD skip mode)
        if self.active is not None and force_outcome is None and self.active.vars.get("outcome") in OUTCOMES:
            outcome = self.active.vars["outcome"]
        cause = ev.cause if ev else None
        cause_text = self.note or (self.active.vars.get("cause_text") if self.active else None) or (
            ev.cause_text if ev else None)
        if self.lost is not None:
            # Even after an answer: the script was cut off, so nothing says the callee got the
            # message. "failed" lets the caller's exit code and the campaign's retry rules act.
            outcome = "failed"
            cause_text = f"modem lost: {self.lost.error}"
        by = self.by or (ev.by if ev else None)
        if self.lost is not None:
            by = HangupBy.NETWORK
        duration = None
        if self.active is not None:
            duration = round(ev.duration_s, 3) if ev and ev.duration_s is not None else round(self.active.elapsed, 3)
        self.finish_future = self.journal.finish_call_nowait(
            self.call_id, outcome, cause=cause, cause_text=cause_text, hangup_by=by.value if by else None,
            duration_s=duration)
