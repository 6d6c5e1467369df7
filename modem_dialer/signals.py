"""Stop signals routed to an event loop, where signals can reach it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any


def on_signals(loop: asyncio.AbstractEventLoop, signals: Iterable[int], callback: Callable[..., Any],
               *args: Any) -> Callable[[], None]:
    """Call ``callback(*args)`` on ``loop`` when one of ``signals`` arrives; returns the undo.

    Only the main thread receives signals (``add_signal_handler`` refuses elsewhere): a command
    run on another thread — the tests run the CLI in-process, in a thread beside the simulated
    bank's loop — installs nothing and is stopped as any asyncio task is, by cancellation."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    sigs = list(signals)
    for sig in sigs:
        loop.add_signal_handler(sig, callback, *args)

    def undo() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)
    return undo
