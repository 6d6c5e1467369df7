"""The bank's lines as the campaign sees them: free, calling, resting, at a limit, or out.

Each slot keeps its own counters (calls this hour and today, answered minutes today,
consecutive failures), seeded from the journal at start so a restart keeps them. A
line leaves rotation after N consecutive failed calls or when it loses registration,
with the reason journaled, and comes back after the cool-down once it is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..call.line import Line
from ..errors import UserError
from ..modems.events import Event, ModemLost, RegistrationChanged, SignalChanged
from ..store import Connection, Journal, set_modem_state
from ..store.journal import OutboundUsage
from .limits import LimitsConfig

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger("modem_dialer.campaign")

# A worker whose line has a caller ringing looks again after this long (s).
INCOMING_WAIT = 0.2
# Outcomes that say the modem/SIM (not the callee) failed.
MODEM_FAILURES = frozenset({"failed"})


def local_midnight(now: datetime) -> datetime:
    """Start of the box's local calendar day containing ``now`` (aware)."""
    local = now.astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_midnight(day_start: datetime) -> datetime:
    """The local midnight after the one at ``day_start`` (a local day lasts 23 to 25 hours)."""
    return local_midnight(day_start + timedelta(hours=25))


class Slot:
    def __init__(self, line: Line, limits: LimitsConfig, now: datetime) -> None:
        self.line = line
        self.name = line.name
        self.limits = limits.for_modem(line.name)
        self.max_failures = limits.max_consecutive_failures
        self.cooldown = limits.cooldown
        self.state = "idle"             # idle | calling | limit | out | stopped
        # held for each call, and by a bridge transfer that borrows this line (PoolLines)
        self.use = asyncio.Lock()
        self.reason: str | None = None
        self.current: str | None = None
        self.out_until: datetime | None = None
        self.registered = True
        self.lost = False
        self.signal_dbm: int | None = None
        self.failures = 0
        self.hour: deque[datetime] = deque()
        self.day_start = local_midnight(now)
        self._day_end = _next_midnight(self.day_start)
        self.calls_today = 0
        self.seconds_today = 0.0
        self.calls_total = 0
        self.last_outcome: str | None = None
        self._on_change: Callable[[Slot, str, str | None], None] | None = None
        self._remove = line.driver.add_listener(self._event)

    def rebind(self, line: Line) -> None:
        """The service re-opened this modem (a new Line): listen to it; a lost modem is back."""
        if line is self.line:
            return
        self._remove()
        self.line = line
        self._remove = line.driver.add_listener(self._event)
        if self.lost:
            self.lost = False
            self.bring_back("modem re-opened")

    # ---- counters ------------------------------------------------------------------
    def seed(self, conn: Connection, now: datetime, used: OutboundUsage | None = None) -> None:
        """Counters from the journal (by SIM when its ICCID is known, else by modem name);
        ``used``: read already (:meth:`usage_ask`, with other lines' in one statement)."""
        if used is None:
            used = Journal(conn).outbound_usage(self.day_start, now - timedelta(hours=1),
                                                iccid=self.line.identity.iccid, modem=self.name)
        self.calls_today, self.seconds_today = used.calls, used.seconds
        self.hour = deque(used.hour)

    def usage_ask(self, now: datetime) -> tuple[datetime, datetime, str | None, str]:
        """What :meth:`seed` reads, as one ask of ``Journal.outbound_usage_many``."""
        return self.day_start, now - timedelta(hours=1), self.line.identity.iccid, self.name

    def _roll(self, now: datetime) -> None:
        # the local day is looked up only when ``now`` leaves the current one (a time-zone
        # conversion per check was most of a line's bookkeeping per call)
        if not self.day_start <= now < self._day_end:
            start = local_midnight(now)
            if start != self.day_start:
                self.day_start, self.calls_today, self.seconds_today = start, 0, 0.0
            self._day_end = _next_midnight(start)
        while self.hour and self.hour[0] <= now - timedelta(hours=1):
            self.hour.popleft()

    def started(self, number: str, now: datetime) -> None:
        self._roll(now)
        self.state, self.current = "calling", number
        self.hour.append(now)
        self.calls_today += 1
        self.calls_total += 1

    def finished(self, outcome: str, duration_s: float | None, now: datetime) -> None:
        self._roll(now)
        self.current = None
        self.last_outcome = outcome
        self.seconds_today += duration_s or 0.0
        if self.state == "calling":
            self.state = "idle"
        if outcome in MODEM_FAILURES:
            self.failures += 1
            if self.failures >= self.max_failures:
                self.take_out(f"{self.failures} consecutive failed calls", now + self.cooldown)
        else:
            self.failures = 0

    # ---- availability --------------------------------------------------------------
    def blocked_until(self, now: datetime) -> tuple[datetime | None, str | None]:
        """(None, None) when the line may dial now; else until when (None = unknown) and why."""
        if self.state == "out":
            return self.out_until, self.reason
        self._roll(now)
        lim = self.limits
        if lim.calls_per_hour and len(self.hour) >= lim.calls_per_hour:
            return self.hour[0] + timedelta(hours=1), f"{lim.calls_per_hour} calls per hour"
        next_day = self.day_start + timedelta(days=1)
        if lim.calls_per_day and self.calls_today >= lim.calls_per_day:
            return next_day, f"{lim.calls_per_day} calls per day"
        if lim.minutes_per_day and self.seconds_today >= lim.minutes_per_day * 60:
            return next_day, f"{lim.minutes_per_day:g} minutes per day"
        return None, None

    def take_out(self, reason: str, until: datetime | None) -> None:
        if self.state == "out" and self.reason == reason:
            return
        self.state, self.reason, self.out_until = "out", reason, until
        if self._on_change:
            self._on_change(self, "out", reason)

    def bring_back(self, why: str) -> None:
        if self.state != "out":
            return
        self.state, self.reason, self.out_until = "idle", None, None
        self.failures = 0
        if self._on_change:
            self._on_change(self, "back", why)

    async def try_return(self, now: datetime) -> bool:
        """After the cool-down: back in rotation if the modem answers and is registered."""
        if self.lost:
            return False
        try:
            health = await self.line.driver.health()
        except Exception as exc:   # any failure to answer keeps it out
            self.out_until = now + self.cooldown
            log.info("%s: health check failed: %s", self.name, exc)
            return False
        self.signal_dbm = health.signal_dbm
        self.registered = health.registration.registered
        if not self.registered:
            self.reason = f"not registered ({health.registration.value})"
            self.out_until = now + self.cooldown
            return False
        self.bring_back("registered, cool-down over")
        return True

    # ---- modem events --------------------------------------------------------------
    def _event(self, ev: Event) -> None:
        if isinstance(ev, RegistrationChanged):
            self.registered = ev.status.registered
            if not self.registered:
                self.take_out(f"lost registration ({ev.status.value})", None)
            elif self.state == "out" and (self.reason or "").startswith("lost registration"):
                self.bring_back("registration returned")
        elif isinstance(ev, SignalChanged):
            self.signal_dbm = ev.dbm
        elif isinstance(ev, ModemLost):
            self.lost = True
            self.take_out(f"modem lost: {ev.error}", None)

    def close(self) -> None:
        self._remove()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "reason": self.reason, "current": self.current,
                "calls_today": self.calls_today, "signal_dbm": self.signal_dbm, "failures": self.failures}


