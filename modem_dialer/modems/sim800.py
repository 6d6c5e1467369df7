"""SIMCom SIM800 (2G, analog audio through an external sound card): ``+CLCC`` URCs,
``MO RING``/``MO CONNECTED``, ``+DTMF`` after ``AT+DDET=1``, BUSY/NO ANSWER lines."""

from __future__ import annotations

from .driver import ModemDriver
from .simcom import ClccMixin


class Sim800Driver(ClccMixin, ModemDriver):
    family = "sim800"
    call_state_source = "clcc_urc"
    iccid_commands = ("AT+CCID", "AT+CRSM=176,12258,0,0,10")
    required_init = ("AT+CLCC=1",)
    optional_init = ("AT+MORING=1",)
    hangup_command = "ATH"

    async def family_init(self) -> None:
        if self.cfg.dtmf != "inband":
            await self.optional("AT+DDET=1")

    def subscribe_urcs(self) -> None:
        self.ch.subscribe("+CLCC:", self.on_clcc)
        self.ch.subscribe("MO RING", lambda line: self.call_ringing())
        self.ch.subscribe("MO CONNECTED", lambda line: self.call_answered())
        # "+DTMF: 1", "+DTMF:1" or, in report mode 1, "+DTMF: 1,160"
        self.ch.subscribe("+DTMF:", lambda line: self.key_pressed(line.split(":", 1)[1].split(",")[0].strip()))
