"""Human advisors reachable by transfer from IVR flows: the ``advisors:`` section of
config.yaml, owned by the call layer, and who is available when (``Advisor.available``), in
what order (``AdvisorsConfig.order_of``), in which group (``members``); call/transfer.py
uses them.

```yaml
advisors:
  order: round_robin            # or "order": always try the list from the top
  timezone: Europe/Paris        # for the hours below
  people:
    - name: alice
      number: "+33612345678"
      groups: [sales]
      hours: ["mon-fri 09:00-18:00", "sat 10:00-12:00"]   # none: always available
  groups:
    sales: {order: order}       # per-group override of the order
```
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ..errors import UserError
from ..yamlfile import Strict

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(text: str) -> tuple[set[int], time, time]:
    """``"mon-fri 09:00-18:00"`` -> (weekdays 0-6, start, end). ValueError if malformed."""
    m = _HOURS.match(text.lower())
    if not m:
        raise ValueError(f"hours {text!r}: expected like 'mon-fri 09:00-18:00'")
    d1, d2 = m.group(1), m.group(2) or m.group(1)
    if d1 not in DAYS or d2 not in DAYS:
        raise ValueError(f"hours {text!r}: days are {', '.join(DAYS)}")
    a, b = DAYS.index(d1), DAYS.index(d2)
    days = set(range(a, b + 1)) if a <= b else set(range(a, 7)) | set(range(0, b + 1))
    try:
        start = time(int(m.group(3)), int(m.group(4)))
        end = time(int(m.group(5)), int(m.group(6))) if m.group(5) != "24" else time(23, 59, 59)
    except ValueError:
        raise ValueError(f"hours {text!r}: not a valid time of day") from None
    if end <= start:
        raise ValueError(f"hours {text!r}: the end is not after the start")
    return days, start, end


class Advisor(Strict):
    name: str
    number: str
    groups: list[str] = Field(default_factory=list)
    hours: list[str] = Field(default_factory=list)

    @field_validator("number", mode="before")
    @classmethod
    def _number(cls, v: object) -> object:
        v = str(v)
        if v.startswith("+"):          # national formats are checked with default_region at use
            import phonenumbers

            try:
                ok = phonenumbers.is_valid_number(phonenumbers.parse(v, None))
            except phonenumbers.NumberParseException:
                ok = False
            if not ok:
                raise ValueError("not a valid phone number")
        return v

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: list[str]) -> list[str]:
        for h in v:
            parse_hours(h)
        return v

    def available(self, at: datetime) -> bool:
        """``at`` in the advisors' time zone."""
        if not self.hours:
            return True
        for h in self.hours:
            days, start, end = parse_hours(h)
            if at.weekday() in days and start <= at.time().replace(tzinfo=None) < end:
                return True
        return False


class GroupConfig(Strict):
    order: Literal["order", "round_robin"] | None = None


class AdvisorsConfig(Strict):
    order: Literal["order", "round_robin"] = "order"
    timezone: str = "UTC"
    people: list[Advisor] = Field(default_factory=list)
    groups: dict[str, GroupConfig] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (e.g. Europe/Paris)") from None
        return v

    @model_validator(mode="after")
    def _unique(self) -> AdvisorsConfig:
        names = [p.name for p in self.people]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate advisor name {sorted(dup)[0]!r}")
        tagged = {g for p in self.people for g in p.groups}
        for g in self.groups:
            if g not in tagged:
                raise ValueError(f"group {g!r} has no advisor (add it to someone's groups:)")
        return self

    def order_of(self, group: str | None) -> str:
        g = self.groups.get(group or "")
        return (g.order if g and g.order else None) or self.order

    def members(self, group: str | None) -> list[Advisor]:
        """The advisors of ``group`` (everyone for None) in config order; UserError if unknown."""
        if group is None:
            return list(self.people)
        out = [p for p in self.people if group in p.groups]
        if not out:
            raise UserError(f"advisors: no advisor in group {group!r}")
        return out

    def now(self) -> datetime:
        return datetime.now(ZoneInfo(self.timezone))
