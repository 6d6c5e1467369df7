"""The service's modem bank: lines kept open, health-checked, re-opened, lent out by priority.

A line is lent to one user at a time (``async with bank.lease(...) as line``). Waiters are
served by priority, then by arrival: an alert asking for a line gets the next free one
before any campaign call that was already waiting. Calls in progress are never cut for
priority (a broadcast listener would hear a hang-up); the next free line goes to the alert.

Alerting borrows lines through ``alerting.lines.LineLender`` (and ``Priority`` is defined
there), which this bank implements: alerting sits below the service that hosts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..alerting.lines import Priority
from ..call.line import Line, open_line
from ..modems.events import ModemLost, RegistrationChanged, SignalChanged
from ..modems.info import Health
from ..modems.options import ModemConfig
from ..modems.recovery import Supervisor
from ..store import DB_ERRORS, Connection, set_modem_state, utc_now
from ..waits import wait_set

log = logging.getLogger("modem_dialer.service")

# A line lent out within the last health interval (a campaign's line between two calls) is
# health-checked only this many intervals apart: its calls show it answers and is registered
# (a registration change also comes as a URC meanwhile), and a check started in the instant
# between two calls holds the next ATD behind its five AT round trips. An idle line is checked
# every interval, as before.
BUSY_CHECK_INTERVALS = 6


Accept = Callable[["ModemSlot"], bool]


@dataclass
class ModemSlot:
    cfg: ModemConfig
    line: Line | None = None
    health: Health | None = None
    error: str | None = None
    leased: bool = False
    checked_at: float = 0.0
    used_at: float = 0.0             # monotonic time a lease of the line last ended (its call over)
    calls: Counter = field(default_factory=Counter)    # outcome → count since start
    sms_sent: int = 0
    sms_failed: int = 0
    reopened: int = 0
    imei: str | None = None          # known once opened: how recovery finds it after re-enumeration
    lost: bool = False               # the port vanished (vs. a modem that stopped answering)
    recovering: bool = False
    _remove: object = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def ready(self, need_audio: bool = True) -> bool:
        h = self.health
        return (self.line is not None and h is not None and h.registration.registered and h.sim == "ready"
                and (not need_audio or self.line.audio is not None))


class Bank:
    def __init__(self, modems: list[ModemConfig], conn: Connection | None = None, *,
                 health_interval: float = 5.0, supervisor: Supervisor | None = None) -> None:
        self.slots = {m.name: ModemSlot(m) for m in modems}
        # finds a modem again by IMEI after it re-enumerates under new port names, resets a
        # hung one, quarantines a repeat offender (modems/recovery.py)
        self.supervisor = supervisor
        self.conn = conn
        # PostgreSQL: a line's state after its health check, queued to the journal writer (a
        # lazy write, ``CallJournal.submit``) instead of written on the event loop, where its
        # round trips and commit stopped every line of the box (one check per ~8 calls); None:
        # written at once (SQLite, where a local write takes microseconds)
        self.record_soon: Callable[..., object] | None = None
        self.health_interval = health_interval
        # (priority, arrival, need_audio, accept, future, preferred line): heap order is
        # priority then arrival
        self._waiters: list[tuple[int, int, bool, Accept | None, asyncio.Future, str | None]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task | None = None
        self._kick = asyncio.Event()
        self.on_line_opened: list = []          # callbacks(slot) — SMS delivery report watchers
        self.closing = False

    # ---- life ------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.gather(*(self._open(s) for s in self.slots.values()))
        # a process killed mid-call (this service, or a `campaign run`) may have left a call
        # up on a modem: end it before anything dials
        await asyncio.gather(*(self._hangup(s) for s in self.slots.values()))
        self._task = asyncio.get_running_loop().create_task(self._health_loop())

    async def close(self) -> None:
        self.closing = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for s in self.slots.values():
            await self._drop(s, None)

    async def _open(self, slot: ModemSlot) -> None:
        try:
            line = await open_line(slot.cfg)
        except Exception as exc:   # any open failure is this modem's state, not the service's
            if slot.error != str(exc):
                log.warning("modem %s not available: %s", slot.name, exc, extra={"modem": slot.name})
            slot.error = str(exc)
            self._record(slot, "down", slot.error)
            return
        if slot.error is not None or slot.reopened:
            log.info("modem %s is back", slot.name, extra={"modem": slot.name})
        slot.line, slot.error = line, None
        slot.imei = line.identity.imei or slot.imei
        slot.lost = False
        if self.supervisor is not None:
            self.supervisor.note_success(slot.name)
        slot.reopened += 1
        slot._remove = line.driver.add_listener(functools.partial(self._on_event, slot))
        for cb in self.on_line_opened:
            cb(slot)
        await self._check(slot)

    async def _hangup(self, slot: ModemSlot) -> None:
        if slot.line is not None and not slot.leased and not slot.line.driver.incoming_active:
            with contextlib.suppress(Exception):
                await slot.line.driver.clear_left_call()

    async def _drop(self, slot: ModemSlot, reason: str | None) -> None:
        line, slot.line, slot.health = slot.line, None, None
        if reason:
            slot.error = reason
            self._record(slot, "down", reason)
        if line is not None:
            with contextlib.suppress(Exception):
                await line.close()

    def _on_event(self, slot: ModemSlot, ev) -> None:
        if self.closing:
            return
        if isinstance(ev, ModemLost):
            slot.lost = True
            log.warning("modem %s lost: %s", slot.name, ev.error, extra={"modem": slot.name})
            if not slot.leased:
                asyncio.get_running_loop().create_task(self._drop(slot, ev.error))
            else:
                slot.error = ev.error
        elif isinstance(ev, SignalChanged) and slot.health is not None:
            slot.health.signal_dbm = ev.dbm
        elif isinstance(ev, RegistrationChanged) and slot.health is not None:
            slot.health.registration = ev.status

    async def _check(self, slot: ModemSlot) -> None:
        line = slot.line
        if line is None or slot.leased:
            return
        try:
            slot.health = await line.driver.health()
            slot.checked_at = time.monotonic()
        except Exception as exc:
            log.warning("modem %s failed its health check: %s", slot.name, exc, extra={"modem": slot.name})
            await self._drop(slot, f"health check: {exc}")
            return
        ready = slot.ready(need_audio=False)
        self._record(slot, "ready" if ready else "not_ready",
                     None if ready else f"sim {slot.health.sim}, {slot.health.registration.value}")
        self._serve()

    async def _health_loop(self) -> None:
        while True:
            # not wait_for: a kick in the instant of close()'s cancel would swallow it and
            # close() would wait for this loop forever (modem_dialer/waits.py)
            await wait_set(self._kick, self.health_interval)
            self._kick.clear()
            for slot in list(self.slots.values()):
                if slot.leased or slot.recovering:
                    continue
                now = time.monotonic()
                if (slot.line is not None and slot.error is None and now - slot.used_at < self.health_interval
                        and now - slot.checked_at < BUSY_CHECK_INTERVALS * self.health_interval):
                    continue
                if slot.line is None or (slot.error and not slot.line.driver.is_open):
                    if slot.line is not None:
                        await self._drop(slot, slot.error)
                    if self._needs_recovery(slot):
                        self._start_recovery(slot)
                    else:
                        await self._open(slot)
                else:
                    await self._check(slot)

    def _needs_recovery(self, slot: ModemSlot) -> bool:
        """A modem we knew (by IMEI) whose port vanished: look for it elsewhere."""
        import os

        return (self.supervisor is not None and slot.imei is not None
                and (slot.lost or not os.path.exists(slot.cfg.port)))

    def _start_recovery(self, slot: ModemSlot) -> None:
        slot.recovering = True

        async def run() -> None:
            try:
                assert self.supervisor is not None
                cfg = await self.supervisor.recover(slot.cfg, slot.imei, lost=slot.lost)
                if cfg is not None and not self.closing:
                    if cfg.port != slot.cfg.port:
                        log.info("modem %s found again on %s", slot.name, cfg.port, extra={"modem": slot.name})
                    slot.cfg = cfg
                    slot.lost = False
                    await self._open(slot)
            except Exception:   # recovery trouble must never take the bank down
                log.exception("modem %s: recovery failed", slot.name)
            finally:
                slot.recovering = False
        asyncio.get_running_loop().create_task(run())

    def _record(self, slot: ModemSlot, status: str, reason: str | None) -> None:
        if self.conn is None or self.closing:
            return
        ident = slot.line.identity if slot.line else None
        if self.record_soon is not None:
            self.record_soon(functools.partial(set_modem_state, name=slot.name, status=status, reason=reason,
                                               imei=ident.imei if ident else None,
                                               iccid=ident.iccid if ident else None,
                                               seen=slot.line is not None, at=utc_now()))
            return
        try:
            set_modem_state(self.conn, slot.name, status, reason=reason, imei=ident.imei if ident else None,
                            iccid=ident.iccid if ident else None, seen=slot.line is not None)
        except DB_ERRORS as exc:
            log.warning("modem state not saved: %s", exc)

    # ---- leases ----------------------------------------------------------------------
    def free_lines(self, need_audio: bool = True) -> list[ModemSlot]:
        # a line where a caller is ringing is not free (the inbound desk is about to claim it)
        return [s for s in self.slots.values() if not s.leased and s.ready(need_audio)
                and not (s.line is not None and s.line.driver.incoming_active)]

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w[4].done())

    def _serve(self) -> None:
        kept = []
        while self._waiters:
            prio, seq, audio, accept, fut, prefer = heapq.heappop(self._waiters)
            if fut.done():
                continue
            free = [s for s in self.free_lines(audio) if accept is None or accept(s)]
            if not free:
                kept.append((prio, seq, audio, accept, fut, prefer))
                # a waiter for SMS (or for other modems) may still be served after this one
                continue
            slot = next((s for s in free if s.name == prefer), free[0])
            slot.leased = True
            fut.set_result(slot)
        for w in kept:
            heapq.heappush(self._waiters, w)

    @contextlib.asynccontextmanager
    async def lease(self, priority: Priority = Priority.ALERT, *, need_audio: bool = True,
                    timeout: float | None = None, accept: Accept | None = None,
                    prefer: str | None = None) -> AsyncIterator[ModemSlot]:
        """Wait for a ready line (by priority) and hold it for the block; TimeoutError if none in time.

        ``accept(slot)`` narrows the lines this waiter takes (a campaign's modem subset, lines
        not at a per-SIM limit); a waiter that accepts none of the free lines does not hold
        up the waiters behind it. ``prefer``: the line to take if it is among the free ones
        (a campaign worker's armed call was written for it), else any; it never changes who
        is served first."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._seq), need_audio, accept, fut, prefer))
        self._serve()
        try:
            # a line free now is taken at once: no round of the event loop (three, through the
            # timeout's wrappers) between a campaign line's call end and its next ATD
            slot = fut.result() if fut.done() else await asyncio.wait_for(asyncio.shield(fut), timeout)
        except BaseException:
            if fut.done() and not fut.cancelled():
                fut.result().leased = False
                self._serve()
            else:
                fut.cancel()
            raise
        try:
            yield slot
        finally:
            slot.leased = False
            slot.used_at = time.monotonic()
            if slot.error is not None and slot.line is not None and not slot.line.driver.is_open:
                await self._drop(slot, slot.error)
                self._kick.set()
            self._serve()

    async def claim_line(self, line: Line) -> Callable[[], None] | None:
        """Hold ``line`` now for an incoming call (call/inbound.py): a release function, or
        None when it is lent out. A held line counts as busy: every lease goes elsewhere."""
        for slot in self.slots.values():
            if slot.line is line:
                if slot.leased:
                    return None
                slot.leased = True

                def release(s: ModemSlot = slot) -> None:
                    s.leased = False
                    self._serve()
                return release
        return None

    def count_call(self, slot: ModemSlot, outcome: str) -> None:
        slot.calls[outcome] += 1

    def snapshot(self) -> list[dict]:
        out = []
        for s in self.slots.values():
            h = s.health
            ident = s.line.identity if s.line else None
            out.append({
                "name": s.name, "port": s.cfg.port, "ready": s.ready(), "busy": s.leased, "error": s.error,
                "signal_dbm": h.signal_dbm if h else None, "registration": h.registration.value if h else None,
                "operator": h.operator if h else None, "sim": h.sim if h else None,
                "imei": ident.imei if ident else None, "iccid": ident.iccid if ident else None,
                "calls": dict(s.calls), "sms_sent": s.sms_sent,
            })
        return out
