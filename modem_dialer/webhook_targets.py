"""The ``webhooks:`` section of config.yaml: signed JSON POSTs for events (webhooks.py).

```yaml
webhooks:
  - url: https://example.org/hooks/dialer
    secret_env: DIALER_WEBHOOK_SECRET     # or secret: "…" / secret_file: path
    events: [call.ended, alert.acknowledged]   # none: every event
```
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pydantic import Field, field_validator

from .yamlfile import Strict

EVENTS = ("call.ended", "survey.answer", "opt_out", "sms.received", "sms.delivered", "alert.raised",
          "alert.acknowledged", "alert.resolved", "alert.expired")


class WebhookTarget(Strict):
    url: str
    secret: str | None = None
    secret_file: str | None = None
    secret_env: str | None = None
    events: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError("an http:// or https:// URL")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for e in v:
            if e not in EVENTS:
                raise ValueError(f"unknown event {e!r} (one of {', '.join(EVENTS)})")
        return v

    def key(self) -> bytes | None:
        if self.secret:
            return self.secret.encode()
        if self.secret_file:
            from pathlib import Path

            from .errors import UserError

            try:
                return Path(self.secret_file).read_text().strip().encode() or None
            except OSError as exc:
                raise UserError(f"webhooks: cannot read secret_file {self.secret_file}: {exc}") from None
        if self.secret_env:
            v = os.environ.get(self.secret_env)
            return v.encode() if v else None
        return None

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events
