"""The campaign controller: every free, healthy line dials the next due contact.

One worker per line. A worker takes the next due contact, runs the calling rules
(allow / deny / defer, each journaled in ``campaign_log``), claims the contact and the
number (never one number in two calls at once), places the call, and moves the contact
to its next status by the retry rules. Writes go through the journal writer thread
(store/writer.py): the claim commits together with the call row before ATD, the other
steps are queued in order and committed in groups, so a kill -9 loses nothing the
controller acted on: at start-up :meth:`Controller.recover` settles the contact that was
in flight from its journaled call. A database that cannot take writes (locked too long,
disk full) stops the run: no new calls; a full disk also hangs up the calls in progress.

**Armed next call** (issue 10): right after a line's ATD, its worker already takes the
line's next contact (rules, claim, call row: :meth:`Controller._arm_next`) and the writer
commits that row while the current call plays. When the line is free the rules are
checked again at that moment (suppression, opt-out, consent, caps, hours, a call to the
number open elsewhere) and ATD goes at once: the row's commit (an fsync, 40-200 ms on an
SD card) is off the line's critical path. A contact that is no longer allowed, a pause,
a stop or a line that cannot dial lets the armed contact go: its never-dialed row is
deleted and the contact is pending again (with the rule's decision, if a rule said no).
After a kill -9 the armed row cannot be told from a row whose ATD had just been sent
(that is the price of not waiting): recovery closes it ``interrupted`` ("maybe dialed"),
the calling rules' caps count it, but it is not one of the contact's attempts (most armed
rows at a kill were never dialed). A fenced box (campaign/box.py) arms nothing and lets an
armed contact go. See docs/architecture.md "Armed next call".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..call.line import Line
from ..call.outcome import LINE_BUSY
from ..call.session import MIN_RING_TIMEOUT, place_call
from ..numbers import dial_string
from ..store import Campaigns, Compliance, Connection, Contact, Journal, from_ts, to_ts, utc_now
from ..store.boxes import Boxes, Claim, Leases, this_box
from ..store.call_journal import CallJournal, DatabaseFault
from ..store.campaign_log import CampaignLog
from ..store.compliance import DialFacts
from ..store.pg import DatabaseUnreachable
from . import rules as R
from .limits import LimitsConfig
from .pool import Pool, PoolSource, Slot
from .retry import FINAL_BY_RULE, after_attempt
from .script import CallState, ScriptFor, with_opt_out
from .spec import CampaignSpec

log = logging.getLogger("modem_dialer.campaign")

# Another process has a call open to the number: look again after this long.
IN_CALL_DEFER = timedelta(minutes=2)
# A dial refused because a call rang in on the line: the contact is due again after this.
LINE_BUSY_RETRY = timedelta(seconds=1)
# A read that failed while the writer reaches the server is tried again after this (s)
READ_RETRY_S = 0.1
FENCE_SWEEP_S = 0.1     # while fenced, how often a call that got on its modem meanwhile is looked for
# How often the workers read the campaign's status (a `campaign pause` from another process):
# once per controller in this interval, not once per worker and call (a round trip each on
# PostgreSQL). A paused worker looks again this often too: a `campaign resume` takes effect
# within it. Patchable (tests).
PAUSE_LOOK_S = 0.25
# Arm each line's next call (contact claimed, call row committed) while its current call
# plays, so ATD goes the moment the line is free (module doc). Patchable for tests/benches.
ARM_AHEAD = True
# Contacts looked at for one armed call when those read as due were claimed by another box
# meanwhile (each costs one read); past this the line's next turn decides, as without arming
ARM_TRIES = 3
# A read of the due contacts that found none stands for the workers that look within this
# (s): when a call ends, every waiting worker wakes (_until_changed) and would read the queue
# and the next pending time again, two round trips each on the loop (PostgreSQL), for the
# same answer; a change after the read wakes the one that read it too
NOTHING_DUE_S = 0.05


@dataclass
class _Armed:
    """A line's next call, claimed and written ahead of its ATD (see the module doc)."""
    contact: Contact
    modem: str                          # the line it was armed for
    row: asyncio.Future[int | None]     # the call id once committed; None: not claimed
    at: datetime                        # the row's time as stored (its created_at)
    ahead: bool                         # armed during the line's last call (else: for a dial now)
    # the rules' records read again for the dial, started as the line's last call ended
    # (_prefetch_recheck); None: read at the dial
    facts: asyncio.Future[DialFacts] | None = None
    # the records the arming read, and the journal's mark taken just before (facts_mark): at
    # the dial they stand for a read again when no change to the number was heard since
    read: DialFacts | None = None
    mark: object | None = None
    # the mark taken as the read of ``facts`` was asked
    facts_mark: object | None = None


class _Facts:
    """The calling rules' records for one decision, read in one round trip
    (``Compliance.dial_facts``: suppression, last refusal, attempt times, a call open to the
    number) instead of one read each; consent (only campaigns that require it) is read live.
    ``own_at``: at the dial of an armed call, that call's own row is no attempt yet, and
    counting it would make a contact at its cap defer itself."""

    def __init__(self, records: Compliance, facts: DialFacts, own_at: datetime | None = None) -> None:
        self.records, self.facts, self.own_at = records, facts, own_at

    def is_suppressed(self, number: str) -> bool:
        return self.facts.suppressed if number == self.facts.number else self.records.is_suppressed(number)

    def find_consent(self, number: str, scope: str, at: datetime | None = None) -> dict[str, Any] | None:
        return self.records.find_consent(number, scope, at)

    def last_refusal(self, number: str) -> datetime | None:
        return self.facts.last_refusal if number == self.facts.number else self.records.last_refusal(number)

    def attempt_times(self, number: str, since: datetime) -> list[datetime]:
        if number != self.facts.number:
            return self.records.attempt_times(number, since)
        times = [t for t in self.facts.attempts if t >= since]
        if self.own_at is not None and self.own_at in times:
            times.remove(self.own_at)
        return times


