"""Huawei E1550/E173 (voice firmware): ``^ORIG/^CONF/^CONN/^CEND``, ``^CVOICE`` check,
audio on the voice tty after ``AT^DDSETEX=2``; keys only in-band on E1550."""

from __future__ import annotations

import re

from ..at.errors import ATCommandError
from .driver import DriverError, ModemDriver
from .events import HangupBy
from .info import rssi_to_dbm

_CEND = re.compile(r"\^CEND:\s*(\d+),\s*(\d+),\s*(\d+)(?:,\s*(\d+))?")
_RSSI = re.compile(r"\^RSSI:\s*(\d+)")
_CALL_ID = re.compile(r":\s*(\d+)")   # ^CONF/^CONN (every call)


class HuaweiDriver(ModemDriver):
    family = "huawei"
    call_state_source = "huawei_urc"      # ^ORIG/^CONF/^CONN/^CEND
    # chan_dongle: AT+CHLD=1x before ^CONF can wedge the E1550, and voice may die after CHLD
    # sequences (modems.md §2): no ECT unless the modem's `ect` setting says on, and a second
    # call is released only once it rings
    ect_default = False
    release_waits_for_alerting = True
    reports_dtmf = False
    iccid_commands = ("AT+CRSM=176,12258,0,0,10",)

    async def family_init(self) -> None:
        try:
            await self.ch.command("AT^CVOICE?")
        except ATCommandError:
            raise DriverError(f"{self.ch.port}: no voice firmware (AT^CVOICE? answered ERROR); "
                              "this modem can send SMS but cannot make calls", port=self.ch.port) from None
        if self.cfg.dtmf in ("urc", "both"):
            self.reports_dtmf = await self.optional("AT^DDTMFCFG=0,1")

    def subscribe_urcs(self) -> None:
        self.ch.subscribe("^ORIG:", lambda line: None)
        self.ch.subscribe("^CONF:", lambda line: self.call_ringing(self._id(line)))
        self.ch.subscribe("^CONN:", lambda line: self.call_answered(self._id(line)))
        self.ch.subscribe("^CEND:", self._on_cend)
        self.ch.subscribe("^DDTMF:", lambda line: self.key_pressed(line.split(":", 1)[1].strip()))
        self.ch.subscribe("^RSSI:", self._on_rssi)
        self.ch.subscribe(("^BOOT:", "^MODE:", "^SRVST:", "^SIMST:", "^DSFLOWRPT:"), lambda line: None)

    @staticmethod
    def _id(line: str) -> int | None:
        m = _CALL_ID.search(line)
        return int(m.group(1)) if m else None

    def _on_cend(self, line: str) -> None:
        m = _CEND.match(line)
        if not m:
            return
        idx, duration, status, cc = m.groups()
        cause = int(cc) if cc else None
        by = HangupBy.DIALER if status == "29" else None
        self.call_ended(cause=cause, duration=float(duration) if self.call and self.call.answered_at else None,
                        by=by, need_ceer=cause is None and status != "29", call_id=int(idx))

    def _on_rssi(self, line: str) -> None:
        m = _RSSI.match(line)
        if m:
            self.signal(rssi_to_dbm(int(m.group(1))))

    async def after_dial(self) -> None:
        if self.cfg.audio is not None and self.cfg.audio.kind == "serial":
            await self.ch.command("AT^DDSETEX=2")
