"""Scripted callees: what the person (or network) at a number does when the sim dials it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .sms import InboundSms

Outcome = Literal["answer", "busy", "no_answer", "rejected", "invalid", "unreachable"]

# 3GPP TS 24.008 causes and the texts modems print for AT+CEER.
CAUSES = {
    1: "Unassigned (unallocated) number",
    16: "Normal call clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call rejected",
    27: "Destination out of order",
    28: "Invalid number format (incomplete number)",
    31: "Normal, unspecified",
}


@dataclass
class Callee:
    outcome: Outcome = "answer"
    ring_after: float = 0.05       # s from ATD until the callee's phone rings (alerting)
    answer_after: float = 0.2      # s from ATD until answered (outcome answer)
    end_after: float = 0.3         # s from ATD until busy/rejected/invalid/no-answer ends the attempt
    hangup_after: float | None = None   # s after answer when the callee hangs up (None: never)
    keys: list[tuple[float, str]] = field(default_factory=list)  # (s after answer, key)
    inband: bool = False           # send keys as tones in the uplink audio instead of URCs
    key_ms: int = 100              # tone length for in-band keys
    unplug_after: float | None = None   # s after ATD when the modem is unplugged
    greeting: str | None = None    # "machine" or "human": uplink voice-like audio after answer
    # (s after answer, seconds, Hz): the callee "talks" a pure tone in the uplink, so a test can
    # check where that audio went (bridges); see sim/voice.tone_share
    tones: list[tuple[float, float, float]] = field(default_factory=list)
    # the first time this number is dialed, someone (this number) calls the SIM at that very
    # moment: the ATD fails and the SIM rings instead (then the caller hangs up after 1 s)
    rings_in_on_dial: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Callee:
        if not isinstance(d, dict):
            raise ValueError(f"a callee is a mapping of settings, not {d!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown callee setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        d = dict(d)
        keys = d.pop("keys", [])
        parsed = []
        for k in keys:
            if isinstance(k, dict):
                parsed.append((float(k["at"]), str(k["key"])))
            else:
                parsed.append((float(k[0]), str(k[1])))
        return cls(keys=parsed, **d)


@dataclass
class InboundCall:
    """Someone calling one of the simulated SIMs ``at`` s after the bank starts."""

    at: float = 0.0
    from_: str | None = None         # None: caller ID withheld
    modem: str | None = None         # which SIM is called (default: the first)
    keys: list[tuple[float, str]] = field(default_factory=list)   # (s after answer, key)
    hangup_after: float | None = None   # s after answer when the caller hangs up
    ring_for: float = 30.0           # s the caller lets it ring before giving up
    inband: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> InboundCall:
        if not isinstance(d, dict):
            raise ValueError(f"an inbound call is a mapping of settings, not {d!r}")
        d = {("from_" if k == "from" else k): v for k, v in d.items()}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown inbound call setting {unknown[0]!r} (known: at, from, modem, keys, "
                             "hangup_after, ring_for, inband)")
        keys = [(float(k["at"]), str(k["key"])) if isinstance(k, dict) else (float(k[0]), str(k[1]))
                for k in d.pop("keys", None) or []]
        frm = d.pop("from_", None)
        return cls(keys=keys, from_=None if frm in (None, "") else str(frm), **d)


@dataclass
class Scenario:
    """Which callee answers which number; the default for any other number; calls to the SIMs."""

    default: Callee = field(default_factory=Callee)
    numbers: dict[str, Callee] = field(default_factory=dict)
    inbound_calls: list[InboundCall] = field(default_factory=list)
    inbound_sms: list[InboundSms] = field(default_factory=list)    # messages for the SIMs (sim/sms.py)

    def callee_for(self, number: str) -> Callee:
        return self.numbers.get(number, self.default)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict) or set(data) - {"default", "numbers", "inbound_calls", "inbound_sms"}:
            raise ValueError("a scenario has 'default', 'numbers', 'inbound_calls' and 'inbound_sms' at the top level")
        default = Callee.from_dict(data.get("default", {}))
        numbers = {str(n): Callee.from_dict(c) for n, c in (data.get("numbers") or {}).items()}
        inbound = data.get("inbound_calls") or []
        if not isinstance(inbound, list):
            raise ValueError("inbound_calls: a list of calls ({at, from, keys, hangup_after, ...})")
        sms = data.get("inbound_sms") or []
        if not isinstance(sms, list):
            raise ValueError("inbound_sms: a list of messages ({at, from, text, ...})")
        return cls(default, numbers, [InboundCall.from_dict(c) for c in inbound],
                   [InboundSms.from_dict(m) for m in sms])
