"""What alerting reads of the loaded config file, declared as protocols.

As ``call/settings.py`` does for the call layer: the file is assembled above (``config/``)
and ``config.LoadedConfig`` satisfies these protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .config import AlertingConfig


class AlertSettings(Protocol):
    """The keys of config.yaml an alert reads: its section, the region, the voice, the cache."""

    @property
    def alerting(self) -> AlertingConfig: ...
    @property
    def default_region(self) -> str: ...
    @property
    def tts_voice(self) -> str: ...
    @property
    def cache_dir(self) -> str: ...


class LoadedAlertConfig(Protocol):
    """The loaded file: its settings and paths relative to it."""

    @property
    def config(self) -> AlertSettings: ...
    def resolve(self, p: str) -> Path: ...
