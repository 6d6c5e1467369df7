"""parse_number's E.164 fast path (numbers._e164_fast_path) gives what phonenumbers' full
parse gives: the same E.164 form, or the same error, for every region's example numbers and
for numbers near them (a digit changed, one more or one less, a national prefix after the
country code), and for random digits after a "+"; and its validity check (numbers._CountryCheck,
phonenumbers' rules with the patterns compiled once) says what phonenumbers' is_valid_number says."""

from __future__ import annotations

import functools

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_dialer.numbers import _country, _e164_fast_path, _parse_number_in_full, _RegionCheck, parse_number


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


def national(e164: str) -> tuple[int, str]:
    """(country code, national number) as the fast path splits ``e164``."""
    digits = e164[1:]
    cc = next(int(digits[:k]) for k in (1, 2, 3) if int(digits[:k]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    return cc, digits[len(str(cc)):]


def same_validity(cc: int, nsn: str) -> bool:
    """The fast path's validity (numbers._CountryCheck) is phonenumbers' is_valid_number, for a
    national number as the fast path hands it over (digits, no leading zero); -> the verdict."""
    if not nsn or nsn[0] == "0" or len(nsn) > 17:
        return False
    ours = _country(cc).valid(nsn)
    assert ours == phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))), \
        f"+{cc} {nsn}: fast path says {'valid' if ours else 'invalid'}"
    return ours


def test_the_fast_validity_is_phonenumbers_on_every_example_and_its_edits():
    # valid and invalid numbers of every region, in every country code (+1's 25 regions, +44's
    # 4, +7's 2...): each example, each digit of it changed, its last digit changed to each of 0-9,
    # one digit more and one less. (Every digit changed to every other, inserted and deleted at
    # every place, 186,000 numbers of which 74,000 valid, agreed too, once: 2 s of CPU.)
    assert all(_country(cc).known for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    valid = invalid = 0
    for e164 in examples():
        cc, nsn = national(e164)
        edits = [nsn, nsn[:-1], nsn + "7", *(nsn[:-1] + d for d in "0123456789"),
                 *(nsn[:i] + str((int(nsn[i]) + 3) % 10) + nsn[i + 1:] for i in range(1, len(nsn) - 1))]
        for text in edits:
            if same_validity(cc, text):
                valid += 1
            else:
                invalid += 1
    assert valid > 10_000 and invalid > 2_000, (valid, invalid)      # 16,292 and 3,361


def test_the_fast_validity_keeps_phonenumbers_rules_on_lengths_and_same_patterns():
    # rules that phonenumbers' metadata never puts to the test (its patterns already hold its
    # lengths; no mobile pattern equal to the fixed line's allows other lengths), on made-up
    # regions: a length outside a descriptor's possible lengths does not match even when its
    # pattern does, and a mobile pattern equal to the fixed line's is not tried
    desc = phonenumbers.PhoneNumberDesc
    same = phonenumbers.PhoneMetadata(
        "XA", general_desc=desc(national_number_pattern=r"\d{4,8}", possible_length=(4, 6, 8)),
        fixed_line=desc(national_number_pattern=r"[2-5]\d{3,7}", possible_length=(6,)),
        mobile=desc(national_number_pattern=r"[2-5]\d{3,7}", possible_length=(4, 6, 8)),
        voip=desc(national_number_pattern=r"9\d{3,7}", possible_length=(8,)),
        uan=desc(national_number_pattern=r"1\d{3,7}"), register=False)
    other = phonenumbers.PhoneMetadata(
        "XB", general_desc=desc(national_number_pattern=r"\d{4,8}"),
        fixed_line=desc(national_number_pattern=r"[2-5]\d{3,7}", possible_length=(6,)),
        mobile=desc(national_number_pattern=r"[6-8]\d{3,7}", possible_length=(4, 5)),
        pager=desc(possible_length=(7,)), register=False)
    verdicts = []
    for meta in (same, other):
        for length in range(3, 10):
            for first in "123456789":
                nsn = first + "0" * (length - 1)
                expected = phonenumbers.phonenumberutil._number_type_helper(nsn, meta) != phonenumbers.PhoneNumberType.UNKNOWN
                assert _RegionCheck(meta).valid(nsn) == expected, (meta.id, nsn)
                verdicts.append(expected)
    assert 10 < sum(verdicts) < len(verdicts) - 10


@given(st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
       st.text(alphabet=st.sampled_from(list("0123456789")), min_size=2, max_size=17))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_validity_is_phonenumbers_on_random_digits(cc, digits):
    same_validity(cc, digits)


@given(st.sampled_from(examples()), st.integers(min_value=0, max_value=16), st.sampled_from(list("0123456789")),
       st.sampled_from(["replace", "insert", "delete"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_validity_is_phonenumbers_on_edited_examples(e164, at, digit, edit):
    cc, nsn = national(e164)
    at %= len(nsn)
    same_validity(cc, {"replace": nsn[:at] + digit + nsn[at + 1:], "insert": nsn[:at] + digit + nsn[at:],
                       "delete": nsn[:at] + nsn[at + 1:]}[edit])
