"""Incoming SMS and delivery reports in the simulator, in each family's dialect.

A message for the SIM is announced as the dialer asked with AT+CNMI: mt=1 stores it
("SM") and says ``+CMTI: "SM",<index>`` (read with AT+CMGR, deleted with AT+CMGD);
mt=2 hands it over directly as ``+CMT: ,<len>`` + PDU. A delivery report is ``+CDS: <len>``
+ PDU with ds=1, or stored in "SR" and announced by ``+CDSI`` with ds=2 — and the Quectel
dialect announces it as ``+CDSI: "SM",<n>`` although it is in "SR" (the EC25 quirk of
reference/transcripts/quectel-ec25__chan-quectel-pr75-cdsi-delivery-report.txt).

Driven by the scenario file (``inbound_sms:``) or the control socket (sim/control.py).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from .sms_pdu import deliver_pdus, status_report_pdu


@dataclass
class InboundSms:
    """A message for one simulated SIM, ``at`` s after the bank starts (scenario) or now."""

    at: float = 0.0
    from_: str = ""                   # "" : no number (hidden sender)
    text: str = ""
    modem: str | None = None          # which SIM (default: the first)
    encoding: str | None = None       # gsm7 | ucs2 | 8bit (default: gsm7 when it fits)
    ref_bits: int = 8                 # 8 or 16: the concatenation reference size of a long text
    reference: int = 1
    dcs: int | None = None            # force the data coding octet (an unknown encoding: 0x8C)
    pdu: str | None = None            # send these hex octets as they are (a garbled PDU)
    drop_parts: tuple[int, ...] = ()  # part numbers the network "loses" (reassembly timeout)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InboundSms:
        d = scenario_settings(d, set(cls.__dataclass_fields__), "an inbound SMS", "inbound_sms",
                              "at, from, text, modem, encoding, ref_bits, reference, dcs, pdu, drop_parts")
        if d.get("ref_bits", 8) not in (8, 16):
            raise ValueError(f"inbound_sms ref_bits: 8 or 16, not {d['ref_bits']!r}")
        if d.get("encoding") not in (None, "gsm7", "ucs2", "8bit"):
            raise ValueError(f"inbound_sms encoding: gsm7, ucs2 or 8bit, not {d['encoding']!r}")
        d["from_"] = str(d.get("from_") or "")
        d["text"] = str(d.get("text") or "")
        d["drop_parts"] = tuple(int(p) for p in d.get("drop_parts") or ())
        return cls(**d)

    def pdus(self) -> list[str]:
        if self.pdu is not None:
            return [self.pdu]
        payload: str | bytes = self.text.encode("latin-1") if self.encoding == "8bit" else self.text
        pdus = deliver_pdus(self.from_, payload, encoding=self.encoding, ref_bits=self.ref_bits,
                            reference=self.reference, dcs=self.dcs)
        return [p for i, p in enumerate(pdus, start=1) if i not in self.drop_parts]


class SmsMixin:
    """SMS storage, AT+CNMI/CPMS/CMGR/CMGD/CMGL and the URCs; mixed into SimModem."""

    # set by SimModem
    dialect: Any
    commands: list[str]

    def sms_init(self) -> None:
        self.cnmi_mt = 1                 # the power-on default of most modules: store + CMTI
        self.cnmi_ds = 0
        self.memory = "SM"               # AT+CPMS mem1: what CMGR/CMGD/CMGL act on
        self.stored: dict[str, dict[int, tuple[int, str]]] = {"SM": {}, "ME": {}, "SR": {}}  # mem → idx → (stat, pdu)
        self.inbound: list[str] = []      # every PDU handed to the dialer, in order

    # ---- commands ---------------------------------------------------------------------
    def sms_command(self, up: str) -> list[str] | None:
        if m := re.fullmatch(r"AT\+CNMI=(\d)?(?:,(\d)?)?(?:,(\d)?)?(?:,(\d)?)?(?:,(\d)?)?", up):
            self.cnmi_mt = int(m.group(2) or 0)
            self.cnmi_ds = int(m.group(4) or 0)
            return ["OK"]
        if m := re.fullmatch(r'AT\+CPMS="([A-Z]{2})"(?:,.*)?', up):
            if m.group(1) not in self.stored:
                return self.error("invalid memory index", 21)   # type: ignore[attr-defined]
            self.memory = m.group(1)
            n = len(self.stored[self.memory])
            return [f"+CPMS: {n},30,{n},30,{n},30", "OK"]
        if m := re.fullmatch(r"AT\+CMGR=(\d+)", up):
            entry = self.stored[self.memory].get(int(m.group(1)))
            if entry is None:
                return ["OK"]                                   # what the EC25 answers: nothing there
            stat, pdu = entry
            self.stored[self.memory][int(m.group(1))] = (1 if stat == 0 else stat, pdu)
            return [f"+CMGR: {stat},,{tpdu_len(pdu)}", pdu, "OK"]
        if m := re.fullmatch(r"AT\+CMGD=(\d+)(?:,\d)?", up):
            self.stored[self.memory].pop(int(m.group(1)), None)
            return ["OK"]
        if m := re.fullmatch(r"AT\+CMGL=(\d)", up):
            want = int(m.group(1))
            out = []
            for idx, (stat, pdu) in sorted(self.stored[self.memory].items()):
                if want == 4 or stat == want:
                    out += [f"+CMGL: {idx},{stat},,{tpdu_len(pdu)}", pdu]
            return [*out, "OK"]
        return None

    # ---- the network sends something ------------------------------------------------------
    def _store(self, memory: str, pdu: str) -> int:
        box = self.stored[memory]
        idx = next(i for i in range(len(box) + 1) if i not in box)
        box[idx] = (0, pdu)
        return idx

    def receive_pdu(self, pdu: str) -> None:
        """One SMS-DELIVER PDU arrives from the network."""
        self.inbound.append(pdu)
        if self.cnmi_mt == 2:
            self.urc(f"+CMT: {self.dialect.cmt_alpha},{tpdu_len(pdu)}")           # type: ignore[attr-defined]
            self.send(pdu)                                                   # type: ignore[attr-defined]
            return
        idx = self._store("SM", pdu)
        if self.cnmi_mt == 1:
            self.urc(f'+CMTI: "SM",{idx}', crcrlf=self.dialect.sms_crcrlf)  # type: ignore[attr-defined]

    async def deliver_sms(self, sms: InboundSms, gap: float = 0.05) -> int:
        """Every part of ``sms``, ``gap`` s apart (as a network spaces them). -> parts sent."""
        pdus = sms.pdus()
        for i, pdu in enumerate(pdus):
            if i:
                await asyncio.sleep(gap)
            self.receive_pdu(pdu)
        return len(pdus)

    def status_report(self, mr: int, recipient: str, status: int) -> None:
        """The network reports on the SMS this modem sent with TP-MR ``mr``."""
        pdu = status_report_pdu(mr, recipient, status)
        if self.cnmi_ds == 2:
            idx = self._store("SR", pdu)
            said = "SM" if self.dialect.cdsi_says_sm else "SR"               # the EC25 quirk
            self.urc(f'+CDSI: "{said}",{idx}')                                # type: ignore[attr-defined]
        elif self.cnmi_ds == 1:
            self.urc(f"+CDS: {len(pdu) // 2 - 8}")                            # type: ignore[attr-defined]
            self.send(pdu)                                                    # type: ignore[attr-defined]


def tpdu_len(pdu: str) -> int:
    """Octets after the SMSC field, as +CMT/+CMGR print it (a garbled PDU: its octet count)."""
    try:
        return max(0, len(pdu) // 2 - 1 - int(pdu[:2], 16))
    except ValueError:
        return len(pdu) // 2


def recipient_of(submit_pdu: str) -> str:
    """The destination number of an SMS-SUBMIT the dialer sent (for the report)."""
    try:
        smsc = int(submit_pdu[0:2], 16)
        at = 2 + 2 * smsc + 4
        digits = int(submit_pdu[at:at + 2], 16)
        toa = submit_pdu[at + 2:at + 4]
        raw = submit_pdu[at + 4:at + 4 + digits + digits % 2]
        number = "".join(raw[i + 1] + raw[i] for i in range(0, len(raw), 2)).rstrip("Ff")
        return ("+" if toa == "91" else "") + number
    except (ValueError, IndexError):
        return ""


def scenario_settings(d: object, known: set[str], what: str, key: str, listed: str) -> dict[str, Any]:
    """A scenario entry's settings (``from`` read as ``from_``), or ValueError naming the
    first unknown one: shared by the inbound calls and SMS of a scenario file."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} is a mapping of settings, not {d!r}")
    d = {("from_" if k == "from" else k): v for k, v in d.items()}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {key} setting {unknown[0]!r} (known: {listed})")
    return d
