"""Slow reads (counts and charts over a million rows) done off the event loop and reused.

A page asks :meth:`Deferred.get` with a key and a *stamp* that says when the answer is out of
date (a campaign's ``updated_at``, or a time bucket while it runs). The read runs in a worker
thread on its own connection; the page waits at most ``wait`` seconds for it and otherwise
gets the last answer (or None: "still counting") and asks again shortly. So no answer of the
console waits on a full scan, and a scan is made at most once per stamp.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from ...store import open_db
from ...store.console import ConsoleQueries

WAIT = 0.2      # s a page waits for a slow read before answering without it


class Deferred:
    def __init__(self, database: Path | str, wait: float = WAIT) -> None:
        self.database = database
        self.wait = wait
        self.cache: dict[Hashable, tuple[Hashable, Any]] = {}
        self.tasks: dict[Hashable, asyncio.Future] = {}

    def _read(self, fn: Callable[[ConsoleQueries], Any]) -> Any:
        conn = open_db(self.database)
        try:
            return fn(ConsoleQueries(conn))
        finally:
            conn.close()

    async def get(self, key: Hashable, stamp: Hashable, fn: Callable[[ConsoleQueries], Any]) -> Any:
        hit = self.cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        task = self.tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._read, fn))
            self.tasks[key] = task

            def done(t: asyncio.Future, key: Hashable = key, stamp: Hashable = stamp) -> None:
                self.tasks.pop(key, None)
                if not t.cancelled() and t.exception() is None:
                    self.cache[key] = (stamp, t.result())
            task.add_done_callback(done)
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(asyncio.shield(task), self.wait)
        return hit[1] if hit is not None else None
