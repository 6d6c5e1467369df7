"""The box keeper (campaign/box.py): heartbeat, take-over of a silent box, a lost box told so,
no take-over right after this box's own stall. Two keepers, each with its own journal writer,
on one real SQLite file; the processes themselves are in test_multibox.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from modem_dialer.campaign.box import BoxKeeper
from modem_dialer.store import Journal, open_db
from modem_dialer.store.boxes import Boxes, set_this_box, this_box
from modem_dialer.store.call_journal import CallJournal

LEASE = timedelta(seconds=0.5)
SILENT_S = 0.65          # longer than the lease (as 1.3 s was to a 1 s one)


@contextlib.asynccontextmanager
async def two_journals(tmp_path: Path) -> AsyncIterator[tuple[list, list[CallJournal]]]:
    """Two connections to one SQLite file, each with its own journal writer (two boxes);
    closed, and this process's box name restored, after the test."""
    before = this_box()
    conns = [open_db(tmp_path / "k.db") for _ in range(2)]
    journals = [CallJournal(c) for c in conns]
    try:
        yield conns, journals
    finally:
        for j in journals:
            await j.aclose()
        for c in conns:
            c.close()
        set_this_box(before)


async def test_a_silent_box_is_taken_over_once_and_told_it_was_lost(tmp_path):
    lost: list[str] = []
    async with two_journals(tmp_path) as (conns, journals):
        k2 = BoxKeeper(conns[1], journals[1], "b2", LEASE, on_lost=lambda: lost.append("b2"))
        k2.register()
        call = Journal(conns[1]).start_call("+33612345601", "gsm0")     # b2 is in a call
        k1 = BoxKeeper(conns[0], journals[0], "b1", LEASE)
        k1.register()
        assert await k1.tick() == [] and await k2.tick() == []
        await asyncio.sleep(SILENT_S)            # b2 says nothing for more than its lease
        # b1 was silent as long: it takes nobody over until it has beaten for a lease
        k1._last_beat = time.monotonic() - SILENT_S
        assert await k1.tick() == []
        k1._quiet_until = 0.0
        taken = await k1.tick()
        assert [(t.box, t.calls) for t in taken] == [("b2", [call])]
        assert await k1.tick() == []             # once
        assert await k2.tick() == [] and k2.lost and lost == ["b2"]
        assert {b["name"]: b["status"] for b in Boxes(conns[0]).list()} == {"b1": "up", "b2": "lost"}
        await k1.close()
        await k2.close()                         # a lost box does not 'leave'
        assert {b["name"]: b["status"] for b in Boxes(conns[0]).list()} == {"b1": "stopped", "b2": "lost"}


async def test_a_box_whose_first_beat_comes_a_lease_after_its_start_takes_nobody_over(tmp_path):
    """Two boxes started just before the database went away: the first heartbeat of each
    comes more than a lease after its start. The first back must not take the other over
    (it used to: the quiet lease counted only from a box's first heartbeat)."""
    async with two_journals(tmp_path) as (conns, journals):
        k2 = BoxKeeper(conns[1], journals[1], "b2", LEASE)
        k2.register()
        k1 = BoxKeeper(conns[0], journals[0], "b1", LEASE)
        k1.register()
        k1.start()
        assert k1._task is not None
        k1._task.cancel()                        # this test beats by hand
        await asyncio.sleep(SILENT_S)            # no heartbeat from either for more than a lease
        assert await k1.tick() == []             # b1 back first: b2 not taken over
        assert await k2.tick() == [] and not k2.lost
        assert {b["name"]: b["status"] for b in Boxes(conns[0]).list()} == {"b1": "up", "b2": "up"}
        await k1.close()
        await k2.close()
