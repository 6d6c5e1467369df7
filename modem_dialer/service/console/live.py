"""The bank as the console shows it, and the once-a-second stream of it (server-sent events).

One producer task builds the bank view once per tick while at least one browser watches,
and every stream sends that same JSON text: ten open consoles cost one snapshot a second,
not ten. The snapshot reads the bank's memory and two small queries (the calls in progress,
on the partial index of open calls; today's counts, read once and then only the new rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...campaign.pool import local_midnight
from ...store import from_ts, open_db, to_ts, utc_now
from ...store.console import ConsoleQueries, LastFailure, OpenCall

if TYPE_CHECKING:
    from ..service import Service

TICK = 0.5           # s between two bank updates: at least one a second even when a loaded loop lags
KEEPALIVE = 15.0     # s: a comment line keeps proxies from closing an idle stream


def _age(ts: str | None, now: datetime) -> float | None:
    return None if not ts else max(0.0, round((now - from_ts(ts)).total_seconds(), 1))


class BankView:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.q = ConsoleQueries(svc.conn)
        # today's calls and last failures per modem: counted once in a worker (a busy day is
        # many rows), then only the new rows, on the loop, at each update
        self._since = ""
        self._base: asyncio.Future | None = None
        self._ready = False
        self._counted_to = 0
        self._final_to = 0
        self._today: Counter[str] = Counter()
        self._failures: dict[str, LastFailure] = {}
        self._limits: dict[str, Any] = {}     # the config does not change while the service runs

    def _count_base(self, since: str) -> tuple[Counter[str], int, dict[str, LastFailure]]:
        conn = open_db(self.svc.loaded.database_path)
        try:
            q = ConsoleQueries(conn)
            first = q.first_call_since(since)
            start = (first - 1) if first is not None else q.last_call_id()
            counts, last = q.calls_by_modem_after(start)
            return Counter(counts), last, q.failures_after(start)
        finally:
            conn.close()

    def _today_counts(self, now: datetime, open_calls: dict[str, OpenCall]) -> tuple[Counter[str] | None,
                                                                                      dict[str, LastFailure]]:
        since = to_ts(local_midnight(now))
        if since != self._since:           # a new day (or the first look)
            self._since, self._ready = since, False
            self._base = asyncio.get_running_loop().run_in_executor(None, self._count_base, since)
        if not self._ready:
            if self._base is None or not self._base.done() or self._base.exception() is not None:
                if self._base is not None and self._base.done():
                    self._since = ""         # the count failed: try again at the next update
                return None, {}
            self._today, self._counted_to, self._failures = self._base.result()
            self._final_to = self._counted_to
            self._ready = True
        new, self._counted_to = self.q.calls_by_modem_after(self._counted_to)
        self._today.update(new)
        # a call's outcome lands when it ends: look again from the oldest call still open
        self._failures.update(self.q.failures_after(self._final_to))
        oldest_open = min((c.id for c in open_calls.values()), default=self._counted_to + 1)
        self._final_to = max(self._final_to, min(oldest_open - 1, self._counted_to))
        return self._today, self._failures

    def rows(self) -> dict[str, Any]:
        svc = self.svc
        now = utc_now()
        open_calls = self.q.open_calls()
        today, failures = self._today_counts(now, open_calls)
        limits = svc.loaded.config.limits
        sup = svc.bank.supervisor
        shared = svc.campaigns.shared.slots
        out = []
        for s in svc.bank.slots.values():
            h = s.health
            ident = s.line.identity if s.line else None
            call = open_calls.get(s.name)
            peer = since = None
            if sup is not None and s.name in sup.quarantined:
                state = "quarantined"
            elif s.recovering:
                state = "recovering"
            elif s.lost:
                state = "lost"
            elif s.line is None:
                state = "down"
            elif call is not None:
                peer = call.number
                if call.answered_at:
                    state, since = "in call", call.answered_at
                else:
                    state, since = "dialing", call.started_at or call.created_at
            elif s.leased:
                state = "busy"
            elif s.ready(need_audio=False):
                state = "idle"
            else:
                state = "not ready"
            lim = self._limits.get(s.name)
            if lim is None:
                lim = self._limits[s.name] = limits.for_modem(s.name)
            cs = shared.get(s.name)
            fail = failures.get(s.name)
            err = s.error or (f"{fail.outcome}: {fail.cause_text}" if fail and fail.cause_text else None)
            out.append({
                "name": s.name, "port": s.cfg.port, "state": state, "peer": peer, "for_s": _age(since, now),
                "call_id": call.id if call else None,
                "campaign_id": call.campaign_id if call else None, "alert_id": call.alert_id if call else None,
                "signal_dbm": h.signal_dbm if h else None,
                "registration": h.registration.value if h else None, "operator": h.operator if h else None,
                "sim": h.sim if h else None, "iccid": ident.iccid if ident else None,
                "imei": ident.imei if ident else None,
                "calls_today": today.get(s.name, 0) if today is not None else None,
                "limits": {"calls_per_hour": lim.calls_per_hour, "calls_per_day": lim.calls_per_day,
                           "minutes_per_day": lim.minutes_per_day},
                "used": {"calls_hour": len(cs.hour), "minutes_today": round(cs.seconds_today / 60, 1)} if cs else None,
                "rotation": {"state": cs.state, "reason": cs.reason} if cs else None,
                "error": err,
            })
        return {"at": to_ts(now), "modems": out,
                "alerts_running": svc.runner.queue_length, "campaigns_running": sorted(svc.campaigns.running)}


class BankStream:
    """Builds the bank view once per tick while someone listens; every listener gets that text."""

    def __init__(self, view: BankView, tick: float = TICK) -> None:
        self.view = view
        self.tick = tick
        self.listeners = 0
        self.seq = 0
        self.text = ""
        self._new = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.built = 0          # snapshots built (the bench reads it)
        self.build_s = 0.0      # CPU time spent building them

    def _ensure(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="console-bank-stream")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.listeners > 0:
            t = time.thread_time()          # CPU time: what the console costs, whatever the load
            self.text = json.dumps(self.view.rows(), separators=(",", ":"))
            self.build_s += time.thread_time() - t
            self.built += 1
            self.seq += 1
            ev, self._new = self._new, asyncio.Event()
            ev.set()
            # a fixed cadence: the time spent building does not stretch the period
            due = max(due + self.tick, loop.time())
            await asyncio.sleep(due - loop.time())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def serve(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.listeners += 1
        self._ensure()
        seen = -1
        try:
            while True:
                if self.seq == seen:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._new.wait(), KEEPALIVE)
                if self.seq == seen:
                    await resp.write(b": keep-alive\n\n")
                    continue
                seen = self.seq
                await resp.write(f"id: {seen}\nevent: bank\ndata: {self.text}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.listeners -= 1
        return resp

