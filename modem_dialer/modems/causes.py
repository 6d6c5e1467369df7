"""3GPP TS 24.008 call-clearing causes and the texts modems print for ``AT+CEER``."""

from __future__ import annotations

import re

NORMAL = 16
BUSY = 17
NO_USER_RESPONDING = 18
NO_ANSWER = 19
REJECTED = 21
UNASSIGNED = 1
INVALID_FORMAT = 28

# Lower-case fragments of CEER texts (SIMCom manual §19.2, Quectel §15.8) → cause.
_TEXTS = [
    ("unassigned", 1), ("unallocated", 1), ("no route", 3),
    ("normal call clearing", 16), ("user busy", 17), ("busy", 17),
    ("no user responding", 18), ("no answer", 19), ("alerting", 19),
    ("call rejected", 21), ("rejected", 21), ("number changed", 22),
    ("destination out of order", 27), ("invalid number", 28), ("incomplete number", 28),
    ("invalid/incomplete", 28), ("normal, unspecified", 31), ("normal unspecified", 31),
    ("no circuit", 34), ("network out of order", 38), ("temporary failure", 41),
    ("congestion", 42),
]


def cause_from_ceer(line: str | None) -> tuple[int | None, str | None]:
    """Parse ``+CEER: <text>`` (or ``+CEER: <n>`` / ``+CEER: <x>,<n>,…``) into (cause, text)."""
    if not line:
        return None, None
    text = line.split(":", 1)[1].strip() if line.startswith("+CEER:") else line.strip()
    text = text.strip('"')
    if not text:
        return None, None
    nums = re.findall(r"\d+", text)
    if nums and re.fullmatch(r"[\d,\s\"]+", text):
        return int(nums[-1]), text
    low = text.lower()
    for fragment, cause in _TEXTS:
        if fragment in low:
            return cause, text
    return None, text
