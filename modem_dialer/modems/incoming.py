"""Incoming calls: caller ID from ``+CLIP`` (and ``RING`` / ``+CRING: VOICE``), answer, reject.

Shared by every family (mixed into :class:`~.driver.ModemDriver`); the families add their
own call-state URCs for incoming calls (Quectel ``+QIND: "ccinfo",<idx>,1,4,…``, SIMCom and
SIM800 ``+CLCC: <idx>,1,4,…``, Huawei ``^CONN``/``^CEND``) by calling :meth:`incoming_ring`,
:meth:`call_answered` and :meth:`call_ended`.

Real shapes (shared/reference transcripts): ``+CRING: VOICE`` then
``+CLIP: "+1234567890",145,,,,0`` repeated each ring (Huawei, AT+CRC=1); ``+CLIP: …`` then
``+QIND: "ccinfo",2,1,4,0,0,"…",145`` with no RING on EG25-G; ``MISSED_CALL: 11:01AM 0771…``
on SIM7600 when the caller gives up. A withheld number is ``+CLIP: "",128,,,,1`` (CLI
validity 1 withheld, 2 unavailable, 27.007 §7.6).
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from ..at.errors import ATCommandError
from .events import HangupBy, IncomingCall

if TYPE_CHECKING:
    from .driver import CallTrack

log = logging.getLogger("modem_dialer.modems")

# How long to wait after the first ring for a +CLIP before announcing the call without a
# caller ID (RING usually comes first, +CLIP right after it).
CLIP_WAIT = 1.0
# A ringing call whose RING/+CRING stops repeating for this long was given up by the caller
# (only on modems that repeat RING; families with an end URC say so themselves). Real modems
# repeat every 3-6 s [?]: a setting in spirit, a patchable constant here.
RING_GONE_AFTER = 8.0
# A dial failure within this many seconds of a ring is blamed on the incoming call.
RING_BLAME_WINDOW = 10.0
# After ATD is refused with an error (not BUSY/NO CARRIER…), wait this long for a ring URC that
# would explain it (the modem may print the error before the ring) [?].
DIAL_ERROR_RING_WAIT = 0.5

_CLIP = re.compile(r'\+CLIP:\s*"([^"]*)"\s*(?:,\s*(\d+))?(?:,[^,]*,[^,]*,(?:"[^"]*"|[^,]*),\s*(\d))?')
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")


def parse_clip(line: str) -> tuple[str | None, bool]:
    """``+CLIP: "+336…",145,,,,0`` → (number or None, withheld?). A number that is not made of
    digits (garbled, alphanumeric) is treated as unknown, never passed on."""
    m = _CLIP.match(line.strip())
    if not m:
        return None, False
    number, validity = m.group(1).strip(), m.group(3)
    if validity in ("1", "2") or not number:
        return None, validity == "1" or not number
    if m.group(2) == "145" and not number.startswith("+"):
        number = "+" + number
    return (number, False) if _NUMBER.match(number) else (None, False)


class IncomingMixin:
    """Caller ID, ring tracking, answer and reject (see the module docstring)."""

    # set by ModemDriver
    call: CallTrack | None
    name: str
    hangup_command: str

    # a family whose incoming calls end with a URC of their own (ccinfo -1, CLCC 6, ^CEND,
    # MISSED_CALL) still benefits from the ring-silence timer when RING is enabled
    answer_timeout = 10.0

    def _incoming_init(self) -> None:
        self.last_ring_at: float | None = None
        self._clip_timer = None
        self._gone_timer = None

    def subscribe_incoming(self) -> None:
        ch = self.ch  # type: ignore[attr-defined]
        ch.subscribe(("RING", "+CRING:"), self._on_ring)
        ch.subscribe("+CLIP:", self._on_clip)

    # ---- URC handlers -------------------------------------------------------------------
    def _on_ring(self, line: str) -> None:
        if line.startswith("+CRING:") and "VOICE" not in line.upper():
            return     # a data/fax call: not ours
        self.incoming_ring(None, rang=True)

    def _on_clip(self, line: str) -> None:
        number, withheld = parse_clip(line)
        if not _CLIP.match(line.strip()):
            log.warning("%s: unreadable caller ID line %r", self.name, line[:80])
        self.incoming_ring(number, withheld=withheld, clip=True)

    def incoming_ring(self, number: str | None, *, withheld: bool = False, call_id: int | None = None,
                      clip: bool = False, rang: bool = False) -> None:
        """One sign of an incoming call (a ring, a caller ID, a family call-state URC)."""
        from .driver import CallTrack

        now = time.monotonic()
        self.last_ring_at = now
        c = self.call
        if c is not None and not c.ended and not c.incoming:
            # it rings while we dial out (or during our call: call waiting). Say so once per
            # ring burst; the ATD may fail because of it (dial() blames the ring)
            prev = c.collider or (None, False, None)
            c.collider = (number or prev[0], withheld or prev[1], call_id if call_id is not None else prev[2])
            if not c.collided:
                c.collided = True
                self.emit(IncomingCall(self.name, number=number, withheld=withheld,  # type: ignore[attr-defined]
                                       call_id=call_id, during_dial=True))
            return
        if c is None or c.ended:
            c = self.call = CallTrack(number=number or "", dialed_at=now, incoming=True, withheld=withheld)
            c.ringing = True
            c.call_id = call_id
        if call_id is not None and c.call_id is None:
            c.call_id = call_id
        if number and not c.number:
            c.number = number
        c.withheld = c.withheld or withheld
        if rang:
            self._arm_gone_timer(c)
        if c.announced:
            return
        if clip or number or withheld:
            self._announce(c)
        elif self._clip_timer is None:
            loop = self._loop()
            self._clip_timer = loop.call_later(CLIP_WAIT, self._announce, c)

    def adopt_collision(self, dialed: CallTrack) -> None:
        """Our ATD failed because a call rang in: that call is now the one on this modem."""
        if dialed.collider is None or (self.call is not None and not self.call.ended):
            return
        number, withheld, call_id = dialed.collider
        self.incoming_ring(number, withheld=withheld, call_id=call_id, clip=True)

    def _announce(self, c: CallTrack) -> None:
        if self._clip_timer is not None:
            self._clip_timer.cancel()
            self._clip_timer = None
        if c.announced or c.ended:
            return
        c.announced = True
        self.emit(IncomingCall(self.name, number=c.number or None, withheld=c.withheld,  # type: ignore[attr-defined]
                               call_id=c.call_id))

    def _arm_gone_timer(self, c: CallTrack) -> None:
        if self._gone_timer is not None:
            self._gone_timer.cancel()
        self._gone_timer = self._loop().call_later(RING_GONE_AFTER, self._ring_gone, c)

    def _ring_gone(self, c: CallTrack) -> None:
        self._gone_timer = None
        if c is self.call and not c.ended and c.answered_at is None:
            log.info("%s: the caller gave up (no ring for %g s)", self.name, RING_GONE_AFTER)
            self.call_ended(by=HangupBy.CALLEE, cause=16, need_ceer=False)  # type: ignore[attr-defined]

    def incoming_state(self, idx: int | None, state: str | None, number: str | None = None) -> None:
        """A family's call-state URC for an incoming (direction 1) call: ``incoming``,
        ``active`` or ``ended``."""
        if state == "incoming":
            if number is not None and not _NUMBER.match(number):
                number = None
            self.incoming_ring(number or None, call_id=idx, clip=bool(number))
            return
        c = self.call
        if c is None or not c.incoming or c.ended:
            return      # a waiting call next to our outgoing one: leave ours alone
        if state == "active":
            self.call_answered(idx)  # type: ignore[attr-defined]
        elif state == "ended":
            self.call_ended(need_ceer=c.answered_at is None and not c.local_hangup,  # type: ignore[attr-defined]
                            call_id=idx)

    def outgoing_event(self) -> bool:
        """A direction-0 (our own call) URC may act: no incoming call is being tracked, or
        the call we answered is on hold while we dial a second one (modems/multiparty.py)."""
        c = self.call
        return c is None or not c.incoming or c.second is not None

    @staticmethod
    def _loop():
        import asyncio

        return asyncio.get_running_loop()

    @property
    def incoming_active(self) -> bool:
        c = self.call
        return c is not None and c.incoming and not c.ended

    def ring_blamed(self, dialed_at: float) -> bool:
        """Did an incoming call ring around ``dialed_at`` (a failed ATD is then its fault)?"""
        t = self.last_ring_at
        return t is not None and t >= dialed_at - 1.0 and time.monotonic() - t < RING_BLAME_WINDOW

    # ---- operations ---------------------------------------------------------------------
    async def answer(self) -> None:
        """Pick up the ringing incoming call (``ATA``); Answered follows. ATError if it is gone."""
        from .driver import DriverError

        c = self.call
        if c is None or not c.incoming or c.ended:
            raise DriverError(f"{self.name}: no incoming call to answer", port=self.ch.port)  # type: ignore[attr-defined]
        await self.prepare_audio()  # type: ignore[attr-defined]
        await self.ch.command("ATA", timeout=self.answer_timeout)  # type: ignore[attr-defined]
        if self._gone_timer is not None:
            self._gone_timer.cancel()
            self._gone_timer = None
        await self.after_answer()
        self.call_answered(c.call_id)  # type: ignore[attr-defined]
        self.after_answer_started()

    async def after_answer(self) -> None:
        """After ATA's OK (Huawei routes audio here, as after ATD)."""
        await self.after_dial()  # type: ignore[attr-defined]

    def after_answer_started(self) -> None:
        """Hook for polling drivers (generic CLCC)."""

    async def reject(self) -> None:
        """Refuse the ringing incoming call (the caller hears busy); Ended follows."""
        c = self.call
        if c is None or not c.incoming or c.ended:
            return
        c.local_hangup = True
        try:
            await self.ch.command(self.hangup_command, timeout=5)  # type: ignore[attr-defined]
        except ATCommandError as exc:
            log.info("%s: reject answered %s", self.name, exc.final)
        if not c.ended:
            self.call_ended(by=HangupBy.DIALER, cause=21, need_ceer=False)  # type: ignore[attr-defined]
