"""Splitting the modem's byte stream into lines.

Modems frame lines with ``\\r\\n``; SIMCom sometimes sends ``\\r\\r\\n``; with echo on the
echoed command ends in a lone ``\\r``. We split on ``\\n`` and also on a lone ``\\r`` that is
followed by something other than ``\\r``/``\\n`` (an echo), strip surrounding CRs, drop blank
lines, and decode bytes that are not text as U+FFFD so garbage never raises.
"""

from __future__ import annotations

import re

FINAL_OK = "OK"
# Results that end any command.
FINAL_ERRORS = ("ERROR", "COMMAND NOT SUPPORT", "NO DIALTONE")
FINAL_ERROR_PREFIXES = ("+CME ERROR:", "+CMS ERROR:")
# Call-progress results: the end of ATD/ATA, but unsolicited at any other time.
CALL_RESULTS = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")

# Lines modems print on their own (boot, SIM, network, SMS, noise) that are never a
# command's answer unless they carry that command's own prefix (checked first: +CPIN: is
# AT+CPIN?'s answer). Transcripts: quectel-eg25g__eg25-manager-boot-urcs.txt (RDY, +CPIN,
# +QUSIM, +CFUN, +QIND: SMS DONE), sim7600__esp-protocols-789-boot-urcs.txt (RDY, SMS DONE),
# sim800__seeed-gprs-sim900-issue39-ready-urcs.txt (Call Ready, SMS Ready),
# quectel-ec25__chan-quectel-pr75-cdsi-delivery-report.txt (+CDSI), the Huawei ones (^RSSI …).
UNSOLICITED_LINES = frozenset({"RDY", "SMS DONE", "PB DONE", "Call Ready", "SMS Ready", "RING", "+PACSP0",
                               "+PACSP1", "START", "PB Ready"})
UNSOLICITED_PREFIXES = ("+CPIN:", "+QUSIM:", "+CFUN:", "+QIND:", "+CDSI:", "+CMTI:", "+CDS:", "+CMT:",
                        "+CREG:", "+CEREG:", "+CGREG:", "+CIEV:", "+CTZV:", "+CTZE:", "+CTZU:", "*PSUTTZ:",
                        "DST:", "+CRING:", "+CLIP:", "+CUSD:", "+QSTK:", "^RSSI:", "^BOOT:", "^MODE:",
                        "^SRVST:", "^SIMST:", "^DSFLOWRPT:", "^STIN:", "^SYSSTART", "+CPINR:", "+QIURC:",
                        "+CGEV:", "+STIN:", "^HCSQ:", "^CEND:", "^ORIG:", "^CONF:", "^CONN:", "^DSCI:",
                        "+CLCC:", "VOICE CALL:", "MISSED_CALL:", "+RXDTMF:", "+DTMF:", "+QTONEDET:")


def looks_unsolicited(line: str) -> bool:
    """A line modems print unasked (boot, SIM, network, SMS, call states)."""
    return line in UNSOLICITED_LINES or line.startswith(UNSOLICITED_PREFIXES)


_SPLIT = re.compile(rb"\r*\n|\r+(?=[^\r\n])")


class LineSplitter:
    """Incremental splitter: feed bytes, get complete lines back."""

    MAX_PARTIAL = 64 * 1024  # a modem spewing bytes without newlines must not eat memory

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[str]:
        buf = self.buf + data if self.buf else data
        out: list[str] = []
        if buf.count(b"\r") == buf.count(b"\r\n"):
            # The usual chunk (modems frame lines with CR LF): every CR is the start of a CR LF,
            # so the line breaks are exactly the LFs (what _SPLIT finds in such bytes, with
            # the CR before each), and what follows the last one is the partial line. A split
            # in C instead of a regex match object per line.
            chunks = buf.split(b"\n")
            buf = chunks.pop()
            for chunk in chunks:
                line = chunk.strip(b"\r").decode("utf-8", errors="replace").strip()
                if line:
                    out.append(line)
        else:
            pos = 0
            for m in _SPLIT.finditer(buf):
                chunk = buf[pos:m.start()]
                pos = m.end()
                line = chunk.strip(b"\r").decode("utf-8", errors="replace").strip()
                if line:
                    out.append(line)
            buf = buf[pos:]
        if len(buf) > self.MAX_PARTIAL:
            buf = buf[-1024:]
        self.buf = buf
        return out

    @property
    def partial(self) -> bytes:
        """The bytes after the last line break (used to spot the SMS ``> `` prompt)."""
        return self.buf


def is_final(line: str, *, call_results: bool = False) -> bool:
    if line == FINAL_OK or line in FINAL_ERRORS or line.startswith(FINAL_ERROR_PREFIXES):
        return True
    return call_results and line in CALL_RESULTS


_COMMAND_NAME = re.compile(r"^AT([+^$][A-Z0-9]+)")


def response_prefix(command: str) -> str | None:
    """The prefix of the information lines that belong to ``command``'s response.

    ``AT+CLCC`` → ``+CLCC:``; ``AT^CVOICE?`` → ``^CVOICE:``; ``AT+QCCID`` → ``+QCCID:``.
    Lines with this prefix are the response even if the same prefix is also a URC.
    """
    if command[:3].upper() not in ("AT+", "AT^", "AT$"):
        return None        # ATD…, ATA, ATH: no regex for most commands of a call
    m = _COMMAND_NAME.match(command.upper())
    if not m:
        return None
    name = m.group(1)
    # a few commands answer under another name
    aliases = {"+CICCID": "+ICCID", "^ICCID": "^ICCID"}
    return aliases.get(name, name) + ":"
