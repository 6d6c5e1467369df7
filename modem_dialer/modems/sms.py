"""SMS through a modem: PDU mode, GSM 7-bit or UCS-2, long texts as concatenated parts.

The PDUs are built by modems/sms_pdu.py: GSM 7-bit when every character is in the GSM
alphabet or its extension table ("é" and "€" fit, "—" does not), UCS-2 otherwise; a long
text is cut where the network cuts it (153 septets / 67 UCS-2 units per part with an
8-bit reference), never inside a GSM escape pair or an emoji's surrogate pair. PDU mode is
used rather than text mode because text mode's character set (AT+CSCS) differs by
firmware and cannot carry UCS-2 reliably (modems.md §7).

Receiving (SMS and delivery reports) is modems/sms_inbound.py.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ..errors import UserError
from ..numbers import dial_string
from .driver import ModemDriver
from .sms_pdu import PduError, StatusReport, choose_encoding, decode_pdu, encode_submit

log = logging.getLogger("modem_dialer.sms")

# A text longer than this many parts is a mistake (a log file piped into sms), not an alert.
MAX_PARTS = 10


@dataclass(frozen=True)
class SmsPart:
    tpdu_len: int
    pdu_hex: str


@dataclass(frozen=True)
class SmsSent:
    parts: int
    references: list[int]     # TP-MR the modem gave each part (+CMGS: <mr>)
    encoding: str             # gsm7 | ucs2


def encode_sms(number: str, text: str, *, status_report: bool = True,
               concat_ref: int | None = None) -> list[SmsPart]:
    """The SMS-SUBMIT PDUs for ``text`` to ``number`` (E.164). Raises UserError when empty or too long."""
    number = dial_string(number)
    if not text:
        raise UserError("SMS text is empty")
    ref = random.randrange(256) if concat_ref is None else concat_ref
    encoded = encode_submit(number, text, reference=ref, status_report=status_report)
    if len(encoded.parts) > MAX_PARTS:
        raise UserError(f"SMS text of {len(text)} characters needs {len(encoded.parts)} parts (at most {MAX_PARTS})")
    return [SmsPart(p.tpdu_len, p.pdu_hex) for p in encoded.parts]


def sms_encoding(text: str) -> str:
    return choose_encoding(text)


async def send_sms(driver: ModemDriver, number: str, text: str, *, status_report: bool = True,
                   timeout: float = 60.0) -> SmsSent:
    """Send ``text``; every part must be accepted (+CMGS) or this raises ATError."""
    parts = encode_sms(number, text, status_report=status_report)
    await driver.ch.command("AT+CMGF=0")
    refs: list[int] = []
    for part in parts:
        resp = await driver.ch.command_with_prompt(f"AT+CMGS={part.tpdu_len}", part.pdu_hex.encode(), timeout)
        mr = resp.first("+CMGS:")
        try:
            refs.append(int(mr.split(",")[0]) if mr else -1)
        except ValueError:
            refs.append(-1)
    return SmsSent(len(parts), refs, sms_encoding(text))


def parse_status_report(pdu_hex: str) -> tuple[int, int] | None:
    """An SMS-STATUS-REPORT PDU → (reference, TP-ST status); None if it is not one."""
    try:
        d = decode_pdu(pdu_hex)
    except PduError:
        return None
    if not isinstance(d, StatusReport):
        return None
    return d.reference, d.status


def is_delivered(status: int) -> bool:
    return status < 0x20
