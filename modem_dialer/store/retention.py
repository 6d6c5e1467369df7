"""Retention and erasure (rules_and_signals.md A.5.9, A.4).

The retention period is a per-jurisdiction setting decided above the store; these
functions only carry it out. Each runs in one transaction.
"""

from __future__ import annotations

import json
from datetime import datetime

from .timestamps import now_ts, to_ts
from .types import Connection

# The voice recordings (flow ``record`` nodes) are files; their paths are in the calls'
# ``record`` events. The caller removes the files before the rows that name them go, so that
# a file it could not remove can still be found by running the same purge or erasure again.
_RECORDINGS = ("SELECT e.call_id, e.data FROM call_events e JOIN calls c ON c.id = e.call_id"
               " WHERE e.kind = 'record' AND ")


def _paths(rows) -> list[tuple[int, str]]:
    out = []
    for call_id, data in rows:
        path = (json.loads(data) if isinstance(data, str) else data or {}).get("path")
        if isinstance(path, str) and path:
            out.append((int(call_id), path))
    return out


def recordings_before(conn: Connection, cutoff: datetime) -> list[tuple[int, str]]:
    """(call id, file) of each recording of the finished calls :func:`purge_before` deletes."""
    return _paths(conn.execute(_RECORDINGS + "c.created_at < ? AND c.outcome IS NOT NULL ORDER BY e.id",
                               (to_ts(cutoff),)).fetchall())


def recordings_of_number(conn: Connection, number: str) -> list[tuple[int, str]]:
    """(call id, file) of each recording of the calls :func:`erase_number` deletes."""
    return _paths(conn.execute(_RECORDINGS + "c.number = ? ORDER BY e.id", (number,)).fetchall())


def purge_before(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete finished calls (with their events, keys, answers) and SMS older than ``cutoff``.

    Refusals older than the cutoff go too; suppression and consent records are kept
    (they are the proof needed to honour an objection or justify past calls).
    """
    ts = to_ts(cutoff)
    with conn:
        calls = conn.execute("DELETE FROM calls WHERE created_at < ? AND outcome IS NOT NULL", (ts,)).rowcount
        sms = conn.execute("DELETE FROM sms WHERE created_at < ?", (ts,)).rowcount
        refusals = conn.execute("DELETE FROM refusals WHERE at < ?", (ts,)).rowcount
        log = conn.execute("DELETE FROM campaign_log WHERE at < ?", (ts,)).rowcount
        sms_in = conn.execute("DELETE FROM sms_in WHERE received_at < ?", (ts,)).rowcount
        sms_in += conn.execute("DELETE FROM sms_in_parts WHERE received_at < ?", (ts,)).rowcount
    return {"calls": calls, "sms": sms, "refusals": refusals, "campaign_log": log, "sms_in": sms_in}


def erase_number(conn: Connection, number: str, source: str = "erasure_request") -> dict[str, int]:
    """An erasure request: delete everything about ``number`` but keep it suppressed.

    The suppression entry is what honours the objection afterwards (CNIL advice), so it
    is added if missing.
    """
    with conn:
        counts = {
            "calls": conn.execute("DELETE FROM calls WHERE number = ?", (number,)).rowcount,
            "contacts": conn.execute("DELETE FROM contacts WHERE number = ?", (number,)).rowcount,
            "consent": conn.execute("DELETE FROM consent WHERE number = ?", (number,)).rowcount,
            "refusals": conn.execute("DELETE FROM refusals WHERE number = ?", (number,)).rowcount,
            "sms": conn.execute("DELETE FROM sms WHERE number = ?", (number,)).rowcount,
            "campaign_log": conn.execute("DELETE FROM campaign_log WHERE number = ?", (number,)).rowcount,
            "sms_in": conn.execute("DELETE FROM sms_in WHERE sender = ?", (number,)).rowcount
            + conn.execute("DELETE FROM sms_in_parts WHERE sender = ?", (number,)).rowcount,
        }
        conn.execute(
            "INSERT INTO suppression (number, reason, source, added_at) VALUES (?, 'erasure', ?, ?)"
            " ON CONFLICT (number) DO NOTHING",
            (number, source, now_ts()),
        )
    return counts
