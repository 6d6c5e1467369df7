"""Campaign lines inside the service: borrowed from the bank one call at a time.

A campaign worker asks the bank for a line with ``Priority.CAMPAIGN`` before each call and
gives it back when the call ends, so an alert waiting for a line gets the next one that
frees up, and no call in progress is ever cut. The per-SIM counters (calls per hour and
per day, answered minutes, consecutive failures) live in one :class:`SharedSlots` for the
whole service, so two campaigns on the same SIM add up, and they follow the modem when the
bank re-opens it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..alerting.lines import Priority
from ..call.line import Line
from ..campaign.limits import LimitsConfig
from ..campaign.pool import Slot, note_blocked
from ..store import Connection, Journal, set_modem_state
from .bank import Bank, ModemSlot

if TYPE_CHECKING:
    from ..campaign.controller import Controller

OnChange = Callable[[Slot, str, str | None], None]


class SharedSlots:
    """The campaign view of each modem (limits, rotation), keyed by modem name, seeded by SIM."""

    def __init__(self, conn: Connection, limits: LimitsConfig) -> None:
        self.conn = conn
        self.limits = limits
        self.slots: dict[str, Slot] = {}
        self.listeners: list[OnChange] = []

    def add(self, mss: list[ModemSlot], now: datetime) -> None:
        """The slots of these bank modems not seen yet, their counters read in one statement
        (a campaign starting on a box's lines: one round trip, not two a line, before its
        first dial)."""
        new = [ms for ms in mss if ms.line is not None and ms.name not in self.slots]
        if not new:
            return
        slots = [Slot(ms.line, self.limits, now) for ms in new]  # type: ignore[arg-type]
        used = Journal(self.conn).outbound_usage_many([s.usage_ask(now) for s in slots])
        for ms, slot, u in zip(new, slots, used, strict=True):
            slot.seed(self.conn, now, u)
            slot._on_change = self._changed
            self.slots[ms.name] = slot

    def get(self, ms: ModemSlot, now: datetime) -> Slot | None:
        """The slot of a bank modem, following a re-opened line (None before its first open)."""
        slot = self.slots.get(ms.name)
        if ms.line is None:
            return slot
        if slot is None:
            slot = Slot(ms.line, self.limits, now)
            slot.seed(self.conn, now)
            slot._on_change = self._changed
            self.slots[ms.name] = slot
        elif slot.line is not ms.line:
            old_iccid = slot.line.identity.iccid
            slot.rebind(ms.line)
            if ms.line.identity.iccid != old_iccid:      # another SIM: its own counters
                slot.seed(self.conn, now)
        return slot

    def _changed(self, slot: Slot, what: str, reason: str | None) -> None:
        set_modem_state(self.conn, slot.name, "out_of_rotation" if what == "out" else "ready", reason=reason,
                        imei=slot.line.identity.imei, iccid=slot.line.identity.iccid)
        for cb in list(self.listeners):
            cb(slot, what, reason)

    def close(self) -> None:
        for s in self.slots.values():
            s.close()


class BankSource:
    """A campaign's line source in the service (the controller's ``LineSource``).

    A worker is lent a line per call, alerts first. Its next call is armed while the current
    one plays (controller.py): the contact claimed and the call row written for the line it
    is on now; at its next turn the worker asks the bank for that line again (``prefer``),
    and when an alert (or a limit) took it, the armed call is bound to the line it gets
    (``binds_at_dial``). An alert waiting when a call ends gets that line first, as before:
    an armed call holds no line."""

    keeps_lines = False
    binds_at_dial = True

    def __init__(self, bank: Bank, shared: SharedSlots, names: list[str] | None = None) -> None:
        self.bank = bank
        self.shared = shared
        self.names = list(names) if names is not None else list(bank.slots)
        self.ctrl: Controller | None = None

    @property
    def slots(self) -> list[Slot]:
        return [self.shared.slots[n] for n in self.names if n in self.shared.slots]

    async def open(self, ctrl: Controller, now: datetime) -> int:
        # no "no modem ready" error here: the service waits for its modems to come back
        self.ctrl = ctrl
        self.shared.listeners.append(ctrl._slot_changed)
        self.shared.add([ms for n in self.names if (ms := self.bank.slots.get(n)) is not None], now)
        for n in self.names:
            ms = self.bank.slots.get(n)
            if ms is not None:
                self.shared.get(ms, now)
        return len(self.names)

    def _eligible(self, now: datetime) -> tuple[set[str], datetime | None]:
        """Modems this campaign may dial on now, and when the next resting one frees up."""
        assert self.ctrl is not None
        ok: set[str] = set()
        soonest: datetime | None = None
        for n in self.names:
            ms = self.bank.slots.get(n)
            slot = None if ms is None else self.shared.get(ms, now)
            if ms is None or slot is None or ms.line is None:
                continue
            until, why = slot.blocked_until(now)
            if why is not None and slot.state == "out" and ms.ready():
                # the bank health-checks every line: a registered line after its cool-down,
                # or once registration is back, returns to rotation
                reason = slot.reason or ""
                if (until is not None and until <= now) or reason.startswith("lost registration"):
                    slot.bring_back("registered, cool-down over" if until else "registration returned")
                    until, why = slot.blocked_until(now)
            if why is not None:
                if slot.state != "out":
                    note_blocked(slot, self.ctrl, now, until, why)
                if until is not None and (soonest is None or until < soonest):
                    soonest = until
                continue
            if slot.state == "limit":
                slot.state, slot.reason = "idle", None
            ok.add(n)
        return ok, soonest

    @contextlib.asynccontextmanager
    async def turn(self, index: int, now: datetime) -> AsyncIterator[tuple[Slot | None, float]]:
        assert self.ctrl is not None
        ok, until = self._eligible(now)
        if not ok:
            yield None, self.ctrl._delay(now, until)
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                # bounded wait: a pause, a stop or a limit is looked at again after `poll`
                armed = self.ctrl._armed.get(index)
                ms = await stack.enter_async_context(self.bank.lease(
                    Priority.CAMPAIGN, timeout=self.ctrl.poll, accept=lambda s: s.name in ok,
                    prefer=armed.modem if armed is not None else None))
            except TimeoutError:
                ms = None
            slot = None if ms is None else self.shared.get(ms, self.ctrl.clock())
            if ms is None or slot is None:
                yield None, 0.0
                return
            slot.last_outcome = None
            try:
                yield slot, 0.0
            finally:
                if slot.last_outcome is not None:
                    self.bank.count_call(ms, slot.last_outcome)

    def close(self) -> None:
        if self.ctrl is not None and self.ctrl._slot_changed in self.shared.listeners:
            self.shared.listeners.remove(self.ctrl._slot_changed)


class BankLines:
    """Lends a free bank line to a flow's bridge transfer (call/transfer.py LineProvider)."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self._held: dict[int, contextlib.AsyncExitStack] = {}

    async def acquire(self, exclude: Line) -> Line | None:
        stack = contextlib.AsyncExitStack()
        try:
            ms = await stack.enter_async_context(self.bank.lease(
                Priority.CAMPAIGN, timeout=0.05, accept=lambda s: s.line is not exclude))
        except TimeoutError:
            return None
        if ms.line is None:
            await stack.aclose()
            return None
        self._held[id(ms.line)] = stack
        return ms.line

    def release(self, line: Line) -> None:
        stack = self._held.pop(id(line), None)
        if stack is not None:
            asyncio.get_running_loop().create_task(stack.aclose())
