"""One typed event model for every modem family.

Each driver turns its dialect (``+QIND: "ccinfo"``, ``^CEND``, ``VOICE CALL: END`` …)
into these events; everything above ``modems/`` only ever sees these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .sms_pdu import Deliver


class HangupBy(str, Enum):
    CALLEE = "callee"
    DIALER = "dialer"
    NETWORK = "network"


class Registration(str, Enum):
    HOME = "home"
    ROAMING = "roaming"
    SEARCHING = "searching"
    DENIED = "denied"
    NOT_REGISTERED = "not_registered"
    UNKNOWN = "unknown"

    @property
    def registered(self) -> bool:
        return self in (Registration.HOME, Registration.ROAMING)


@dataclass(frozen=True)
class Event:
    modem: str
    at: float = field(default_factory=time.monotonic, kw_only=True)


@dataclass(frozen=True)
class Dialing(Event):
    call_id: int | None = None


@dataclass(frozen=True)
class Ringing(Event):
    """The callee's phone is ringing (alerting)."""

    call_id: int | None = None


@dataclass(frozen=True)
class Answered(Event):
    call_id: int | None = None


@dataclass(frozen=True)
class Ended(Event):
    call_id: int | None = None
    # 3GPP TS 24.008 cause (16 normal, 17 busy, 18/19 no answer, 21 rejected, 1/28 invalid), when known
    cause: int | None = None
    cause_text: str | None = None
    duration_s: float | None = None       # as reported by the modem, when it reports one
    by: HangupBy | None = None
    # literal final line seen for the call, e.g. "BUSY", "NO ANSWER", "NO CARRIER"
    result: str | None = None


@dataclass(frozen=True)
class IncomingCall(Event):
    """Someone is calling this SIM (``RING``/``+CRING``/``+CLIP`` or the family's call-state URC).

    Emitted once per incoming call, as soon as the caller ID is known (or known to be
    missing). ``number`` is None when the caller withheld it or the network gave none;
    ``during_dial``: it rang while we were dialing out on this modem (the ATD may fail).
    The call then goes on with the usual ``Answered`` / ``Ended`` events.
    """

    number: str | None = None
    withheld: bool = False
    call_id: int | None = None
    during_dial: bool = False


@dataclass(frozen=True)
class CallHeld(Event):
    """The call in progress is on hold (``AT+CHLD=2``): the callee hears the network's hold."""

    call_id: int | None = None


@dataclass(frozen=True)
class CallRetrieved(Event):
    """The held call is back (``AT+CHLD=2`` again)."""

    call_id: int | None = None


@dataclass(frozen=True)
class SecondCall(Event):
    """The second call, dialed while the first is on hold, moved on.

    Its states never reach the first call's ``Ringing``/``Answered``/``Ended``: those stay
    about the call the session placed.
    """

    state: Literal["dialing", "ringing", "answered", "ended"]
    call_id: int | None = None
    number: str | None = None


@dataclass(frozen=True)
class Transferred(Event):
    """Explicit call transfer (``AT+CHLD=4``): the held call and the second call now talk to
    each other and the modem has left both. The first call's ``Ended`` follows when the
    session hangs up (by the dialer: it chose to leave)."""

    call_id: int | None = None
    to_call_id: int | None = None
    number: str | None = None


@dataclass(frozen=True)
class KeyPressed(Event):
    key: str
    source: str = "urc"                   # "urc" or "inband"


@dataclass(frozen=True)
class RegistrationChanged(Event):
    status: Registration
    tech: str | None = None               # "2G" | "3G" | "4G"


@dataclass(frozen=True)
class SignalChanged(Event):
    dbm: int | None


@dataclass(frozen=True)
class ModemLost(Event):
    error: str


@dataclass(frozen=True)
class SmsReceived(Event):
    """One SMS-DELIVER PDU read from the modem (+CMT direct, or +CMTI then AT+CMGR).

    ``deliver`` is the decoded PDU, or None with ``error`` saying why it could not be read
    (a garbled PDU is still reported, so it is journaled rather than lost). A part of a
    concatenated message is one event; reassembly is the store's job (it must survive a
    restart between parts).
    """

    pdu: str
    deliver: Deliver | None = None
    error: str | None = None
    storage: str | None = None            # "SM"/"ME"/"MT" when it was read from memory, else None


@dataclass(frozen=True)
class DeliveryReport(Event):
    """An SMS-STATUS-REPORT (+CDS direct, or +CDSI then AT+CMGR): TP-MR and TP-ST."""

    reference: int
    status: int                           # 0x00-0x1F delivered, 0x20-0x3F still trying, 0x40+ failed
    recipient: str | None = None
    pdu: str = ""

    @property
    def delivered(self) -> bool:
        return self.status < 0x20

    @property
    def failed(self) -> bool:
        return self.status >= 0x40
