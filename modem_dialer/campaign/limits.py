"""The ``limits:`` section of config.yaml: per-modem/SIM limits for campaigns and rotation rules.

```yaml
limits:
  calls_per_hour: 60          # per modem (SIM), rolling hour
  calls_per_day: 400          # per modem (SIM), calendar day in the box's local time
  minutes_per_day: 300        # answered minutes per modem (SIM) per calendar day
  max_consecutive_failures: 3 # then out of rotation ...
  cooldown: 10m               # ... for this long, then back if the modem is registered
  health_interval: 60s        # how often an idle or resting line re-checks registration
  modems:                     # per-modem overrides
    gsm3: {calls_per_day: 100}
```
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ..durations import Duration
from ..yamlfile import Strict


class LineLimits(Strict):
    calls_per_hour: int | None = Field(default=None, ge=1)
    calls_per_day: int | None = Field(default=None, ge=1)
    minutes_per_day: float | None = Field(default=None, gt=0)


class LimitsConfig(Strict):
    calls_per_hour: int | None = Field(default=None, ge=1)
    calls_per_day: int | None = Field(default=None, ge=1)
    minutes_per_day: float | None = Field(default=None, gt=0)
    max_consecutive_failures: int = Field(default=3, ge=1)
    cooldown: Duration = timedelta(minutes=10)
    health_interval: Duration = timedelta(seconds=60)
    modems: dict[str, LineLimits] = Field(default_factory=dict)

    def for_modem(self, name: str) -> LineLimits:
        """The limits of one modem: its own entries win over the bank-wide ones."""
        own = self.modems.get(name)
        base: dict[str, float | None] = {"calls_per_hour": self.calls_per_hour, "calls_per_day": self.calls_per_day,
                "minutes_per_day": self.minutes_per_day}
        if own is not None:
            base.update({k: v for k, v in own.model_dump().items() if v is not None})
        return LineLimits.model_validate(base)
