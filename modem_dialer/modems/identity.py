"""Reading who a modem is (IMEI, IMSI, ICCID, maker, model) over AT, by shape.

One code path for the drivers (``ModemDriver.identity``) and ``discover``. A bare-value
command (``AT+CGSN``, ``AT+CIMI``, ``AT+CGMI``, ``AT+CGMM``) has no prefix to tell its
answer from an unsolicited line printed meanwhile: an EG25-G that resets prints ``RDY``,
``+CPIN: READY``, ``+QUSIM: 1``, ``+CFUN: 1``, ``+QIND: SMS DONE`` (transcript
quectel-eg25g__eg25-manager-boot-urcs.txt), and whichever line came first used to be taken
as the IMEI. So each value is checked by its shape (15-digit IMEI with its Luhn digit, IMSI
digits, an ICCID starting 89 …), lines that are not the value are skipped, and a command
whose answer has no line of the right shape is asked again (a boot burst is over quickly).
The lines are read from the last one up: a modem writes a value and its ``OK`` together, so
the value is the last line before the final result and noise came before it (even a noise
line cut short that happens to look like a name, such as ``SMS DON``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable

from ..at.channel import ATChannel
from ..at.errors import ATCommandError, CMEError
from ..at.line_splitter import looks_unsolicited

log = logging.getLogger("modem_dialer.modems")

# Attempts per identity command when its answer has nothing of the right shape, and the
# pause between them (patchable: tests set them low).
IDENTITY_TRIES = 3
IDENTITY_RETRY_DELAY = 0.3

_IMEI = re.compile(r"(?<![0-9])([0-9]{15})(?![0-9])")
_IMSI = re.compile(r"[0-9]{6,15}")
# ITU-T E.118: an ICCID is 18 to 20 digits starting with 89 (telecom); a 19-digit one read
# by AT+QCCID/AT+CCID comes padded with F to 20 characters.
_ICCID = re.compile(r"(?<![0-9A-Fa-f])(89[0-9]{16,18})[Ff]?(?![0-9A-Fa-f])")
_PREFIXED = re.compile(r"^[+^$*][A-Z0-9]+:\s*")
_NAME = re.compile(r"[\x20-\x7e]{1,64}")
# "+CME ERROR: 14" / "SIM busy": the SIM is still starting (a few seconds after power-up)
SIM_BUSY = ("14", "sim busy")

Parser = Callable[[Iterable[str]], str | None]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c)
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def _value_part(line: str) -> str:
    """``+CGSN: 8676…`` / ``IMEI: 8676…`` / ``8676…`` → the value after any ``name:``."""
    line = _PREFIXED.sub("", line.strip())
    if re.match(r"^[A-Za-z ]{2,12}:\s*", line):       # "IMEI: …", "ICCID: …"
        line = line.split(":", 1)[1]
    return line.strip().strip('"').strip()


def imei_from(lines: Iterable[str]) -> str | None:
    """The 15-digit IMEI with a valid Luhn check digit (3GPP TS 23.003 §6.2.1)."""
    for line in reversed(list(lines)):
        m = _IMEI.search(_value_part(line))
        if m and luhn_ok(m.group(1)):
            return m.group(1)
    return None


def imsi_from(lines: Iterable[str]) -> str | None:
    """An IMSI: MCC + MNC + MSIN, at most 15 digits and nothing else on the line."""
    for line in reversed(list(lines)):
        value = _value_part(line)
        if _IMSI.fullmatch(value):
            return value
    return None


def name_from(lines: Iterable[str]) -> str | None:
    """A maker or model name (``AT+CGMI``/``AT+CGMM``): printable text that is not a URC."""
    for line in reversed(list(lines)):
        raw = line.strip()
        if not raw or looks_unsolicited(raw):
            continue
        if _PREFIXED.match(raw) and not raw.upper().startswith(("+CGMI:", "+CGMM:", "+GMI:", "+GMM:")):
            continue                                  # some other command's or a URC's line
        value = _value_part(raw)
        if value and _NAME.fullmatch(value):
            return value
    return None


def iccid_from(lines: Iterable[str]) -> str | None:
    """An ICCID from ``+QCCID: …``, ``+ICCID: …``, ``+CCID: "…"`` or a bare line; F padding dropped."""
    for line in reversed(list(lines)):
        m = _ICCID.search(_value_part(line))
        if m:
            return m.group(1)
    return None


def swap_nibbles(hexstr: str) -> str:
    """EF_ICCID as read by AT+CRSM is BCD with swapped nibbles; F is padding."""
    out = "".join(hexstr[i + 1] + hexstr[i] for i in range(0, len(hexstr) - 1, 2))
    return out.rstrip("Ff")


def iccid_from_crsm(lines: Iterable[str]) -> str | None:
    """``+CRSM: 144,0,"98…"`` (READ BINARY of EF_ICCID 2FE2 = 12258) → the ICCID."""
    for line in lines:
        if not line.upper().startswith("+CRSM:"):
            continue
        parts = line.split(":", 1)[1].split(",", 2)
        if len(parts) == 3 and parts[0].strip() == "144":      # sw1 144 = 0x90: success
            return iccid_from([swap_nibbles(parts[2].strip().strip('"'))])
    return None


def sim_busy(exc: ATCommandError) -> bool:
    return isinstance(exc, CMEError) and exc.detail.lower() in SIM_BUSY


async def read_value(ch: ATChannel, command: str, parse: Parser, *, timeout: float = 5.0,
                     tries: int | None = None) -> str | None:
    """``command``'s value as ``parse`` finds it; asked again when nothing has the right shape.

    None when the modem refuses the command (ERROR, not supported) or never gives a value
    of the right shape; a silent modem raises CommandTimeout as any command does.
    """
    tries = IDENTITY_TRIES if tries is None else tries
    for attempt in range(1, tries + 1):
        try:
            resp = await ch.command(command, timeout=timeout)
        except ATCommandError as exc:
            if not sim_busy(exc):
                return None
            lines: list[str] = []
        else:
            lines = resp.lines
            value = parse(lines)
            if value is not None:
                return value
        log.info("%s: %s gave no value of the right shape (%s), attempt %d of %d", ch.name, command,
                 lines or "nothing", attempt, tries)
        if attempt < tries:
            await asyncio.sleep(IDENTITY_RETRY_DELAY)
    return None


async def read_imei(ch: ATChannel, *, timeout: float = 5.0) -> str | None:
    return await read_value(ch, "AT+CGSN", imei_from, timeout=timeout)


async def read_iccid(ch: ATChannel, commands: Iterable[str], *, timeout: float = 5.0) -> str | None:
    """Try the family's ICCID commands in order (``AT+QCCID``, ``AT+CCID``, ``AT+CRSM=176,12258,…``)."""
    for cmd in commands:
        parse = iccid_from_crsm if cmd.upper().startswith("AT+CRSM") else iccid_from
        value = await read_value(ch, cmd, parse, timeout=timeout, tries=1)
        if value:
            return value
    return None
