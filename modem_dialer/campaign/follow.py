"""Following a campaign that another process dials (the service) from the database alone.

``campaign run`` hands the campaign to the service, then shows the same plain log or live
view as when it dials itself, built from the journal: new calls (``calls``), rule
decisions, pauses and rotation changes (``campaign_log``), counts (``contacts``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..store import from_ts, to_ts, utc_now
from .view import LiveView, PlainView


class Follower:
    def __init__(self, conn: sqlite3.Connection, campaign_id: int) -> None:
        self.conn = conn
        self.cid = campaign_id
        # only what happens from now on (the summary at the end covers the rest)
        self.last_call = self._max("calls")
        self.last_log = self._max("campaign_log")
        self.open_calls: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.first_finished: int | None = None
        self.status = "running"
        self.statuses: Counter[str] = Counter()

    def _max(self, table: str) -> int:
        row = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table} WHERE campaign_id = ?",  # noqa: S608
                                (self.cid,)).fetchone()
        return int(row[0])

    def poll(self) -> list[tuple[str, str]]:
        """What happened since the last poll, as (kind, text) view events."""
        events: list[tuple[str, str]] = []
        self.conn.commit()      # a fresh read snapshot
        for r in self.conn.execute(
                "SELECT id, number, modem, outcome FROM calls WHERE campaign_id = ? AND id > ? ORDER BY id",
                (self.cid, self.last_call)).fetchall():
            self.last_call = r["id"]
            events.append(("dial", f"{r['modem']}: dialing {r['number']}"))
            self.open_calls[r["id"]] = dict(r)
        for call_id in sorted(self.open_calls):
            r = self.conn.execute("SELECT outcome, modem, number FROM calls WHERE id = ?", (call_id,)).fetchone()
            if r is None or r["outcome"] is None:
                continue
            del self.open_calls[call_id]
            keys = "".join(k[0] for k in self.conn.execute(
                "SELECT key FROM keys WHERE call_id = ? ORDER BY id", (call_id,)))
            events.append(("call", f"{r['modem']}: {r['number']} {r['outcome']}" + (f" keys {keys}" if keys else "")))
        for r in self.conn.execute("SELECT * FROM campaign_log WHERE campaign_id = ? AND id > ? ORDER BY id",
                                   (self.cid, self.last_log)).fetchall():
            self.last_log = r["id"]
            ev = _log_event(r)
            if ev is not None:
                events.append(ev)
        row = self.conn.execute("SELECT status FROM campaigns WHERE id = ?", (self.cid,)).fetchone()
        self.status = row[0] if row else "?"
        self.statuses = Counter({s: n for s, n in self.conn.execute(
            "SELECT status, COUNT(*) FROM contacts WHERE campaign_id = ? GROUP BY status", (self.cid,))})
        return events

    def finished(self) -> bool:
        return self.statuses["pending"] + self.statuses["in_progress"] == 0

    def snapshot(self) -> dict[str, Any]:
        total = sum(self.statuses.values())
        open_ = self.statuses["pending"] + self.statuses["in_progress"]
        done = total - open_
        if self.first_finished is None:
            self.first_finished = done
        elapsed = time.monotonic() - self.started
        rate = (done - self.first_finished) / elapsed if elapsed > 0 else 0.0
        outcomes = {o: n for o, n in self.conn.execute(
            "SELECT outcome, COUNT(*) FROM calls WHERE campaign_id = ? AND outcome IS NOT NULL GROUP BY outcome",
            (self.cid,))}
        nxt = self.conn.execute("SELECT MIN(next_attempt_at) FROM contacts WHERE campaign_id = ? AND status = 'pending'",
                                (self.cid,)).fetchone()[0]
        waiting = from_ts(nxt) if nxt and from_ts(nxt) > utc_now() and not self.statuses["in_progress"] else None
        return {"total": total, "finished": done, "statuses": dict(self.statuses), "outcomes": outcomes,
                "eta_s": open_ / rate if rate > 0 else None, "slots": self._slots(), "waiting_until": waiting,
                "paused": self.status == "paused", "stopping": False}

    def _slots(self) -> list[dict[str, Any]]:
        today = to_ts(datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0))
        busy = {c["modem"]: c["number"] for c in self.open_calls.values()}
        return [{"name": m, "state": "calling" if m in busy else "idle", "reason": None, "current": busy.get(m),
                 "calls_today": n, "signal_dbm": None}
                for m, n in self.conn.execute("SELECT modem, COUNT(*) FROM calls WHERE campaign_id = ? AND created_at >= ?"
                                              " GROUP BY modem ORDER BY modem", (self.cid, today))]


def _log_event(r: sqlite3.Row) -> tuple[str, str] | None:
    kind, verdict = r["kind"], r["verdict"]
    if kind == "rule" and verdict != "allow":
        detail = json.loads(r["data"] or "{}").get("detail")
        until = f" until {from_ts(r['until']).astimezone():%Y-%m-%d %H:%M:%S}" if r["until"] else ""
        return "rule", f"{r['number']}: {verdict} {r['rule']}{until}" + (f" ({detail})" if detail else "")
    if kind == "modem":
        return "modem", f"{r['modem']}: {'out of rotation' if verdict == 'out' else 'back in rotation'}" + (
            f" ({r['rule']})" if r["rule"] else "")
    if kind == "control" and verdict in ("paused", "resumed"):
        return "pause", "paused (campaign resume NAME to continue)" if verdict == "paused" else "resumed"
    return None


def follow(conn: sqlite3.Connection, campaign_id: int, view: PlainView | LiveView, *, poll: float = 0.5,
           sleep: Callable[[float], None] = time.sleep) -> Follower:
    """Show events until every contact has a final status (KeyboardInterrupt stops following)."""
    f = Follower(conn, campaign_id)
    f.poll()
    view.start(f.snapshot)
    try:
        while True:
            for kind, text in f.poll():
                view.event(kind, text)
            if f.finished():
                return f
            sleep(poll)
    finally:
        view.stop()
