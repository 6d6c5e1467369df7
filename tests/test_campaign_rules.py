"""Calling rules: pure checks at pinned times, with records from a real SQLite store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from test_store_compliance import refusal_without_call

from modem_dialer.campaign import rules as R
from modem_dialer.campaign.spec import CampaignSpec
from modem_dialer.store import Compliance, Journal, open_db

UTC = timezone.utc
FR_MOBILE = "+33612345678"
NY = "+12125551234"          # America/New_York
REUNION = "+262692123456"    # Indian/Reunion (UTC+4)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


class Records:
    """An in-memory stand-in with the same four questions Compliance answers."""

    def __init__(self) -> None:
        self.suppressed: set[str] = set()
        self.consents: dict[tuple[str, str], dict] = {}
        self.refusals: dict[str, datetime] = {}
        self.attempts: dict[str, list[datetime]] = {}

    def is_suppressed(self, number):
        return number in self.suppressed

    def find_consent(self, number, scope, at=None):
        return self.consents.get((number, scope))

    def last_refusal(self, number):
        return self.refusals.get(number)

    def attempt_times(self, number, since):
        return [t for t in self.attempts.get(number, []) if t >= since]


FR = R.preset_rules("fr", "survey")


@pytest.mark.parametrize("when, verdict, rule", [
    (utc(2026, 3, 3, 9, 30), "allow", None),             # Tue 10:30 Paris (UTC+1)
    (utc(2026, 3, 3, 8, 59), "defer", "window"),         # Tue 09:59 Paris
    (utc(2026, 3, 3, 12, 30), "defer", "window"),        # Tue 13:30 lunch gap
    (utc(2026, 3, 3, 18, 59), "allow", None),            # Tue 19:59
    (utc(2026, 3, 3, 19, 0), "defer", "window"),         # Tue 20:00: end excluded
    (utc(2026, 3, 7, 10, 0), "defer", "day"),            # Saturday
    (utc(2026, 5, 1, 9, 0), "defer", "holiday"),         # 1 May (a Friday)
    (utc(2026, 7, 14, 9, 0), "defer", "holiday"),        # 14 July (Tuesday)
])
def test_fr_windows_days_holidays(when, verdict, rule):
    d = R.check(FR_MOBILE, FR, when, Records())
    assert (d.verdict, d.rule) == (verdict, rule)


def test_fr_defer_until_is_the_next_allowed_instant():
    # Friday 1 May 2026 is a holiday, then the weekend: Monday 4 May 10:00 Paris (UTC+2)
    d = R.check(FR_MOBILE, FR, utc(2026, 5, 1, 9, 0), Records())
    assert d.until == utc(2026, 5, 4, 8, 0)
    # lunch gap: 14:00 Paris
    d = R.check(FR_MOBILE, FR, utc(2026, 3, 3, 12, 30), Records())
    assert d.until == utc(2026, 3, 3, 13, 0)
    # DST: the last Sunday of March moves Paris to UTC+2; Monday 30 March 10:00 = 08:00 UTC
    d = R.check(FR_MOBILE, FR, utc(2026, 3, 27, 19, 30), Records())
    assert d.until == utc(2026, 3, 30, 8, 0)


def test_callee_time_zone_not_ours():
    # 14:30 UTC = 09:30 in New York (EST): before 08:00? no, allowed under us (08-21)
    us = R.preset_rules("us", "informational")
    assert R.check(NY, us, utc(2026, 1, 6, 14, 30), Records()).allowed
    # 12:30 UTC = 07:30 New York: too early, opens at 13:00 UTC
    d = R.check(NY, us, utc(2026, 1, 6, 12, 30), Records())
    assert d.verdict == "defer" and d.until == utc(2026, 1, 6, 13, 0) and d.zones == ("America/New_York",)
    # 02:00 UTC = 21:00 New York: the window's end is excluded
    assert R.check(NY, us, utc(2026, 1, 7, 2, 0), Records()).verdict == "defer"
    # +262 69 is Reunion (UTC+4) or Mayotte (UTC+3): the window must hold in both.
    # 07:30 UTC = 11:30 / 10:30 there (allowed under fr) while Paris is at 08:30
    d = R.check(REUNION, FR, utc(2026, 3, 3, 6, 30), Records())
    assert d.verdict == "defer" and d.until == utc(2026, 3, 3, 7, 0)      # 10:00 in Mayotte
    assert set(d.zones) == {"Indian/Reunion", "Indian/Mayotte"}
    assert R.check(REUNION, FR, utc(2026, 3, 3, 7, 30), Records()).allowed
    assert R.check(FR_MOBILE, FR, utc(2026, 3, 3, 7, 30), Records()).verdict == "defer"


def test_contact_timezone_overrides_the_number():
    d = R.check(FR_MOBILE, FR, utc(2026, 3, 3, 6, 30), Records(), tz_override="Indian/Reunion")  # 10:30 there
    assert d.allowed
    with pytest.raises(ValueError, match="unknown time zone"):
        R.check(FR_MOBILE, FR, utc(2026, 3, 3, 6, 30), Records(), tz_override="Mars/Olympus")


def test_uk_and_none_presets():
    uk = R.preset_rules("uk", "survey")
    sunday = utc(2026, 3, 8, 12, 0)
    assert R.check("+447911123456", uk, sunday, Records()).rule == "day"
    assert R.check("+447911123456", uk, utc(2026, 3, 7, 12, 0), Records()).allowed   # Saturday noon
    none = R.preset_rules("none", "commercial")
    assert R.check(FR_MOBILE, none, sunday, Records()).allowed
    assert none.consent_scope is None and none.caps == ()


def test_suppression_is_checked_whatever_the_preset():
    rec = Records()
    rec.suppressed.add(FR_MOBILE)
    for preset in R.PRESETS:
        d = R.check(FR_MOBILE, R.preset_rules(preset, "alert"), utc(2026, 3, 3, 9, 30), rec)
        assert (d.verdict, d.rule) == ("deny", "suppressed")


def test_consent_required_by_purpose_under_the_preset():
    at = utc(2026, 3, 3, 9, 30)
    rec = Records()
    fr_com = R.preset_rules("fr", "commercial")
    assert fr_com.consent_scope == "automated_calls"
    assert R.check(FR_MOBILE, fr_com, at, rec).rule == "no_consent"
    rec.consents[(FR_MOBILE, "automated_calls")] = {"time_slot": None}
    assert R.check(FR_MOBILE, fr_com, at, rec).allowed
    assert R.preset_rules("fr", "survey").consent_scope is None
    assert R.preset_rules("fr", "political").consent_scope == "political_automated"
    assert R.preset_rules("us", "commercial").consent_scope == "telemarketing_robocalls"
    assert R.preset_rules("uk", "political").consent_scope == "automated_calls"


def test_political_consent_time_slot_replaces_the_window():
    rec = Records()
    rec.consents[(FR_MOBILE, "political_automated")] = {"time_slot": "18:00-19:00"}
    pol = R.preset_rules("fr", "political")
    assert R.check(FR_MOBILE, pol, utc(2026, 3, 3, 17, 30), rec).allowed     # 18:30 Paris
    d = R.check(FR_MOBILE, pol, utc(2026, 3, 3, 9, 30), rec)                 # 10:30: outside the slot
    assert d.verdict == "defer" and d.until == utc(2026, 3, 3, 17, 0)


def test_out_of_hours_consent_lifts_the_window():
    rec = Records()
    rec.consents[(FR_MOBILE, "out_of_hours")] = {}
    assert R.check(FR_MOBILE, FR, utc(2026, 3, 7, 21, 0), rec).allowed


def test_fr_cap_four_attempts_in_thirty_days_rolling():
    now = utc(2026, 3, 3, 9, 30)
    rec = Records()
    rec.attempts[FR_MOBILE] = [now - timedelta(days=d) for d in (25, 10, 5, 1)]
    d = R.check(FR_MOBILE, FR, now, rec)
    # the oldest of the four leaves the 30-day window 5 days from now
    assert d.verdict == "defer" and d.rule == "cap 4/30d" and d.until == now + timedelta(days=5)
    rec.attempts[FR_MOBILE] = [now - timedelta(days=d) for d in (31, 10, 5, 1)]
    assert R.check(FR_MOBILE, FR, now, rec).allowed


def test_refusal_cooldown_sixty_days():
    now = utc(2026, 3, 3, 9, 30)
    rec = Records()
    rec.refusals[FR_MOBILE] = now - timedelta(days=59)
    d = R.check(FR_MOBILE, FR, now, rec)
    assert d.rule == "refusal_cooldown" and d.until == now + timedelta(days=1)
    rec.refusals[FR_MOBILE] = now - timedelta(days=61)
    assert R.check(FR_MOBILE, FR, now, rec).allowed


def test_alert_purpose_ignores_windows_and_caps():
    rec = Records()
    rec.attempts[FR_MOBILE] = [utc(2026, 3, 7, 1, 0)] * 10
    alert = R.preset_rules("fr", "alert")
    assert R.check(FR_MOBILE, alert, utc(2026, 3, 8, 2, 0), rec).allowed


def test_overrides_from_the_campaign_file():
    spec = CampaignSpec.model_validate({
        "name": "x", "contacts": "c.csv", "say": "hi", "purpose": "commercial",
        "rules": {"preset": "fr", "windows": ["11:00-12:00"], "caps": [{"max": 2, "per": "7d"}],
                  "consent": False, "refusal_cooldown": "90d"}})
    rs = spec.rule_set()
    assert rs.windows == (R.Window.parse("11:00-12:00"),) and rs.caps == (R.Cap(2, timedelta(days=7)),)
    assert rs.consent_scope is None and rs.refusal_cooldown == timedelta(days=90) and rs.holidays is True


def test_records_from_the_real_store(tmp_path):
    now = utc(2026, 3, 3, 9, 30)
    conn = open_db(tmp_path / "j.db")
    clock = [now - timedelta(days=3)]
    comp, journal = Compliance(conn, lambda: clock[0]), Journal(conn, lambda: clock[0])
    for days in (20, 3, 2, 1):
        clock[0] = now - timedelta(days=days)
        journal.finish_call(journal.start_call(FR_MOBILE, "gsm0"), "no_answer")
    clock[0] = now
    d = R.check(FR_MOBILE, FR, now, comp)
    assert d.rule == "cap 4/30d" and d.until == now + timedelta(days=10)
    refusal_without_call(conn, "+33612345679", "key", now - timedelta(days=2))
    assert R.check("+33612345679", FR, now, comp).until == now + timedelta(days=58)
    comp.suppress("+33612345670", "opt_out_key", "test")
    assert R.check("+33612345670", FR, now, comp).rule == "suppressed"
    comp.add_consent("+33612345671", "automated_calls", "form", now - timedelta(days=1), "proof-1")
    fr_com = R.preset_rules("fr", "commercial")
    assert R.check("+33612345671", fr_com, now, comp).allowed
    comp.revoke_consent("+33612345671", "key", at=now - timedelta(hours=1))
    assert R.check("+33612345671", fr_com, now, comp).rule == "no_consent"


def test_window_parsing():
    assert str(R.Window.parse("9:00-24:00")) == "09:00-24:00"
    for bad in ("25:00-26:00", "10:00-09:00", "10-12", "10:61-11:00"):
        with pytest.raises(ValueError):
            R.Window.parse(bad)
