"""Two calls on one modem: hold, a second call, release one, explicit call transfer (ECT).

The operations ``strategy: ect`` transfers are made of (call/transfer.py, modems.md §6):
the call in progress goes on hold (``AT+CHLD=2``), a second call is dialed (``ATD…;``),
``AT+CLCC`` lists both (:meth:`MultipartyMixin.list_calls`), and either ``AT+CHLD=4`` joins
them and the modem leaves both, or ``AT+CHLD=1x`` releases the second and ``AT+CHLD=2``
brings the first back.

The driver follows both calls itself (mixed into :class:`~.driver.ModemDriver`): the held
call stays the session's (its end is an ``Ended``), the second one reports ``SecondCall``
events; while both exist only URCs that carry a call index are trusted
(:meth:`~.driver.ModemDriver.track_for`), and ``AT+CLCC`` settles the rest: a call it no
longer lists is over.

Family differences: ECT is confirmed on Quectel and SIM7600 (modems.md §6); on Huawei,
chan_dongle documents ``AT+CHLD=1x`` before ``^CONF`` wedging the E1550 and voice dying
after CHLD sequences (modems.md §2), so ECT is off there unless the modem's ``ect`` setting
says ``on``, and a release waits for ``^CONF``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from ..numbers import dial_string
from .events import CallHeld, CallRetrieved, SecondCall, Transferred
from .info import CallInfo, CallState, parse_clcc

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..at.channel import ATChannel
    from .driver import CallTrack
    from .events import Event
    from .options import ModemConfig

log = logging.getLogger("modem_dialer.modems")

CHLD_TIMEOUT = 5.0          # s for AT+CHLD=2 / 1x
ECT_TIMEOUT = 10.0          # s for AT+CHLD=4 (the network joins the two calls)
CLCC_TIMEOUT = 5.0


class MultipartyMixin:
    """Hold, second call, list, release, transfer (see the module docstring)."""

    # Whether explicit call transfer is tried when the modem's ``ect`` setting is ``auto``.
    ect_default = True
    # Release a second call only once the network says it rings (Huawei E1550, see above).
    release_waits_for_alerting = False
    # How long such a release waits for the ring before it goes ahead anyway.
    alerting_wait = 5.0

    if TYPE_CHECKING:   # set by ModemDriver
        ch: ATChannel
        cfg: ModemConfig
        name: str
        family: str
        call: CallTrack | None
        dial_timeout: float

        def emit(self, event: Event) -> None: ...
        def event_queue(self) -> tuple[asyncio.Queue, Callable[[], None]]: ...
        def end_track(self, c: CallTrack) -> None: ...

    @property
    def ect_enabled(self) -> bool:
        """Explicit call transfer may be tried on this modem (family default, ``ect`` setting)."""
        setting = self.cfg.ect
        return setting == "on" or (setting == "auto" and self.ect_default)

    @property
    def holding(self) -> bool:
        """The session's call is on hold (and still up)."""
        c = self.call
        return c is not None and not c.ended and c.held

    @property
    def call_up(self) -> bool:
        """The session's call is still up on this modem."""
        c = self.call
        return c is not None and not c.ended and not c.transferred

    def _fail(self, text: str) -> Exception:
        from .driver import DriverError

        return DriverError(f"{self.name}: {text}", port=self.ch.port)

    def _live(self) -> CallTrack:
        c = self.call
        if c is None or c.ended or c.answered_at is None:
            raise self._fail("no call in progress")
        return c

    # ---- operations -----------------------------------------------------------------------
    async def list_calls(self) -> list[CallInfo]:
        """The voice calls the modem has (``AT+CLCC``). A tracked call it no longer lists is over."""
        resp = await self.ch.command("AT+CLCC", timeout=CLCC_TIMEOUT)
        calls = parse_clcc(resp.lines)
        self.reconcile(calls)
        return calls

    async def hold(self) -> None:
        """Put the call in progress on hold (``AT+CHLD=2``); ATError when the modem refuses."""
        c = self._live()
        if c.held:
            return
        if c.call_id is None:
            # the family reported no index (SIMCom's VOICE CALL: BEGIN): learn it now, as
            # only an index tells the two calls apart once there are two
            active = [i for i in await self.list_calls() if i.state is CallState.ACTIVE]
            if len(active) == 1:
                c.call_id = active[0].index
        await self.ch.command("AT+CHLD=2", timeout=CHLD_TIMEOUT)
        c.held = True
        self.emit(CallHeld(self.name, call_id=c.call_id))

    async def retrieve(self) -> None:
        """Bring the held call back (``AT+CHLD=2``)."""
        c = self._live()
        await self.ch.command("AT+CHLD=2", timeout=CHLD_TIMEOUT)
        c.held = False
        self.emit(CallRetrieved(self.name, call_id=c.call_id))
        self._settle(c)

    async def dial_second(self, number: str) -> None:
        """Dial ``number`` (E.164, checked again here) while the first call is on hold;
        ``SecondCall`` events follow. ATError when the modem refuses the dial."""
        number = dial_string(number)
        c = self._live()
        if not c.held:
            raise self._fail("the call in progress is not on hold")
        if c.second is not None and not c.second.ended:
            raise self._fail("a second call is already in progress")
        from .driver import CallTrack

        second = c.second = CallTrack(number=number, dialed_at=time.monotonic())
        c.gone_ids.clear()          # the new call may get the index of one released before
        self.emit(SecondCall(self.name, state="dialing", number=number))
        try:
            await self.ch.command(f"ATD{number};", timeout=self.dial_timeout)
        except BaseException:
            self.second_ended(c, second)
            raise

    async def release(self, call_id: int) -> None:
        """Release one call by its index (``AT+CHLD=1x``), the other one stays as it is."""
        c = self.call
        target = None if c is None else c if c.call_id == call_id else c.second
        if target is not None and target.call_id != call_id:
            target = None
        if (self.release_waits_for_alerting and c is not None and target is c.second and target is not None
                and not target.ended and not target.ringing and target.answered_at is None):
            await self._until_alerting(target)
        await self.ch.command(f"AT+CHLD=1{int(call_id)}", timeout=CHLD_TIMEOUT)
        if c is None or target is None:
            return
        if target is c:
            target.local_hangup = True      # its end URC (or AT+CLCC) ends it, by the dialer
        else:
            self.second_ended(c, target)

    async def transfer(self) -> None:
        """Explicit call transfer (``AT+CHLD=4``): the held call and the second call are joined
        and the modem leaves both. ATError when the modem or the network refuses."""
        c = self._live()
        second = c.second
        if not self.ect_enabled:
            raise self._fail(f"explicit call transfer is off for this modem (family {self.family}, "
                             f"setting ect: {self.cfg.ect})")
        if second is None or second.ended:
            raise self._fail("no second call to transfer to")
        c.transfer_pending = True
        try:
            await self.ch.command("AT+CHLD=4", timeout=ECT_TIMEOUT)
        except BaseException:
            c.transfer_pending = False
            if c.left_modem:
                self.end_track(c)     # refused, yet the held call ended meanwhile: that end counts
            raise
        c.transfer_pending = False
        c.transferred = second.transferred = True
        c.held = False
        self.emit(Transferred(self.name, call_id=c.call_id, to_call_id=second.call_id, number=second.number))
        self.second_ended(c, second)

    # ---- the second call's bookkeeping -----------------------------------------------------
    def second_ended(self, c: CallTrack, second: CallTrack) -> None:
        if second.ended:
            return
        second.ended = True
        if second.call_id is not None:
            c.gone_ids.add(second.call_id)
        self.emit(SecondCall(self.name, state="ended", call_id=second.call_id, number=second.number))
        self._settle(c)

    def _settle(self, c: CallTrack) -> None:
        """Back to one call: URCs without an index are about the session's call again."""
        if c.second is not None and c.second.ended and not c.held:
            c.second = None

    def reconcile(self, calls: list[CallInfo]) -> None:
        """While two calls exist, a call ``AT+CLCC`` no longer lists is over (URCs without an
        index were left out, and some families send none at all)."""
        c = self.call
        if c is None or c.ended or c.second is None:
            return
        listed = {i.index for i in calls if i.state is not CallState.ENDED}
        second = c.second
        if not second.ended:
            if second.call_id is None:
                others = sorted(i.index for i in calls if not i.incoming and i.index != c.call_id)
                if others and c.call_id is not None:
                    second.call_id = others[0]
            elif second.call_id not in listed:
                self.second_ended(c, second)
        if c.call_id is not None and c.call_id not in listed and not c.transferred:
            self.end_track(c)

    async def _until_alerting(self, second: CallTrack) -> None:
        q, remove = self.event_queue()
        try:
            deadline = time.monotonic() + self.alerting_wait
            while not (second.ended or second.ringing or second.answered_at is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%s: releasing the second call before the network said it rings", self.name)
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(q.get(), left)
        finally:
            remove()
