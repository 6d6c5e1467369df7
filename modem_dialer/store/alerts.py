"""Alerts (with their escalation state) and SMS, for the alerting service."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .boxes import this_box
from .timestamps import to_ts, utc_now
from .types import Connection

ALERT_STATUSES = frozenset({"open", "acknowledged", "resolved", "expired"})


class Alerts:
    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def _ts(self, at: datetime | None = None) -> str:
        return to_ts(at if at is not None else self._clock())

    # --- alerts ------------------------------------------------------------------

    def raise_alert(self, dedup_key: str, policy: str, text: str, *, audio_ref: str | None = None,
                    state: dict[str, Any] | None = None) -> tuple[int, bool]:
        """Open an alert, run by this process's box; if one with this key is still live (on
        any box: the partial unique index), return it. -> (id, created)."""
        now = self._ts()
        try:
            with self.conn:
                cur = self.conn.execute(
                    "INSERT INTO alerts (dedup_key, policy, text, audio_ref, state, created_at, updated_at, box)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (dedup_key, policy, text, audio_ref, json.dumps(state or {}, default=str), now, now,
                     this_box()),
                )
            return int(cur.lastrowid), True  # type: ignore[arg-type]
        except sqlite3.IntegrityError:  # the partial unique index: a live alert has this key
            row = self.conn.execute(
                "SELECT id FROM alerts WHERE dedup_key = ? AND status IN ('open', 'acknowledged')", (dedup_key,)
            ).fetchone()
            if row is None:  # resolved in between: try once more
                return self.raise_alert(dedup_key, policy, text, audio_ref=audio_ref, state=state)
            return int(row[0]), False

    def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else {**dict(row), "state": json.loads(row["state"])}

    def live_alerts(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id FROM alerts WHERE status IN ('open', 'acknowledged') ORDER BY created_at, id"
        ).fetchall()
        return [self.get_alert(r[0]) for r in rows]  # type: ignore[misc]

    def count_live(self) -> int:
        """Alerts open or acknowledged (the service caps them)."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE status IN ('open', 'acknowledged')").fetchone()[0])

    def live_id(self, dedup_key: str) -> int | None:
        """The live alert with this dedup key, if any."""
        row = self.conn.execute("SELECT id FROM alerts WHERE dedup_key = ? AND status IN ('open', 'acknowledged')",
                                (dedup_key,)).fetchone()
        return None if row is None else int(row[0])

    def alert_rows(self, *, live_only: bool, limit: int) -> list[dict[str, Any]]:
        """The newest alerts (live ones only, or all), for ``alert list`` without a service."""
        return [dict(r) for r in self.conn.execute(
            "SELECT id, status, policy, dedup_key, text, created_at, acknowledged_by, acknowledged_at, resolved_at"
            " FROM alerts WHERE ? OR status IN ('open', 'acknowledged') ORDER BY id DESC LIMIT ?",
            (not live_only, limit))]

    def alert_ids(self, *, live_only: bool, limit: int) -> list[int]:
        """Ids of the newest alerts (live ones only, or all), newest first (the API's list)."""
        if live_only:
            rows = self.conn.execute("SELECT id FROM alerts WHERE status IN ('open', 'acknowledged')"
                                     " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.conn.execute("SELECT id FROM alerts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [int(r[0]) for r in rows]

    def live_counts(self) -> list[tuple[str, str, int]]:
        """(policy, status, alerts) of the live alerts, sorted (the metrics gauge)."""
        return [(str(p), str(s), int(n)) for p, s, n in self.conn.execute(
            "SELECT policy, status, COUNT(*) FROM alerts WHERE status IN ('open', 'acknowledged')"
            " GROUP BY policy, status ORDER BY policy, status")]

    def count_queued_sms(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM sms WHERE status = 'queued'").fetchone()[0])

    def set_state(self, alert_id: int, state: dict[str, Any]) -> None:
        """Save the escalation progress (so a restarted service resumes where it was)."""
        with self.conn:
            self.conn.execute("UPDATE alerts SET state = ?, updated_at = ? WHERE id = ?",
                              (json.dumps(state, default=str), self._ts(), alert_id))

    def acknowledge(self, alert_id: int, by: str, at: datetime | None = None) -> bool:
        """open → acknowledged; False if it was not open."""
        ts = self._ts(at)
        with self.conn:
            cur = self.conn.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?,"
                " updated_at = ? WHERE id = ? AND status = 'open'", (ts, by, ts, alert_id))
        return cur.rowcount == 1

    def reopen(self, alert_id: int) -> bool:
        """acknowledged → open (the acknowledgement timed out); False if it was not acknowledged."""
        ts = self._ts()
        with self.conn:
            cur = self.conn.execute(
                "UPDATE alerts SET status = 'open', acknowledged_at = NULL, acknowledged_by = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'acknowledged'", (ts, alert_id))
        return cur.rowcount == 1

    def resolve(self, alert_id: int, at: datetime | None = None, status: str = "resolved") -> bool:
        """A live alert → resolved (or expired); False if it was not live."""
        if status not in ("resolved", "expired"):
            raise ValueError(f"an alert ends as resolved or expired, not {status!r}")
        ts = self._ts(at)
        with self.conn:
            cur = self.conn.execute(
                "UPDATE alerts SET status = ?, resolved_at = ?, updated_at = ?"
                " WHERE id = ? AND status IN ('open', 'acknowledged')", (status, ts, ts, alert_id))
        return cur.rowcount == 1

    # --- sms ---------------------------------------------------------------------

    def add_sms(self, number: str, text: str, *, alert_id: int | None = None) -> int:
        with self.conn:
            cur = self.conn.execute("INSERT INTO sms (number, text, alert_id, created_at) VALUES (?, ?, ?, ?)",
                                    (number, text, alert_id, self._ts()))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def sms_sent(self, sms_id: int, modem: str, reference: int | None) -> None:
        with self.conn:
            self.conn.execute("UPDATE sms SET status = 'sent', modem = ?, reference = ?, sent_at = ? WHERE id = ?",
                              (modem, reference, self._ts(), sms_id))

    def sms_failed(self, sms_id: int, error: str, modem: str | None = None) -> None:
        with self.conn:
            self.conn.execute("UPDATE sms SET status = 'failed', error = ?, modem = COALESCE(?, modem) WHERE id = ?",
                              (error, modem, sms_id))

    def sms_delivered(self, modem: str, reference: int, at: datetime | None = None) -> int | None:
        """A delivery report: mark the latest SMS sent by ``modem`` with ``reference``. -> its id."""
        # references wrap at 256, so the latest 'sent' one is the one being reported
        with self.conn:
            row = self.conn.execute(
                "UPDATE sms SET status = 'delivered', delivered_at = ? WHERE id = ("
                " SELECT id FROM sms WHERE modem = ? AND reference = ? AND status = 'sent'"
                " ORDER BY id DESC LIMIT 1) RETURNING id", (self._ts(at), modem, reference)).fetchone()
        return None if row is None else int(row[0])

    def sms_of_alert(self, alert_id: int) -> list[dict[str, Any]]:
        """The SMS an alert sent, in order (``alert status`` and the API)."""
        return [dict(r) for r in self.conn.execute(
            "SELECT id, number, status, modem, reference, error, created_at, sent_at, delivered_at"
            " FROM sms WHERE alert_id = ? ORDER BY id", (alert_id,))]

    def sms_count_since(self, number: str, since: datetime) -> int:
        """SMS to ``number`` created since ``since`` and not failed (the per-number rate limit)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM sms WHERE number = ? AND created_at >= ?"
                                     " AND status != 'failed'", (number, to_ts(since))).fetchone()[0])

    def queued_sms_ids(self) -> list[int]:
        """SMS still queued that no alert owns (a stopped service's; alerts re-send their own)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM sms WHERE status = 'queued' AND alert_id IS NULL ORDER BY id")]

    def get_sms(self, sms_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM sms WHERE id = ?", (sms_id,)).fetchone()
        return None if row is None else dict(row)
