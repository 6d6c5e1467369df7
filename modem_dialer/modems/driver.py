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
from dataclasses import dataclass

from ..at.channel import ATChannel
from ..at.errors import ATCommandError, ATError, CMEError, CommandTimeout
from ..config import ModemConfig
from ..numbers import dial_string
from . import causes, incoming
from .events import (
    DTMF_KEYS,
    Answered,
    Dialing,
    Ended,
    Event,
    HangupBy,
    KeyPressed,
    ModemLost,
    RegistrationChanged,
    Ringing,
    SignalChanged,
)
from .incoming import IncomingMixin
from .info import Health, Identity, digits, parse_cops, parse_cpin, parse_creg, parse_csq, swap_nibbles

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
    incoming: bool = False        # a call someone placed to us
    withheld: bool = False        # incoming: the caller hid the number
    announced: bool = False       # incoming: IncomingCall emitted
    collided: bool = False        # outgoing: an incoming call rang while we dialed
    collider: tuple[str | None, bool, int | None] | None = None   # its (number, withheld, call id)


class ModemDriver(IncomingMixin):
    family = "generic"
    # Whether the family reports the callee's keys as URCs (else: in-band detection).
    reports_dtmf = True
    # Extra init commands whose failure is harmless (firmware differences).
    optional_init: tuple[str, ...] = ()
    required_init: tuple[str, ...] = ()
    hangup_command = "AT+CHUP"
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

    async def unlock_sim(self) -> None:
        try:
            state = parse_cpin((await self.ch.command("AT+CPIN?")).first("+CPIN:"))
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
        ident = Identity(
            manufacturer=await self._value("AT+CGMI"),
            model=await self._value("AT+CGMM"),
            firmware=(await self._value("AT+CGMR") or "").removeprefix("+CGMR:").removeprefix("Revision:").strip()
            or None,
            imei=digits(await self._value("AT+CGSN")),
            imsi=digits(await self._value("AT+CIMI")),
            iccid=await self.iccid(),
        )
        self.identity_cache = ident
        return ident

    async def iccid(self) -> str | None:
        for cmd in self.iccid_commands:
            try:
                resp = await self.ch.command(cmd)
            except ATCommandError:
                continue
            if cmd.startswith("AT+CRSM"):
                raw = resp.first("+CRSM:")
                if raw and raw.count(",") >= 2:
                    value = raw.split(",", 2)[2].strip().strip('"')
                    if value:
                        return swap_nibbles(value)
                continue
            text = " ".join(resp.lines)
            found = digits(text.split(":", 1)[-1] if ":" in text else text)
            if found:
                return found
        return None

    async def health(self) -> Health:
        h = Health()
        try:
            h.sim = parse_cpin((await self.ch.command("AT+CPIN?")).first("+CPIN:"))
        except CMEError as exc:
            h.sim = "absent" if "not inserted" in exc.detail.lower() or exc.detail in ("10",) else "error"
        h.signal_dbm = parse_csq(await self._value("AT+CSQ", "+CSQ:"))
        best = None
        for cmd, prefix in (("AT+CREG?", "+CREG:"), ("AT+CEREG?", "+CEREG:")):
            reg, tech = parse_creg(await self._value(cmd, prefix))
            if best is None or (reg.registered and not best[0].registered):
                best = (reg, tech)
        if best:
            h.registration, h.tech = best
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

    async def dial(self, number: str) -> None:
        """Dial ``number`` (E.164, checked again here); events follow on the listeners."""
        number = dial_string(number)
        if self.call is not None and not self.call.ended:
            if self.call.incoming:
                raise LineBusy(f"{self.name}: an incoming call is ringing", port=self.ch.port)
            raise DriverError(f"{self.name}: a call is already in progress", port=self.ch.port)
        await self.prepare_audio()
        if self.call is not None and self.call.incoming and not self.call.ended:
            # it started ringing while the audio was being set up
            raise LineBusy(f"{self.name}: an incoming call is ringing", port=self.ch.port)
        call = self.call = CallTrack(number=number, dialed_at=time.monotonic())
        self.emit(Dialing(self.name))
        try:
            await self.ch.command(f"ATD{number};", timeout=self.dial_timeout)
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
        call = self.call
        if call is not None:
            call.local_hangup = True
        try:
            await self.ch.command(self.hangup_command, timeout=5)
        except ATCommandError as exc:
            log.info("%s: hangup answered %s", self.name, exc.final)
        # Families whose hang-up produces no end URC: end it ourselves.
        if call is not None and not call.ended:
            await asyncio.sleep(0.2)
            # self.call may be a caller ringing in by now: end only the call we hung up
            if not call.ended and self.call is call:
                self.call_ended(by=HangupBy.DIALER, cause=causes.NORMAL)

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
    def call_ringing(self, call_id: int | None = None) -> None:
        c = self.call
        if c is None or c.ended or c.ringing or c.answered_at is not None:
            return
        c.ringing = True
        c.call_id = call_id if call_id is not None else c.call_id
        self.emit(Ringing(self.name, call_id=call_id))

    def call_answered(self, call_id: int | None = None) -> None:
        c = self.call
        if c is None or c.ended or c.answered_at is not None:
            return
        c.answered_at = time.monotonic()
        c.call_id = call_id if call_id is not None else c.call_id
        self.emit(Answered(self.name, call_id=call_id))

    def call_ended(self, *, cause: int | None = None, cause_text: str | None = None,
                   duration: float | None = None, by: HangupBy | None = None, result: str | None = None,
                   need_ceer: bool = True) -> None:
        c = self.call
        if c is None or c.ended:
            return
        c.ended = True
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
