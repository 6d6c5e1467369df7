"""Scripted callees: what the person (or network) at a number does when the sim dials it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from annotated_types import Interval

from .sms import InboundSms, scenario_settings

if TYPE_CHECKING:
    from pydantic import TypeAdapter

Outcome = Literal["answer", "busy", "no_answer", "rejected", "invalid", "unreachable"]
# A phone key (the simulator shares no code with modems/, hence its own list).
Key = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D"]
# Times in a scenario: seconds, never negative, within an hour (a longer call is a typo).
Seconds = Annotated[float, Interval(ge=0, le=3600)]

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
    ring_after: Seconds = 0.05     # s from ATD until the callee's phone rings (alerting)
    answer_after: Seconds = 0.2    # s from ATD until answered (outcome answer)
    end_after: Seconds = 0.3       # s from ATD until busy/rejected/invalid/no-answer ends the attempt
    hangup_after: Seconds | None = None   # s after answer when the callee hangs up (None: never)
    keys: list[tuple[Seconds, Key]] = field(default_factory=list)  # (s after answer, key)
    inband: bool = False           # send keys as tones in the uplink audio instead of URCs
    key_ms: Annotated[int, Interval(ge=40, le=2000)] = 100   # tone length for in-band keys
    unplug_after: Seconds | None = None   # s after ATD when the modem is unplugged
    greeting: Literal["machine", "human"] | None = None   # uplink voice-like audio after answer
    # (s after answer, seconds, Hz): the callee "talks" a pure tone in the uplink, so a test can
    # check where that audio went (bridges); see sim/voice.tone_share
    tones: list[tuple[Seconds, Seconds, Annotated[float, Interval(gt=0, lt=4000)]]] = field(default_factory=list)
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
        keys = d.pop("keys", None) or []
        if not isinstance(keys, list):
            raise ValueError(f"keys: a list of {{at: SECONDS, key: K}} or [SECONDS, K], not {keys!r}")
        parsed: list[object] = []
        for k in keys:
            if isinstance(k, dict):
                if set(k) != {"at", "key"}:
                    raise ValueError(f"keys: each is {{at: SECONDS, key: K}}, not {k!r}")
                parsed.append((k["at"], str(k["key"])))
            else:
                parsed.append(k if not isinstance(k, list) or len(k) != 2 else (k[0], str(k[1])))
        from pydantic import ValidationError

        try:
            return _callee_adapter().validate_python({**d, "keys": parsed})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where}: {err['msg']} (got {err['input']!r})") from None


@functools.cache
def _callee_adapter() -> TypeAdapter[Callee]:
    """Checks the types, sets and ranges above (strings are not numbers).

    Built at the first scenario read, not at import: pydantic's schema building cost every
    `modem-dialer sim` start ~0.1 s of CPU, most of them reading no scenario (issue 15)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Callee)


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
        d = scenario_settings(d, set(cls.__dataclass_fields__), "an inbound call", "inbound call",
                              "at, from, modem, keys, hangup_after, ring_for, inband")
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
        default = _named("default", data.get("default") or {})
        numbers = {str(n): _named(f"numbers.{n}", c) for n, c in (data.get("numbers") or {}).items()}
        inbound = data.get("inbound_calls") or []
        if not isinstance(inbound, list):
            raise ValueError("inbound_calls: a list of calls ({at, from, keys, hangup_after, ...})")
        sms = data.get("inbound_sms") or []
        if not isinstance(sms, list):
            raise ValueError("inbound_sms: a list of messages ({at, from, text, ...})")
        return cls(default, numbers, [InboundCall.from_dict(c) for c in inbound],
                   [InboundSms.from_dict(m) for m in sms])


def _named(where: str, settings: object) -> Callee:
    try:
        return Callee.from_dict(settings)  # type: ignore[arg-type]  # from_dict checks it is a mapping
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