class Pool:
    def __init__(self, lines: list[Line], limits: LimitsConfig, conn: Connection,
                 now: datetime, on_change: Callable[[Slot, str, str | None], None],
                 submit: Callable[..., Any] | None = None) -> None:
        self.conn = conn
        # while calls run, writes go to the journal writer thread (store/writer.py)
        self._submit = submit
        self.slots = [Slot(line, limits, now) for line in lines]
        for s in self.slots:
            s.seed(conn, now)
            s._on_change = self._changed
        self._on_change = on_change

    def _changed(self, slot: Slot, what: str, reason: str | None) -> None:
        status = "out_of_rotation" if what == "out" else "ready"
        self._set_state(slot.name, status, reason=reason, imei=slot.line.identity.imei,
                        iccid=slot.line.identity.iccid)
        self._on_change(slot, what, reason)

    def _set_state(self, name: str, status: str, **kw: Any) -> None:
        if self._submit is not None:
            self._submit(functools.partial(set_modem_state, name=name, status=status, **kw))
        else:
            set_modem_state(self.conn, name, status, **kw)

    async def check(self, s: Slot, now: datetime) -> None:
        """One line's check at start (a left call ended, signal, registration); it starts out if it fails."""
        try:
            # a process killed mid-call leaves the modem's call up: end it first (not a
            # caller ringing in: the inbound desk takes that one)
            if not s.line.driver.incoming_active:
                await s.line.driver.clear_left_call()
            # the signal and the registration, what decides here (the line dials once it has
            # passed): not the SIM's state (its init read it moments ago), the operator or
            # VoLTE, two or three round trips more before every line's first dial
            h = await s.line.driver.health(brief=True)
        except Exception as exc:
            s.take_out(f"health check failed: {exc}", now + s.cooldown)
            return
        s.signal_dbm = h.signal_dbm
        s.registered = h.registration.registered
        if not s.registered:
            s.take_out(f"not registered ({h.registration.value})", now + s.cooldown)
        else:
            self._set_state(s.name, "ready", imei=s.line.identity.imei, iccid=s.line.identity.iccid)

    def close(self) -> None:
        for s in self.slots:
            s.close()


