"""Phone numbers: parse, normalise to E.164, and the only way a number reaches ATD.

Everything that dials goes through :func:`parse_number` then :func:`dial_string`; the
latter re-checks the characters so that nothing but digits, ``+``, ``*`` and ``#`` can
ever be spliced into an AT command, whatever path the value took.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

from .errors import UserError

_DIALABLE = re.compile(r"^\+?[0-9*#]{1,32}$")
# a number already written in E.164 ("+" and its digits, as most contact files hold them):
# see _e164_fast_path
_E164 = re.compile(r"\+([1-9][0-9]{6,16})")


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
    fast = _e164_fast_path(text)
    if fast is not None:
        return fast
    return _parse_number_in_full(text, region)


def _parse_number_in_full(text: str, region: str) -> str:
    """phonenumbers' own parse, validation and formatting (any input; the error messages)."""
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"not a phone number: {text!r} ({exc._msg})") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidNumber(f"not a valid phone number: {text!r}")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return dial_string(e164)


@functools.cache
def _national_prefix(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _e164_fast_path(text: str) -> str | None:
    """The E.164 form of ``text`` when it is already a valid number in E.164, found without
    phonenumbers' general parser (about half of the ~35 µs a row of a contact file costs):
    None when unsure, and the caller then parses in full. What ``parse`` would do with
    "+<digits>" is done here for the case where it keeps the digits as they are: the country
    code is the first 1-3 digits that name one (as phonenumbers extracts it, whatever the
    default region), and the rest is the national number unless the country's national prefix
    could be stripped from it (then in full: phonenumbers decides) or it starts with a 0
    (Italian leading zeros: in full). The number is then validated and formatted by
    phonenumbers itself, and only a valid number that formats back to ``text`` is taken:
    every other input (invalid, odd) goes the full way and gets its usual error.
    tests/test_numbers.py checks that both ways agree on every region's example numbers."""
    m = _E164.fullmatch(text)
    if m is None:
        return None
    digits = m.group(1)
    for k in (1, 2, 3):
        cc = int(digits[:k])
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[k:]
    if len(national) < 2 or national[0] == "0":
        return None
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        cc, phonenumbers.region_code_for_country_code(cc))
    if meta is None:
        return None
    prefix = meta.national_prefix_for_parsing
    if prefix and _national_prefix(prefix).match(national):
        return None
    num = phonenumbers.PhoneNumber(country_code=cc, national_number=int(national))
    if not phonenumbers.is_valid_number(num):
        return None
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return e164 if e164 == text and _DIALABLE.match(e164) else None


def dial_string(number: str) -> str:
    """Check that ``number`` is safe to put after ``ATD``; return it unchanged."""
    if not isinstance(number, str) or not _DIALABLE.match(number):
        raise InvalidNumber(f"refusing to dial {number!r}: only digits, '+', '*' and '#' may be dialed")
    return number

