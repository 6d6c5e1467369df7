"""Durations with units (``30s``, ``10m``, ``2h``, ``1d``) as written in campaign and config files."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"10m"`` → 10 minutes. A bare number is refused: ``3`` could mean seconds or days."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration needs a unit, e.g. 30s, 10m, 2h or 1d")
    m = _DURATION.match(value)
    if not m:
        raise ValueError("not a duration (use a number and a unit: 30s, 10m, 2h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


def format_duration(td: timedelta) -> str:
    s = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


# A pydantic field type: accepts "10m", keeps a timedelta, dumps back to "10m".
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
