"""The ``alerting:`` section of config.yaml: People, groups, escalation policies and the HTTP API of the alerting service."""

from __future__ import annotations

from .yamlfile import Strict


class AlertingConfig(Strict):
    pass
