"""This process as one box of the bank: registration, heartbeat, take-over of lost boxes.

``serve`` and ``campaign run`` each run one :class:`BoxKeeper` (docs/scale-out.md). At
start-up it registers the box (closing the calls the box's last run left open and
releasing its contacts); then every quarter lease it renews the lease through the
journal writer (so the heartbeat never waits for the disk on the loop, and a box whose
writes are stuck stops renewing: its work goes to the others, as it should), takes over
the boxes whose lease ran out, and calls its ``on_tick`` hooks (the campaign controllers
settle released contacts, the alert runner adopts alerts nobody runs).

Fencing: the lease the heartbeat writes runs out ``box_lease`` after the heartbeat ran; the
other boxes take the box over only after that. A box whose heartbeat has not gone through
for FENCE_AT of the lease (its writer stuck on a slow or locked disk, the database away, the
loop stalled) fences itself before its lease runs out: its ``on_fence`` hooks hang up its
campaign calls and start none until a heartbeat goes through again (and says why in the
log and in the calls' cause), so a take-over never finds its calls still up. A box frozen as
a whole (SIGSTOP, a paused VM) cannot act while frozen: it fences the moment it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..store.boxes import Boxes, Takeover, set_this_box
from ..store.call_journal import CallJournal, DatabaseFault
from ..store.pg import DatabaseUnreachable

log = logging.getLogger("modem_dialer.box")

# fraction of the lease after the last heartbeat at which a box that could not renew it
# fences itself: the rest of the lease is its time to hang up before another box may take
# its contacts over (three heartbeats missed: one late write is no reason)
FENCE_AT = 0.75
# A stopping box waits at most this long for its "leave" to be committed: with the database
# away (or its writer stuck) it stops anyway, as a box that died does (its lease lapses and
# another box takes its work over; its next start closes what it left open). Waiting for the
# server without a bound made `serve` ignore SIGTERM for as long as PostgreSQL was down.
LEAVE_WAIT_S = 5.0


class BoxKeeper:
    def __init__(self, conn: Any, journal: CallJournal, box: str, lease: timedelta, *,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self.journal = journal
        self.box = box
        self.lease = lease
        self.pid = os.getpid()
        self.on_lost = on_lost
        self.on_tick: list[Callable[[], Any]] = []
        # on_fence(reason) when the box fences itself, on_fence(None) when a heartbeat went
        # through again (see the module doc)
        self.on_fence: list[Callable[[str | None], None]] = []
        self.fenced: str | None = None
        self._fence_timer: asyncio.TimerHandle | None = None
        self._beat_sent: float | None = None     # monotonic time the pending heartbeat was queued
        self.lost = False
        self._last_beat: float | None = None      # monotonic time of the last renewed lease
        self._quiet_until = 0.0
        self.registered = False
        self._task: asyncio.Task | None = None
        set_this_box(box)

    @property
    def interval(self) -> float:
        return self.lease.total_seconds() / 4

    def register(self) -> list[int]:
        """Before any call (on the loop's connection): the calls of the box's last run closed."""
        closed = Boxes(self.conn).register(self.box, self.lease, pid=self.pid)
        self.registered = True
        if closed:
            log.info("box %s: closed %d call(s) interrupted by the last stop: %s", self.box, len(closed), closed)
        return closed

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"box-{self.box}")
        # the lease register() wrote counts from now; so does the gap tick() measures: a box
        # whose first heartbeat waited a whole lease (the database away right after its
        # start) must not take over the others before they could beat again either
        now = time.monotonic()
        self._last_beat = now
        self._arm_fence(now)

    def _arm_fence(self, beat_at: float) -> None:
        """The lease written at ``beat_at`` (monotonic: the loop's clock) is this box's until
        ``beat_at + lease``; fence at FENCE_AT of it unless a later heartbeat goes through."""
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        lease = self.lease.total_seconds()
        self._fence_timer = asyncio.get_running_loop().call_at(beat_at + FENCE_AT * lease, self._fence, beat_at)

    def _fence(self, beat_at: float) -> None:
        self._fence_timer = None
        if self.lost or self.fenced is not None:
            return
        now = time.monotonic()
        # why: a heartbeat stuck in the journal writer (disk, lock, database), or none sent
        # (this process was stalled)
        why = (f"a heartbeat has waited {now - self._beat_sent:.1f} s for the database" if self._beat_sent is not None
               else "no heartbeat could be sent (the process stalled)")
        self.fenced = (f"box {self.box} fenced: its lease not renewed for {now - beat_at:.1f} s "
                       f"(box_lease {self.lease.total_seconds():g} s; {why})")
        log.error("%s: hanging up its calls, no new calls until a heartbeat goes through (another box may "
                  "take its contacts over when the lease runs out)", self.fenced)
        self._tell_fence(self.fenced)

    def _unfence(self) -> None:
        if self.fenced is None:
            return
        log.warning("box %s: heartbeat written again: fence lifted, calls resume", self.box)
        self.fenced = None
        self._tell_fence(None)

    def _tell_fence(self, reason: str | None) -> None:
        for hook in list(self.on_fence):
            try:
                hook(reason)
            except Exception:       # one hook's bug must not stop the others hanging up
                log.exception("box %s: fence hook failed", self.box)

    async def _run(self) -> None:
        # a fixed cadence: a slow tick (a heartbeat waiting behind a group commit, the hooks'
        # reads) does not push the next heartbeat back by its own length, so the leases
        # written stay about ``interval`` apart as long as the writer keeps up
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + self.interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
            try:
                await self.tick()
            except DatabaseFault as exc:
                # the writer reports it to its listeners; the lease lapses and the others take over
                log.warning("box %s: heartbeat not written: %s", self.box, exc)
            except DatabaseUnreachable as exc:
                # PostgreSQL away during the tick's reads: the next tick tries again (the
                # heartbeat task must not end, or the box would be declared lost once back)
                log.warning("box %s: database unreachable during the heartbeat: %s", self.box, exc)
            if self.lost:
                return

    async def tick(self) -> list[Takeover]:
        """Renew the lease, take over lost boxes, run the hooks."""
        def beat(c: Any) -> tuple[float, bool]:
            # the lease runs from when the row is written (monotonic, for the fence timer)
            return time.monotonic(), Boxes(c).heartbeat(self.box, self.lease, self.pid)
        self._beat_sent = time.monotonic()
        try:
            beat_at, ok = await self.journal.writer.run(beat)
        finally:
            self._beat_sent = None
        if not ok:
            self.lost = True
            if self._fence_timer is not None:
                self._fence_timer.cancel()
            log.error("box %s: declared lost by another box (no heartbeat for %s): its contacts and calls were "
                      "taken over; stopping", self.box, self.lease)
            if self.on_lost is not None:
                self.on_lost()
            return []
        self._arm_fence(beat_at)
        if self.fenced is not None and time.monotonic() < beat_at + FENCE_AT * self.lease.total_seconds():
            self._unfence()
        taken: list[Takeover] = []
        now = time.monotonic()
        last, self._last_beat = self._last_beat, now
        if last is not None and now - last > self.lease.total_seconds():
            # this box could not beat for a whole lease either (database unreachable, loop
            # stalled): the others' leases may have lapsed for the same reason and they are
            # about to renew (and replay what they journaled meanwhile). Take nobody over
            # until one lease has passed with this box beating.
            self._quiet_until = now + self.lease.total_seconds()
        if now < self._quiet_until:
            return taken
        for name in Boxes(self.conn).expired(self.box):
            t = await self.journal.writer.run(lambda c, n=name: Boxes(c).take_over(n))
            if t is not None:
                log.warning("box %s: box %s lost (no heartbeat for %s): %d call(s) closed as interrupted, "
                            "%d contact(s) and %d alert(s) taken over", self.box, t.box, self.lease,
                            len(t.calls), t.contacts, t.alerts)
                taken.append(t)
        for hook in list(self.on_tick):
            try:
                hook()
            except DatabaseUnreachable as exc:      # PostgreSQL away: the hook runs again next tick
                log.warning("box %s: tick hook not run, database unreachable: %s", self.box, exc)
            except Exception:       # one hook's bug must not stop the heartbeat
                log.exception("box %s: tick hook failed", self.box)
        return taken

    async def close(self) -> None:
        """A clean stop: the box leaves (what it still holds is released at once)."""
        if self._fence_timer is not None:
            self._fence_timer.cancel()
            self._fence_timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.lost and self.registered:
            leave = asyncio.ensure_future(self.journal.writer.run(lambda c: Boxes(c).leave(self.box, self.pid)))
            try:
                # the server away: the leave waits in the writer behind the others, whose
                # close gives them up in time (service.py UNREACHABLE_STOP_WAIT_S)
                wait = 0.0 if self.journal.writer.unreachable is not None else LEAVE_WAIT_S
                await asyncio.wait_for(asyncio.shield(leave), wait)
            except DatabaseFault:
                pass
            except TimeoutError:
                # the write stays queued: the writer's close commits it or gives it up
                leave.add_done_callback(lambda f: f.cancelled() or f.exception())
                log.warning("box %s: leaving not recorded within %g s (database %s); stopping anyway: "
                            "the others take its work over when its lease runs out", self.box, wait,
                            "unreachable" if self.journal.writer.unreachable is not None else "busy")
