"""The ``advisors:`` section of config.yaml: Human advisors reachable by transfer from IVR flows."""

from __future__ import annotations

from .yamlfile import Strict


class AdvisorsConfig(Strict):
    pass
