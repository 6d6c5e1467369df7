"""The driver base: init, identity, health, dial/hang up, and the call tracker.

A family driver only says which commands and URCs its dialect uses; the bookkeeping
(one Ended per call, who hung up, the end cause from AT+CEER, modem loss) lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..at.channel import ATChannel
from ..at.errors import ATCommandError, ATError, CMEError, CommandTimeout
from ..numbers import dial_string
from . import causes, incoming
from .events import (
    Answered,
    Dialing,
    Ended,
    Event,
    HangupBy,
    KeyPressed,
    ModemLost,
    RegistrationChanged,
    Ringing,
    SecondCall,
    SignalChanged,
)
from .identity import imsi_from, name_from, read_iccid, read_imei, read_value, sim_busy
from .incoming import IncomingMixin
from .info import CallState, Health, Identity, parse_clcc_line, parse_cops, parse_cpin, parse_creg, parse_csq
from .keys import DTMF_KEYS
from .multiparty import MultipartyMixin
from .options import ModemConfig

log = logging.getLogger("modem_dialer.modems")

Listener = Callable[[Event], None]


async def wake(ch: ATChannel, timeout: float) -> None:
    """Get a first answer: a modem may still be booting or have echo on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ch.command("AT", timeout=min(1.0, max(0.2, deadline - time.monotonic())))
            return
        except CommandTimeout:
            if time.monotonic() >= deadline:
                raise CommandTimeout(f"{ch.port}: modem does not answer (no reply to AT within {timeout:g} s)",
                                     port=ch.port) from None
        except ATCommandError:
            return  # it answered something: awake


# "SIM busy" right after plug-in: ask AT+CPIN? again every SIM_BUSY_POLL s, for at most
# SIM_BUSY_WAIT s (patchable constants; real SIMs settle within a few seconds).
SIM_BUSY_WAIT = 15.0
SIM_BUSY_POLL = 0.5


