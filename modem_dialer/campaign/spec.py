"""The campaign file (YAML): what to call, what to play, under which rules, with which retries.

Paths in the file are relative to the file. Everything is validated before anything is
dialed; a mistake is one line ``file:line: key: message``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..durations import Duration
from ..errors import UserError
from ..textfile import check_delimiter, check_encoding
from ..yamlfile import Strict, load_yaml, validate
from . import rules as R
from .terms import ConsentScope, Preset, Purpose

# Call outcomes a retry rule may name (call/outcome.py), plus "interrupted" (the process
# stopped during the call; falls back to the "failed" rule when not given).
RETRYABLE = ("busy", "no_answer", "rejected", "failed", "machine", "interrupted")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class RetryRule(Strict):
    after: Duration                        # counted from the end of the previous attempt
    max: int = Field(ge=1, le=50)          # attempts in all for a contact whose last outcome is this


class RulesOverrides(Strict):
    preset: Preset = "none"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    windows: list[str] | None = None
    holidays: bool | None = None
    caps: list[CapSpec] | None = None
    refusal_cooldown: Duration | None = None
    consent_scope: ConsentScope | None = None
    consent: bool | None = None            # false: no consent needed (only with a documented exception)

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str] | None) -> list[str] | None:
        for w in v or []:
            R.Window.parse(w)
        return v


class CapSpec(Strict):
    max: int = Field(ge=1)
    per: Duration


RulesOverrides.model_rebuild()


class CampaignSpec(Strict):
    name: str
    contacts: str
    message: str | None = None
    say: str | None = None
    flow: str | None = None
    repeat: int = Field(default=1, ge=1, le=20)
    purpose: Purpose
    rules: RulesOverrides = Field(default_factory=RulesOverrides)   # `rules: fr` or a mapping
    retry: dict[str, RetryRule] = Field(default_factory=dict)
    modems: list[str] | None = None
    region: str | None = None              # how national numbers in the CSV are read (default: config)
    opt_out_key: str | None = None
    ring_timeout: Duration = timedelta(seconds=45)
    voice: str | None = None               # TTS voice for `say` (default: config tts_voice)
    encoding: str | None = None            # of the contacts file (default: detected; UTF-8 when it reads as such)
    delimiter: str | None = None           # of the contacts file (default: sniffed among , ; tab |)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str | None) -> str | None:
        return None if v is None else check_encoding(v)

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, v: str | None) -> str | None:
        return None if v is None else check_delimiter(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("campaign name must be 1-64 letters, digits, '_', '.' or '-'")
        return v

    @field_validator("retry")
    @classmethod
    def _retry(cls, v: dict[str, RetryRule]) -> dict[str, RetryRule]:
        for k in v:
            if k not in RETRYABLE:
                raise ValueError(f"unknown outcome {k!r} in retry (one of {', '.join(RETRYABLE)})")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        import phonenumbers

        if v is not None and v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("not a known ISO 3166 region code (e.g. FR, US, GB)")
        return v.upper() if v else v

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, v: Any) -> Any:
        return {"preset": v} if isinstance(v, str) else v

    @field_validator("opt_out_key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> str | None:
        if v is not None and (len(str(v)) != 1 or str(v) not in "0123456789*#"):
            raise ValueError("opt_out_key must be one key: 0-9, * or #")
        return None if v is None else str(v)

    @field_validator("ring_timeout")
    @classmethod
    def _ring(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 15:
            raise ValueError("ring_timeout under 15s: shorter rings count as abandoned calls")
        return v

    @model_validator(mode="after")
    def _one_script(self) -> CampaignSpec:
        given = [k for k in ("message", "say", "flow") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of message, say or flow")
        return self

    def rule_set(self) -> R.RuleSet:
        """The preset for this purpose with the file's overrides applied."""
        ov = self.rules
        rs = R.preset_rules(ov.preset, self.purpose)
        changes: dict[str, Any] = {}
        if ov.days is not None:
            changes["days"] = frozenset(R.DAY_NAMES.index(d) for d in ov.days)
        if ov.windows is not None:
            changes["windows"] = tuple(R.Window.parse(w) for w in ov.windows)
        if ov.holidays is not None:
            changes["holidays"] = ov.holidays
        if ov.caps is not None:
            changes["caps"] = tuple(R.Cap(c.max, c.per) for c in ov.caps)
        if ov.refusal_cooldown is not None:
            changes["refusal_cooldown"] = ov.refusal_cooldown or None
        if ov.consent_scope is not None:
            changes["consent_scope"] = ov.consent_scope
        if ov.consent is False:
            changes["consent_scope"] = None
        return R.apply_overrides(rs, **changes)

    def retry_rule(self, outcome: str) -> RetryRule | None:
        if outcome == "interrupted" and outcome not in self.retry:
            return self.retry.get("failed")
        return self.retry.get(outcome)


class CampaignFile:
    """A validated campaign file with its paths resolved against the file's folder."""

    def __init__(self, spec: CampaignSpec, path: Path) -> None:
        self.spec = spec
        self.path = path.resolve()
        self.base = self.path.parent

    def resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    @property
    def contacts_path(self) -> Path:
        return self.resolve(self.spec.contacts)

    @property
    def message_path(self) -> Path | None:
        return self.resolve(self.spec.message) if self.spec.message else None

    @property
    def flow_path(self) -> Path | None:
        return self.resolve(self.spec.flow) if self.spec.flow else None


def load_campaign(path: str | Path) -> CampaignFile:
    """Read and check a campaign file, including that the files it names exist."""
    doc = load_yaml(path, "campaign file")
    spec = validate(doc, CampaignSpec)
    cf = CampaignFile(spec, Path(path))
    for key in ("contacts", "message", "flow"):
        value = getattr(spec, key)
        if value is not None and not cf.resolve(value).is_file():
            raise UserError(f"{doc.where((key,))}: {key}: file not found: {cf.resolve(value)}")
    return cf
