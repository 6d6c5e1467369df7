"""Each family's dialect as the simulator speaks it (see shared reference modems.md §9).

A dialect answers its family's own commands and announces each step of a call with the
family's URCs, including the quirks a driver must survive: echo on at start, ``\\r\\r\\n``
framing on SIMCom, ATH ignored on SIM7600 until ``AT+CVHU=0``, the LTE data pseudo-call
at CLCC index 1 on Quectel, ``COMMAND NOT SUPPORT`` and ``^RSSI`` noise on Huawei.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # modem.py imports this module: the type only, no import cycle at run time
    from .modem import SimModem


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"


class Dialect:
    family = "generic"
    manufacturer = "Generic"
    model = "GSM Modem"
    revision = "1.0"
    audio_port = False
    call_index = 1
    dial_fails_with_result = True
    # SMS (sim/sms.py): the alpha field of +CMT, URC framing, the EC25 "+CDSI: SM" quirk
    cmt_alpha = ""
    sms_crcrlf = False
    cdsi_says_sm = False
    modem: SimModem  # set by the SimModem that adopts this dialect, before any command

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.reset()

    def reset(self) -> None:
        """Volatile settings after power-up or AT+CFUN=1,1."""

    def unknown(self) -> list[str]:
        return self.modem.error("unknown", 100) if self.modem.cmee else ["ERROR"]

    def handle(self, cmd: str, up: str) -> list[str] | None:
        if up == "AT+CCID":
            return [self.modem.iccid, "OK"]
        return None

    def ceer(self, cause: int | None, text: str) -> str:
        return f"+CEER: {text}"

    STAT: ClassVar[dict[str, int]] = {"dialing": 2, "alerting": 3, "active": 0, "held": 1, "ended": 6}

    STAT_IN: ClassVar[dict[str, int]] = {"incoming": 4, "active": 0, "held": 1, "ended": 6}

    def clcc(self, call, state: str | None = None) -> str:
        if _incoming(call):
            stat = self.STAT_IN[state or call.state]
            return f'+CLCC: {call.index},1,{stat},0,0,"{call.number}",{_ton(call)}'
        stat = self.STAT[state or call.state]
        return f'+CLCC: {call.index},0,{stat},0,0,"{call.number}",{145 if call.number.startswith("+") else 129}'

    def clcc_lines(self) -> list[str]:
        calls = [c for c in (getattr(self.modem, "held", None), self.modem.call) if c is not None]
        return [self.clcc(c) for c in calls]

    def hangup(self, up: str) -> list[str]:
        call = self.modem.local_hangup()
        self.modem._reply(["OK"])
        if call:
            self.modem.end_call(call, 16, "dialer", local=True)
        return []

    # incoming calls (27.007: RING or +CRING with AT+CRC=1, +CLIP with AT+CLIP=1)
    ring_crcrlf = False

    def ring_lines(self, call) -> None:
        m = self.modem
        m.urc("+CRING: VOICE" if m.crc else "RING", crcrlf=self.ring_crcrlf)
        if m.clip:
            m.urc(_clip(call))

    def incoming_ring(self, call, first: bool) -> None:
        self.ring_lines(call)

    def incoming_answered(self, call) -> list[str]:
        return ["OK"]

    # call steps -> URCs (generic modem: none; the driver polls AT+CLCC)
    def dialing(self, call) -> None: ...
    def alerting(self, call) -> None: ...
    def connected(self, call) -> None: ...

    def ended(self, call, was_active: bool, local: bool) -> None:
        if local or (_incoming(call) and not was_active):
            return       # an unanswered incoming call just stops ringing
        result = {17: "BUSY", 19: "NO ANSWER", 18: "NO ANSWER"}.get(call.cause, "NO CARRIER")
        self.modem.urc(result)

    def key(self, key: str) -> None: ...

    def audio_enabled(self, call) -> bool:
        return False

    def noise_lines(self) -> list[str]:
        return []

    # What the module prints by itself once it has restarted (AT+CFUN=1,1, a silent reset).
    BOOT_LINES: ClassVar[tuple[str, ...]] = ()


class Quectel(Dialect):
    family = "quectel"
    cdsi_says_sm = True              # EC25/EG25: a report in "SR" announced as +CDSI: "SM"
    BOOT_LINES = ("RDY", "+CPIN: READY", "+QUSIM: 1", "+CFUN: 1", "+QIND: SMS DONE")   # transcripts: boot URCs
    manufacturer = "Quectel"
    model = "EC25"
    revision = "EC25EFAR06A06M4G"
    audio_port = True
    call_index = 2          # index 1 is the LTE data pseudo-call
    dial_fails_with_result = False

    # Variants (SimSpec.variant): the EP06 has no AT+QINDCFG="ccinfo" and reports call
    # states by ^DSCI (transcripts/quectel-ep06__chan-quectel-roedal-issue3-qhup.txt);
    # "ep06-nodsci" lacks both, so only AT+CLCC polling tells the call's state.
    VARIANTS: ClassVar[dict[str, tuple[str, bool, bool]]] = {
        "ep06": ("EP06", False, True), "ep06-nodsci": ("EP06", False, False)}

    def __init__(self, seed: int = 0, variant: str | None = None) -> None:
        self.has_ccinfo, self.has_dsci = True, True
        if variant is not None:
            if variant not in self.VARIANTS:
                raise ValueError(f"unknown quectel variant {variant!r} (one of {', '.join(self.VARIANTS)})")
            self.model, self.has_ccinfo, self.has_dsci = self.VARIANTS[variant]
        # Settings the module keeps in NV: they survive AT+CFUN=1,1 (reset() leaves them).
        # usbcfg flags after VID/PID: DIAG, NMEA, AT, modem, net, ADB, UAC (modems.md §1.1).
        self.usbcfg = [1, 1, 1, 1, 1, 0, 0]
        self.ims = 1                # AT+QCFG="ims": 1 enabled, 0/2 disabled
        self.urcport = "usbat"      # AT+QURCCFG="urcport"
        super().__init__(seed)

    def reset(self) -> None:
        self.ccinfo = False
        self.ring_urc = True        # AT+QINDCFG="ring",0 turns RING/+CRING off
        self.dsci = False
        self.qtonedet = False
        self.qpcmv: tuple[int, int] | None = None
        self.csq_urc = False

    def handle(self, cmd: str, up: str) -> list[str] | None:
        m = self.modem
        if mm := re.fullmatch(r'AT\+QINDCFG="(\w+)",(\d)(,\d)?', up):
            what, on = mm.group(1).lower(), mm.group(2) == "1"
            if what == "ccinfo" and not self.has_ccinfo:
                return ["ERROR"]
            if what == "ccinfo":
                self.ccinfo = on
            elif what == "ring":
                self.ring_urc = on
            elif what == "csq":
                self.csq_urc = on
            return ["OK"]
        if mm := re.fullmatch(r"AT\^DSCI=(\d)", up):
            if not self.has_dsci:
                return ["ERROR"]
            self.dsci = mm.group(1) == "1"
            return ["OK"]
        if mm := re.fullmatch(r"AT\+QTONEDET=(\d)", up):
            self.qtonedet = mm.group(1) == "1"
            return ["OK"]
        if up == "AT+QPCMV=0":
            self.qpcmv = None
            return ["OK"]
        if mm := re.fullmatch(r"AT\+QPCMV=1,([0-2])", up):
            if self.qpcmv is not None:     # the module refuses a mode switch without QPCMV=0 first
                return m.error("operation not allowed", 3)
            self.qpcmv = (1, int(mm.group(1)))
            return ["OK"]
        if up == "AT+QPCMV?":
            return [f"+QPCMV: {self.qpcmv[0]},{self.qpcmv[1]}" if self.qpcmv else "+QPCMV: 0", "OK"]
        if up == "AT+QCCID":
            return [f"+QCCID: {m.iccid}", "OK"]
        if up == 'AT+QCFG="IMS"':
            return [f'+QCFG: "ims",{self.ims},{self.ims}', "OK"]
        if mm := re.fullmatch(r'AT\+QCFG="IMS",([0-2])', up):
            self.ims = 1 if mm.group(1) == "1" else 0
            return ["OK"]
        if up == 'AT+QCFG="USBCFG"':
            return ['+QCFG: "usbcfg",0x2C7C,0x0125,' + ",".join(map(str, self.usbcfg)), "OK"]
        if mm := re.fullmatch(r'AT\+QCFG="USBCFG",0X2C7C,0X0125((?:,[01]){7})', up):
            self.usbcfg = [int(x) for x in mm.group(1)[1:].split(",")]
            return ["OK"]
        if up in ('AT+QURCCFG="URCPORT"', "AT+QURCCFG?"):
            return [f'+QURCCFG: "urcport","{self.urcport}"', "OK"]
        if mm := re.fullmatch(r'AT\+QURCCFG="URCPORT","(USBAT|USBMODEM|UART1|UART2|ALL)"', up):
            self.urcport = mm.group(1).lower()
            return ["OK"]
        if up.startswith("AT+QHUP"):
            return self.hangup(up)
        if up.startswith(("AT+QCFG=", "AT+QURCCFG", "AT+CVHU", "AT+QAUDMOD", "AT+QGPSCFG", "AT+VTD")):
            return ["OK"]
        return super().handle(cmd, up)

    def clcc_lines(self) -> list[str]:
        return ['+CLCC: 1,0,0,1,0,"",128', *super().clcc_lines()]

    def _announce(self, call, qstate: int, dstat: int) -> None:
        d = 1 if _incoming(call) else 0
        if self.ccinfo:
            self.modem.urc(f'+QIND: "ccinfo",{call.index},{d},{qstate},0,0,"{call.number}",{_ton(call)}')
        if self.dsci:
            self.modem.urc(f"^DSCI: {call.index},{d},{dstat},0,{call.number},{_ton(call)},0")

    def incoming_ring(self, call, first: bool) -> None:
        # EG25-G: +CLIP then ccinfo state 4, and no RING unless enabled (modems.md §3.1)
        if self.ring_urc:
            self.modem.urc("+CRING: VOICE" if self.modem.crc else "RING")
        if self.modem.clip:
            self.modem.urc(_clip(call))
        if first:
            self._announce(call, 4, 4)

    def incoming_answered(self, call) -> list[str]:
        self.modem._reply(["OK"])
        self._announce(call, 0, 3)
        return []

    def dialing(self, call) -> None:
        self._announce(call, 2, 2)

    def alerting(self, call) -> None:
        self._announce(call, 3, 7)

    def connected(self, call) -> None:
        self._announce(call, 0, 3)

    def ended(self, call, was_active: bool, local: bool) -> None:
        self._announce(call, -1, 6)
        if was_active and not local:
            self.modem.urc("NO CARRIER")

    def key(self, key: str) -> None:
        if self.qtonedet:
            self.modem.urc(f"+QTONEDET: {ord(key)}")

    def audio_enabled(self, call) -> bool:
        return self.qpcmv == (1, 0) and call.state == "active"

    def noise_lines(self) -> list[str]:
        return [f'+QIND: "csq",{self.modem.rssi},99'] if self.csq_urc else []


class Simcom(Dialect):
    family = "simcom"
    cmt_alpha = '""'
    sms_crcrlf = True                # SIM7600 frames some URCs with \r\r\n
    BOOT_LINES = ("RDY", "+CPIN: READY", "SMS DONE")   # transcripts: boot URCs
    manufacturer = "SIMCOM INCORPORATED"
    model = "SIMCOM_SIM7600G-H"
    revision = "+CGMR: LE20B03SIM7600M22"
    audio_port = True
    dial_fails_with_result = False

    def reset(self) -> None:
        self.clcc_urc = False
        self.cvhu = 1           # ATH is ignored until AT+CVHU=0
        self.ddet = False
        self.cpcmreg = False

    def handle(self, cmd: str, up: str) -> list[str] | None:
        m = self.modem
        if up == "AT+CLCC=1":
            self.clcc_urc = True
            return ["OK"]
        if mm := re.fullmatch(r"AT\+CVHU=(\d)", up):
            self.cvhu = int(mm.group(1))
            return ["OK"]
        if up == "AT+CVHU?":
            return [f"+CVHU: {self.cvhu}", "OK"]
        if up == "AT+DDET=1":
            self.ddet = True
            return ["OK"]
        if up == "AT+CPCMREG=1":
            if m.call is None:
                return m.error("operation not allowed", 3)
            self.cpcmreg = True
            return ["OK"]
        if up.startswith("AT+CPCMREG=0"):
            self.cpcmreg = False
            return ["OK"]
        if up == "AT+CPCMREG?":
            return [f"+CPCMREG: {int(self.cpcmreg)}", "OK"]
        if up == "AT+CICCID":
            return [f"+ICCID: {m.iccid}", "OK"]
        if up.startswith(("AT+CPCMFRM=", "AT+CNSMOD=", "AT+AUTOCSQ=", "AT+CATR=", "AT+MORING=", "AT+CLTS=")):
            return ["OK"]
        return super().handle(cmd, up)

    def hangup(self, up: str) -> list[str]:
        m = self.modem
        if up.startswith("ATH") and self.cvhu != 0:
            return ["OK"]               # the documented trap: OK, and the call goes on
        call = m.local_hangup()
        if call is None:
            return ["OK"]
        if up == "AT+CHUP":
            m.urc(f"VOICE CALL: END: {_hhmmss(call.duration)}")
            m._reply(["OK"])
            m.end_call(call, 16, "dialer", local=True)
        else:
            m._reply(["OK"])
            m.urc(f"VOICE CALL: END: {_hhmmss(call.duration)}")
            m.end_call(call, 16, "dialer", local=True)
            m.urc("NO CARRIER")
        return []

    def _clcc(self, call, state: str | None = None) -> None:
        if self.clcc_urc:
            self.modem.urc(self.clcc(call, state), crcrlf=self.rng.random() < 0.5)

    ring_crcrlf = True        # SIM7600E frames +CRING with two CRs (transcripts INDEX #2)

    def incoming_ring(self, call, first: bool) -> None:
        if first:
            self._clcc(call)
        self.ring_lines(call)

    def incoming_answered(self, call) -> list[str]:
        # "VOICE CALL: BEGIN" can come before ATA's OK (transcripts INDEX #4)
        self.modem.urc("VOICE CALL: BEGIN")
        self.modem._reply(["OK"])
        self._clcc(call)
        return []

    def dialing(self, call) -> None:
        self._clcc(call)

    def alerting(self, call) -> None:
        self._clcc(call)

    def connected(self, call) -> None:
        # the order of BEGIN and the stat-0 CLCC line is not documented: vary it
        if self.rng.random() < 0.5:
            self.modem.urc("VOICE CALL: BEGIN")
            self._clcc(call)
        else:
            self._clcc(call)
            self.modem.urc("VOICE CALL: BEGIN")

    def ended(self, call, was_active: bool, local: bool) -> None:
        self.cpcmreg = False
        if _incoming(call) and not was_active and not local:
            self.modem.urc(f"MISSED_CALL: 11:01AM {call.number}")
            self._clcc(call, "ended")
            return
        if local:
            self._clcc(call, "ended")
            return
        if was_active:
            self.modem.urc(f"VOICE CALL: END: {_hhmmss(call.duration)}")
            self.modem.urc("NO CARRIER")
            self._clcc(call, "ended")
        else:
            self._clcc(call, "ended")
            self.modem.urc("VOICE CALL: END: 000000")
            self.modem.urc("NO CARRIER")

    def key(self, key: str) -> None:
        self.modem.urc(f"+RXDTMF: {key}", crcrlf=True)

    def audio_enabled(self, call) -> bool:
        return self.cpcmreg and call.state == "active"


class Sim800(Dialect):
    family = "sim800"
    cmt_alpha = '""'
    BOOT_LINES = ("RDY", "+CPIN: READY", "Call Ready", "SMS Ready")   # transcripts: boot URCs
    manufacturer = "SIMCOM_Ltd"
    model = "SIMCOM_SIM800L"
    revision = "Revision:1418B04SIM800L24"
    dial_fails_with_result = False

    def reset(self) -> None:
        self.clcc_urc = False
        self.moring = False
        self.ddet = False

    def handle(self, cmd: str, up: str) -> list[str] | None:
        if up == "AT+CLCC=1":
            self.clcc_urc = True
            return ["OK"]
        if up == "AT+MORING=1":
            self.moring = True
            return ["OK"]
        if up.startswith("AT+DDET=1"):
            self.ddet = True
            return ["OK"]
        if up.startswith(("AT+CDRIND=", "AT+CVHU=")):
            return ["OK"]
        return super().handle(cmd, up)

    def _clcc(self, call, state: str | None = None) -> None:
        if self.clcc_urc:
            self.modem.urc(self.clcc(call, state))

    def incoming_ring(self, call, first: bool) -> None:
        if first:
            self._clcc(call)
        self.ring_lines(call)

    def incoming_answered(self, call) -> list[str]:
        self.modem._reply(["OK"])
        self._clcc(call)
        return []

    def dialing(self, call) -> None:
        self._clcc(call)

    def alerting(self, call) -> None:
        if self.moring:
            self.modem.urc("MO RING")
        self._clcc(call)

    def connected(self, call) -> None:
        if self.moring:
            self.modem.urc("MO CONNECTED")
        self._clcc(call)

    def ended(self, call, was_active: bool, local: bool) -> None:
        self._clcc(call, "ended")
        if not local and not (_incoming(call) and not was_active):
            super().ended(call, was_active, local)

    def key(self, key: str) -> None:
        if self.ddet:
            self.modem.urc(f"+DTMF: {key}")


class Huawei(Dialect):
    family = "huawei"
    manufacturer = "huawei"
    model = "E1550"
    revision = "11.608.12.02.21"
    audio_port = True
    dial_fails_with_result = False

    # Variants (SimSpec.variant): ``^ORIG`` spacing is one firmware's constant, never a coin
    # toss per call: the E1550 trace prints ``^ORIG:1,0`` (transcripts/huawei__e1550-call-
    # trace-ukrtelecom.txt), the MU609 guide ``^ORIG: 1,0`` (reference modems.md §3.4). A
    # per-call mix no real modem sends made python-gsmmodem-new miss every other dial in
    # bench/campaign_utilisation.py (its regex wants the E1550 form).
    VARIANTS: ClassVar[dict[str, tuple[str, bool]]] = {"mu609": ("MU609", True)}

    def __init__(self, seed: int = 0, voice: bool = True, variant: str | None = None) -> None:
        self.voice = voice
        self.orig_space = False
        if variant is not None:
            if variant not in self.VARIANTS:
                raise ValueError(f"unknown huawei variant {variant!r} (one of {', '.join(self.VARIANTS)})")
            self.model, self.orig_space = self.VARIANTS[variant]
        self.cvoice = 0             # NV: ^CVOICE mode, 0 = voice over the USB voice port
        self.u2diag = 255           # NV: USB composition, 255 = CD-ROM + modem + SD (factory)
        super().__init__(seed)

    def reset(self) -> None:
        self.ddsetex = False
        self.ddtmfcfg = False
        self.curc = True

    def unknown(self) -> list[str]:
        return ["COMMAND NOT SUPPORT"]

    def handle(self, cmd: str, up: str) -> list[str] | None:
        if up == "AT^CVOICE?":
            return [f"^CVOICE:{self.cvoice},8000,16,20", "OK"] if self.voice else ["ERROR"]
        if mm := re.fullmatch(r"AT\^CVOICE=([0-9])", up):
            if not self.voice:
                return ["ERROR"]
            self.cvoice = int(mm.group(1))
            return ["OK"]
        if up == "AT^U2DIAG?":
            return [f"^U2DIAG:{self.u2diag}", "OK"]
        if mm := re.fullmatch(r"AT\^U2DIAG=([0-9]{1,3})", up):
            self.u2diag = int(mm.group(1))
            return ["OK"]
        if up == "AT^DDSETEX=2":
            self.ddsetex = True
            return ["OK"]
        if up == "AT^CURC=0":
            self.curc = False
            return ["OK"]
        if up == "AT^DDTMFCFG=0,1":
            self.ddtmfcfg = True
            return ["OK"]
        if up.startswith(("AT^U2DIAG=", "AT+CVHU=", "AT+CSSN=")):
            return ["OK"]
        if up.startswith("AT+CCID"):
            return None   # E1550 has no +CCID: the driver must use AT+CRSM
        return super().handle(cmd, up)

    def hangup(self, up: str) -> list[str]:
        m = self.modem
        call = m.local_hangup()
        m._reply(["OK"])
        if call:
            m.end_call(call, 16, "dialer", local=True)
        return []

    def dialing(self, call) -> None:
        self.modem.urc(f"^ORIG:{' ' if self.orig_space else ''}{call.index},0")

    def alerting(self, call) -> None:
        self.modem.urc(f"^CONF:{call.index}")

    def connected(self, call) -> None:
        self.modem.urc(f"^CONN:{call.index},0")

    def incoming_answered(self, call) -> list[str]:
        self.modem._reply(["OK"])
        self.connected(call)
        return []

    def ended(self, call, was_active: bool, local: bool) -> None:
        self.ddsetex = False
        status = 29 if local else 104
        self.modem.urc(f"^CEND:{call.index},{call.duration},{status},{call.cause}")
        if call.cause == 17 and not local:
            self.modem.urc("BUSY")

    def key(self, key: str) -> None:
        if self.ddtmfcfg:
            self.modem.urc(f"^DDTMF: {key}")
        elif self.modem.audio:
            self.modem.audio.send_tone(key, self.modem.call.callee.key_ms if self.modem.call else 100)

    def audio_enabled(self, call) -> bool:
        return self.ddsetex and call.state == "active"

    def noise_lines(self) -> list[str]:
        return [f"^RSSI:{self.modem.rssi}"] if self.curc else []


def _incoming(call) -> bool:
    return getattr(call, "direction", "out") == "in"


def _ton(call) -> int:
    return 145 if call.number.startswith("+") else 129


def _clip(call) -> str:
    """``+CLIP`` as the Huawei trace shows it (``"+1234567890",145,,,,0``); withheld: validity 1."""
    if call.withheld or not call.number:
        return '+CLIP: "",128,,,,1'
    return f'+CLIP: "{call.number}",{_ton(call)},,,,0'


DIALECTS = {"quectel": Quectel, "simcom": Simcom, "sim800": Sim800, "huawei": Huawei, "generic": Dialect}


def make_dialect(family: str, seed: int = 0, **kw) -> Dialect:
    try:
        cls = DIALECTS[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r} (one of {', '.join(DIALECTS)})") from None
    return cls(seed, **kw)
