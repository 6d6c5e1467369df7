"""What alerting reads of the loaded config file, declared as protocols.

As ``call/settings.py`` does for the call layer: the file is assembled above (``config/``)
and ``config.LoadedConfig`` satisfies these protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..call.settings import ProcessSettings
from .config import AlertingConfig


class AlertSettings(ProcessSettings, Protocol):
    """The keys of config.yaml an alert reads: its section, and the region, voice, cache."""

    @property
    def alerting(self) -> AlertingConfig: ...


class LoadedAlertConfig(Protocol):
    """The loaded file: its settings and paths relative to it."""

    @property
    def config(self) -> AlertSettings: ...
    def resolve(self, p: str) -> Path: ...
