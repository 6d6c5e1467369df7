"""Waits on an asyncio event that a cancel always ends (any layer may use them)."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds have passed; True if it is set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python < 3.12 a cancel that lands in
    the loop turn where the event is set is swallowed (wait_for returns the event's result,
    CPython gh-86296), and a loop that only a cancel ends (a service worker, the bank's health
    loop) goes round again: the service's stop waited for it forever, and ``serve`` did not
    exit on SIGTERM (seen in the multi-box tests on PostgreSQL, where a campaign's change is
    heard as the stop cancels the workers). ``asyncio.wait`` raises the cancel whatever the
    event did meanwhile."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
