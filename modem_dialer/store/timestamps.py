"""How the store writes time: UTC ISO-8601 text with milliseconds, e.g. ``2025-03-01T09:30:05.123Z``.

Why text and not unix floats: the rows stay readable in the ``sqlite3`` shell and in
exports for regulators, and because the format has a fixed width and always ends in
``Z`` the strings sort (and compare with ``<=``) in time order, so indexes on them work.
"""

from __future__ import annotations

from datetime import datetime, timezone

_UTC = timezone.utc


def utc_now() -> datetime:
    """The wall clock in UTC: the time source for every stored timestamp."""
    return datetime.now(_UTC)


def to_ts(when: datetime) -> str:
    """Format an aware datetime as the store's timestamp text.

    A naive datetime is refused: guessing its zone is how local-time bugs start.
    """
    if when.tzinfo is not _UTC:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"naive datetime {when!r}: the store needs an aware (UTC) datetime")
        when = when.astimezone(_UTC)
    # The text up to the second is made once a second and kept: every journal row takes one
    # or two timestamps (on the loop and on the writer thread), and this is half the cost of
    # formatting the whole (isoformat, itself a third of strftime's cost; the year always has
    # four digits, strftime drops the zeros before year 1000). One tuple, read and replaced
    # whole: two threads never see a second's number with another second's text.
    global _second
    second = when.second + 60 * (when.minute + 60 * (when.hour + 24 * when.toordinal()))
    cached = _second
    if cached[0] != second:
        cached = (second, when.replace(microsecond=0, tzinfo=None).isoformat())
        _second = cached
    return f"{cached[1]}.{when.microsecond // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")


def from_ts(text: str) -> datetime:
    """Parse a stored timestamp back into an aware UTC datetime.

    ``fromisoformat`` (Python 3.11 reads the ``Z``): a hundred times cheaper than
    ``strptime``, and the campaign reads one per call."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None or len(text) != 24 or not text.endswith("Z"):
        raise ValueError(f"not a store timestamp: {text!r}")
    return when


def now_ts() -> str:
    return to_ts(utc_now())
