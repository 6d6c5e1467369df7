"""SMS through a modem: PDU mode, GSM 7-bit or UCS-2, long texts as concatenated parts.

The PDU encoder is python-gsmmodem-new's (``gsmmodem.pdu``): it picks GSM 7-bit when
every character is in the GSM alphabet and UCS-2 otherwise ("é" fits GSM 7-bit, "—"
does not), and splits long texts into parts with a concatenation header. PDU mode is
used rather than text mode because text mode's character set (AT+CSCS) differs by
firmware and cannot carry UCS-2 reliably (modems.md §7).

Delivery reports come as ``+CDS: <len>`` followed by the SMS-STATUS-REPORT PDU on the
next line (AT+CNMI ds=1). The AT channel delivers lines by prefix, so the PDU line is
caught by a one-shot subscription armed by the ``+CDS:`` line.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu

from ..errors import UserError
from ..numbers import dial_string
from .driver import ModemDriver

log = logging.getLogger("modem_dialer.sms")

# A text longer than this many parts is a mistake (a log file piped into sms), not an alert.
MAX_PARTS = 10
_HEX = tuple("0123456789ABCDEFabcdef")


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
    pdus = encodeSmsSubmitPdu(number, text, reference=ref, requestStatusReport=status_report)
    if len(pdus) > MAX_PARTS:
        raise UserError(f"SMS text of {len(text)} characters needs {len(pdus)} parts (at most {MAX_PARTS})")
    return [SmsPart(p.tpduLength, bytes(p.data).hex().upper()) for p in pdus]


def sms_encoding(text: str) -> str:
    from gsmmodem.pdu import encodeGsm7

    try:
        encodeGsm7(text)
        return "gsm7"
    except ValueError:
        return "ucs2"


async def enable_sms(driver: ModemDriver, *, delivery_reports: bool = True) -> None:
    """PDU mode, and delivery reports routed to us as +CDS (where the firmware accepts it)."""
    await driver.ch.command("AT+CMGF=0")
    if delivery_reports:
        await driver.optional("AT+CNMI=2,1,0,1,0")


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
        d = decodeSmsPdu(pdu_hex.strip())
    except Exception:   # gsmmodem raises several types on garbage
        return None
    if d.get("type") != "SMS-STATUS-REPORT":
        return None
    return int(d["reference"]), int(d.get("status", 0))


def watch_delivery_reports(driver: ModemDriver, callback: Callable[[int, int], None]) -> Callable[[], None]:
    """Call ``callback(reference, status)`` for each +CDS report; returns the remover.

    TP-ST 0 is "received by the SME"; 0x20-0x3F are temporary failures, 0x40+ permanent.
    """
    ch = driver.ch
    armed: list[Callable[[], None]] = []

    def on_pdu(line: str) -> None:
        while armed:
            armed.pop()()
        got = parse_status_report(line)
        if got is None:
            log.info("%s: unreadable delivery report %r", driver.name, line[:40])
            return
        callback(*got)

    def on_cds(line: str) -> None:
        body = line.split(":", 1)[1].strip()
        if "," in body or len(body) > 4:     # text mode report on one line: +CDS: fo,mr,...
            try:
                fields = [f.strip() for f in body.split(",")]
                callback(int(fields[1]), int(fields[-1]))
            except (ValueError, IndexError):
                log.info("%s: unreadable delivery report %r", driver.name, line)
            return
        if not armed:
            armed.append(ch.subscribe(_HEX, on_pdu))

    remove = ch.subscribe("+CDS:", on_cds)

    def unsubscribe() -> None:
        remove()
        while armed:
            armed.pop()()
    return unsubscribe


def is_delivered(status: int) -> bool:
    return status < 0x20

