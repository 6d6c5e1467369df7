"""Any 3GPP 27.007 modem: no call-state URCs, so poll ``AT+CLCC`` while a call lasts."""

from __future__ import annotations

import asyncio
import time

from ..at.errors import ATError
from .driver import CallTrack, ModemDriver
from .info import parse_clcc
from .simcom import ClccMixin


class ClccPoller(ClccMixin):
    """Call state by polling ``AT+CLCC`` while a call lasts (modems without call-state URCs:
    the generic family, a Quectel with neither ccinfo nor ^DSCI)."""

    poll_interval = 0.25
    appear_timeout = 5.0   # a call that never shows in AT+CLCC has failed

    def start_polling(self) -> None:
        if self.call is not None:   # dial() has just set it; the check is for the type checker
            self.spawn(self._poll(self.call))

    async def _poll(self, call: CallTrack) -> None:
        seen = False
        while call is self.call and not call.ended:
            await asyncio.sleep(self.poll_interval)
            try:
                resp = await self.ch.command("AT+CLCC", timeout=3)
            except ATError:
                if not self.ch.is_open:
                    return
                continue
            voice = parse_clcc(resp.lines)
            for info in voice:
                self.on_call_info(info)
            if voice:
                seen = True
            if call.second is not None:
                self.reconcile(voice)   # two calls: each ends when its own index leaves the list
            elif not voice and (seen or call.answered_at is not None
                                or time.monotonic() - call.dialed_at > self.appear_timeout):
                self.call_ended()   # left the list (or never showed up): over
                return


class GenericDriver(ClccPoller, ModemDriver):
    family = "generic"
    call_state_source = "clcc_poll"
    optional_init = ("AT+CEREG=2",)
    end_urc_after_hangup = False   # no call-state URCs: AT+CHUP's OK ends the call

    def subscribe_urcs(self) -> None:
        self.ch.subscribe("+DTMF:", lambda line: self.key_pressed(line.split(":", 1)[1].split(",")[0].strip()))

    def after_dial_started(self) -> None:
        self.start_polling()

    def after_answer_started(self) -> None:
        self.start_polling()   # an answered incoming call ends when it leaves CLCC
