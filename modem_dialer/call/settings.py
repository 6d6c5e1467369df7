"""What the call layer reads of the loaded config file, declared as protocols.

The whole file is assembled above (``config/``, which sits over every layer whose section it
holds); a module here names only the keys it reads, so loading it never loads the upper
layers' sections. ``config.LoadedConfig`` satisfies these protocols (mypy checks it where
the service and ``campaign run`` pass it down).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .advisors import AdvisorsConfig
from .inbound_config import InboundConfig


class ProcessSettings(Protocol):
    """The top-level keys every room that speaks to people reads: region, voice, cache."""

    @property
    def default_region(self) -> str: ...
    @property
    def tts_voice(self) -> str: ...
    @property
    def cache_dir(self) -> str: ...


class CallSettings(ProcessSettings, Protocol):
    """The keys of config.yaml a call, a flow or the inbound desk reads."""

    @property
    def advisors(self) -> AdvisorsConfig: ...
    @property
    def inbound(self) -> InboundConfig: ...


class LoadedCallConfig(Protocol):
    """The loaded file: its settings and paths relative to it."""

    @property
    def config(self) -> CallSettings: ...
    def resolve(self, p: str) -> Path: ...
