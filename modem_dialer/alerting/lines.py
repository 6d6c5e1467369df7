"""What alerting borrows from its host: a line of the modem bank, lent by priority.

The bank itself is the service's (``service/bank.py``, which implements these protocols);
alerting names only what it uses of it, so it sits below the service in the layers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from enum import IntEnum
from typing import Any, Protocol

from ..call.line import Line


class Priority(IntEnum):
    """Who gets the next free line: an alert before an SMS before a campaign call."""

    ALERT = 0
    SMS = 1
    CAMPAIGN = 5


class LentLine(Protocol):
    """A modem lent for one use: its name, its line (None while closed), SMS counters."""

    @property
    def name(self) -> str: ...
    line: Line | None
    sms_sent: int
    sms_failed: int


class LineLender(Protocol):
    """The bank as alerting sees it."""

    @property
    def on_line_opened(self) -> list[Callable[[Any], None]]: ...
    def lease(self, priority: Priority = ..., *, need_audio: bool = ...,
              timeout: float | None = ...) -> AbstractAsyncContextManager[LentLine]: ...
    def count_call(self, slot: Any, outcome: str) -> None: ...
