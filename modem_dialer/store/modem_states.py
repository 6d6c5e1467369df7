"""The modem bank's last known state, so `modem-dialer modems` can show it without the service."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from .timestamps import to_ts, utc_now


def set_modem_state(conn: sqlite3.Connection, name: str, status: str, *, reason: str | None = None,
                    imei: str | None = None, iccid: str | None = None, seen: bool = True,
                    at: datetime | None = None) -> None:
    """Upsert the modem's row; identity fields given as None keep their last value."""
    last_seen = to_ts(at or utc_now()) if seen else None
    with conn:
        conn.execute(
            "INSERT INTO modem_state (name, imei, iccid, last_seen, status, reason) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET imei = COALESCE(excluded.imei, imei),"
            " iccid = COALESCE(excluded.iccid, iccid), last_seen = COALESCE(excluded.last_seen, last_seen),"
            " status = excluded.status, reason = excluded.reason",
            (name, imei, iccid, last_seen, status, reason),
        )


def modem_states(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM modem_state ORDER BY name")]
