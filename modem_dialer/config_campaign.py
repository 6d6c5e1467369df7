"""The ``limits:`` section of config.yaml: Per-modem/SIM limits for campaigns (calls per hour/day, minutes per day, rotation)."""

from __future__ import annotations

from .yamlfile import Strict


class LimitsConfig(Strict):
    pass
