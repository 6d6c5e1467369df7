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
    # first: a number the fast path takes ("+" and 7-17 digits) passes the checks below
    fast = _e164_fast_path(text)
    if fast is not None:
        return fast
    if not text:
        raise InvalidNumber("empty phone number")
    if len(text) > 40 or any(ord(c) < 32 for c in text):
        raise InvalidNumber(f"not a phone number: {text[:40]!r}")
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


# phonenumbers' type descriptors, as its _number_type_helper tries them: a number is valid when
# its region's general descriptor matches and any of these does (mobile only where its pattern
# is not the fixed line's: then the fixed line's match already stands for it)
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line")


class _RegionCheck:
    """phonenumbers' ``is_valid_number_for_region`` for one region's national numbers (the
    national significant number: digits, no leading zero), with the region's patterns compiled
    once. Each descriptor test is phonenumbers' ``_is_number_matching_desc``: no descriptor or
    no pattern never matches; a length outside its non-empty ``possible_length`` does not
    match; else its pattern must match the whole number. The type descriptors that allow a
    length are joined into one alternation, compiled on the first number of that length: the
    whole number matches the alternation exactly when it matches one of them."""

    def __init__(self, meta: phonenumbers.PhoneMetadata) -> None:
        # how region_code_for_number picks among the regions of a shared country code (+1, +44,
        # +7...): the first whose leading digits match, or that the number is valid in
        self.leading = None if meta.leading_digits is None else re.compile(meta.leading_digits)
        general = _desc(meta.general_desc)
        self.general_lengths = general[0] if general else frozenset()
        self.general = re.compile(general[1]) if general else None
        descs = [getattr(meta, name) for name in _TYPES] + ([] if meta.same_mobile_and_fixed_line_pattern
                                                             else [meta.mobile])
        self.types = [d for d in map(_desc, descs) if d is not None]
        self._by_length: dict[int, re.Pattern[str] | None] = {}

    def valid(self, nsn: str) -> bool:
        n = len(nsn)
        if self.general is None or (self.general_lengths and n not in self.general_lengths) \
                or self.general.fullmatch(nsn) is None:
            return False
        try:
            types = self._by_length[n]
        except KeyError:
            patterns = [p for lengths, p in self.types if not lengths or n in lengths]
            types = self._by_length[n] = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        return types is not None and types.fullmatch(nsn) is not None


def _desc(d: phonenumbers.PhoneNumberDesc | None) -> tuple[frozenset[int], str] | None:
    """(possible lengths, pattern) of a descriptor that can match; None for one that never does."""
    if d is None or not d.national_number_pattern:
        return None
    return frozenset(d.possible_length), d.national_number_pattern


class _CountryCheck:
    """What the fast path needs of a country code: its main region's national prefix for
    parsing, and phonenumbers' ``is_valid_number`` for its national numbers."""

    def __init__(self, cc: int) -> None:
        meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            cc, phonenumbers.region_code_for_country_code(cc))
        prefix = meta.national_prefix_for_parsing if meta is not None else None
        self.national_prefix = re.compile(prefix) if prefix else None
        regions = [r.upper() for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]]
        metas = [phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(cc, r) for r in regions]
        self.regions = [_RegionCheck(m) for m in metas if m is not None]
        # is_valid_number's refusals before any pattern (a region without metadata, or whose
        # own country code is another one, "001" among other regions) never happen with the
        # metadata phonenumbers ships: should one, its numbers go the full way
        self.known = meta is not None and len(self.regions) == len(regions) \
            and all(m is not None and m.country_code == cc for m in metas) \
            and (len(regions) == 1 or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY not in regions)

    def valid(self, nsn: str) -> bool:
        """phonenumbers.is_valid_number: region_code_for_number picks the region (the only
        one; else the first whose leading digits match the number or, for a region without
        leading digits, that the number is valid in), then the number must be valid there."""
        if len(self.regions) == 1:
            return self.regions[0].valid(nsn)
        for region in self.regions:
            if region.leading is not None:
                if region.leading.match(nsn):
                    return region.valid(nsn)
            elif region.valid(nsn):
                return True
        return False


@functools.cache
def _country(cc: int) -> _CountryCheck:
    return _CountryCheck(cc)


def _e164_fast_path(text: str) -> str | None:
    """``text`` itself when it is already a valid number in E.164, found without phonenumbers'
    general parser nor its per-number pattern look-ups (about 2 µs of CPU against 35 for the
    full parse, the bulk of a contact file's import): None when unsure, and the caller then
    parses in full. What ``parse`` would do with "+<digits>" is done here for the case where
    it keeps the digits as they are: the country code is the first 1-3 digits that name one
    (as phonenumbers extracts it, whatever the default region), and the rest is the national
    number unless the country's national prefix could be stripped from it (then in full:
    phonenumbers decides) or it starts with a 0 (Italian leading zeros: in full). Such a number
    formats back to ``text`` in E.164; its validity is phonenumbers' ``is_valid_number`` done
    with each region's patterns compiled once (_CountryCheck). tests/test_numbers.py checks
    that both agree on every region's example numbers, their neighbours and random digits."""
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
    country = _country(cc)
    if not country.known or (country.national_prefix is not None and country.national_prefix.match(national)):
        return None
    return text if country.valid(national) else None


def dial_string(number: str) -> str:
    """Check that ``number`` is safe to put after ``ATD``; return it unchanged."""
    if not isinstance(number, str) or not _DIALABLE.match(number):
        raise InvalidNumber(f"refusing to dial {number!r}: only digits, '+', '*' and '#' may be dialed")
    return number

