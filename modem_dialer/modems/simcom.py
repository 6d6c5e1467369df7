"""SIMCom SIM7600/SIM7500: ``+CLCC`` URCs, ``VOICE CALL: BEGIN/END``, ``+RXDTMF``, PCM on
if04 gated by ``AT+CPCMREG``; ``AT+CVHU=0`` so a hang-up really hangs up."""

from __future__ import annotations

import asyncio
import re

from .driver import ModemDriver
from .info import CallInfo, CallState, parse_clcc_line

_END = re.compile(r"VOICE CALL:\s*END:\s*(\d{6})")


def hhmmss(text: str) -> int:
    """``VOICE CALL: END: 001404`` — the manual says HHMMSS ([?] ModemManager reads seconds)."""
    return int(text[0:2]) * 3600 + int(text[2:4]) * 60 + int(text[4:6])


class ClccMixin(ModemDriver):
    """Call state from ``+CLCC`` lines (URCs with AT+CLCC=1, or polled); a driver base, so
    the call_* steps it drives are the driver's own."""

    def on_clcc(self, line: str) -> None:
        info = parse_clcc_line(line)
        if info is not None:
            self.on_call_info(info)

    def on_call_info(self, info: CallInfo) -> None:
        if not info.voice:
            return
        idx, stat = info.index, info.state
        if info.incoming:
            self.incoming_state(idx, _INCOMING.get(stat), info.number)
            return
        if not self.outgoing_event():
            return
        if stat is CallState.ALERTING:
            self.call_ringing(idx)
        elif stat is CallState.ACTIVE:
            self.call_answered(idx)
        elif stat is CallState.ENDED:
            self.call_ended(call_id=idx)


_INCOMING = {CallState.INCOMING: "incoming", CallState.WAITING: "incoming", CallState.ACTIVE: "active",
             CallState.ENDED: "ended"}


class SimcomDriver(ClccMixin, ModemDriver):
    family = "simcom"
    call_state_source = "clcc_urc"
    iccid_commands = ("AT+CICCID", "AT+CCID", "AT+CRSM=176,12258,0,0,10")
    required_init = ("AT+CLCC=1", "AT+CVHU=0")
    optional_init = ("AT+CPCMFRM=0", "AT+CEREG=2")

    async def family_init(self) -> None:
        if self.cfg.dtmf != "inband":
            await self.optional("AT+DDET=1")   # errors on some firmware: harmless

    def subscribe_urcs(self) -> None:
        self.ch.subscribe("+CLCC:", self.on_clcc)
        self.ch.subscribe("VOICE CALL:", self._on_voice_call)
        self.ch.subscribe("+RXDTMF:", lambda line: self.key_pressed(line.split(":", 1)[1].strip()))
        # the caller gave up before we answered (SIM7600: "MISSED_CALL: 11:01AM 0771…")
        self.ch.subscribe("MISSED_CALL", lambda line: self.incoming_state(None, "ended"))

    def _on_voice_call(self, line: str) -> None:
        if "BEGIN" in line:
            self.call_answered()
            return
        m = _END.search(line)
        if m:
            self.call_ended(duration=float(hhmmss(m.group(1))))

    async def audio_on(self) -> None:
        if self.cfg.audio is None or self.cfg.audio.kind != "serial":
            return
        await asyncio.sleep(self.cfg.pcm_enable_delay)   # [?] see modems/options.py
        await self.ch.command("AT+CPCMREG=1")

    async def audio_off(self) -> None:
        if self.cfg.audio is not None and self.cfg.audio.kind == "serial":
            await self.optional("AT+CPCMREG=0,1")
