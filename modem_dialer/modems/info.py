"""What a modem says about itself: identity and health, parsed from standard replies."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import IntEnum

from .events import Registration

_REG = {0: Registration.NOT_REGISTERED, 1: Registration.HOME, 2: Registration.SEARCHING,
        3: Registration.DENIED, 4: Registration.UNKNOWN, 5: Registration.ROAMING}
_ACT = {0: "2G", 1: "2G", 3: "2G", 2: "3G", 4: "3G", 5: "3G", 6: "3G", 7: "4G", 9: "4G", 13: "4G"}


@dataclass
class Identity:
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    imei: str | None = None
    iccid: str | None = None
    imsi: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Health:
    sim: str = "unknown"             # ready | pin_required | puk_required | busy | absent | error | unknown
    registration: Registration = Registration.UNKNOWN
    tech: str | None = None          # 2G | 3G | 4G
    operator: str | None = None
    signal_dbm: int | None = None
    volte: bool | None = None        # None where the family does not report it

    def as_dict(self) -> dict:
        d = asdict(self)
        d["registration"] = self.registration.value
        return d


def parse_cpin(value: str | None) -> str:
    if value is None:
        return "unknown"
    v = value.upper()
    if v == "READY":
        return "ready"
    if "PUK" in v:
        return "puk_required"
    if "PIN" in v:
        return "pin_required"
    return "error"


def rssi_to_dbm(rssi: int) -> int | None:
    """27.007 <rssi> 0..31 → dBm (−113 + 2·rssi); 99 (or anything else) is unknown."""
    return -113 + 2 * rssi if 0 <= rssi <= 31 else None


def parse_csq(value: str | None) -> int | None:
    """``+CSQ: <rssi>,<ber>`` value → dBm, None when unknown (99)."""
    m = re.match(r"\s*(\d+)", value or "")
    return rssi_to_dbm(int(m.group(1))) if m else None


def parse_creg(value: str | None, solicited: bool = True) -> tuple[Registration, str | None]:
    """``+CREG: <n>,<stat>[,<lac>,<ci>[,<AcT>]]`` as answered to ``AT+CREG?``.

    The URC form (``solicited=False``) has no leading ``<n>``.
    """
    if not value:
        return Registration.UNKNOWN, None
    parts = [p.strip().strip('"') for p in value.split(",")]
    if solicited:
        parts = parts[1:]
    if not parts or not parts[0].isdigit():
        return Registration.UNKNOWN, None
    reg = _REG.get(int(parts[0]), Registration.UNKNOWN)
    act = parts[3] if len(parts) > 3 and parts[3].isdigit() else None
    return reg, _ACT.get(int(act)) if act is not None else None


def parse_cops(value: str | None) -> tuple[str | None, str | None]:
    """``+COPS: 0,0,"Orange F",7`` → ("Orange F", "4G")."""
    if not value:
        return None, None
    m = re.match(r'\s*\d+\s*,\s*\d+\s*,\s*"([^"]*)"\s*(?:,\s*(\d+))?', value)
    if not m:
        return None, None
    act = _ACT.get(int(m.group(2))) if m.group(2) else None
    return m.group(1) or None, act


class CallState(IntEnum):
    """``<stat>`` of ``+CLCC`` (27.007 §7.18); 6 is SIMCom's and SIM800's "disconnect" in the
    ``AT+CLCC=1`` URC (modems.md §3.2, §3.3)."""

    ACTIVE = 0
    HELD = 1
    DIALING = 2
    ALERTING = 3
    INCOMING = 4
    WAITING = 5
    ENDED = 6


@dataclass(frozen=True)
class CallInfo:
    """One line of ``+CLCC`` (an ``AT+CLCC`` answer or a SIMCom/SIM800 URC)."""

    index: int
    incoming: bool                   # <dir> 1: someone called us
    state: CallState
    voice: bool                      # <mode> 0; Quectel lists its LTE data bearer as mode 1
    multiparty: bool = False
    number: str | None = None        # as the modem printed it ("" when empty, None when absent)


# +CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,"<number>",<type>[,"<alpha>"]]: spaces vary by family
# (SIM800 adds an empty alpha, SIM7600 may leave the number out: transcripts/INDEX.md §8)
_CLCC = re.compile(r'\+CLCC:\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)(?:\s*,\s*(\d+)(?:\s*,\s*"([^"]*)")?)?')


def parse_clcc_line(line: str) -> CallInfo | None:
    """``+CLCC: 2,0,3,0,0,"+336…",145`` → CallInfo; None for any other line or an unknown state."""
    m = _CLCC.match(line.strip())
    if not m:
        return None
    try:
        state = CallState(int(m.group(3)))
    except ValueError:
        return None
    return CallInfo(index=int(m.group(1)), incoming=m.group(2) == "1", state=state, voice=m.group(4) == "0",
                    multiparty=m.group(5) == "1", number=m.group(6))


def parse_clcc(lines: list[str]) -> list[CallInfo]:
    """The voice calls an ``AT+CLCC`` answer lists (data pseudo-calls left out)."""
    return [c for line in lines if (c := parse_clcc_line(line)) is not None and c.voice]
