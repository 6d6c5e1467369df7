"""Phone numbers: parse, normalise to E.164, and the only way a number reaches ATD.

Everything that dials goes through :func:`parse_number` then :func:`dial_string`; the
latter re-checks the characters so that nothing but digits, ``+``, ``*`` and ``#`` can
ever be spliced into an AT command, whatever path the value took.
"""

from __future__ import annotations

import re

import phonenumbers

from .errors import UserError

_DIALABLE = re.compile(r"^\+?[0-9*#]{1,32}$")


class InvalidNumber(UserError):
    pass


def parse_number(raw: str, region: str = "FR") -> str:
    """Return the E.164 form of ``raw`` (national formats read with ``region``).

    Raises InvalidNumber with a message that quotes the input.
    """
    text = str(raw).strip()
    if not text:
        raise InvalidNumber("empty phone number")
    if len(text) > 40 or any(ord(c) < 32 for c in text):
        raise InvalidNumber(f"not a phone number: {text[:40]!r}")
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"not a phone number: {text!r} ({exc._msg})") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidNumber(f"not a valid phone number: {text!r}")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return dial_string(e164)


def dial_string(number: str) -> str:
    """Check that ``number`` is safe to put after ``ATD``; return it unchanged."""
    if not isinstance(number, str) or not _DIALABLE.match(number):
        raise InvalidNumber(f"refusing to dial {number!r}: only digits, '+', '*' and '#' may be dialed")
    return number