def _complete(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Flag(asyncio.Event):
    """An asyncio.Event that also completes the futures of :meth:`Controller._until` waiting
    on it: one future (with a timer) for a flag and the stop, where a task per event and
    ``asyncio.wait`` cost several times more. At a campaign's end every idle worker waits
    this way and wakes at each call that ends (issue 10: CPU per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.futures: list[asyncio.Future[None]] = []

    def set(self) -> None:
        super().set()
        for fut in self.futures:
            if not fut.done():
                fut.set_result(None)


class _InFlight(set[str]):
    """The numbers claimed or being decided; ``changed`` is set whenever one is let go (a
    worker with nothing due but contacts in flight waits for it rather than re-reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = _Flag()

    def discard(self, number: object, /) -> None:
        super().discard(number)
        self.changed.set()


class View(Protocol):
    def event(self, kind: str, text: str) -> None: ...


class _NullView:
    def event(self, kind: str, text: str) -> None:
        log.info("%s: %s", kind, text)


class LineSource(Protocol):
    """Where the controller's lines come from: its own :class:`~.pool.PoolSource` (``campaign
    run``) or the service's bank, which lends a line per call by priority (service/lines.py)."""

    @property
    def slots(self) -> list[Slot]: ...

    async def open(self, ctrl: Controller, now: datetime) -> int:
        """Get ready; the number of workers to run. UserError when nothing can ever dial."""
        ...

    def turn(self, index: int, now: datetime) -> AbstractAsyncContextManager[tuple[Slot | None, float]]:
        """Worker ``index`` wants a line for one call: (slot, 0) held for the block, or (None,
        seconds to wait) when no line may dial now."""
        ...

    def close(self) -> None: ...


class Controller:
    def __init__(self, conn: Connection, campaign_id: int, spec: CampaignSpec,
                 lines: list[Line] | LineSource, limits: LimitsConfig, script_for: ScriptFor, *,
                 clock: Callable[[], datetime] = utc_now, min_ring_timeout: float = MIN_RING_TIMEOUT,
                 view: View | None = None, poll: float = 1.0, batch: int | None = None,
                 journal: CallJournal | None = None, arm_ahead: bool | None = None) -> None:
        self.conn = conn
        self.cid = campaign_id
        self.spec = spec
        self.rules = spec.rule_set()
        self.clock = clock
        self.campaigns = Campaigns(conn, clock)
        # the box this controller claims contacts for (docs/scale-out.md)
        self.box = this_box()
        self.leases = Leases(conn, clock)
        self.spread = (0, 1)          # (this box's place, boxes up): see _fill
        self.compliance = Compliance(conn, clock)
        # the writer thread is the only writer while calls run (journal=None: one of our own)
        self._own_journal = journal is None
        self.journal = journal if journal is not None else CallJournal(conn, clock=clock)
        self.clog = CampaignLog(conn, campaign_id, clock, submit=self.journal.submit)
        self.db_fault: DatabaseFault | None = None
        self._reads_away: DatabaseUnreachable | None = None     # PostgreSQL: a read failed
        self.fenced: str | None = None      # this box could not renew its lease: why (fence())
        self._calls: dict[asyncio.Task, Line] = {}       # place_call tasks, for fence()
        self._fenced_calls: set[asyncio.Task] = set()
        self.script_for = script_for
        self.source: LineSource = PoolSource(lines, limits) if isinstance(lines, list) else lines
        self.limits = limits
        self.min_ring_timeout = min_ring_timeout
        self.ring_timeout = spec.ring_timeout.total_seconds()
        self.view: View = view or _NullView()
        self.poll = poll
        self.batch = batch
        self.in_flight = _InFlight()            # numbers claimed or being decided: no other look at them
        self.in_call = 0                         # calls placed and not yet over (armed ones are not)
        self.buffer: deque[Contact] = deque()
        self._nothing_due_at = -NOTHING_DUE_S      # monotonic time of the last read that found none
        self._pending_read: tuple[float, datetime | None] = (-NOTHING_DUE_S, None)   # _next_pending_at
        self.stopping = False
        self.hard_stop = False
        self.paused = False
        self._paused_read = (-math.inf, False)    # (monotonic time, status) of the last look
        # how often: PAUSE_LOOK_S, or longer while the campaign's changes are heard
        # (status_changed(): the service on PostgreSQL)
        self.pause_look_s = PAUSE_LOOK_S
        # the status a stop leaves in the database: the service keeps 'running' so that its
        # next start resumes the campaign
        self.stopped_status = "stopped"
        self.waiting_until: datetime | None = None
        self.done = asyncio.Event()
        self._stop_event = _Flag()
        # set when a hold ends (the lease renewed, the writer reached the server again): the
        # held workers look again at once rather than at the end of their poll
        self._unheld = _Flag()
        # set when contacts a lost box held were settled here: the idle workers look again
        self._wake = _Flag()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Future] = set()   # fence()'s releases, answered calls' settling
        self._claims: dict[int, tuple] = {}     # contact id -> its "allow" log row, written with the claim
        # contact id -> the journal's facts_mark taken before its decision's read (to its claim)
        self._marks: dict[int, object | None] = {}
        # a worker that keeps its line (``campaign run``'s pool) arms that line's next call; the
        # service's bank lends a line per call, alerts first, so there a worker arms its own
        # next call and binds it to the line it is lent at the dial (``binds_at_dial``)
        self.binds_at_dial = bool(getattr(self.source, "binds_at_dial", False))
        self.arm_ahead = ((ARM_AHEAD if arm_ahead is None else arm_ahead)
                          and (getattr(self.source, "keeps_lines", False) or self.binds_at_dial))
        self._armed: dict[int, _Armed] = {}     # worker -> its line's next call (module doc)
        self._arming: dict[int, asyncio.Task] = {}     # worker -> its next call being armed
        self._deciding: dict[int, asyncio.Future] = {}   # worker -> a deny/defer queued while arming
        self.status_counts: Counter[str] = Counter()
        self.outcome_counts: Counter[str] = Counter()
        self.calls_this_run = 0
        self.started_mono = time.monotonic()
        self.finished_this_run = 0
        # controller-only CPU seconds (rules, dispatch, bookkeeping): the loop thread's own time
        # (thread_time: process_time would add what the audio and journal threads ran meanwhile)
        self.cpu = 0.0

    @property
    def pool(self) -> Pool | None:
        """The standalone pool (bridge transfers borrow its free lines); None in the service."""
        return getattr(self.source, "pool", None)

    # ---- start-up --------------------------------------------------------------------
    def recover(self, close_open_calls: bool = True) -> tuple[list[int], int]:
        """Close calls this box's killed process left open; settle the campaign's released contacts.

        The service closes its box's open calls once at its own start (its alerts may be in
        a call now) and releases the box's contacts (campaign/box.py), so it passes
        ``close_open_calls=False``. Other boxes' in-progress contacts are theirs: only the
        released ones (lease_box NULL) are settled. A released contact whose latest call
        was journaled (there are more calls than counted attempts) gets that call's outcome
        through the retry rules; one that never reached ATD goes back to pending without
        an attempt.
        """
        # before any call: the loop's own connection, synchronously
        interrupted: list[int] = []
        if close_open_calls:
            interrupted = self.journal.read.recover_interrupted(self.box)
            self.leases.release(self.box)
        settled = 0
        for c in self.leases.orphans(self.cid):
            settled += self._settle(self.conn, c, lease=None)
        self._spread()
        return interrupted, settled

    def _spread(self) -> None:
        """This box's share of the queue (_fill): its place among the boxes up, and their number."""
        up = Boxes(self.conn, self.clock).up()
        self.spread = (up.index(self.box), len(up)) if self.box in up else (0, 1)

    def settle_released(self) -> int:
        """On the box's heartbeat: contacts released by a lost box are settled (through the
        writer, fenced: when two boxes try, one writes)."""
        if self.stopping:
            return 0
        self._spread()
        orphans = self.leases.orphans(self.cid)
        last = None
        for c in orphans:
            last = self.journal.submit(self._settle_released, c.id)
        if last is not None:
            # re-read only then: a GROUP BY over a 10-million-contact campaign is not for every beat
            self.status_counts = Counter(self.campaigns.counts(self.cid))
            # the idle lines look at the due contacts again once these are settled (the writer
            # commits in order), not at the end of their poll
            asyncio.wrap_future(last).add_done_callback(self._settled)
        return len(orphans)

    def _settled(self, fut: asyncio.Future) -> None:
        if not fut.cancelled():
            fut.exception()         # retrieved: a failed write is the fault listeners' to report
        self._wake.set()

    def _settle_released(self, conn: Connection, contact_id: int) -> None:
        fresh = Campaigns(conn, self.clock).get_contact(contact_id)
        if fresh is not None and Leases(conn).lease_of(contact_id) == ("in_progress", None):
            self._settle(conn, fresh, lease=None)

    def _settle(self, conn: Connection, c: Contact, *, lease: str | None) -> bool:
        # a dial refused because someone called in (line_busy) is not an attempt, nor an
        # armed call (written while the line's last call played) closed as interrupted with no
        # dial on record: most likely never dialed (it is dialed again, now). Its row stays:
        # the calling rules' caps still count it, as it may have been dialed in the instant
        # before the process died. Not only the latest call: an armed row cut by an earlier
        # kill -9 must not become an attempt when a later call is settled here.
        n, last = Campaigns(conn, self.clock).calls_of_contact(c.id, not_attempts=LINE_BUSY)
        journal = Journal(conn, self.clock)
        if n > c.attempts and last is not None and last["outcome"] is not None:
            opted_out = journal.has_event(last["id"], "opt_out")
            return Leases(conn, self.clock).settle(**self._apply_outcome(c, last, n - c.attempts,
                                                                         opted_out=opted_out, lease=lease))
        return Leases(conn, self.clock).settle(c.id, lease, status="pending", next_attempt_at=None,
                                               last_outcome=None, last_call_id=None, attempts=c.attempts)

    # ---- database faults -------------------------------------------------------------
    def _on_db_fault(self, fault: DatabaseFault) -> None:
        """The writer cannot write (locked past the limit, disk full): no new calls. A full
        disk also hangs up the calls in progress: their outcome could not be recorded.
        PostgreSQL unreachable is not a stop: no new calls until it is back (``_held``)."""
        if fault.kind == "unreachable":
            self.view.event("hold" if not fault.resolved else "resume",
                            f"{fault}: calls resume" if fault.resolved
                            else f"{fault}: no new calls until it is back; calls in progress finish")
            if fault.resolved:
                self._unheld.set()
            return
        if self.db_fault is None or self.db_fault.kind == "locked":
            self.db_fault = fault
        self.view.event("stop", f"{fault}: no new calls")
        self.request_stop()
        if fault.kind != "locked":
            self.request_stop()

    # ---- run -------------------------------------------------------------------------
    async def run(self) -> str:
        """Dial until every contact has a final status ('done') or a stop ('stopped')."""
        now = self.clock()
        # from the database (recover() may have moved contacts before this)
        self.status_counts = Counter(self.campaigns.counts(self.cid))
        self.outcome_counts = Counter(self.campaigns.outcome_counts(self.cid))
        remove_listener = self.journal.writer.add_fault_listener(self._on_db_fault)
        self.journal.prepare_reads()        # the lines' first rules reads need not open its connection
        workers = await self.source.open(self, now)
        if self.batch is None:
            self.batch = max(32, 2 * workers)
        self.campaigns.set_status(self.cid, "paused" if self._db_paused() else "running")
        self._tasks = [asyncio.ensure_future(self._worker(i)) for i in range(workers)]
        results: list = []
        try:
            waiter = asyncio.ensure_future(self.done.wait())
            await asyncio.wait({waiter, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
            # done, or a stop: let the workers finish their calls
            self.stopping = True
            self._stop_event.set()
            waiter.cancel()
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            # the contacts of the last answered calls, settled after their suppression read
            await asyncio.gather(*list(self._background), return_exceptions=True)
        finally:
            self.source.close()
            remove_listener()
        for r in results:
            if isinstance(r, DatabaseFault):
                self.db_fault = self.db_fault or r
            elif isinstance(r, Exception):
                raise r
        if self.db_fault is not None:
            # the owner of the writer commits what is queued when it closes it (waiting for
            # a lock up to the limit again) and tells the user
            raise self.db_fault
        # the calls' queued rows are committed before the counts are read
        await self.journal.flush()
        result = "done" if self._complete() else "stopped"
        status = "done" if result == "done" else None if self._db_paused() else self.stopped_status
        # the log row and the status in one commit (an fsync fewer before the run returns)
        self.clog.write("control", verdict=result)
        if status is not None:
            await self.journal.writer.run(lambda c: Campaigns(c, self.clock).update_campaign(self.cid, status=status))
        else:
            await self.journal.flush()
        return result

    async def close(self) -> int:
        """Stop the journal writer if this controller started it: the number of writes lost."""
        return await self.journal.aclose() if self._own_journal else 0

    def request_stop(self) -> None:
        """First call: no new dials, calls in progress finish. Second: hang up now."""
        if not self.stopping:
            self.stopping = True
            self._stop_event.set()
            self.clog.write("control", verdict="stop", calls_in_progress=self.in_call)
            self.view.event("stop", f"stopping: no new calls; {self.in_call} in progress will finish "
                                    "(signal again to hang up)")
        elif not self.hard_stop:
            self.hard_stop = True
            self.view.event("stop", f"hanging up {self.in_call} call(s)")
            for t in self._tasks:
                t.cancel()

    def _db_paused(self) -> bool:
        return self.campaigns.status_of(self.cid) == "paused"

    def _paused_now(self) -> bool:
        """Is the campaign paused? Read at most every ``pause_look_s`` for all the workers,
        and at the next look after :meth:`status_changed`."""
        t = time.monotonic()
        if t - self._paused_read[0] >= self.pause_look_s:
            self._paused_read = (t, self._db_paused())
        return self._paused_read[1]

    def status_changed(self) -> None:
        """A campaign's status changed (heard by the service: PostgreSQL's notices): the
        workers' next look reads it."""
        self._paused_read = (-math.inf, self._paused_read[1])

    def _complete(self) -> bool:
        return not self.campaigns.has_open_contacts(self.cid)

    def _next_pending_at(self) -> datetime | None:
        at, nxt = self._pending_read
        if time.monotonic() - at < NOTHING_DUE_S:
            return nxt
        nxt = self.campaigns.next_pending_at(self.cid)
        self._pending_read = (time.monotonic(), nxt)
        return nxt

    # ---- a fenced box (campaign/box.py) -------------------------------------------------
    def fence(self, reason: str | None) -> None:
        """This box could not renew its lease (``reason``): hang up its calls now and start
        none (another box may take its contacts over once the lease runs out). None: the
        lease is renewed again, calls resume. The hung-up calls say why in their cause."""
        if reason is None:
            if self.fenced is not None:
                self.fenced = None
                self.view.event("resume", "lease renewed: calls resume")
                self._unheld.set()
            return
        if self.fenced is None:
            self.fenced = reason
            up = sum(line.busy for line in self._calls.values())
            self.view.event("hold", f"{reason}: hanging up {up} call(s); no new calls")
            self._fence_sweep()
            # the armed next calls are let go now, not at their worker's next turn (it holds
            # while fenced): their contacts go back to pending under this box's lease
            loop = asyncio.get_running_loop()
            for index in list(self._armed):
                self._keep(loop.create_task(self._release(self._armed.pop(index))))

    def _keep(self, task: asyncio.Future) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fence_sweep(self) -> None:
        """While fenced: hang up every call on a modem (the same path as a hard stop: the
        dialer hangs up, the outcome is journaled with the reason as its cause, the contact
        is settled by the retry rules) without ending its worker; again every FENCE_SWEEP_S
        for a call whose claim was committed just before the fence."""
        if self.fenced is None or self.done.is_set() or (self.stopping and not self._calls):
            return
        for task, line in list(self._calls.items()):
            # only a call up on its modem: one still waiting for its claim's commit dials
            # nothing (the claim fails while fenced), one past its hang-up has only rows left
            if line.busy and task not in self._fenced_calls:
                self._fenced_calls.add(task)
                task.cancel(self.fenced)
        asyncio.get_running_loop().call_later(FENCE_SWEEP_S, self._fence_sweep)

    # ---- PostgreSQL unreachable ----------------------------------------------------------
    async def _held(self) -> bool:
        """While the database server is away (the writer is waiting for it, or a read failed),
        or while the box is fenced, a worker starts no call: True after waiting a poll
        interval. A read that works again (and a writer with nothing stuck) ends the hold."""
        if self.fenced is not None:
            await self._held_wait()
            return True
        if self.journal.writer.unreachable is None and self._reads_away is None:
            return False
        # the writer reached the server: a read that failed may be older than that (a look
        # queued during the outage answered late), so look once now rather than after a poll
        if self.journal.writer.unreachable is None and self._reads_back():
            return False
        await self._held_wait()
        if self._reads_away is not None:
            self._reads_back()
        return True

    def _reads_back(self) -> bool:
        """A read on the database works again: the hold of a failed read ends."""
        try:
            self._db_paused()
        except DatabaseUnreachable:
            return False
        self._reads_away = None
        self.view.event("resume", "database reachable again: calls resume")
        return True

    async def _held_wait(self) -> None:
        """A poll interval, or less: until the hold ends (``_unheld``) or a stop."""
        await self._until(self._unheld, max(0.01, self.poll))

    async def _read_retry_wait(self) -> None:
        """After a read failed with the server away: while the writer finds it away too, a
        hold (until it is back, or a poll); once the writer reaches it again (a read queued
        during the outage answered late, or the reader's connection not yet renewed), look
        again after READ_RETRY_S rather than a whole poll."""
        if self.journal.writer.unreachable is None:
            await self._sleep(min(self.poll, READ_RETRY_S))
        else:
            await self._held_wait()

    def _reads_failed(self, exc: DatabaseUnreachable) -> None:
        if self._reads_away is None:
            self.view.event("hold", f"database unreachable ({exc}): no new calls until it is back")
        self._reads_away = exc

    # ---- one worker per line -----------------------------------------------------------
    async def _worker(self, index: int) -> None:
        try:
            while True:
                try:
                    return await self._work(index)
                except DatabaseUnreachable as exc:   # a read between calls: nothing was started
                    self._reads_failed(exc)
                    await self._read_retry_wait()
        finally:
            # a stop (or the second signal's cancellation): the armed contact is let go
            arming = self._arming.pop(index, None)
            if arming is not None:
                await asyncio.shield(arming)
            armed = self._armed.pop(index, None)
            if armed is not None:
                await asyncio.shield(self._release(armed))

    async def _work(self, index: int) -> None:
        while not self.stopping:
            if await self._held():
                continue
            now = self.clock()
            paused = self._paused_now()
            if paused != self.paused:
                self.paused = paused
                self.clog.write("control", verdict="paused" if paused else "resumed")
                self.view.event("pause", "paused (campaign resume NAME to continue)" if paused else "resumed")
            if paused:
                armed = self._armed.pop(index, None)
                if armed is not None:
                    await self._release(armed)
                # look again at the next read of the status (a resume from another process
                # is seen within PAUSE_LOOK_S, not a whole poll later); the read itself is
                # shared by the workers, so waking this often costs a read per PAUSE_LOOK_S
                await self._sleep(min(self.poll, PAUSE_LOOK_S))
                continue
            arming = self._arming.pop(index, None)
            if arming is not None:
                await asyncio.shield(arming)        # its outcome is in _armed / _deciding
            deciding = self._deciding.pop(index, None)
            if deciding is not None:
                # a deny/defer found while arming: committed before the next look at the due contacts
                with contextlib.suppress(DatabaseFault):
                    await deciding
            if index not in self._armed and not self._due(now):
                # nothing to dial now: done, or wait (without holding a line)
                if not self.in_flight:
                    await self._flush()        # the outcomes queued by the last calls
                if not self.in_flight and self._complete():
                    self.done.set()
                    return
                nxt = self._next_pending_at()
                waiting = nxt if nxt is not None and nxt > now else None
                if waiting != self.waiting_until and waiting is not None and not self.in_flight:
                    n = max(0, self.status_counts["pending"])
                    self.view.event("wait", f"{n} contact(s) deferred; waiting until {_local(waiting)}")
                self.waiting_until = waiting
                if self.in_flight:
                    # due contacts in flight here (being decided or claimed), or the last ones
                    # settling: look again when one is let go (not every few ms: each look
                    # is three reads), or when the next pending one is due
                    await self._until_changed(self.poll if nxt is None or nxt <= now else self._delay(now, nxt))
                else:
                    await self._idle(self._delay(now, nxt))
                continue
            self.waiting_until = None
            async with self.source.turn(index, now) as (slot, wait):
                armed = self._armed.pop(index, None)
                if (slot is None or self.stopping or self.fenced is not None
                        or (armed is not None and armed.modem != slot.name and not self.binds_at_dial)):
                    # this line cannot dial now (or the source lent another one): let it go
                    if armed is not None:
                        await self._release(armed)
                        armed = None
                if slot is not None and not self.stopping:
                    if armed is None:
                        # the line may have taken a while to come: the rules look at the time of the dial
                        now = self.clock()
                        contact = self._next_contact(now)
                        go: bool | asyncio.Future = False
                        if contact is not None:
                            go = await self._decide_soon(contact, now, slot)
                        if isinstance(go, asyncio.Future):
                            # a deny/defer: committed before the next look at the due contacts
                            with contextlib.suppress(DatabaseFault):
                                await go
                        elif go and not self.stopping and self.fenced is None:
                            assert contact is not None
                            armed = self._arm(slot, contact, now, mark=self._marks.pop(contact.id, None))
                        elif go:
                            assert contact is not None
                            self._claims.pop(contact.id, None)
                            self._marks.pop(contact.id, None)
                            self.in_flight.discard(contact.number)      # a stop or a fence meanwhile
                    if armed is not None:
                        await self._call(index, slot, armed)
            if slot is None and wait > 0:
                await self._sleep(wait)

    async def _flush(self) -> None:
        try:
            await self.journal.flush()
        except DatabaseFault as exc:
            self._on_db_fault(exc)

    async def _sleep(self, seconds: float) -> None:
        # wake early on a stop; never spin
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), max(0.01, seconds))

    async def _idle(self, seconds: float) -> None:
        """Nothing due and nothing in flight: wait ``seconds``, a stop, or contacts a lost box
        held settled here (``settle_released``)."""
        if await self._until(self._wake, max(0.01, seconds)):
            self._pending_read = (-NOTHING_DUE_S, None)     # the settled ones' times, read again

    async def _until_changed(self, seconds: float) -> None:
        """Wait until a number in flight is let go, a stop, or ``seconds``."""
        await self._until(self.in_flight.changed, seconds)

    async def _until(self, event: _Flag, seconds: float) -> bool:
        """Wait until ``event`` is set anew (it is cleared first), a stop, or ``seconds``;
        True if the event was set."""
        event.clear()
        if self._stop_event.is_set():
            await asyncio.sleep(0)          # stopped already: back at once, never a spin
            return event.is_set()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        flags = (event, self._stop_event)
        for flag in flags:
            flag.futures.append(fut)
        timer = loop.call_later(seconds, _complete, fut)
        try:
            await fut
        finally:
            timer.cancel()
            for flag in flags:
                flag.futures.remove(fut)
        return event.is_set()

    def _delay(self, now: datetime, until: datetime | None) -> float:
        if until is None:
            return self.poll
        return min(self.poll, max(0.0, (until - now).total_seconds()))

    def _due(self, now: datetime) -> bool:
        """Is a contact due now? (fills the buffer; the contact is taken once a line is held)"""
        while self.buffer and self.buffer[0].number in self.in_flight:
            self.buffer.popleft()
        if not self.buffer:
            self._fill(now)
        return bool(self.buffer)

    def _fill(self, now: datetime) -> None:
        if time.monotonic() - self._nothing_due_at < NOTHING_DUE_S:
            return          # another worker just read it: nothing due (NOTHING_DUE_S)
        self._fill_now(now)
        self._nothing_due_at = -NOTHING_DUE_S if self.buffer else time.monotonic()

    def _fill_now(self, now: datetime) -> None:
        index, boxes = self.spread
        limit = self.batch or 32
        if boxes <= 1:
            self.buffer.extend(self.campaigns.next_due(self.cid, now, limit=limit, exclude_numbers=self.in_flight))
            return
        # every box reads the same head of the queue: each takes its own share of it first (the
        # contacts whose id falls to its place among the boxes up: a share that stays put
        # while the head moves), then the rest, so that their claims rarely collide (a lost
        # claim costs a write transaction, and a line waits for another decision). A share
        # nobody takes (its box is not in this campaign) piles up at the head and is taken
        # as "the rest" by the others.
        due = self.campaigns.next_due(self.cid, now, limit=limit * boxes, exclude_numbers=self.in_flight)
        mine = [c for c in due if c.id % boxes == index]
        self.buffer.extend(mine or due[:limit])

    def _next_contact(self, now: datetime) -> Contact | None:
        if not self.buffer:
            self._fill(now)
        while self.buffer:
            c = self.buffer.popleft()
            if c.number not in self.in_flight:
                return c
        return None

    async def _decide_soon(self, c: Contact, now: datetime, slot: Slot) -> bool | asyncio.Future:
        """:meth:`_decide` on the number's records read off the loop (PostgreSQL); the number
        is in flight meanwhile (no other worker looks at it)."""
        self.in_flight.add(c.number)
        decided = False
        go: bool | asyncio.Future = False
        try:
            self._marks[c.id] = self.journal.facts_mark()
            facts = await self._facts_soon(c.number, now, urgent=True, contact_id=c.id)   # the lent line waits
            t0 = time.thread_time()
            go = self._decide(c, now, slot, facts)
            self.cpu += time.thread_time() - t0
            decided = go is not False
            return go
        finally:
            if go is not True:
                self._marks.pop(c.id, None)
            if not decided:
                self.in_flight.discard(c.number)

    def _decide(self, c: Contact, now: datetime, slot: Slot, facts: DialFacts) -> bool | asyncio.Future:
        """Run the rules on the number's records (``facts``, :meth:`_facts_soon`); queue the
        decision. An allowed contact is claimed with its call row."""
        if facts.contact_status not in (None, "pending"):
            # claimed by another box since it was read as due (its call, armed or up, is the
            # "open call"): not a decision to log, and the rest of the buffer is as stale
            self.buffer.clear()
            return False
        dec = R.check(c.number, self.rules, now, _Facts(self.compliance, facts),
                      tz_override=c.fields.get("timezone") or None)
        if dec.allowed and facts.open_call:
            dec = R.Decision("defer", "in_call", now + IN_CALL_DEFER, "a call to this number is in progress")
        kw: dict[str, Any] = dict(contact_id=c.id, number=c.number, verdict=dec.verdict, rule=dec.rule,
                                  until=dec.until)
        if dec.verdict == "allow":
            self._claims[c.id] = self.clog.row("rule", modem=slot.name, **kw)
            return True
        return self._queue_decision(c, dec, now, self.clog.row("rule", detail=dec.detail, **kw), c.status)

    def _queue_decision(self, c: Contact, dec: R.Decision, now: datetime, row: tuple, old_status: str,
                        taken_back: int | None = None) -> asyncio.Future:
        """A deny or defer: the contact's new status with the decision's log row, one writer
        operation, queued (the future). ``taken_back``: an armed row, never dialed, deleted
        first (the contact was claimed for it: pending again, then the decision)."""
        deny, rule, until = dec.verdict == "deny", dec.rule, dec.until or now + timedelta(minutes=1)
        status = FINAL_BY_RULE.get(rule or "", "exhausted") if deny else "pending"

        def write(conn: Connection) -> None:
            if taken_back is not None:
                self._unclaim(conn, c, taken_back)
            store = Campaigns(conn, self.clock)
            if deny:
                store.rule_decision(c.id, row, now, final_status=status, outcome=f"rule:{rule}")
            else:
                store.rule_decision(c.id, row, now, until=until)
        fut = asyncio.wrap_future(self.journal.submit(write))
        # until the decision is committed no worker looks at the contact again (a re-read of
        # the due contacts would still find it pending and decide it twice)
        self.in_flight.add(c.number)
        fut.add_done_callback(lambda _: self.in_flight.discard(c.number))
        self._count(old_status, status)
        self.view.event("rule", f"{c.number}: {dec.verdict} {dec.rule}" + (" at the dial" if taken_back else "")
                                + (f" until {_local(dec.until)}" if dec.until else "") + f" ({dec.detail})")
        return fut

    async def _facts_soon(self, number: str, now: datetime, except_call: int | None = None, *,
                          urgent: bool = False, contact_id: int | None = None) -> DialFacts:
        """What the rules read about ``number``, in one round trip (the attempts only as far
        back as the longest cap), with the contact's status (``contact_id``); read off the
        loop on PostgreSQL (``CallJournal.read_off_loop``; ``urgent``: a line waits for it to dial)."""
        since = min((now - cap.per for cap in self.rules.caps), default=None)
        return await self.journal.dial_facts(number, since=since, except_call=except_call, contact_id=contact_id,
                                             urgent=urgent)

    async def _suppressed_now(self, number: str) -> bool:
        """After an answered call: did the number get suppressed meanwhile (an SMS STOP, the
        API, another box)? An opt-out during the call itself (the campaign's opt-out key, a
        flow's opt-out node) is known without a read (``CallState.opted_out``, the call's
        ``opted_out`` variable). On PostgreSQL read in the journal's reader thread, in the same
        statement as the line's next rules read, asked at the same moment
        (``CallJournal.suppressed_now``)."""
        while True:
            try:
                return await self.journal.suppressed_now(number)
            except DatabaseUnreachable as exc:
                self._reads_failed(exc)
                await self._read_retry_wait()
            except DatabaseFault:
                return False        # nothing more can be recorded: the run stops

    def _count(self, old: str, new: str) -> None:
        if old != new:
            self.status_counts[old] -= 1
            self.status_counts[new] += 1

    def _claim(self, c: Contact, now: datetime) -> Claim:
        """The claim, run by the writer in the call row's transaction (one commit before ATD):
        pending, this box's lease valid, no call open to the number on any box, the attempt
        caps not reached by any box's calls (checked again there: the decision read them
        before another box's call may have used the last attempt), the box not fenced (no
        new call once it could not renew its lease). On PostgreSQL the writer runs a group's
        claims together (store/boxes.py claim_and_start)."""
        return Claim(c.id, c.number, self.box, caps=tuple((cap.max, cap.per) for cap in self.rules.caps),
                     log_row=self._claims.pop(c.id), allowed=lambda: self.fenced is None, clock=self.clock)

    # ---- the armed next call (module doc) ----------------------------------------------
    def _arm(self, slot: Slot, c: Contact, now: datetime, *, ahead: bool = False, read: DialFacts | None = None,
             mark: object | None = None) -> _Armed:
        """Claim ``c`` for ``slot`` and queue its call row (one group, committed by the writer
        while the line's current call plays (``ahead``), or awaited at once before the ATD)."""
        claim = self._claim(c, now)
        self.in_flight.add(c.number)
        self._count(c.status, "in_progress")
        ident = slot.line.identity
        at = self.clock()
        row = self.journal.start_call_soon(dial_string(c.number), slot.line.name, ident.imei, ident.iccid,
                                           campaign_id=self.cid, contact_id=c.id, claim=claim, at=at, armed=ahead)
        return _Armed(c, slot.name, row, from_ts(to_ts(at)), ahead, read=read, mark=mark)

    def lines_checking(self) -> None:
        """The source's lines are being checked at start (``PoolSource.open``): each line's
        first call is armed meanwhile (rules, claim, call row committed, an fsync), so that a
        line dials as soon as its modem has passed its check rather than after the check and
        then the commit. The rules run again at the dial, as for every armed call; a line the
        check takes out lets its armed contact go at its turn (never dialed: the row is
        deleted, the contact pending again). Not when the campaign is paused."""
        if not self.arm_ahead or self.binds_at_dial or self._db_paused():
            return
        if self.batch is None:
            self.batch = max(32, 2 * len(self.source.slots))
        for index, slot in enumerate(self.source.slots):
            self._arm_next(index, slot, now=True)

    async def let_armed_go(self) -> None:
        """The run ends before its workers started (no line passed its check): the first
        calls armed meanwhile are let go (their rows deleted, the contacts pending again)."""
        for index in list(self._arming):
            arming = self._arming.pop(index, None)
            if arming is not None:
                await asyncio.shield(arming)
        for index in list(self._armed):
            armed = self._armed.pop(index, None)
            if armed is not None:
                await asyncio.shield(self._release(armed))
        for index in list(self._deciding):
            with contextlib.suppress(DatabaseFault):
                await self._deciding.pop(index)

    def _arm_next(self, index: int, slot: Slot, *, now: bool = False) -> None:
        """Just after a line's ATD: arm its next call, unless the run is stopping or paused,
        the line is at a limit, or the database is in trouble (the worker does it then).
        A task: the rules' read goes through ``CallJournal.read_off_loop`` (off the loop on PostgreSQL).
        ``now``: the line will want it at once (its first call, armed during its check at start):
        the rules' read is urgent and the row committed at once, not lazily."""
        if (not self.arm_ahead or self.stopping or self.paused or self.fenced is not None
                or index in self._armed or index in self._deciding or index in self._arming
                or self.db_fault is not None or self.journal.writer.unreachable is not None
                or self._reads_away is not None):
            return
        task = asyncio.get_running_loop().create_task(self._arm_next_now(index, slot, now))
        self._arming[index] = task
        task.add_done_callback(lambda t: self._arming.pop(index, None) if self._arming.get(index) is t else None)

    async def _arm_next_now(self, index: int, slot: Slot, urgent: bool = False) -> None:
        t0 = time.thread_time()
        contact: Contact | None = None
        try:
            now = self.clock()
            if slot.blocked_until(now)[1] is not None:
                return
            # a contact another box claimed since it was read is not decided: the next one is
            # looked at (the buffer read again), here rather than at the line's next turn, where
            # the line would wait for a decision and a claim
            for _ in range(ARM_TRIES):
                contact = self._next_contact(now)
                if contact is None:
                    return
                # no other look at it while its records are read
                self.in_flight.add(contact.number)
                self.cpu += time.thread_time() - t0
                mark = self.journal.facts_mark()        # before the read: what changes after it is heard
                facts = await self._facts_soon(contact.number, now, contact_id=contact.id, urgent=urgent)
                t0 = time.thread_time()
                if self.stopping or self.paused or self.fenced is not None or self.db_fault is not None:
                    return
                go = self._decide(contact, now, slot, facts)
                if isinstance(go, asyncio.Future):
                    self._deciding[index] = go
                elif go:
                    self._armed[index] = self._arm(slot, contact, now, ahead=True, read=facts, mark=mark)
                    self._rearm_if_lost(index, slot, self._armed[index])
                    if urgent:
                        self.journal.writer.hurry()     # a lazy row: committed now, not LAZY_COMMIT_S on
                if go is not False:
                    contact = None      # decided: its number leaves the flight with its decision or call
                    return
                self.in_flight.discard(contact.number)
                contact = None
        except DatabaseUnreachable as exc:
            self._reads_failed(exc)
        except DatabaseFault:
            pass                # the fault listeners heard it: the run stops
        finally:
            if contact is not None:
                self.in_flight.discard(contact.number)      # not armed: due again for anyone
            self.cpu += time.thread_time() - t0

    def _rearm_if_lost(self, index: int, slot: Slot, armed: _Armed) -> None:
        """When the armed row's claim is refused (another box claimed the contact, or called
        the number, since it was read), arm the line's next call again while its current
        call still plays, unless the worker has taken the armed call meanwhile (it then
        decides at its turn, as before)."""
        def lost(f: asyncio.Future[int | None]) -> None:
            if f.cancelled() or f.exception() is not None or f.result() is not None:
                return
            if self._armed.get(index) is not armed:
                return
            del self._armed[index]
            self.buffer.clear()         # as stale as the contact was
            self._unarm(armed.contact)
            if slot.current is not None:    # its call still plays: there is time to arm again
                self._arm_next(index, slot)
        armed.row.add_done_callback(lost)

    def _unarm(self, c: Contact) -> None:
        self.in_flight.discard(c.number)
        self._count("in_progress", c.status)

    async def _release(self, armed: _Armed) -> None:
        """Let an armed contact go (pause, stop, the line cannot dial): its row, never dialed,
        is deleted and the contact is pending again, attempts unchanged."""
        c = armed.contact
        self._unarm(c)
        try:
            call_id = await asyncio.shield(armed.row)
        except DatabaseFault:
            return                  # nothing was written; the fault stops the run
        if call_id is not None:
            self.journal.submit(self._unclaim, c, call_id)

    def _unclaim(self, conn: Connection, c: Contact, call_id: int) -> None:
        Journal(conn, self.clock).drop_undialed_call(call_id)
        Leases(conn, self.clock).settle(c.id, self.box, status="pending", next_attempt_at=None, last_outcome=None,
                                        last_call_id=None, attempts=c.attempts)

    def _prefetch_recheck(self, index: int) -> None:
        """A line's call is over and its next call is armed: start reading that number's
        records for the rules' check at the dial now (PostgreSQL: a round trip in the reader
        thread), while the line goes back to the bank and is lent again, rather than after.
        The records are then as of the last call's end, some milliseconds before the ATD
        instead of fewer; what the claim itself checks (lease, a call open to the number
        on any box, the attempt caps) is checked in the claim's transaction as before."""
        armed = self._armed.get(index)
        if (armed is None or not armed.ahead or armed.facts is not None or not self.journal.reads_off_loop
                or not armed.row.done() or armed.row.cancelled() or armed.row.exception() is not None):
            return
        call_id = armed.row.result()
        if call_id is None or self._still_holds(armed):
            return
        armed.facts_mark = self.journal.facts_mark()
        facts = asyncio.ensure_future(self._facts_soon(armed.contact.number, self.clock(), except_call=call_id,
                                                       urgent=True))
        # an armed call let go (pause, stop) never awaits it: its error must not go unretrieved
        facts.add_done_callback(lambda f: f.cancelled() or f.exception())
        armed.facts = facts

    def _still_holds(self, armed: _Armed) -> bool:
        """PostgreSQL: the records the arming read hold at the dial, no change to the number
        (a suppression, a refusal, a call outside the campaigns, from any box) having been
        heard since (``CallJournal.facts_unchanged``): the rules run again on them at the
        dial's time, with no round trip. What the claim checked (lease, a call open to the
        number, the caps) holds meanwhile: the armed row is an open call to the number on
        every box's claims. Never on SQLite (a local read)."""
        return armed.read is not None and self.journal.facts_unchanged(armed.contact.number, armed.mark)

    async def _recheck(self, armed: _Armed, call_id: int, slot: Slot) -> asyncio.Future | None:
        """The rules again at the moment of the dial (the contact was armed during the line's
        last call): None when it may be dialed; else the armed row is taken back, the contact
        is pending again and the decision is queued (the future)."""
        c = armed.contact
        now = self.clock()
        prefetched, armed.facts = armed.facts, None     # used once: a read that failed is not kept
        if prefetched is not None:
            facts, armed.mark = await prefetched, armed.facts_mark
        elif armed.read is not None and self._still_holds(armed):
            facts = armed.read
        else:
            armed.mark = self.journal.facts_mark()
            facts = await self._facts_soon(c.number, now, except_call=call_id, urgent=True)
        dec = R.check(c.number, self.rules, now, _Facts(self.compliance, facts, armed.at),
                      tz_override=c.fields.get("timezone") or None)
        if dec.allowed and facts.open_call:
            dec = R.Decision("defer", "in_call", now + IN_CALL_DEFER, "a call to this number is in progress")
        if dec.allowed:
            return None
        row = self.clog.row("rule", detail=dec.detail + " (checked again at the dial)", contact_id=c.id,
                            number=c.number, modem=slot.name, verdict=dec.verdict, rule=dec.rule, until=dec.until)
        return self._queue_decision(c, dec, now, row, "in_progress", taken_back=call_id)

    async def _call(self, index: int, slot: Slot, armed: _Armed) -> None:
        c = armed.contact
        try:
            # committed by now for an armed next call (written while the last call played);
            # shielded: a second signal here must not lose the row's id (released below).
            # The armed row is a lazy write: if the last call ended so soon that it is still
            # queued, the writer commits it now rather than LAZY_COMMIT_S after it was queued
            if armed.ahead and not armed.row.done():
                self.journal.writer.hurry()
            call_id = await asyncio.shield(armed.row)
        except DatabaseFault as exc:
            self._unarm(c)
            self._on_db_fault(exc)
            return
        except asyncio.CancelledError:
            await asyncio.shield(self._release(armed))
            raise
        if call_id is None:
            # taken by another box (or its number is in a call): the buffer is stale
            self.buffer.clear()
            self._unarm(c)
            return
        try:
            # a row written for a dial now was decided an instant ago: only an armed one is looked at again
            decided = await self._recheck(armed, call_id, slot) if armed.ahead else None
        except DatabaseUnreachable:
            self._armed[index] = armed      # kept for the next turn (the worker holds meanwhile)
            raise
        except DatabaseFault as exc:
            self._unarm(c)
            self._on_db_fault(exc)
            return
        if decided is not None:
            with contextlib.suppress(DatabaseFault):
                await decided       # committed before the next look at the due contacts
            return
        if armed.modem != slot.name:
            # the bank lent another line than the one the call was armed for (an alert took
            # that one): the row names the line it is dialed on, committed before the ATD as
            # the row itself was (after a kill -9 the SIM that dialed counts the call)
            ident = slot.line.identity
            try:
                await asyncio.wrap_future(self.journal.bind_line(call_id, slot.name, ident.imei, ident.iccid))
            except DatabaseFault as exc:
                self._unarm(c)
                self._on_db_fault(exc)
                return
        if self.fenced is not None or self.stopping:
            # fenced or stopped while the row was awaited or the rules read again: no new dial
            await self._release(armed)
            return
        state = CallState()
        script = self.script_for(c)
        if self.spec.opt_out_key and not getattr(self.script_for, "handles_opt_out", False):
            script = with_opt_out(script, self.spec.opt_out_key, f"campaign:{self.spec.name}", state)
        slot.started(c.number, self.clock())
        self.view.event("dial", f"{slot.name}: dialing {c.number}")
        # the line's next call is armed as this dial starts (its callback runs before place_call's first step;
        # its row may commit before this call's dial mark, which recovery handles: no dial mark, no attempt)
        asyncio.get_running_loop().call_soon(self._arm_next, index, slot)
        self.in_call += 1
        # a task of its own, so that fence() can hang it up without ending this worker
        call = asyncio.ensure_future(place_call(slot.line, c.number, script, self.journal,
                                                ring_timeout=self.ring_timeout, min_ring_timeout=self.min_ring_timeout,
                                                campaign_id=self.cid, contact_id=c.id, committed=False, call_id=call_id))
        self._calls[call] = slot.line
        try:
            result = await call
        except DatabaseFault as exc:
            # nothing more can be recorded: the call (if it was placed) has been hung up
            self.in_flight.discard(c.number)
            slot.finished("interrupted", None, self.clock())     # not the modem's failure
            self._on_db_fault(exc)
            return
        except asyncio.CancelledError:
            # second signal, or the box fenced: place_call hung up and queued the call's
            # outcome; settle the contact (through the writer, after that outcome) unless the
            # database cannot be written
            fenced = call in self._fenced_calls and not self.hard_stop
            self.in_flight.discard(c.number)
            slot.finished("interrupted", None, self.clock())
            if self.db_fault is None or self.db_fault.kind == "locked":
                with contextlib.suppress(DatabaseFault):
                    await self.journal.writer.run(self._settle_now, c.id)
            if fenced:
                return          # the worker holds until the lease is renewed
            raise
        finally:
            self.in_call -= 1
            self._calls.pop(call, None)
            self._fenced_calls.discard(call)
        self._prefetch_recheck(index)
        t0 = time.thread_time()
        row = result.row
        if row["outcome"] == LINE_BUSY:
            self.in_flight.discard(c.number)
            # someone called in on this line as we dialed: not an attempt; the contact is due
            # again at once, for the next free line (this one is busy with the incoming call)
            due, call_id = self.clock() + LINE_BUSY_RETRY, row["id"]
            self.journal.settle_contact(c.id, self.box, status="pending", next_attempt_at=due, last_outcome=LINE_BUSY,
                                        last_call_id=call_id, attempts=c.attempts)
            self._count("in_progress", "pending")
            slot.current, slot.state = None, "idle" if slot.state == "calling" else slot.state
            self.view.event("line_busy", f"{slot.name}: {c.number} not dialed (a call rang in); will retry")
            return
        opted_out = state.opted_out or bool(result.vars.get("opted_out"))
        slot.finished(row["outcome"], row["duration_s"], self.clock())
        self.calls_this_run += 1
        if opted_out or row["outcome"] != "answered":
            self.in_flight.discard(c.number)
            self._settle_call(c, row, opted_out)
        elif not self.journal.reads_off_loop:
            # was the number suppressed during the call (an opt-out node of a flow, an SMS
            # STOP, the API)? On SQLite a local read, at once: no task and loop turn a call
            # for what takes microseconds (the line is free for its next call all the same)
            opted_out = False
            try:
                opted_out = self.journal.suppressed_here(c.number)
            finally:
                self.in_flight.discard(c.number)
                self._settle_call(c, row, opted_out)
        elif self.journal.facts_unchanged(c.number, armed.mark):
            # PostgreSQL, and no change to the number heard since the records this dial went on
            # were read (they said not suppressed): no read, no task
            self.in_flight.discard(c.number)
            self._settle_call(c, row, False)
        else:
            # the same read off the loop (PostgreSQL), without holding the line: it is free
            # for its next call now
            self._keep(asyncio.ensure_future(self._settle_answered(c, row)))
        self.cpu += time.thread_time() - t0
        keys = "".join(k["key"] for k in row.get("keys", []))
        self.view.event("call", f"{slot.name}: {c.number} {row['outcome']}"
                                + (f" keys {keys}" if keys else "") + (" (opted out)" if state.opted_out else ""))

    def _settle_call(self, c: Contact, row: dict[str, Any], opted_out: bool) -> None:
        # lazy: committed with the next write someone waits for, or within LAZY_COMMIT_S
        # (spooled while PostgreSQL is away, like the call's own rows: call_journal.py)
        self.journal.settle_contact(**self._apply_outcome(c, row, 1, opted_out=opted_out, lease=self.box), lazy=True)

    async def _settle_answered(self, c: Contact, row: dict[str, Any]) -> None:
        """An answered call's contact, settled once the suppression list is read (off the
        loop on PostgreSQL). The number stays in flight until then."""
        opted_out = False
        try:
            opted_out = await self._suppressed_now(c.number)
        finally:
            self.in_flight.discard(c.number)
            self._settle_call(c, row, opted_out)

    def _settle_now(self, conn: Connection, contact_id: int) -> None:
        fresh = Campaigns(conn, self.clock).get_contact(contact_id)
        if fresh is not None and fresh.status == "in_progress":
            self._settle(conn, fresh, lease=self.box)

    def _apply_outcome(self, c: Contact, row: dict[str, Any], new_attempts: int, *,
                       opted_out: bool, lease: str | None) -> dict[str, Any]:
        """Count the contact's next status by the retry rules; return its write as the
        arguments of ``Leases.settle`` (queued to the writer, or run at once on the loop's
        connection at recovery), fenced on the lease: it writes nothing if ``lease`` no
        longer holds the contact."""
        outcome = row["outcome"]
        attempts = c.attempts + new_attempts
        ended = from_ts(row["ended_at"]) if row.get("ended_at") else self.clock()
        nxt = after_attempt(self.spec, outcome, attempts, ended, opted_out=opted_out)

        self.outcome_counts[outcome] += 1
        self._count("in_progress", nxt.status)
        if nxt.status != "pending":
            self.finished_this_run += 1
        return dict(contact_id=c.id, lease=lease, status=nxt.status, next_attempt_at=nxt.next_attempt_at,
                    last_outcome=outcome, last_call_id=row["id"], attempts=attempts)

    def _slot_changed(self, slot: Slot, what: str, reason: str | None) -> None:
        self.clog.write("modem", modem=slot.name, verdict=what, rule=reason)
        self.view.event("modem", f"{slot.name}: {'out of rotation' if what == 'out' else 'back in rotation'}"
                                 + (f" ({reason})" if reason else ""))

    # ---- for the live view -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        total = sum(v for v in self.status_counts.values() if v > 0)
        open_ = max(0, self.status_counts["pending"]) + max(0, self.status_counts["in_progress"])
        elapsed = time.monotonic() - self.started_mono
        rate = self.finished_this_run / elapsed if elapsed > 0 else 0.0
        return {
            "total": total, "finished": total - open_, "statuses": dict(self.status_counts),
            "outcomes": dict(self.outcome_counts), "eta_s": open_ / rate if rate > 0 else None,
            "slots": [s.as_dict() for s in self.source.slots],
            "waiting_until": self.waiting_until, "paused": self.paused,
            "stopping": self.stopping and not self.done.is_set(),
        }


def _local(at: datetime | None) -> str:
    return "?" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
