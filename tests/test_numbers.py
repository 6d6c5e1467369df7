"""parse_number's E.164 fast path (numbers._e164_fast_path) gives what phonenumbers' full
parse gives: the same E.164 form, or the same error, for every region's example numbers and
for numbers near them (a digit changed, one more or one less, a national prefix after the
country code), and for random digits after a "+"."""

from __future__ import annotations

import functools

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_dialer.numbers import _e164_fast_path, _parse_number_in_full, parse_number


def agree(text: str, region: str = "FR") -> bool:
    """Whether parse_number gives what the full parse gives for ``text``: when the fast path
    answers, the full parse must give that number (where it does not, parse_number is the full
    parse); True when the fast path answered."""
    fast = _e164_fast_path(text)
    if fast is None:
        return False
    assert fast == _parse_number_in_full(text, region), text
    assert parse_number(text, region) == fast
    return True


@functools.cache
def examples() -> list[str]:
    """Every example number phonenumbers has (each region, each type, the non-geographic
    codes), in E.164."""
    out = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in phonenumbers.PhoneNumberType.values():
            n = phonenumbers.example_number_for_type(region, kind)
            if n is not None:
                out.add(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))
    for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        n = phonenumbers.example_number_for_non_geo_entity(cc)
        if n is not None:
            out.add(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))
    return sorted(out)


def near(e164: str) -> list[str]:
    """Numbers next to a valid one: its last digit changed, a digit more or less, and national
    prefixes (0, 1, 00, 8: some countries') put after its country code."""
    cc = str(phonenumbers.parse(e164).country_code)
    rest = e164[1 + len(cc):]
    out = [e164, e164[:-1], e164 + "5", e164[:-1] + str((int(e164[-1]) + 1) % 10)]
    return out + [f"+{cc}{p}{rest}" for p in ("0", "1", "00", "8")]


def test_fast_and_full_agree_on_every_example_and_its_neighbours():
    # phonenumbers' examples span the regions, and the fast path takes most of them (were it
    # never taken, this would compare the full parse with itself)
    assert len(examples()) > 900
    assert sum(agree(e164) for e164 in examples()) > 0.8 * len(examples())
    assert sum(agree(text) for e164 in examples() for text in near(e164)[1:]) > len(examples())


def test_the_default_region_does_not_change_a_plus_number():
    assert sum(agree(e164, "US") for e164 in examples()) > 0.8 * len(examples())


def test_numbers_the_fast_path_leaves_to_the_full_parse():
    # Italian leading zero, a national prefix after the country code, spaces, no "+"
    for text in ("+390612345678", "+330612345678", "+33 6 12 34 56 78", "0612345678", "+33612", "+999612345678"):
        assert _e164_fast_path(text) is None, text
    assert parse_number("+390612345678") == "+390612345678"
    assert parse_number("+330612345678") == "+33612345678"     # the full parse strips the 0


@given(st.text(alphabet=st.sampled_from(list("0123456789")), min_size=1, max_size=18))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_and_full_agree_on_random_digits(digits):
    agree("+" + digits)
