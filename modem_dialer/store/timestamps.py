"""How the store writes time: UTC ISO-8601 text with milliseconds, e.g. ``2025-03-01T09:30:05.123Z``.

Why text and not unix floats: the rows stay readable in the ``sqlite3`` shell and in
exports for regulators, and because the format has a fixed width and always ends in
``Z`` the strings sort (and compare with ``<=``) in time order, so indexes on them work.
"""

from __future__ import annotations

from datetime import datetime, timezone

_FORMAT = "%Y-%m-%dT%H:%M:%S"


def utc_now() -> datetime:
    """The wall clock in UTC: the time source for every stored timestamp."""
    return datetime.now(timezone.utc)


def to_ts(when: datetime) -> str:
    """Format an aware datetime as the store's timestamp text.

    A naive datetime is refused: guessing its zone is how local-time bugs start.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: the store needs an aware (UTC) datetime")
    u = when.astimezone(timezone.utc)
    return f"{u.strftime(_FORMAT)}.{u.microsecond // 1000:03d}Z"


def from_ts(text: str) -> datetime:
    """Parse a stored timestamp back into an aware UTC datetime."""
    return datetime.strptime(text, _FORMAT + ".%fZ").replace(tzinfo=timezone.utc)


def now_ts() -> str:
    return to_ts(utc_now())
