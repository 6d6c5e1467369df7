"""Calling rules: the one check run right before every dial (rules_and_signals.md A.5).

``check()`` is pure: it reads the clock it is given and the records it is handed
(suppression, consent, refusals, attempt times — ``store.Compliance`` provides them) and
returns allow, deny(rule) or defer(until). The presets are defaults to review with
counsel, not legal advice (docs/campaigns.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

from .terms import PRESETS, PURPOSES

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """A daily window in the callee's local time, ``start`` included, ``end`` excluded."""

    start: time
    end: time | None          # None = midnight at the end of the day

    @classmethod
    def parse(cls, text: str) -> Window:
        m = _WINDOW.match(str(text))
        if not m:
            raise ValueError(f"not a time window {text!r} (expected HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"not a time window {text!r} (hours 00-24, minutes 00-59)")
        start, end = time(h1, m1), None if h2 == 24 else time(h2, m2)
        if end is not None and end <= start:
            raise ValueError(f"time window {text!r} ends before it starts")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{'24:00' if self.end is None else format(self.end, '%H:%M')}"


@dataclass(frozen=True)
class Cap:
    """At most ``max`` attempts to one number within any rolling ``per`` (all campaigns)."""

    max: int
    per: timedelta

    def __str__(self) -> str:
        return f"{self.max}/{_days(self.per)}"


def _days(td: timedelta) -> str:
    return f"{td.days}d" if td.total_seconds() % 86400 == 0 else f"{td.total_seconds() / 3600:g}h"


@dataclass(frozen=True)
class RuleSet:
    """The rules one campaign dials under (a preset for its purpose, plus overrides)."""

    preset: str = "none"
    days: frozenset[int] = ALL_DAYS
    windows: tuple[Window, ...] = ()            # empty: any time of day
    holidays: bool = False                      # skip public holidays of the number's country
    caps: tuple[Cap, ...] = ()
    refusal_cooldown: timedelta | None = None   # no call for this long after a refusal
    consent_scope: str | None = None            # a consent of this scope is required
    out_of_hours_scope: str | None = None       # a consent of this scope lifts days/windows/holidays

    def describe(self) -> dict[str, Any]:
        return {
            "preset": self.preset, "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "windows": [str(w) for w in self.windows], "holidays": self.holidays,
            "caps": [str(c) for c in self.caps],
            "refusal_cooldown": _days(self.refusal_cooldown) if self.refusal_cooldown else None,
            "consent_scope": self.consent_scope, "out_of_hours_scope": self.out_of_hours_scope,
        }


def _w(*texts: str) -> tuple[Window, ...]:
    return tuple(Window.parse(t) for t in texts)


def preset_rules(preset: str, purpose: str) -> RuleSet:
    """The preset's rules for a purpose (values and sources: rules_and_signals.md A.1.3, A.2.4, A.3, A.5)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown rules preset {preset!r} (one of {', '.join(PRESETS)})")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r} (one of {', '.join(PURPOSES)})")
    if preset == "none" or purpose == "alert":
        # alerts are purpose-gated emergency/operational calls: any time (A.5.2); the
        # suppression list is still checked by check() whatever the rules.
        return RuleSet(preset=preset)
    if preset == "fr":
        # D223-9: Mon-Fri except L3133-1 holidays, 10-13 and 14-20 callee time, 4 attempts
        # per 30 days, 60 days after a refusal. L34-5 / CNIL: automated commercial and
        # political calls need prior consent.
        scope = {"commercial": "automated_calls", "political": "political_automated"}.get(purpose)
        return RuleSet("fr", frozenset(range(5)), _w("10:00-13:00", "14:00-20:00"), True,
                       (Cap(4, timedelta(days=30)),), timedelta(days=60), scope, "out_of_hours")
    if preset == "us":
        # 64.1200: 8 a.m.-9 p.m. called party's time; PEWC for telemarketing robocalls;
        # exempted robocalls 3 per 30 days; Reg F debt collection 7 calls in 7 days.
        scope = "telemarketing_robocalls" if purpose == "commercial" else None
        caps = {"debt_collection": (Cap(7, timedelta(days=7)),), "commercial": ()}.get(
            purpose, (Cap(3, timedelta(days=30)),))
        return RuleSet("us", ALL_DAYS, _w("08:00-21:00"), False, caps, None, scope, None)
    # uk: PECR reg. 19 consent for recorded marketing (political aims included); no statutory
    # window: 09-20 Mon-Sat avoids "unsociable hours" (Ofcom) [O].
    scope = "automated_calls" if purpose in ("commercial", "political") else None
    return RuleSet("uk", frozenset(range(6)), _w("09:00-20:00"), False, (), None, scope, None)


def apply_overrides(rules: RuleSet, **over: Any) -> RuleSet:
    """Replace the given fields (None values are "not given", except where noted by the caller)."""
    return replace(rules, **over)


# ---- what the check reads ------------------------------------------------------------

class Records(Protocol):
    def is_suppressed(self, number: str) -> bool: ...
    def find_consent(self, number: str, scope: str, at: datetime | None = None) -> dict[str, Any] | None: ...
    def last_refusal(self, number: str) -> datetime | None: ...
    def attempt_times(self, number: str, since: datetime) -> list[datetime]: ...


Verdict = Literal["allow", "deny", "defer"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str | None = None          # which rule denied or deferred
    until: datetime | None = None    # for defer (UTC)
    detail: str = ""
    zones: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "rule": self.rule,
                "until": self.until.isoformat() if self.until else None, "detail": self.detail}


ALLOW = Decision("allow")


def check(number: str, rules: RuleSet, now: datetime, records: Records, *,
          tz_override: str | None = None) -> Decision:
    """May ``number`` be dialed at ``now`` (aware, UTC)? Suppression is always checked."""
    if records.is_suppressed(number):
        return Decision("deny", "suppressed", detail="number is on the suppression list")
    consent = None
    if rules.consent_scope:
        consent = records.find_consent(number, rules.consent_scope, now)
        if consent is None:
            return Decision("deny", "no_consent", detail=f"no consent of scope {rules.consent_scope!r}")
    if rules.refusal_cooldown:
        last = records.last_refusal(number)
        if last is not None and now < last + rules.refusal_cooldown:
            return Decision("defer", "refusal_cooldown", last + rules.refusal_cooldown,
                            f"refused on {last:%Y-%m-%d}; no call for {_days(rules.refusal_cooldown)}")
    latest: datetime | None = None
    hit: Cap | None = None
    for cap in rules.caps:
        times = sorted(records.attempt_times(number, now - cap.per))
        if len(times) >= cap.max:
            # the window frees when enough old attempts have aged out of it
            free_at = times[len(times) - cap.max] + cap.per
            if latest is None or free_at > latest:
                latest, hit = free_at, cap
    if latest is not None and hit is not None:
        return Decision("defer", f"cap {hit}", latest, f"{hit.max} attempts within {_days(hit.per)}")
    if not (rules.windows or rules.days != ALL_DAYS or rules.holidays):
        return ALLOW
    if rules.out_of_hours_scope and records.find_consent(number, rules.out_of_hours_scope, now) is not None:
        return ALLOW
    windows = rules.windows
    if consent and consent.get("time_slot"):
        # FR political consent names the slot the person accepted calls in (CNIL)
        windows = tuple(Window.parse(s) for s in str(consent["time_slot"]).split(","))
    zones = callee_zones(number, tz_override)
    country = phonenumbers.region_code_for_number(_parse(number)) if rules.holidays else None
    at = next_allowed(now, zones, rules.days, windows, country)
    if at is None:
        return Decision("deny", "no_window", detail="no allowed time in the next year", zones=_names(zones))
    if at <= now:
        return ALLOW
    local = at.astimezone(zones[0])
    rule = "window"
    if country and _is_holiday(country, now.astimezone(zones[0]).date()):
        rule = "holiday"
    elif now.astimezone(zones[0]).weekday() not in rules.days:
        rule = "day"
    return Decision("defer", rule, at, f"callee time {now.astimezone(zones[0]):%a %H:%M %Z}; "
                    f"next allowed {local:%a %Y-%m-%d %H:%M %Z}", _names(zones))


def _names(zones: Iterable[ZoneInfo]) -> tuple[str, ...]:
    return tuple(z.key for z in zones)


# ---- time zones, holidays, windows ---------------------------------------------------

def _parse(number: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.parse(number, None)


@lru_cache(maxsize=4096)
def _zones_for_number(number: str) -> tuple[str, ...]:
    num = _parse(number)
    names = [z for z in pn_timezone.time_zones_for_number(num) if z != "Etc/Unknown"]
    if not names:
        names = [z for z in pn_timezone._country_level_time_zones_for_number(num) if z != "Etc/Unknown"]
    return tuple(names) or ("UTC",)


def callee_zones(number: str, override: str | None = None) -> tuple[ZoneInfo, ...]:
    """The callee's possible zones: the override, else from the number (all of them when
    the number does not say which: a window must hold in every one)."""
    if override:
        return (zone(override),)
    return tuple(ZoneInfo(z) for z in _zones_for_number(number))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@lru_cache(maxsize=256)
def _holiday_set(country: str, year: int) -> frozenset[date]:
    import holidays

    try:
        return frozenset(holidays.country_holidays(country, years=year).keys())
    except NotImplementedError:
        return frozenset()


def _is_holiday(country: str | None, d: date) -> bool:
    return bool(country) and d in _holiday_set(country, d.year)


def _next_in_zone(t: datetime, tz: ZoneInfo, days: frozenset[int], windows: tuple[Window, ...],
                  country: str | None) -> datetime | None:
    local = t.astimezone(tz)
    wins = windows or (Window(time(0), None),)
    for offset in range(370):
        d = local.date() + timedelta(days=offset)
        if d.weekday() not in days or _is_holiday(country, d):
            continue
        for w in wins:
            start = datetime.combine(d, w.start, tz)
            end = datetime.combine(d + timedelta(days=1), time(0), tz) if w.end is None else datetime.combine(d, w.end, tz)
            if end > local:
                return max(start, local).astimezone(timezone.utc)
    return None


def next_allowed(now: datetime, zones: tuple[ZoneInfo, ...], days: frozenset[int], windows: tuple[Window, ...],
                 country: str | None) -> datetime | None:
    """The first instant ≥ ``now`` allowed in every zone (``now`` itself if allowed)."""
    t = now
    for _ in range(50):
        moved = False
        for tz in zones:
            u = _next_in_zone(t, tz, days, windows, country)
            if u is None:
                return None
            if u > t:
                t, moved = u, True
        if not moved:
            return t
    return None
