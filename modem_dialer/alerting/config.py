"""The ``alerting:`` section of config.yaml: people, groups, escalation policies and the HTTP API.

```yaml
alerting:
  people: {alice: "+33612345678", bob: "06 98 76 54 32"}
  groups: {dba: [alice, bob]}
  policies:
    default:
      steps:
        - {to: alice, attempts: 2, retry_delay: 60, delay: 300}
        - {to: dba, via: call+sms}
      repeat: 1
  api: {listen: 127.0.0.1, port: 8737, token: "…"}
```

Times are seconds. Names in steps are people, groups or phone numbers; they are checked
when the config loads so a typo fails at start-up, not at 3 a.m.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..modems.keys import phone_key
from ..yamlfile import Strict
from .schedules import ScheduleConfig

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NUMBERISH = re.compile(r"^\+?[0-9][0-9 ().-]{2,30}$")


def looks_like_number(s: str) -> bool:
    return bool(_NUMBERISH.match(s.strip()))


class StepConfig(Strict):
    # Who: one name or several (people, groups, numbers); all of them are tried in this step.
    to: list[str]
    # call, sms, or both (the SMS goes out at the start of the step, then the call).
    via: Literal["call", "sms", "call+sms"] = "call"
    attempts: int = Field(default=1, ge=1, le=10)
    retry_delay: float = Field(default=60.0, ge=0, le=86400)    # between attempts of this step
    delay: float = Field(default=300.0, ge=0, le=86400)         # after this step, before the next

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        if isinstance(v, str):
            return [v]
        return v


class PolicyConfig(Strict):
    steps: list[StepConfig] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=20)     # run the whole list again N more times
    ack_key: str = "1"
    resolve_key: str | None = None                  # PagerDuty uses 4 = ack, 6 = resolve
    # Text appended to the message; "{key}" is the acknowledgement key.
    ack_prompt: str = "Press {key} to acknowledge."
    message_repeat: int = Field(default=5, ge=1, le=20)
    ring_timeout: float = Field(default=30.0, ge=15, le=120)
    # An SMS to whoever a call did not reach or who did not acknowledge (once per person per alert).
    sms_fallback: bool = True
    # Seconds a call (or SMS) of this alert waits for a free line when all are busy; past it
    # the attempt counts as "no_line" and escalation goes on. None: wait until a line frees,
    # however long the backlog (alerts take free lines first, oldest first).
    line_wait: float | None = Field(default=None, gt=0, le=86400)
    # Acknowledged but not resolved after this many seconds: the alert is open again and the
    # escalation starts over (PagerDuty's acknowledgement timeout). None: never.
    ack_timeout: float | None = Field(default=None, gt=0, le=7 * 86400)

    @field_validator("ack_key", "resolve_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        return None if v is None else phone_key(v)

    @model_validator(mode="after")
    def _distinct(self) -> PolicyConfig:
        if self.resolve_key is not None and self.resolve_key == self.ack_key:
            raise ValueError("ack_key and resolve_key must differ")
        return self


_ALLOWED = {
    "allowed_hosts": (r"[A-Za-z0-9.:_-]{1,253}|\[[0-9A-Fa-f:.]+\]", "a host name or address (no scheme, no port)"),
    "allowed_origins": (r"https?://[A-Za-z0-9.:_\[\]-]{1,260}",
                        "an origin like https://dialer.example.com (scheme, host, port)"),
}


class ApiConfig(Strict):
    listen: str = "127.0.0.1"
    port: int = Field(default=8737, ge=0, le=65535)
    # Bearer token required on every route but /healthz: inline, from a file (first line),
    # or from an environment variable. The CLI reads the same setting to talk to the service.
    token: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Names (Host header) the API answers to, besides the listen address, localhost,
    # 127.0.0.1 and ::1 (which it always answers to): a foreign Host is a DNS-rebinding page.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Browser origins allowed besides http://NAME:PORT of those names, e.g. a TLS reverse
    # proxy's "https://dialer.example.com". Requests from any other page are refused.
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts", "allowed_origins")
    @classmethod
    def _names(cls, v: list[str], info: ValidationInfo) -> list[str]:
        pattern, what = _ALLOWED[info.field_name or ""]
        for x in v:
            if not re.fullmatch(pattern, x):
                raise ValueError(f"{x!r} is not {what}")
        return [x.strip("[]").lower() for x in v]

    def bearer(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            from pathlib import Path

            from ..errors import UserError

            try:
                return Path(self.token_file).read_text().strip().splitlines()[0].strip() or None
            except (OSError, IndexError) as exc:
                raise UserError(f"alerting.api.token_file: cannot read {self.token_file}: {exc}") from None
        if self.token_env:
            return os.environ.get(self.token_env) or None
        return None


class RouteConfig(Strict):
    """Alertmanager: alerts whose common labels contain all of ``match`` go to ``policy``."""

    match: dict[str, str]
    policy: str


class RateLimitConfig(Strict):
    # At most this many alert calls + SMS to one number per window; more are skipped and logged.
    per_number: int = Field(default=10, ge=1)
    window: float = Field(default=3600.0, gt=0)


class AlertingConfig(Strict):
    people: dict[str, str] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    default_policy: str = "default"
    # Alertmanager label that names the policy (checked before routes).
    policy_label: str = "policy"
    routes: list[RouteConfig] = Field(default_factory=list)
    api: ApiConfig = Field(default_factory=ApiConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    health_interval: float = Field(default=5.0, gt=0, le=600)
    delivery_reports: bool = True
    # Folders that hold the WAV prompts an alert may play ("audio": NAME or a path inside
    # one); relative to the config file. Nothing outside them is read, whatever the request.
    prompt_dirs: list[str] = Field(default_factory=lambda: ["prompts"])
    max_prompt_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Caps on what callers can pile up; beyond them the API answers 429 (or 400 for `to`).
    max_live_alerts: int = Field(default=200, ge=1, le=100_000)
    max_targets: int = Field(default=50, ge=1, le=1000)       # `to` entries, and people per alert
    max_queued_sms: int = Field(default=500, ge=1, le=100_000)
    # On-call rotations (alerting/schedules.py): a schedule name works like a person or a group.
    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        for name in (*self.people, *self.groups, *self.policies, *self.schedules):
            if not _NAME.match(name):
                raise ValueError(f"name {name!r}: use letters, digits, '_', '.' or '-'")
        both = (set(self.people) & set(self.groups)) | (set(self.schedules) & (set(self.people) | set(self.groups)))
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is two of a person, a group and a schedule")
        for sname, sch in self.schedules.items():
            for who in [*sch.rotation, *(o.who for o in sch.overrides)]:
                if who not in self.people:
                    raise ValueError(f"schedule {sname!r}: {who!r} is not a person (alerting.people)")
        for g, members in self.groups.items():
            for m in members:
                if m not in self.people and not looks_like_number(m):
                    raise ValueError(f"group {g!r}: {m!r} is neither a person nor a phone number")
        for p, pol in self.policies.items():
            for i, step in enumerate(pol.steps):
                for t in step.to:
                    if (t not in self.people and t not in self.groups and t not in self.schedules
                            and not looks_like_number(t)):
                        raise ValueError(f"policy {p!r} step {i + 1}: {t!r} is not a person, group, schedule "
                                         "or number")
        for r in self.routes:
            if r.policy not in self.policies:
                raise ValueError(f"route to unknown policy {r.policy!r}")
        return self

    def policy(self, name: str | None) -> PolicyConfig:
        """The named policy, or the default; a fallback single-step policy when none is configured."""
        from ..errors import UserError

        key = name or self.default_policy
        if key in self.policies:
            return self.policies[key]
        if name is None:
            return PolicyConfig(steps=[StepConfig(to=[])])
        raise UserError(f"unknown policy {name!r} (have: {', '.join(self.policies) or 'none'})")
