"""The whole of config.yaml, assembled from the sections each layer owns.

| key | schema | owner |
|---|---|---|
| ``modems:`` | ``modems.options.ModemConfig`` (serial part: ``at.options.SerialOptions``) | modems/, at/ |
| ``advisors:`` | ``call.advisors.AdvisorsConfig`` | call/ (transfers from IVR flows) |
| ``inbound:`` | ``call.inbound_config.InboundConfig`` | call/ (incoming calls) |
| ``limits:`` | ``campaign.limits.LimitsConfig`` | campaign/ |
| ``alerting:`` | ``alerting.config.AlertingConfig`` | alerting/ |
| ``sms:`` | ``alerting.sms_config.SmsConfig`` | alerting/ (incoming SMS) |
| ``webhooks:`` | ``webhook_targets.WebhookTarget`` | webhooks.py (shared bottom) |

The keys at the top (database, region, cache, voice) are the process's own. Only this
package imports every section: a layer below reads its own section, never the whole file
(tests/test_rooms_layers.py).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from ..alerting.config import AlertingConfig
from ..alerting.sms_config import SmsConfig
from ..boxname import DEFAULT_LEASE, check_box_name, default_box
from ..call.advisors import AdvisorsConfig
from ..call.inbound_config import InboundConfig
from ..campaign.limits import LimitsConfig
from ..durations import Duration
from ..errors import UserError
from ..modems.options import ModemConfig
from ..webhook_targets import WebhookTarget
from ..yamlfile import Strict


class Config(Strict):
    # a SQLite file (relative to the config's folder), or postgresql://user@host/db for a
    # database shared by several boxes (docs/schema.md)
    database: str = "modem-dialer.db"
    # This box's name when several boxes share one database (docs/scale-out.md): recorded
    # in every call and modem row, and in the leases of the contacts it claims. Default:
    # the host name. Two boxes with one name on two hosts: the second is refused.
    box: str = Field(default_factory=default_box)
    # How long another box waits for this box's heartbeat before taking over its contacts
    # (its calls in flight are recorded as interrupted). The heartbeat runs 4 times per lease.
    box_lease: Duration = Field(default=DEFAULT_LEASE)
    # How long journal writes wait for a database another process keeps locked (a backup,
    # `sqlite3` open in a shell) before a run stops starting calls (docs/schema.md).
    database_lock_limit: Duration = timedelta(seconds=60)
    default_region: str = "FR"
    modems: list[ModemConfig] = Field(default_factory=list)
    # Cache of synthesised prompts (--say); relative to the config file.
    cache_dir: str = ".cache/modem-dialer"
    tts_voice: str = "en"
    # Per-modem/SIM limits and rotation rules used by campaigns (campaign/limits.py).
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # Human advisors for transfers from IVR flows (call/advisors.py).
    advisors: AdvisorsConfig = Field(default_factory=AdvisorsConfig)
    # People, groups, escalation policies, HTTP API (alerting/config.py).
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    # Incoming calls: answer with a flow or reject, per bank and per modem (call/inbound_config.py).
    inbound: InboundConfig = Field(default_factory=InboundConfig)
    # Signed JSON POSTs of events, through a persistent outbox (webhook_targets.py).
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    # What incoming SMS mean: STOP keywords per language, acknowledgements (alerting/sms_config.py).
    sms: SmsConfig = Field(default_factory=SmsConfig)

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            from ..store.pg import url_problem

            problem = url_problem(v)
            if problem is not None:
                raise ValueError(f"not a valid PostgreSQL URL ({problem})")
        elif "://" in v:
            raise ValueError("a SQLite file path, or a postgresql://user@host/dbname URL")
        return v

    @field_validator("box")
    @classmethod
    def _box(cls, v: str) -> str:
        return check_box_name(v)

    @field_validator("box_lease")
    @classmethod
    def _lease(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= timedelta(hours=1):
            raise ValueError("must be between 1s and 1h")
        return v

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        import phonenumbers

        v = v.upper()
        if v not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("not a known ISO 3166 region code (e.g. FR, US, GB)")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: set[str] = set()
        for m in self.modems:
            if m.name in seen:
                raise ValueError(f"duplicate modem name {m.name!r}")
            seen.add(m.name)
        for name in self.inbound.modems:
            if name not in seen:
                raise ValueError(f"inbound.modems: no modem named {name!r}")
        return self

    def modem(self, name: str) -> ModemConfig:
        for m in self.modems:
            if m.name == name:
                return m
        raise UserError(f"no modem named {name!r} in the config (have: {', '.join(m.name for m in self.modems) or 'none'})")
