"""What ``campaign run`` reads of the loaded config file, declared as protocols.

As ``call/settings.py`` does for the call layer: the keys are named here, the file is
assembled above (``config/``) and ``config.LoadedConfig`` satisfies these protocols, so
the campaign layer never loads the alerting section.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from ..call.settings import CallSettings
from ..modems.options import ModemConfig
from ..webhook_targets import WebhookTarget
from .limits import LimitsConfig


class CampaignSettings(CallSettings, Protocol):
    """The keys of config.yaml a campaign run reads, on top of the call layer's."""

    @property
    def modems(self) -> Sequence[ModemConfig]: ...
    @property
    def limits(self) -> LimitsConfig: ...
    @property
    def webhooks(self) -> Sequence[WebhookTarget]: ...
    @property
    def database_lock_limit(self) -> timedelta: ...
    def modem(self, name: str) -> ModemConfig: ...


class LoadedCampaignConfig(Protocol):
    """The loaded file as ``campaign run`` sees it."""

    @property
    def config(self) -> CampaignSettings: ...
    @property
    def path(self) -> Path | None: ...
    @property
    def database_path(self) -> Path | str: ...
    @property
    def spool_path(self) -> Path | None: ...
    def resolve(self, p: str) -> Path: ...
