"""Incoming SMS and delivery reports, per family, as typed events (modems/events.py).

What the modem says, and what we do:

- ``+CMTI: "SM",3`` — a message stored at index 3: ``AT+CPMS="SM"``, ``AT+CMGR=3`` (PDU on
  the line after ``+CMGR: <stat>,,<len>``), emit :class:`SmsReceived`, then ``AT+CMGD=3``.
  The listener stores the message before the emit returns, so the copy on the SIM is only
  deleted once it is in the journal.
- ``+CMT: ,<len>`` then the PDU on the next line — direct delivery (nothing on the SIM).
- ``+CDS: <len>`` then a STATUS-REPORT PDU — direct delivery report (CNMI ds=1).
- ``+CDSI: "SR",1`` — a stored report. Quectel EC25/EG25 (several firmwares) announce
  ``+CDSI: "SM",0`` but keep the report in "SR": ``AT+CMGR=0`` on "SM" is an empty OK
  (reference transcripts: quectel-ec25__chan-quectel-pr75-cdsi-delivery-report.txt). So an
  empty read of an announced report is retried in "SR" whatever the family.

Messages left on the SIM while we were not running are read at start-up (``AT+CMGL=4``,
received ones only: a stored *sent* message is the user's, not ours to delete).

Every family gets the same handlers; what differs is the ``AT+CNMI`` we ask for
(:data:`CNMI`), from what the peers that run these modems use.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from ..at.errors import ATError
from .driver import ModemDriver
from .events import DeliveryReport, SmsReceived
from .sms_pdu import Deliver, PduError, StatusReport, decode_pdu

log = logging.getLogger("modem_dialer.sms")

# AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr> per family. mt=1: stored + "+CMTI" (survives our
# restart: read at start-up); mt=2: direct "+CMT". ds=1: direct "+CDS"; ds=2: stored "+CDSI".
CNMI = {
    # ds=1 is chan_quectel's fix (PR 75) for the "+CDSI: SM" quirk; the quirk is handled anyway
    "quectel": "AT+CNMI=2,1,0,1,0",
    "simcom": "AT+CNMI=2,1,0,1,0",
    # SIM800 hobby code and TinyGSM use direct delivery; with AT+CSMS=0 no +CNMA is needed
    "sim800": "AT+CNMI=2,2,0,1,0",
    # chan_dongle's Huawei init (modems.md §8): stored messages and stored reports
    "huawei": "AT+CNMI=2,1,0,2,0",
    "generic": "AT+CNMI=2,1,0,1,0",
}
FALLBACK_CNMI = "AT+CNMI=2,1,0,0,0"      # a firmware that refuses reports still stores messages
REPORT_MEMORY = "SR"

_LISTED = re.compile(r"\+CMGL:\s*(\d+)\s*,\s*(\d+)")
_READ = re.compile(r"\+CMGR:\s*(\d+)")


def _stored_at(line: str) -> tuple[str, int] | None:
    m = re.match(r'\+(?:CMTI|CDSI):\s*"?([A-Za-z]{2})"?\s*,\s*(\d+)', line)
    return (m.group(1).upper(), int(m.group(2))) if m else None


class SmsWatcher:
    """Subscribes the SMS URCs on ``driver``'s channel and turns them into events."""

    def __init__(self, driver: ModemDriver) -> None:
        self.driver = driver
        self.ch = driver.ch
        self._lock = asyncio.Lock()          # select memory + read + delete is one step
        self._memory: str | None = None
        self._armed: Callable[[], None] | None = None
        self._expect: str | None = None      # "deliver" | "report": what the next hex line is
        self._removers = [
            self.ch.subscribe("+CMTI:", self._on_stored),
            self.ch.subscribe("+CDSI:", self._on_stored),
            self.ch.subscribe("+CMT:", lambda line: self._arm("deliver")),
            self.ch.subscribe("+CDS:", self._on_cds),
        ]

    def close(self) -> None:
        for remove in self._removers:
            remove()
        self._disarm()

    # ---- set-up ----------------------------------------------------------------------
    async def setup(self, *, delivery_reports: bool = True) -> None:
        await self.ch.command("AT+CMGF=0")
        cnmi = CNMI.get(self.driver.family, CNMI["generic"])
        if not delivery_reports:
            cnmi = FALLBACK_CNMI
        if not await self.driver.optional(cnmi) and cnmi != FALLBACK_CNMI:
            await self.driver.optional(FALLBACK_CNMI)
        await self.read_stored_messages()

    async def read_stored_messages(self) -> int:
        """Messages received while nobody listened (AT+CMGL=4); returns how many were read."""
        async with self._lock:
            try:
                resp = await self.ch.command("AT+CMGL=4", timeout=20)
            except ATError as exc:
                log.info("%s: stored messages not listed (%s)", self.driver.name, exc)
                return 0
            found: list[tuple[int, str]] = []
            lines = resp.lines
            for i, line in enumerate(lines):
                m = _LISTED.match(line)
                # stat 0/1: received unread/read; 2/3 are stored outgoing messages
                if m and int(m.group(2)) in (0, 1) and i + 1 < len(lines):
                    found.append((int(m.group(1)), lines[i + 1].strip()))
            for index, pdu in found:
                self._emit_pdu(pdu, storage=self._memory or "SM")
                await self._delete(index)
            return len(found)

    # ---- stored: +CMTI / +CDSI -----------------------------------------------------------
    def _on_stored(self, line: str) -> None:
        where = _stored_at(line)
        if where is None:
            log.info("%s: unreadable %r", self.driver.name, line)
            return
        self.driver.spawn(self._read_stored(*where, report=line.startswith("+CDSI")))

    async def _select(self, memory: str) -> bool:
        if self._memory == memory:
            return True
        try:
            await self.ch.command(f'AT+CPMS="{memory}"')
        except ATError as exc:
            log.info("%s: memory %s not selectable (%s)", self.driver.name, memory, exc)
            return False
        self._memory = memory
        return True

    async def _read(self, memory: str, index: int) -> str | None:
        if not await self._select(memory):
            return None
        try:
            resp = await self.ch.command(f"AT+CMGR={index}", timeout=10)
        except ATError as exc:
            log.info("%s: AT+CMGR=%d on %s failed (%s)", self.driver.name, index, memory, exc)
            return None
        for i, line in enumerate(resp.lines):
            if _READ.match(line) and i + 1 < len(resp.lines):
                return resp.lines[i + 1].strip()
        return None                      # an empty OK: nothing there

    async def _read_stored(self, memory: str, index: int, *, report: bool) -> None:
        async with self._lock:
            try:
                pdu = await self._read(memory, index)
                if pdu is None and report and memory != REPORT_MEMORY:
                    pdu = await self._read(REPORT_MEMORY, index)     # the EC25 "+CDSI: SM" quirk
                    memory = REPORT_MEMORY
                if pdu is None:
                    log.warning("%s: %s,%d announced but empty", self.driver.name, memory, index)
                    return
                self._emit_pdu(pdu, storage=memory)
                await self._delete(index)
            except ATError as exc:           # the modem went away mid-read: it stays on the SIM
                log.warning("%s: reading %s,%d failed: %s", self.driver.name, memory, index, exc)

    async def _delete(self, index: int) -> None:
        try:
            await self.ch.command(f"AT+CMGD={index}")
        except ATError as exc:
            log.info("%s: AT+CMGD=%d failed (%s)", self.driver.name, index, exc)

    # ---- direct: +CMT / +CDS ---------------------------------------------------------------
    def _on_cds(self, line: str) -> None:
        body = line.split(":", 1)[1].strip()
        if "," in body:                  # text-mode report on one line: +CDS: fo,mr,"ra",tora,scts,dt,st
            try:
                fields = [f.strip() for f in body.split(",")]
                self.driver.emit(DeliveryReport(self.driver.name, reference=int(fields[1]),
                                                status=int(fields[-1]), recipient=fields[2].strip('"') or None))
            except (ValueError, IndexError):
                log.info("%s: unreadable delivery report %r", self.driver.name, line)
            return
        self._arm("report")

    def _arm(self, kind: str) -> None:
        self._disarm()
        self._expect = kind
        # the very next line is the PDU, whatever it looks like (a garbled one is journaled too)
        self._armed = self.ch.subscribe(("",), self._on_pdu_line)

    def _disarm(self) -> None:
        if self._armed is not None:
            self._armed()
            self._armed = None

    def _on_pdu_line(self, line: str) -> None:
        self._disarm()
        self._emit_pdu(line.strip(), storage=None)

    # ---- decode and emit ---------------------------------------------------------------
    def _emit_pdu(self, pdu: str, *, storage: str | None) -> None:
        name = self.driver.name
        try:
            msg = decode_pdu(pdu)
        except PduError as exc:
            self.driver.emit(SmsReceived(name, pdu=pdu, error=str(exc), storage=storage))
            return
        except Exception as exc:         # a decoder bug must cost one message, journaled, not the line
            log.exception("%s: PDU decoder failed on %r", name, pdu[:60])
            self.driver.emit(SmsReceived(name, pdu=pdu, error=f"decoder failed: {exc}", storage=storage))
            return
        if isinstance(msg, StatusReport):
            self.driver.emit(DeliveryReport(name, reference=msg.reference, status=msg.status,
                                            recipient=msg.recipient.number, pdu=pdu))
        elif isinstance(msg, Deliver):
            self.driver.emit(SmsReceived(name, pdu=pdu, deliver=msg, storage=storage))
        else:
            self.driver.emit(SmsReceived(name, pdu=pdu, error="an SMS-SUBMIT, not a received message",
                                         storage=storage))


def watch_sms(driver: ModemDriver) -> SmsWatcher:
    """Start turning the SMS URCs of ``driver`` into events (call ``setup()`` next)."""
    return SmsWatcher(driver)
