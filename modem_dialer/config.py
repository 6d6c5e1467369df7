"""The config file (``config.yaml``): what modems there are and where the journal lives.

Looked up as ``--config PATH``, else ``$MODEM_DIALER_CONFIG``, else ``./config.yaml``.
Relative paths inside it are relative to the file itself.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config_alerting import AlertingConfig
from .config_campaign import LimitsConfig
from .config_inbound import InboundConfig
from .config_ivr import AdvisorsConfig
from .config_sms import SmsConfig
from .config_webhooks import WebhookTarget
from .durations import Duration
from .errors import UserError
from .yamlfile import Strict, load_yaml, validate

FAMILIES = ("auto", "quectel", "simcom", "sim800", "huawei", "generic")
Family = Literal["auto", "quectel", "simcom", "sim800", "huawei", "generic"]

# A PIN goes into AT+CPIN="...": only 4 to 8 digits may ever reach the modem.
_PIN = re.compile(r"^[0-9]{4,8}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class AudioConfig(Strict):
    kind: Literal["serial", "uac"]
    port: str | None = None          # kind serial: the PCM tty
    device: str | None = None        # kind uac: a PortAudio device name, e.g. "hw:CARD=gsm_1_1_3,DEV=0"
    capture_device: str | None = None  # kind uac: when capture is another device (default: device)
    baudrate: int = 115200
    # Digital gain applied to the prompt before it is sent, in dB (0 = as normalised).
    tx_gain_db: float = 0.0
    # Seconds the modem (or card) may still hold beyond what the dialer's playout model
    # counts (frames written vs. time, the tty's queue): its own jitter buffer. The hang-up
    # waits this long after the last prompt frame has played. Default: the family's value
    # (call/line.py PLAYOUT_MARGIN, unverified [?], see docs/audio.md).
    playout_margin: float | None = Field(default=None, ge=0, le=2)

    @model_validator(mode="after")
    def _check_target(self) -> AudioConfig:
        if self.kind == "serial" and not self.port:
            raise ValueError("audio kind 'serial' needs 'port' (the modem's PCM tty)")
        if self.kind == "uac" and not self.device:
            raise ValueError("audio kind 'uac' needs 'device' (a PortAudio device name)")
        return self


class ModemConfig(Strict):
    name: str
    port: str
    family: Family = "auto"
    baudrate: int = 115200
    pin: str | None = None
    audio: AudioConfig | None = None
    # Where keys come from: the family's DTMF URC, the in-band detector on captured
    # audio, or both (auto = URC where the family reports keys, in-band otherwise).
    dtmf: Literal["auto", "urc", "inband", "both"] = "auto"
    # SIM7600: seconds between the answer and AT+CPCMREG=1. ModemManager waits 0.1 s because
    # the module "needs to wait a bit" — unverified ([?] in modems.md §5.2), hence a setting.
    pcm_enable_delay: float = Field(default=0.1, ge=0, le=5)
    # Seconds to wait for the first answer of the modem before calling it silent.
    probe_timeout: float = Field(default=3.0, gt=0, le=60)
    # Seconds between the end of a call and the next ATD on this modem, for modems that
    # need a pause to settle. 0 = dial the next number as soon as the line is free.
    dial_gap: float = Field(default=0.0, ge=0, le=60)
    # Explicit call transfer (AT+CHLD=4) for `strategy: ect` transfers. auto = the family's
    # default: on, except Huawei, where chan_dongle documents AT+CHLD sequences wedging the
    # E1550 (modems.md §2). Confirmed on Quectel and SIM7600 only; SIM800 and generic
    # modems are unverified ([?]): set off where the network or module refuses it.
    ect: Literal["auto", "on", "off"] = "auto"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("modem name must be 1-32 letters, digits, '_', '.' or '-'")
        return v

    @field_validator("pin", mode="before")
    @classmethod
    def _pin(cls, v: object) -> object:
        if v is None:
            return v
        v = str(v)
        if not _PIN.match(v):
            raise ValueError("SIM PIN must be 4 to 8 digits")
        return v

    @field_validator("family", mode="before")
    @classmethod
    def _family(cls, v: object) -> object:
        if isinstance(v, str) and v not in FAMILIES:
            raise ValueError(f"unknown family, expected one of {', '.join(FAMILIES)}")
        return v


class Config(Strict):
    # a SQLite file (relative to the config's folder), or postgresql://user@host/db for a
    # database shared by several boxes (docs/schema.md)
    database: str = "modem-dialer.db"
    # How long journal writes wait for a database another process keeps locked (a backup,
    # `sqlite3` open in a shell) before a run stops starting calls (docs/schema.md).
    database_lock_limit: Duration = timedelta(seconds=60)
    default_region: str = "FR"
    modems: list[ModemConfig] = Field(default_factory=list)
    # Cache of synthesised prompts (--say); relative to the config file.
    cache_dir: str = ".cache/modem-dialer"
    tts_voice: str = "en"
    # Per-modem/SIM limits and rotation rules used by campaigns (config_campaign.py).
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # Human advisors for transfers from IVR flows (config_ivr.py).
    advisors: AdvisorsConfig = Field(default_factory=AdvisorsConfig)
    # People, groups, escalation policies, HTTP API (config_alerting.py).
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    # Incoming calls: answer with a flow or reject, per bank and per modem (config_inbound.py).
    inbound: InboundConfig = Field(default_factory=InboundConfig)
    # Signed JSON POSTs of events, through a persistent outbox (config_webhooks.py).
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    # What incoming SMS mean: STOP keywords per language, acknowledgements (config_sms.py).
    sms: SmsConfig = Field(default_factory=SmsConfig)

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            from .store.pg import url_problem

            problem = url_problem(v)
            if problem is not None:
                raise ValueError(f"not a valid PostgreSQL URL ({problem})")
        elif "://" in v:
            raise ValueError("a SQLite file path, or a postgresql://user@host/dbname URL")
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


class LoadedConfig:
    """The validated config plus where it came from (for resolving relative paths)."""

    def __init__(self, config: Config, path: Path | None) -> None:
        self.config = config
        self.path = path
        self.base = path.parent if path else Path.cwd()

    def resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    @property
    def database_path(self) -> Path | str:
        """The SQLite file (resolved against the config's folder), or the PostgreSQL DSN as written."""
        if self.config.database.startswith(("postgresql://", "postgres://")):
            return self.config.database
        return self.resolve(self.config.database)

    @property
    def spool_path(self) -> Path | None:
        """PostgreSQL: the local file next to the config that keeps the calls' journal steps
        while the server is away (store/spool.py), one per database; None for SQLite."""
        db = self.config.database
        if not db.startswith(("postgresql://", "postgres://")):
            return None
        import hashlib

        return self.base / f".modem-dialer-spool-{hashlib.sha256(db.encode()).hexdigest()[:10]}.db"


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MODEM_DIALER_CONFIG")
    if env:
        return Path(env)
    return Path("config.yaml")


def load_config(explicit: str | None = None) -> LoadedConfig:
    path = find_config(explicit)
    doc = load_yaml(path, "config file")
    return LoadedConfig(validate(doc, Config), path.resolve())