def note_blocked(slot: Slot, ctrl: Controller, now: datetime, until: datetime | None, why: str) -> None:
    """A line at a limit rests: say so once (shared by both line sources)."""
    if slot.state not in ("out", "limit"):
        slot.state, slot.reason = "limit", why
        ctrl.view.event("limit", f"{slot.name}: resting until {_local(until)} ({why})")


def _local(at: datetime | None) -> str:
    return "?" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class PoolSource:
    """``campaign run``'s own lines: one worker per line, for the campaign's whole run."""

    # a worker's next call is on its own line: the controller arms it while the current one plays
    keeps_lines = True

    def __init__(self, lines: list[Line], limits: LimitsConfig) -> None:
        self.lines = lines
        self.limits = limits
        self.pool: Pool | None = None
        self.slots: list[Slot] = []
        self.ctrl: Controller | None = None
        self._checks: list[asyncio.Future[None]] = []     # each slot's health check at start

    async def open(self, ctrl: Controller, now: datetime) -> int:
        """Start every line's health check and return once one line has passed it (each line
        dials once its own check has passed: :meth:`turn`), not once the slowest of the bank
        has; meanwhile the controller arms each line's first call (``Controller.lines_checking``:
        rules, claim, call row committed), so that the commit's fsync is not added to the
        check's round trips before the first dials. UserError when every line failed it."""
        self.ctrl = ctrl
        self.pool = Pool(self.lines, self.limits, ctrl.conn, now, ctrl._slot_changed, submit=ctrl.journal.submit)
        self.slots = self.pool.slots
        pool = self.pool
        self._checks = [asyncio.ensure_future(pool.check(s, now)) for s in self.slots]
        try:
            ctrl.lines_checking()
            pending: set[asyncio.Future[None]] = set(self._checks)
            while pending and all(s.state == "out" or not c.done() for s, c in zip(self.slots, self._checks,
                                                                                     strict=True)):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if all(s.state == "out" for s in self.slots):
                raise UserError("no modem ready: " + "; ".join(f"{s.name}: {s.reason}" for s in self.slots))
        except BaseException:
            for c in self._checks:
                c.cancel()
            await ctrl.let_armed_go()
            pool.close()
            raise
        return len(self.slots)

    @contextlib.asynccontextmanager
    async def turn(self, index: int, now: datetime) -> AsyncIterator[tuple[Slot | None, float]]:
        assert self.ctrl is not None
        slot = self.slots[index]
        if index < len(self._checks) and not self._checks[index].done():
            await asyncio.shield(self._checks[index])       # the line dials once its check has passed
            now = self.ctrl.clock()
        until, why = slot.blocked_until(now)
        if why is not None:
            if slot.state == "out" and until is not None and until <= now:
                await slot.try_return(now)
                yield None, 0.0
                return
            note_blocked(slot, self.ctrl, now, until, why)
            yield None, self.ctrl._delay(now, until)
            return
        if slot.state == "limit":
            slot.state, slot.reason = "idle", None
        if slot.line.driver.incoming_active:
            # a caller rings on this line: leave it to the inbound desk, look again shortly
            yield None, INCOMING_WAIT
            return
        async with slot.use:        # a bridge transfer (or an incoming call) may be holding this line
            yield slot, 0.0

    def close(self) -> None:
        for c in self._checks:
            c.cancel()
        if self.pool is not None:
            self.pool.close()


async def claim_pool_line(pool: Pool | None, line: Line) -> Callable[[], None] | None:
    """Hold a pool line for an incoming call (call/inbound.py): its worker waits on ``use``
    and the other lines go on dialing. None when the line is in a call of ours."""
    if pool is None:
        return None
    for s in pool.slots:
        if s.line is line:
            if s.use.locked():
                return None
            await s.use.acquire()       # free: returns at once
            return s.use.release
    return None


class PoolLines:
    """Lends the pool's free lines to bridge transfers (call/transfer.py LineProvider).

    A borrowed line's ``use`` lock is held until release, so its own worker waits instead of
    dialing on it. ``pool_of`` gives the pool once the controller has built it.
    """

    def __init__(self, pool_of: Callable[[], Pool | None] = lambda: None) -> None:
        self.pool_of = pool_of

    async def acquire(self, exclude: Line) -> Line | None:
        pool = self.pool_of()
        if pool is None:
            return None
        for s in pool.slots:
            if s.line is exclude or s.line.audio is None or s.state in ("out", "stopped") or s.use.locked():
                continue
            await s.use.acquire()       # free: returns at once
            return s.line
        return None

    def release(self, line: Line) -> None:
        pool = self.pool_of()
        if pool is None:
            return
        for s in pool.slots:
            if s.line is line and s.use.locked():
                s.use.release()
