"""The campaign log: one row per calling-rule decision, modem rotation change or control action.

(In store/ since the SQL seam: the campaign controller, the CLI and the console write it.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .timestamps import to_ts, utc_now
from .types import Connection

_INSERT = ("INSERT INTO campaign_log (campaign_id, contact_id, number, modem, at, kind, verdict, rule, until, data)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# one encoder for every row (json.dumps with options builds a new one per call: one per dial)
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


class CampaignLog:
    def __init__(self, conn: Connection, campaign_id: int, clock: Callable[[], datetime] = utc_now,
                 submit: Callable[..., Any] | None = None) -> None:
        self.conn = conn
        # a dialing process queues its rows to the journal writer (store/writer.py)
        self._submit = submit
        self.campaign_id = campaign_id
        self._clock = clock

    def row(self, kind: str, *, contact_id: int | None = None, number: str | None = None, modem: str | None = None,
            verdict: str | None = None, rule: str | None = None, until: datetime | None = None,
            **data: Any) -> tuple:
        """The parameters of one row, for callers that write it inside their own transaction."""
        return (self.campaign_id, contact_id, number, modem, to_ts(self._clock()), kind, verdict, rule,
                None if until is None else to_ts(until), _ENCODER.encode(data))

    def write(self, kind: str, **kw: Any) -> None:
        row = self.row(kind, **kw)
        if self._submit is not None:
            self._submit(self.write_row, row)
            return
        with self.conn:
            self.conn.execute(_INSERT, row)

    @staticmethod
    def write_row(conn: Connection, row: tuple) -> None:
        """One row made by :meth:`row`, inside the caller's transaction on ``conn``."""
        conn.execute(_INSERT, row)

    def entries(self, *, contact_id: int | None = None, kind: str | None = None, limit: int = 1000) -> list[dict]:
        rows = self.conn.execute(
            "SELECT * FROM campaign_log WHERE campaign_id = ? AND (? IS NULL OR contact_id = ?)"
            " AND (? IS NULL OR kind = ?) ORDER BY id LIMIT ?",
            (self.campaign_id, contact_id, contact_id, kind, kind, limit)).fetchall()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def last_id(self) -> int:
        """The id of the campaign's latest log row (0: none): a follower starts after it."""
        row = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM campaign_log WHERE campaign_id = ?",
                                (self.campaign_id,)).fetchone()
        return int(row[0])

    def after(self, last_id: int) -> list[dict[str, Any]]:
        """The campaign's log rows after ``last_id``, in order (``data`` still JSON text)."""
        return [dict(r) for r in self.conn.execute(
            "SELECT * FROM campaign_log WHERE campaign_id = ? AND id > ? ORDER BY id",
            (self.campaign_id, last_id)).fetchall()]
