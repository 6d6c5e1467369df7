"""The bank as the console shows it, and the live stream of it (server-sent events).

What a watcher costs is kept small and independent of how many watch:

- one producer task builds the bank view once per tick while at least one browser watches
  and encodes it once; every stream writes those same bytes (ten consoles cost one
  snapshot a tick, not ten);
- after the first full snapshot a watcher gets only what changed (``event: changes``: per
  modem whose row changed, its name and the changed fields); a modem in a call carries the
  time its call started, not its age, so its row stays the same from one tick to the next
  and the browser counts the seconds;
- the three small queries (calls in progress on the partial index of open calls, today's
  new calls, new failures) run only when the database changed since the last tick
  (SQLite's ``data_version`` and this connection's change count);
- a watcher that fell behind (a slow client) skips the ticks it missed and gets one full
  snapshot instead (coalescing): no backlog per watcher;
- the watchers wait on one shared event, with no timer of their own: the producer's tick is
  the only timer, and it stops when the last watcher leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...campaign.pool import local_midnight
from ...store import open_db, to_ts, utc_now
from ...store.console import ConsoleQueries, LastFailure, OpenCall

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger(__name__)

TICK = 0.5           # s between two bank updates: at least one a second even when a loaded loop lags
# ms a browser waits before reconnecting a stream that ended (the browsers' own default is
# 3 s): a page logged out elsewhere reaches the login, and a restarted service is seen, sooner
RECONNECT_MS = 1000


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
        # what the three queries last read, and the database's change mark they read it at
        self._mark: tuple[int | str, int] | None = None
        self._open: dict[str, OpenCall] = {}
        self.queried = 0        # ticks that ran the queries (the tests and the bench read it)

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

    def _today_counts(self, now: datetime, open_calls: dict[str, OpenCall],
                      fresh: bool) -> tuple[Counter[str] | None, dict[str, LastFailure]]:
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
            self._ready = fresh = True       # counted meanwhile: read what came after
        if not fresh:
            return self._today, self._failures
        new, self._counted_to = self.q.calls_by_modem_after(self._counted_to)
        self._today.update(new)
        # a call's outcome lands when it ends: look again from the oldest call still open
        self._failures.update(self.q.failures_after(self._final_to))
        oldest_open = min((c.id for c in open_calls.values()), default=self._counted_to + 1)
        self._final_to = max(self._final_to, min(oldest_open - 1, self._counted_to))
        return self._today, self._failures

    def snapshot(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the bank's head: time, alerts and campaigns running; one row per modem).

        A row changes only when something on it changes: a call's start is given as a time
        (``since``), its age is ``at`` minus ``since``."""
        svc = self.svc
        now = utc_now()
        # read before the queries: a commit landing during them changes the mark again, and
        # the next tick reads once more (the reads are idempotent)
        mark = self.q.change_mark()
        fresh = mark != self._mark
        if fresh:
            self._open = self.q.open_calls()
            self.queried += 1
        open_calls = self._open
        today, failures = self._today_counts(now, open_calls, fresh)
        self._mark = mark if self._ready else None
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
                "name": s.name, "port": s.cfg.port, "state": state, "peer": peer, "since": since,
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
        head = {"at": to_ts(now), "alerts_running": svc.runner.queue_length,
                "campaigns_running": sorted(svc.campaigns.running)}
        return head, out

    def rows(self) -> dict[str, Any]:
        """The whole bank in one document (``GET /console/api/bank``, the stream's first event)."""
        head, modems = self.snapshot()
        return {**head, "modems": modems}


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


class BankStream:
    """Builds the bank once per tick while someone listens; every listener writes the same bytes."""

    def __init__(self, view: BankView, tick: float | None = None) -> None:
        self.view = view
        self.tick = TICK if tick is None else tick     # read here, not at import: patchable
        self.listeners = 0
        self.seq = 0
        self._head = ""                   # the head's JSON members, without braces
        self._rows: dict[str, dict[str, Any]] = {}   # each modem's row at the last tick, in bank order
        self._change = b""                # the event sent to a watcher that saw seq - 1
        self._full: tuple[int, bytes] = (-1, b"")   # the full snapshot of one seq, built when asked
        self._new = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None
        self.built = 0          # snapshots built (the bench reads it)
        self.build_s = 0.0      # CPU time spent building them
        self.send_s = 0.0       # CPU time spent writing events to the watchers (on the loop thread)
        self.sent_changes = 0   # change events and full snapshots written (the tests read them)
        self.sent_full = 0

    def _ensure(self) -> bool:
        """Start the producer unless it runs; whether it was started now."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="console-bank-stream")
            return True
        return False

    def _build(self) -> None:
        head, rows = self.view.snapshot()
        now = {r["name"]: r for r in rows}
        if list(now) != list(self._rows):
            changed = None                 # modems came or went: everyone gets the whole bank
        else:
            # per modem, only the fields that changed (and its name): a call starting on one
            # modem is a hundred bytes, not the bank's thirty kilobytes
            changed = []
            for name, row in now.items():
                before = self._rows[name]
                diff = {k: v for k, v in row.items() if before[k] != v}
                if diff:
                    diff["name"] = name
                    changed.append(diff)
        self._rows = now
        self._head = _dumps(head)[1:-1]
        self.seq += 1
        if changed is None:
            self._change = b""
        else:
            self._change = (f"id: {self.seq}\nevent: changes\ndata: {{{self._head},"
                            f"\"modems\":{_dumps(changed)}}}\n\n").encode()

    def full(self) -> bytes:
        """The whole bank at the current seq, encoded once however many watchers ask."""
        if self._full[0] != self.seq:
            self._full = (self.seq, (f"id: {self.seq}\nevent: bank\ndata: {{{self._head},"
                                     f"\"modems\":{_dumps(list(self._rows.values()))}}}\n\n").encode())
        return self._full[1]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.listeners > 0 and not self._closed:
            t = time.thread_time()          # CPU time: what the console costs, whatever the load
            try:
                self._build()
            except Exception:               # a bad tick must not end the stream for everyone
                log.exception("console: building the bank view failed")
            else:
                ev, self._new = self._new, asyncio.Event()
                ev.set()
            self.build_s += time.thread_time() - t
            self.built += 1
            # a fixed cadence: the time spent building does not stretch the period
            due = max(due + self.tick, loop.time())
            await asyncio.sleep(due - loop.time())

    async def close(self) -> None:
        self._closed = True
        self._new.set()                     # the watchers see the stream is closed and end
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def serve(self, request: web.Request, alive: Callable[[], bool] = lambda: True) -> web.StreamResponse:
        """Stream the bank to one watcher until it goes away, the service stops, or ``alive()``
        turns false (its session ended: logged out in another tab)."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.listeners += 1
        started = self._ensure()
        # the first event is a snapshot built after this watcher came (a stream that was
        # stopped holds an old one) or at most a tick old
        floor = self.seq if started else max(self.seq - 1, 0)
        seen = -1
        try:
            await resp.write(f"retry: {RECONNECT_MS}\n\n".encode())    # read per stream: patchable
            while not self._closed:
                if self.seq == seen or self.seq <= floor:
                    await self._new.wait()   # the producer ticks at least twice a second
                    continue
                if not alive():
                    break                    # the browser reconnects, gets 401 and goes to the login
                if self.seq == seen + 1 and self._change:
                    data = self._change
                    self.sent_changes += 1
                else:                        # new, or behind by more than a tick: the whole bank
                    data = self.full()
                    self.sent_full += 1
                seen = self.seq
                t = time.thread_time()
                await resp.write(data)
                self.send_s += time.thread_time() - t
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.listeners -= 1
        return resp
