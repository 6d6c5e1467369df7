"""Two-way records: incoming calls and callbacks, and the webhook outbox (schema step 5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .boxes import this_box
from .timestamps import to_ts, utc_now
from .types import Connection

INBOUND_ACTIONS = frozenset({"answered", "rejected", "missed", "busy", "failed"})


@dataclass(frozen=True)
class CallbackLink:
    """The campaign contact an incoming call is a callback from (None fields: not found)."""

    campaign_id: int | None
    contact_id: int | None
    call_id: int | None          # our outgoing call it answers


@dataclass(frozen=True)
class Callback:
    contact_id: int
    number: str
    at: str
    action: str
    call_id: int | None


@dataclass(frozen=True)
class OutboxItem:
    id: int
    event: str
    url: str
    payload: str
    attempts: int
    created_at: str


class Inbound:
    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def callback_link(self, number: str | None, iccid: str | None, modem: str) -> CallbackLink:
        """Our latest campaign call to ``number`` from this SIM (by ICCID, else modem name)."""
        if not number:
            return CallbackLink(None, None, None)
        row = self.conn.execute(
            "SELECT id, campaign_id, contact_id FROM calls WHERE number = ? AND direction = 'out'"
            " AND campaign_id IS NOT NULL AND ((? IS NOT NULL AND iccid = ?) OR (? IS NULL AND modem = ?))"
            " ORDER BY id DESC LIMIT 1", (number, iccid, iccid, iccid, modem)).fetchone()
        if row is None:
            return CallbackLink(None, None, None)
        return CallbackLink(row["campaign_id"], row["contact_id"], row["id"])

    def start_call(self, number: str, modem: str, imei: str | None, iccid: str | None) -> int:
        """The ``calls`` row of an incoming call we answer (direction 'in'; never an attempt)."""
        now = to_ts(self._clock())
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO calls (number, modem, imei, iccid, direction, created_at, started_at, box)"
                " VALUES (?, ?, ?, ?, 'in', ?, ?, ?)", (number, modem, imei, iccid, now, now, this_box()))
            call_id = int(cur.lastrowid)  # type: ignore[arg-type]
            self.conn.execute("INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, 'state', ?)",
                              (call_id, now, json.dumps({"state": "incoming", "number": number or None})))
        return call_id

    def record(self, *, number: str | None, withheld: bool, modem: str, iccid: str | None, action: str,
               link: CallbackLink, call_id: int | None = None, note: str | None = None) -> int:
        """One incoming call, whatever became of it."""
        if action not in INBOUND_ACTIONS:
            raise ValueError(f"unknown inbound action {action!r}")
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO inbound_calls (number, withheld, modem, iccid, at, action, call_id, campaign_id,"
                " contact_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, int(withheld), modem, iccid, to_ts(self._clock()), action, call_id, link.campaign_id,
                 link.contact_id, note))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def get(self, inbound_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM inbound_calls WHERE id = ?", (inbound_id,)).fetchone()
        return None if row is None else dict(row)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(
            "SELECT * FROM inbound_calls ORDER BY id DESC LIMIT ?", (int(limit),))]

    def callbacks(self, campaign_id: int) -> list[Callback]:
        """Contacts of the campaign who called back (oldest first)."""
        return [Callback(r["contact_id"], r["number"], r["at"], r["action"], r["call_id"]) for r in self.conn.execute(
            "SELECT contact_id, number, at, action, call_id FROM inbound_calls"
            " WHERE campaign_id = ? AND contact_id IS NOT NULL ORDER BY id", (campaign_id,))]


class Outbox:
    """Webhook events waiting for delivery, one row per (event, target URL)."""

    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def add(self, event: str, payload: str, urls: list[str]) -> list[int]:
        """Queue ``payload`` for each URL (one transaction); returns the row ids."""
        now = to_ts(self._clock())
        ids = []
        with self.conn:
            for url in urls:
                cur = self.conn.execute(
                    "INSERT INTO webhook_outbox (event, url, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)",
                    (event, url, payload, now, now))
                ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
        return ids

    def due(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        return [OutboxItem(r["id"], r["event"], r["url"], r["payload"], r["attempts"], r["created_at"])
                for r in self.conn.execute(
                    "SELECT id, event, url, payload, attempts, created_at FROM webhook_outbox"
                    " WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                    (to_ts(now), int(limit)))]

    def next_due_at(self) -> str | None:
        row = self.conn.execute("SELECT MIN(next_at) FROM webhook_outbox WHERE status = 'pending'").fetchone()
        return row[0]

    def delivered(self, item_id: int) -> None:
        now = to_ts(self._clock())
        with self.conn:
            self.conn.execute("UPDATE webhook_outbox SET status = 'delivered', delivered_at = ?,"
                              " attempts = attempts + 1, last_error = NULL WHERE id = ?", (now, item_id))

    def failed(self, item_id: int, error: str, next_at: datetime | None) -> None:
        """A failed try: due again at ``next_at``, or given up ('failed') when None."""
        with self.conn:
            if next_at is None:
                self.conn.execute("UPDATE webhook_outbox SET status = 'failed', attempts = attempts + 1,"
                                  " last_error = ? WHERE id = ?", (error[:500], item_id))
            else:
                self.conn.execute("UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?, next_at = ?"
                                  " WHERE id = ?", (error[:500], to_ts(next_at), item_id))

    def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(
            "SELECT id, event, url, status, attempts, created_at, next_at, delivered_at, last_error"
            " FROM webhook_outbox WHERE (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?",
            (status, status, int(limit)))]

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, COUNT(*) FROM webhook_outbox GROUP BY status")}
