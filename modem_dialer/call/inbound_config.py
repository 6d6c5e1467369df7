"""The ``inbound:`` section of config.yaml: what to do when someone calls one of our SIMs.

```yaml
inbound:
  action: answer               # or reject (the caller hears busy)
  flow: flows/inbound.yaml     # an IVR flow file; none: the built-in one below
  organisation: Acme           # said by the built-in flow
  opt_out_key: "9"
  advisor_group: null          # advisors group the built-in flow transfers to (none: anyone)
  modems:                      # per-modem overrides of the settings above
    gsm1: {action: reject}
```

The built-in flow names the organisation, offers the opt-out key and transfers to an
advisor (only advisors within their ``hours`` are tried; outside them it says so).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..modems.keys import phone_key
from ..yamlfile import Strict


class InboundSettings(Strict):
    action: Literal["answer", "reject"] | None = None
    flow: str | None = None
    organisation: str | None = Field(default=None, max_length=100)
    opt_out_key: str | None = None
    advisor_group: str | None = None

    @field_validator("opt_out_key", mode="before")
    @classmethod
    def _key(cls, v: object) -> object:
        if v is None:
            return v
        return phone_key(str(v))


class InboundConfig(InboundSettings):
    action: Literal["answer", "reject"] | None = "answer"
    organisation: str | None = Field(default="us", max_length=100)
    opt_out_key: str | None = "9"
    modems: dict[str, InboundSettings] = Field(default_factory=dict)

    def for_modem(self, name: str) -> InboundSettings:
        """The settings for modem ``name``: its overrides over the bank's."""
        base = self.model_dump(exclude={"modems"})
        over = self.modems.get(name)
        if over is not None:
            base.update({k: v for k, v in over.model_dump().items() if v is not None})
        return InboundSettings(**base)
