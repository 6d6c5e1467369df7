"""Following a campaign that another process dials (the service) from the database alone.

``campaign run`` hands the campaign to the service, then shows the same plain log or live
view as when it dials itself, built from the journal: new calls (``calls``), rule
decisions, pauses and rotation changes (``campaign_log``), counts (``contacts``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..store import Campaigns, Connection, Journal, from_ts, to_ts, utc_now
from ..store.campaign_log import CampaignLog
from .view import LiveView, PlainView

COUNT_EVERY = 20      # re-count contacts per status at most every 20 × what a count takes


class Follower:
    def __init__(self, conn: Connection, campaign_id: int) -> None:
        self.conn = conn
        self.cid = campaign_id
        self.campaigns = Campaigns(conn)
        self.journal = Journal(conn)
        self.clog = CampaignLog(conn, campaign_id)
        # only what happens from now on (the summary at the end covers the rest)
        self.last_call = self.journal.last_campaign_call_id(campaign_id)
        self.last_log = self.clog.last_id()
        self.open_calls: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.first_finished: int | None = None
        self.status = "running"
        self.statuses: Counter[str] = Counter()
        self.open_left = True
        self._counted_at = float("-inf")
        self._count_cost = 0.0

    def poll(self) -> list[tuple[str, str]]:
        """What happened since the last poll, as (kind, text) view events."""
        events: list[tuple[str, str]] = []
        self.campaigns.fresh_snapshot()
        for r in self.journal.campaign_calls_after(self.cid, self.last_call):
            self.last_call = r["id"]
            events.append(("dial", f"{r['modem']}: dialing {r['number']}"))
            self.open_calls[r["id"]] = r
        for call_id in sorted(self.open_calls):
            try:
                r = self.journal.get_call(call_id)
            except KeyError:
                continue
            if r["outcome"] is None:
                continue
            del self.open_calls[call_id]
            keys = "".join(k["key"] for k in r["keys"])
            events.append(("call", f"{r['modem']}: {r['number']} {r['outcome']}" + (f" keys {keys}" if keys else "")))
        for r in self.clog.after(self.last_log):
            self.last_log = r["id"]
            ev = _log_event(r)
            if ev is not None:
                events.append(ev)
        self.status = self.campaigns.status_of(self.cid) or "?"
        # "anything left?" is one index probe; the counts per status read every contact
        # (~1.5 s of CPU at 10M): re-counted at most every COUNT_EVERY × what the last
        # count took, so following a big campaign costs a few % of a core, not all of it
        self.open_left = self.campaigns.has_open_contacts(self.cid)
        now = time.monotonic()
        if not self.open_left or now - self._counted_at >= COUNT_EVERY * self._count_cost:
            self.statuses = Counter(self.campaigns.counts(self.cid))
            self._counted_at = time.monotonic()
            self._count_cost = self._counted_at - now
        return events

    def finished(self) -> bool:
        return not self.open_left

    def snapshot(self) -> dict[str, Any]:
        total = sum(self.statuses.values())
        open_ = self.statuses["pending"] + self.statuses["in_progress"]
        done = total - open_
        if self.first_finished is None:
            self.first_finished = done
        elapsed = time.monotonic() - self.started
        rate = (done - self.first_finished) / elapsed if elapsed > 0 else 0.0
        outcomes = self.campaigns.outcome_counts(self.cid)
        nxt = self.campaigns.next_pending_at(self.cid)
        waiting = nxt if nxt is not None and nxt > utc_now() and not self.statuses["in_progress"] else None
        return {"total": total, "finished": done, "statuses": dict(self.statuses), "outcomes": outcomes,
                "eta_s": open_ / rate if rate > 0 else None, "slots": self._slots(), "waiting_until": waiting,
                "paused": self.status == "paused", "stopping": False}

    def _slots(self) -> list[dict[str, Any]]:
        today = to_ts(datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0))
        busy = {c["modem"]: c["number"] for c in self.open_calls.values()}
        return [{"name": m, "state": "calling" if m in busy else "idle", "reason": None, "current": busy.get(m),
                 "calls_today": n, "signal_dbm": None}
                for m, n in self.journal.campaign_calls_per_modem(self.cid, today)]


def _log_event(r: dict[str, Any]) -> tuple[str, str] | None:
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


def follow(conn: Connection, campaign_id: int, view: PlainView | LiveView, *, poll: float = 0.5,
           sleep: Callable[[float], None] = time.sleep, since: Follower | None = None) -> Follower:
    """Show events until every contact has a final status (KeyboardInterrupt stops following).
    ``since``: a Follower made before the campaign was handed to someone else (the service),
    so that the calls it makes before this starts are shown too."""
    f = since if since is not None else Follower(conn, campaign_id)
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
