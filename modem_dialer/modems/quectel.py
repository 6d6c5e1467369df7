"""Quectel EC2x / EG25-G: ``+QIND: "ccinfo"`` (or ``^DSCI``) call states, ``+QTONEDET`` keys,
QPCMV audio routing (1,0 = PCM on the NMEA tty, 1,2 = USB sound card)."""

from __future__ import annotations

import logging
import re

from .driver import ModemDriver
from .generic import ClccPoller
from .info import rssi_to_dbm

log = logging.getLogger("modem_dialer.modems")

_CCINFO = re.compile(r'\+QIND:\s*"ccinfo",\s*(\d+),\s*(\d+),\s*(-?\d+),\s*(\d+)')
_DSCI = re.compile(r"\^DSCI:\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)")
_CSQ = re.compile(r'\+QIND:\s*"csq",\s*(\d+)')


class QuectelDriver(ClccPoller, ModemDriver):
    family = "quectel"
    iccid_commands = ("AT+QCCID", "AT+CCID", "AT+CRSM=176,12258,0,0,10")
    optional_init = ('AT+QINDCFG="csq",1,0', 'AT+QINDCFG="ring",0,0', "AT+CEREG=2")

    async def family_init(self) -> None:
        # Call states: +QIND "ccinfo" where the firmware has it; the EP06 answers ERROR
        # (transcripts/quectel-ep06__chan-quectel-roedal-issue3-qhup.txt) and reports ^DSCI
        # instead; with neither, poll AT+CLCC during calls. `modems --json` shows the choice.
        if await self.optional('AT+QINDCFG="ccinfo",1,0'):
            self.call_state_source = "ccinfo"
        elif await self.optional("AT^DSCI=1"):
            self.call_state_source = "dsci"
        else:
            self.call_state_source = "clcc_poll"
            self.end_urc_after_hangup = False   # polled: AT+CHUP's final result ends the call
            log.warning("%s: neither +QIND \"ccinfo\" nor ^DSCI: call states by polling AT+CLCC", self.name)
        if self.cfg.dtmf != "inband":
            await self.optional("AT+QTONEDET=1")
        if self.cfg.audio is not None and self.cfg.audio.kind == "serial":
            # QPCMV=1,0 puts the PCM on the NMEA tty: GPS sentences there would be played as
            # noise into the call (chan_quectel README; modems.md §1.1)
            await self.optional('AT+QGPSCFG="outport","none"')

    def subscribe_urcs(self) -> None:
        self.ch.subscribe('+QIND: "ccinfo"', self._on_ccinfo)
        self.ch.subscribe('+QIND: "csq"', self._on_csq)
        self.ch.subscribe("^DSCI:", self._on_dsci)
        self.ch.subscribe("+QTONEDET:", self._on_tone)

    def after_dial_started(self) -> None:
        if self.call_state_source == "clcc_poll":
            self.start_polling()

    def after_answer_started(self) -> None:
        if self.call_state_source == "clcc_poll":
            self.start_polling()   # an answered incoming call ends when it leaves CLCC

    def _on_ccinfo(self, line: str) -> None:
        m = _CCINFO.match(line)
        if not m:
            return
        idx, direction, state, mode = (int(g) for g in m.groups())
        if mode != 0:      # mode 1 is the LTE data pseudo-call
            return
        if direction == 1:
            num = re.search(r',"([^"]*)"', line[m.end():])
            self.incoming_state(idx, {4: "incoming", 5: "incoming", 0: "active", -1: "ended"}.get(state),
                                num.group(1) if num else None)
            return
        if self.outgoing_event():
            self._state(idx, {2: "dialing", 3: "ringing", 0: "active", -1: "ended"}.get(state))

    def _on_dsci(self, line: str) -> None:
        m = _DSCI.match(line)
        if not m:
            return
        idx, direction, stat, kind = (int(g) for g in m.groups())
        if kind != 0:
            return
        if direction == 1:
            rest = line[m.end():].lstrip(",").split(",")
            self.incoming_state(idx, {4: "incoming", 5: "incoming", 3: "active", 6: "ended"}.get(stat),
                                rest[0].strip().strip('"') if rest and rest[0].strip() else None)
            return
        if self.outgoing_event():
            self._state(idx, {2: "dialing", 7: "ringing", 3: "active", 6: "ended"}.get(stat))

    def _state(self, idx: int, state: str | None) -> None:
        if state == "ringing":
            self.call_ringing(idx)
        elif state == "active":
            self.call_answered(idx)
        elif state == "ended":
            self.call_ended(call_id=idx)
        elif state == "dialing":
            self.call_dialing(idx)

    def _on_tone(self, line: str) -> None:
        m = re.match(r"\+QTONEDET:\s*(\d+)", line)
        if m and 32 < int(m.group(1)) < 127:
            self.key_pressed(chr(int(m.group(1))))

    def _on_csq(self, line: str) -> None:
        m = _CSQ.match(line)
        if m:
            self.signal(rssi_to_dbm(int(m.group(1))))

    def _routing(self) -> tuple[str, ...]:
        audio = self.cfg.audio
        if audio is None:
            return ()
        mode = 0 if audio.kind == "serial" else 2
        # the module refuses a mode switch unless QPCMV is turned off first
        return ("AT+QPCMV=0", f"AT+QPCMV=1,{mode}")

    def dial_setup(self) -> tuple[str, ...]:
        # asterisk-chan-quectel dials with AT+QPCMV=0;+QPCMV=1,x;D<number>; (modems.md §5.1)
        return self._routing() if self.cfg.dial_in_one_line != "off" else ()

    async def prepare_audio(self) -> None:
        for command in self._routing():
            await self.ch.command(command)

    async def volte(self) -> bool | None:
        value = await self._value('AT+QCFG="ims"', "+QCFG:")
        if not value:
            return None
        parts = [p.strip().strip('"') for p in value.split(",")]
        return len(parts) >= 3 and parts[1] == "1" and parts[2] == "1"
