"""On-call schedules (``alerting.schedules:``): weekly rotations with hand-overs at a local
time in a time zone, and overrides (holidays, swaps).

```yaml
alerting:
  people: {alice: "+33612345601", bob: "+33612345602", carol: "+33612345603"}
  schedules:
    primary:
      timezone: Europe/Paris
      rotation: [alice, bob, carol]    # people, in turn
      handover: "mon 09:00"            # local day and time of each hand-over
      start: 2026-01-05                # a date (that weekday) when rotation[0] takes over
      every_days: 7                    # length of a turn (7: weekly, 14: fortnightly, 1: daily)
      overrides:                       # later entries win; local times, [from, to)
        - {from: "2026-12-24 18:00", to: "2026-12-27 09:00", who: carol}
```

The hand-over happens at the same *wall-clock* time whatever the UTC offset (a turn that
spans a DST change is an hour shorter or longer), computed with zoneinfo. A schedule name
may be used wherever a person or group is (alert ``--to``, policy steps): the alert calls
whoever is on call when it is raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ..yamlfile import Strict

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HANDOVER = re.compile(r"^\s*([a-z]{3})\s+(\d{1,2}):(\d{2})\s*$")
_LOCAL = "%Y-%m-%d %H:%M"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. Europe/Paris)") from None


def _local(text: str, tz: ZoneInfo) -> datetime:
    try:
        return datetime.strptime(str(text).strip(), _LOCAL).replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"{text!r}: expected a local time like '2026-12-24 18:00'") from None


class OverrideConfig(Strict):
    from_: str = Field(alias="from")
    to: str
    who: str


class ScheduleConfig(Strict):
    timezone: str
    rotation: list[str] = Field(min_length=1)
    handover: str = "mon 09:00"
    start: date
    every_days: int = Field(default=7, ge=1, le=366)
    overrides: list[OverrideConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _zone(v)
        return v

    @field_validator("handover")
    @classmethod
    def _handover(cls, v: str) -> str:
        m = _HANDOVER.match(v.lower())
        if not m or m.group(1) not in DAYS or int(m.group(2)) > 23 or int(m.group(3)) > 59:
            raise ValueError(f"handover {v!r}: expected like 'mon 09:00'")
        return v.lower()

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleConfig:
        day = DAYS.index(self.handover.split()[0])
        if self.every_days % 7 == 0 and self.start.weekday() != day:
            raise ValueError(f"start {self.start} is a {DAYS[self.start.weekday()]}, not the handover day "
                             f"{DAYS[day]}")
        tz = _zone(self.timezone)
        for o in self.overrides:
            if _local(o.to, tz) <= _local(o.from_, tz):
                raise ValueError(f"override {o.from_} → {o.to}: the end is not after the start")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.timezone)

    @property
    def handover_time(self) -> time:
        hh, mm = self.handover.split()[1].split(":")
        return time(int(hh), int(mm))


@dataclass(frozen=True)
class OnCall:
    schedule: str
    who: str
    since: datetime           # local (aware) time this person took over
    until: datetime           # local time of the next hand-over (or the override's end)
    override: bool


def on_call(name: str, s: ScheduleConfig, at: datetime) -> OnCall:
    """Who is on call in schedule ``s`` at ``at`` (aware), and for which span (local times)."""
    tz = s.tz
    local = at.astimezone(tz)
    for o in reversed(s.overrides):
        start, end = _local(o.from_, tz), _local(o.to, tz)
        if start <= local < end:
            return OnCall(name, o.who, start, end, True)
    ht = s.handover_time

    def handover(k: int) -> datetime:
        # wall-clock time in the zone: the same local hour on both sides of a DST change
        return datetime.combine(s.start + timedelta(days=k * s.every_days), ht, tzinfo=tz)

    k = (local.date() - s.start).days // s.every_days
    while handover(k) > local:
        k -= 1
    while handover(k + 1) <= local:
        k += 1
    who = s.rotation[k % len(s.rotation)]
    return OnCall(name, who, handover(k), handover(k + 1), False)
