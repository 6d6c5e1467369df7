"""The keys a phone can send as DTMF: the one list the drivers, flows and the CLI check against.

Apart from ``modems/events.py`` so that the command line can declare ``--opt-out-key``'s
choices without building the event model's dataclasses at every start (issue 15).
"""

from __future__ import annotations

DTMF_KEYS = frozenset("0123456789*#ABCD")

# The keys a setting may name (opt-out, acknowledge, resolve): what every phone's keypad has
PHONE_KEYS = "0123456789*#"


def phone_key(v: str) -> str:
    """A setting's key, checked (pydantic validators call it; the ValueError is their message)."""
    if len(v) != 1 or v not in PHONE_KEYS:
        raise ValueError("a key is one of 0-9, * or #")
    return v
