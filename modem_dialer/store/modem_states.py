"""The modem bank's last known state, so `modem-dialer modems` can show it without the service.

One row per (box, modem): every box writes its own modems' rows; the listing shows the
whole bank with each row's box and how long ago it was written (docs/scale-out.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .boxes import this_box
from .timestamps import from_ts, to_ts, utc_now
from .types import Connection


def set_modem_state(conn: Connection, name: str, status: str, *, reason: str | None = None,
                    imei: str | None = None, iccid: str | None = None, seen: bool = True,
                    at: datetime | None = None, box: str | None = None) -> None:
    """Upsert the modem's row (of this process's box); identity fields given as None keep
    their last value."""
    last_seen = to_ts(at or utc_now()) if seen else None
    with conn:
        conn.execute(
            "INSERT INTO modem_state (box, name, imei, iccid, last_seen, status, reason) VALUES (?, ?, ?, ?, ?, ?, ?)"
            # qualified: PostgreSQL finds a bare `imei` ambiguous (the row or excluded)
            " ON CONFLICT (box, name) DO UPDATE SET imei = COALESCE(excluded.imei, modem_state.imei),"
            " iccid = COALESCE(excluded.iccid, modem_state.iccid),"
            " last_seen = COALESCE(excluded.last_seen, modem_state.last_seen),"
            " status = excluded.status, reason = excluded.reason",
            (box or this_box(), name, imei, iccid, last_seen, status, reason),
        )


def modem_states(conn: Connection, box: str | None = None) -> list[dict[str, Any]]:
    """The bank's rows (one box's with ``box``), each with its box's status and heartbeat
    (``box_status`` NULL: the box never registered, e.g. only `modems` ran there)."""
    return [dict(r) for r in conn.execute(
        "SELECT m.*, b.status AS box_status, b.heartbeat_at AS box_heartbeat FROM modem_state m"
        " LEFT JOIN boxes b ON b.name = m.box WHERE (? IS NULL OR m.box = ?) ORDER BY m.box, m.name",
        (box, box))]


def other_boxes_modems(conn: Connection, me: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """The modems of every box but ``me``, as last written to the shared database: box,
    name, status, reason, identity, ``age_s`` (since the row's last health check) and
    whether that box is up (``box_status``: up | stopped | lost | None if it never ran)."""
    now = now or utc_now()
    out = []
    for r in modem_states(conn):
        if r["box"] == me:
            continue
        seen = r["last_seen"]
        out.append({"box": r["box"], "name": r["name"], "status": r["status"], "reason": r["reason"],
                    "imei": r["imei"], "iccid": r["iccid"], "last_seen": seen,
                    "age_s": None if seen is None else round((now - from_ts(seen)).total_seconds(), 1),
                    "box_status": r["box_status"]})
    return out
