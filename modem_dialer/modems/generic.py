"""Any 3GPP 27.007 modem: no call-state URCs, so poll ``AT+CLCC`` while a call lasts."""

from __future__ import annotations

import asyncio
import time

from ..at.errors import ATError
from .driver import ModemDriver
from .simcom import CLCC, ClccMixin


class GenericDriver(ClccMixin, ModemDriver):
    family = "generic"
    poll_interval = 0.25
    appear_timeout = 5.0   # a call that never shows in AT+CLCC has failed
    optional_init = ("AT+CEREG=2",)

    def subscribe_urcs(self) -> None:
        self.ch.subscribe("+DTMF:", lambda line: self.key_pressed(line.split(":", 1)[1].split(",")[0].strip()))

    def after_dial_started(self) -> None:
        self.spawn(self._poll(self.call))

    def after_answer_started(self) -> None:
        self.spawn(self._poll(self.call))   # an answered incoming call ends when it leaves CLCC

    async def _poll(self, call) -> None:
        seen = False
        while call is self.call and not call.ended:
            await asyncio.sleep(self.poll_interval)
            try:
                resp = await self.ch.command("AT+CLCC", timeout=3)
            except ATError:
                if not self.ch.is_open:
                    return
                continue
            voice = [line for line in resp.lines if (m := CLCC.match(line)) and m.group(4) == "0"]
            for line in voice:
                self.on_clcc(line)
            if voice:
                seen = True
            elif seen or call.answered_at is not None or time.monotonic() - call.dialed_at > self.appear_timeout:
                self.call_ended()   # the call left the list (or never showed up): it is over
                return