def _complete(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class DriverError(ATError):
    """The modem cannot be used (no SIM, PIN needed, no voice firmware …)."""


class LineBusy(DriverError):
    """The dial failed (or was not tried) because an incoming call rings on this modem:
    not an attempt; dial again on another line or later."""


@dataclass
class CallTrack:
    """What the driver knows about the one call in progress."""

    number: str
    call_id: int | None = None
    dialed_at: float = 0.0
    ringing: bool = False
    answered_at: float | None = None
    ended: bool = False
    local_hangup: bool = False
    end_waiter: asyncio.Future[None] | None = None   # hangup() waiting for the end
    incoming: bool = False        # a call someone placed to us
    withheld: bool = False        # incoming: the caller hid the number
    announced: bool = False       # incoming: IncomingCall emitted
    collided: bool = False        # outgoing: an incoming call rang while we dialed
    collider: tuple[str | None, bool, int | None] | None = None   # its (number, withheld, call id)
    # multiparty (modems/multiparty.py): this call on hold, the second call dialed meanwhile,
    # the indexes of second calls already over (their late URCs must not touch this call)
    held: bool = False
    second: CallTrack | None = None
    gone_ids: set[int] = field(default_factory=set)
    transferred: bool = False     # joined to another call by ECT: the modem has left it
    # AT+CHLD=4 sent, answer not read yet: the end URCs that follow its OK arrive before it is
    # read, so an end meanwhile is kept (left_modem) and counts only if the transfer fails
    transfer_pending: bool = False
    left_modem: bool = False


class ModemDriver(MultipartyMixin, IncomingMixin):
    family = "generic"
    # Whether the family reports the callee's keys as URCs (else: in-band detection).
    reports_dtmf = True
    # Extra init commands whose failure is harmless (firmware differences).
    optional_init: tuple[str, ...] = ()
    required_init: tuple[str, ...] = ()
    hangup_command = "AT+CHUP"
    # Where call states come from (shown by `modems --json`): ccinfo | dsci | clcc_urc |
    # huawei_urc | clcc_poll. A family whose init probes what the firmware has sets it there.
    call_state_source = "clcc_poll"
    # Whether the family announces the end of a call the dialer hung up (^CEND, +CLCC stat 6,
    # VOICE CALL: END …). If not, the hang-up's final result ends the call.
    end_urc_after_hangup = True
    # How long hangup() waits for that end URC after the final result before ending the call
    # itself (a modem that stays silent); the normal path returns as soon as it arrives.
    hangup_end_timeout = 1.0
    iccid_commands: tuple[str, ...] = ("AT+CCID", "AT+CRSM=176,12258,0,0,10")

    def __init__(self, channel: ATChannel, config: ModemConfig) -> None:
        self.ch = channel
        self.cfg = config
        self.name = config.name
        self.call: CallTrack | None = None
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task] = set()
        self.identity_cache: Identity | None = None
        channel.on_lost(self._port_lost)
        channel.subscribe(("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"), self._on_result_line)
        channel.subscribe(("+CREG:", "+CEREG:", "+CGREG:"), self._on_creg)
        self._incoming_init()
        self.subscribe_incoming()
        self.subscribe_urcs()

    # ---- events ------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def event_queue(self) -> tuple[asyncio.Queue, Callable[[], None]]:
        """A fresh queue that receives every event from now on, and its remover."""
        q: asyncio.Queue = asyncio.Queue()
        return q, self.add_listener(q.put_nowait)

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("%s: event listener failed", self.name)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- init, identity, health ----------------------------------------------------
    async def wake(self, timeout: float | None = None) -> None:
        await wake(self.ch, timeout or self.cfg.probe_timeout)

    async def init(self) -> None:
        await self.wake()
        await self.ch.command("ATE0")
        await self.optional("AT+CMEE=2")
        await self.unlock_sim()
        # caller ID and "+CRING: VOICE" for incoming calls (modems/incoming.py)
        for cmd in ("AT+CREG=2", "AT+COPS=3,0", "AT+CLIP=1", "AT+CRC=1"):
            await self.optional(cmd)
        for cmd in self.required_init:
            await self.ch.command(cmd)
        for cmd in self.optional_init:
            await self.optional(cmd)
        await self.family_init()

    async def family_init(self) -> None:
        """Family-specific steps that need logic (audio checks, DTMF enables)."""

    async def optional(self, command: str, timeout: float = 3.0) -> bool:
        try:
            await self.ch.command(command, timeout=timeout)
            return True
        except ATCommandError as exc:
            log.info("%s: %s not accepted (%s), carrying on", self.name, command, exc.final)
            return False

    async def sim_state(self) -> str:
        """``AT+CPIN?``, waiting out "SIM busy" (``+CME ERROR: 14``): a SIM answers it for a few
        seconds after power-up or plug-in, and ModemManager retries it too
        (huawei__modemmanager-tests-e1550-e160g-umg1831.txt). At most SIM_BUSY_WAIT seconds."""
        deadline = time.monotonic() + SIM_BUSY_WAIT
        while True:
            try:
                return parse_cpin((await self.ch.command("AT+CPIN?")).first("+CPIN:"))
            except CMEError as exc:
                if not sim_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise DriverError(f"{self.ch.port}: SIM problem: SIM still busy after {SIM_BUSY_WAIT:g} s",
                                      port=self.ch.port) from None
                log.info("%s: SIM busy, asking again in %g s", self.name, SIM_BUSY_POLL)
                await asyncio.sleep(SIM_BUSY_POLL)

    async def unlock_sim(self) -> None:
        try:
            state = await self.sim_state()
        except CMEError as exc:
            raise DriverError(f"{self.ch.port}: SIM problem: {exc.detail}", port=self.ch.port) from None
        if state == "pin_required":
            if not self.cfg.pin:
                raise DriverError(f"{self.ch.port}: SIM PIN required (set 'pin' for modem {self.name})",
                                  port=self.ch.port)
            try:
                await self.ch.command(f'AT+CPIN="{self.cfg.pin}"', timeout=10)
            except CMEError as exc:
                raise DriverError(f"{self.ch.port}: SIM PIN rejected: {exc.detail}", port=self.ch.port) from None
        elif state == "puk_required":
            raise DriverError(f"{self.ch.port}: SIM is PUK-locked", port=self.ch.port)

    async def _value(self, command: str, prefix: str | None = None) -> str | None:
        try:
            resp = await self.ch.command(command)
        except ATCommandError:
            return None
        if prefix:
            return resp.first(prefix)
        return resp.lines[0].strip() if resp.lines else None

    async def identity(self) -> Identity:
        """Who the modem is; each value checked by its shape (modems/identity.py), so a line
        printed unasked meanwhile (a boot burst) is never taken for it."""
        firmware = await self._value("AT+CGMR")
        ident = Identity(
            manufacturer=await read_value(self.ch, "AT+CGMI", name_from),
            model=await read_value(self.ch, "AT+CGMM", name_from),
            firmware=(firmware or "").removeprefix("+CGMR:").removeprefix("Revision:").strip() or None,
            imei=await read_imei(self.ch),
            imsi=await read_value(self.ch, "AT+CIMI", imsi_from),
            iccid=await self.iccid(),
        )
        self.identity_cache = ident
        return ident

    async def iccid(self) -> str | None:
        return await read_iccid(self.ch, self.iccid_commands)

    async def health(self, *, brief: bool = False) -> Health:
        """The SIM, signal, registration, operator and VoLTE. ``brief``: the signal and the
        registration only (``sim``, ``operator`` and ``volte`` left unknown), what a line's
        check before its first dial decides on (``campaign run``: campaign/pool.py): two or
        three round trips fewer before the bank's first dials (a registered modem has its
        SIM ready; the operator's name decides nothing there)."""
        h = Health()
        if not brief:
            try:
                h.sim = parse_cpin((await self.ch.command("AT+CPIN?")).first("+CPIN:"))
            except CMEError as exc:
                h.sim = ("busy" if sim_busy(exc) else
                         "absent" if "not inserted" in exc.detail.lower() or exc.detail in ("10",) else "error")
        h.signal_dbm = parse_csq(await self._value("AT+CSQ", "+CSQ:"))
        best = None
        for cmd, prefix in (("AT+CREG?", "+CREG:"), ("AT+CEREG?", "+CEREG:")):
            reg, tech = parse_creg(await self._value(cmd, prefix))
            if best is None or (reg.registered and not best[0].registered):
                best = (reg, tech)
        if best:
            h.registration, h.tech = best
        if brief:
            return h
        op, tech = parse_cops(await self._value("AT+COPS?", "+COPS:"))
        h.operator = op
        h.tech = tech or h.tech
        h.volte = await self.volte()
        return h

    async def volte(self) -> bool | None:
        return None

    # ---- calls -------------------------------------------------------------------
    async def prepare_audio(self) -> None:
        """Before ATD: route the call's audio the way the family needs."""

    async def audio_on(self) -> None:
        """At answer: open the audio path (CPCMREG on SIM7600)."""

    async def audio_off(self) -> None:
        """After the call: close the audio path."""

    async def after_dial(self) -> None:
        """After ATD's OK (Huawei routes audio here)."""

    def dial_setup(self) -> tuple[str, ...]:
        """Commands sent in the ATD's own command line, before the dial (``dial_in_one_line``),
        instead of :meth:`prepare_audio`'s command each; () when the family sends none that way."""
        return ()

    async def dial(self, number: str) -> None:
        """Dial ``number`` (E.164, checked again here); events follow on the listeners."""
        number = dial_string(number)
        if self.call is not None and not self.call.ended:
            if self.call.incoming:
                raise LineBusy(f"{self.name}: an incoming call is ringing", port=self.ch.port)
            raise DriverError(f"{self.name}: a call is already in progress", port=self.ch.port)
        setup = self.dial_setup()
        if not setup:
            await self.prepare_audio()
            if self.call is not None and self.call.incoming and not self.call.ended:
                # it started ringing while the audio was being set up
                raise LineBusy(f"{self.name}: an incoming call is ringing", port=self.ch.port)
        call = self.call = CallTrack(number=number, dialed_at=time.monotonic())
        self.emit(Dialing(self.name))
        try:
            # the family's setup commands, if any, then the dial, in one command line: the
            # modem runs them in order and stops at the first that fails (one final result)
            line = "AT" + "".join(f"{c.removeprefix('AT')};" for c in setup) + f"D{number};"
            await self.ch.command(line, timeout=self.dial_timeout)
        except ATCommandError as exc:
            if exc.final not in ("BUSY", "NO ANSWER", "NO CARRIER", "NO DIALTONE") and not call.collided:
                # a refused ATD (+CME ERROR…) may be the modem seeing a call ring in before we
                # do: the ring URC can follow the error. Give it a moment before calling it a failure.
                await asyncio.sleep(incoming.DIAL_ERROR_RING_WAIT)
            if call.collided or self.ring_blamed(call.dialed_at):
                # the modem refused ATD because someone is calling in: not an attempt
                if self.call is call:
                    self.call = None
                    self.adopt_collision(call)     # the caller is still ringing: track and announce it
                raise LineBusy(f"{self.name}: dial refused while an incoming call rings ({exc.final})",
                               port=self.ch.port) from None
            result = exc.final
            if result in ("BUSY", "NO ANSWER", "NO CARRIER", "NO DIALTONE"):
                self.call_ended(result=result)
                return
            self.call = None
            raise
        await self.after_dial()
        self.after_dial_started()

    dial_timeout = 10.0

    def after_dial_started(self) -> None:
        """Hook for polling drivers (generic CLCC)."""

    async def hangup(self) -> None:
        """Hang up; returns when the call has ended: on the family's end URC, or on the
        hang-up's final result for a family that sends none (no fixed sleep)."""
        call = self.call
        if call is not None and not call.ended:
            call.local_hangup = True
            call.end_waiter = asyncio.get_running_loop().create_future()
        try:
            await self.ch.command(self.hangup_command, timeout=5)
        except ATCommandError as exc:
            log.info("%s: hangup answered %s", self.name, exc.final)
        if call is None or call.ended:
            return
        # a call ECT handed over is no longer on the modem: no end URC will come for it
        if self.end_urc_after_hangup and call.end_waiter is not None and not call.transferred:
            # awaited directly with a timer that completes it, not through wait_for(shield()):
            # those add two loop turns between the end URC and the next dial, and with 64
            # lines ending together each turn runs every other line's work first
            waiter = call.end_waiter
            timer = asyncio.get_running_loop().call_later(self.hangup_end_timeout, _complete, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
            if not call.ended:
                log.info("%s: no end URC %g s after %s: ending the call ourselves", self.name,
                         self.hangup_end_timeout, self.hangup_command)
        # self.call may be a caller ringing in by now: end only the call we hung up
        if not call.ended and self.call is call:
            self.end_track(call, by=HangupBy.DIALER, cause=causes.NORMAL)

    @property
    def is_open(self) -> bool:
        """The modem's port is still open (not lost, not closed)."""
        return self.ch.is_open

    async def clear_left_call(self) -> int:
        """End a voice call that a dead process left up on this modem; returns how many.

        Called right after the port is opened: the open is exclusive, so no live process
        owns the modem and any call ``AT+CLCC`` lists is an orphan (its owner was killed
        with SIGKILL, or crashed). Left alone, the next ``ATD`` fails with
        ``+CME ERROR: operation not allowed`` while the modem looks ready.
        """
        if self.call is not None and not self.call.ended:
            return 0                      # ours: not left over
        try:
            resp = await self.ch.command("AT+CLCC", timeout=3)
        except ATError:
            # no CLCC on this firmware: hang up blindly (an idle modem answers OK)
            with contextlib.suppress(ATError):
                await self.ch.command(self.hangup_command, timeout=5)
            return 0
        # voice calls only (Quectel lists its LTE data bearer as a mode-1 pseudo-call, which
        # must stay up); an incoming or waiting call is someone calling us now, not a left
        # call: the inbound desk answers or rejects it; a call in SIM800/SIMCom's state 6
        # ("disconnect") is already ending (seen right after a hang-up on a loaded machine)
        voice = [line for line in resp.lines
                 if (c := parse_clcc_line(line)) is not None and c.voice
                 and c.state not in (CallState.INCOMING, CallState.WAITING, CallState.ENDED)]
        if not voice:
            return 0
        log.warning("%s: ending %d call(s) left up by a process that died: %s", self.name, len(voice),
                    "; ".join(voice))
        try:
            await self.ch.command(self.hangup_command, timeout=5)
        except ATCommandError as exc:
            log.info("%s: hangup of the left call answered %s", self.name, exc.final)
        return len(voice)

    async def send_dtmf(self, key: str) -> None:
        if key not in DTMF_KEYS:
            raise ValueError(f"not a DTMF key: {key!r}")
        await self.ch.command(f"AT+VTS={key}")

    async def end_cause(self) -> tuple[int | None, str | None]:
        try:
            resp = await self.ch.command("AT+CEER", timeout=3)
        except ATError:
            return None, None
        return causes.cause_from_ceer(resp.first("+CEER:") or (resp.lines[0] if resp.lines else None))

    # ---- call tracker (called from URC handlers) ---------------------------------
    def track_for(self, call_id: int | None) -> CallTrack | None:
        """The call a URC with index ``call_id`` is about.

        One call: every URC is about it (some families give no index), except the late URCs
        of a second call already over. Two calls (one on hold, modems/multiparty.py): only an
        index tells them apart, so a URC without one (``NO CARRIER``, ``VOICE CALL: END``,
        ``MO RING``) is left out; ``AT+CLCC`` says what it meant (:meth:`list_calls`).
        """
        c = self.call
        if c is None:
            return None
        if call_id is not None and call_id in c.gone_ids:
            return None
        second = c.second
        if second is None:
            return c
        if call_id is None:
            return None
        if c.call_id == call_id:
            return c
        if second.call_id is None and c.call_id is not None:
            second.call_id = call_id          # the first URC of the second call names its index
        return second if second.call_id == call_id else None

    def call_dialing(self, call_id: int | None) -> None:
        c = self.track_for(call_id)
        if c is not None and not c.ended:
            c.call_id = call_id

    def _moving(self, call_id: int | None) -> CallTrack | None:
        """The live call a progress URC is about, its index learnt (a family may name it
        late: SIMCom's VOICE CALL: BEGIN before the +CLCC line)."""
        c = self.track_for(call_id)
        if c is None or c.ended:
            return None
        if c.call_id is None:
            c.call_id = call_id
        return c

    def _progress(self, c: CallTrack, state: Literal["ringing", "answered"], event: Event) -> None:
        if self.call is not None and c is self.call.second:
            event = SecondCall(self.name, state=state, call_id=c.call_id, number=c.number)
        self.emit(event)

    def call_ringing(self, call_id: int | None = None) -> None:
        c = self._moving(call_id)
        if c is None or c.ringing or c.answered_at is not None:
            return
        c.ringing = True
        self._progress(c, "ringing", Ringing(self.name, call_id=call_id))

    def call_answered(self, call_id: int | None = None) -> None:
        c = self._moving(call_id)
        if c is None or c.answered_at is not None:
            return
        c.answered_at = time.monotonic()
        self._progress(c, "answered", Answered(self.name, call_id=call_id))

    def call_ended(self, *, cause: int | None = None, cause_text: str | None = None,
                   duration: float | None = None, by: HangupBy | None = None, result: str | None = None,
                   need_ceer: bool = True, call_id: int | None = None) -> None:
        c = self.track_for(call_id)
        if c is not None:
            self.end_track(c, cause=cause, cause_text=cause_text, duration=duration, by=by, result=result,
                           need_ceer=need_ceer)

    def end_track(self, c: CallTrack, *, cause: int | None = None, cause_text: str | None = None,
                  duration: float | None = None, by: HangupBy | None = None, result: str | None = None,
                  need_ceer: bool = True) -> None:
        """``c`` is over: one ``Ended`` for the session's call, a ``SecondCall`` for the other."""
        if c.ended:
            return
        if (c.transferred or c.transfer_pending) and not c.local_hangup:
            c.left_modem = True
            return      # ECT handed it over: its end is the session's hang-up (see hangup())
        if self.call is not None and c is self.call.second:
            self.second_ended(self.call, c)
            return
        c.ended = True
        if c.end_waiter is not None and not c.end_waiter.done():
            c.end_waiter.set_result(None)
        if result == "BUSY" and cause is None:
            cause = causes.BUSY
        elif result == "NO ANSWER" and cause is None:
            cause = causes.NO_ANSWER
        if cause is None and need_ceer and not c.local_hangup:
            self.spawn(self._ended_with_ceer(c, duration, by, result))
            return
        self._emit_ended(c, cause, cause_text, duration, by, result)

    async def _ended_with_ceer(self, c: CallTrack, duration, by, result) -> None:
        cause, text = await self.end_cause()
        self._emit_ended(c, cause, text, duration, by, result)

    def _emit_ended(self, c: CallTrack, cause, cause_text, duration, by, result) -> None:
        if by is None:
            if c.local_hangup:
                by = HangupBy.DIALER
            elif c.answered_at is not None:
                by = HangupBy.CALLEE if cause in (None, causes.NORMAL, 31) else HangupBy.NETWORK
            else:
                by = HangupBy.CALLEE if cause == causes.REJECTED else HangupBy.NETWORK
        if cause is None and c.local_hangup:
            cause = causes.NORMAL
        if c.answered_at is not None:
            # our own clock beats the modem's whole seconds (VOICE CALL: END: HHMMSS, ^CEND)
            duration = time.monotonic() - c.answered_at
        self.emit(Ended(self.name, call_id=c.call_id, cause=cause, cause_text=cause_text,
                        duration_s=duration, by=by, result=result))

    def key_pressed(self, key: str) -> None:
        if key in DTMF_KEYS:
            self.emit(KeyPressed(self.name, key=key, source="urc"))

    # ---- URCs common to all --------------------------------------------------------
    def subscribe_urcs(self) -> None:
        """Family drivers subscribe their URC prefixes here."""

    def _on_result_line(self, line: str) -> None:
        if self.call is not None and not self.call.ended:
            self.call_ended(result=line)

    def _on_creg(self, line: str) -> None:
        reg, tech = parse_creg(line.split(":", 1)[1], solicited=False)
        self.emit(RegistrationChanged(self.name, status=reg, tech=tech))

    def signal(self, dbm: int | None) -> None:
        self.emit(SignalChanged(self.name, dbm=dbm))

    def _port_lost(self, exc: Exception | None) -> None:
        self.emit(ModemLost(self.name, error=f"{self.ch.port}: port lost" + (f" ({exc})" if exc else "")))

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            await self.ch.close()
