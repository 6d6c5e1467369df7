"""Campaign reports: one row per contact (streamed in chunks) and a summary."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..store import Campaigns, Connection

CHUNK = 2000


def contact_rows(conn: Connection, campaign_id: int) -> Iterator[dict[str, Any]]:
    """number, fields, status, attempts, last outcome, keys (all calls, in order) and answers."""
    store = Campaigns(conn)
    for chunk in store.report_chunks(campaign_id, CHUNK):
        keys, answers = store.keys_and_answers([r[0] for r in chunk])
        for cid, number, fields, status, attempts, last_outcome, due in chunk:
            yield {"number": number, "fields": json.loads(fields), "status": status, "attempts": attempts,
                   "last_outcome": last_outcome, "next_attempt_at": due if status == "pending" else None,
                   "keys": "".join(keys.get(cid, ())), "answers": answers.get(cid, {})}


def summary(conn: Connection, campaign_id: int, statuses: dict[str, int] | None = None) -> dict[str, Any]:
    """The campaign's counts; ``statuses`` (contacts per status) when the caller keeps them
    already (a running controller does): counting them reads every contact (~1.5 s at 10M)."""
    store = Campaigns(conn)
    st = store.call_stats(campaign_id)
    calls, answered, avg = st.calls, st.answered, st.avg_answered_s
    if statuses is None:
        statuses = store.counts(campaign_id)
    contacts = sum(statuses.values())
    by_modem: dict[str, dict[str, Any]] = {}
    for modem, iccid, outcome, n in st.by_modem:
        entry = by_modem.setdefault(modem, {"iccid": iccid, "calls": 0, "outcomes": {}})
        entry["calls"] += n
        entry["outcomes"][outcome or "open"] = n
    per_hour, outcomes = st.per_hour, st.outcomes
    from ..store.twoway import Inbound

    callbacks = Inbound(conn).callbacks(campaign_id)
    return {
        "contacts": contacts, "statuses": statuses, "calls": calls or 0, "outcomes": outcomes,
        # contacts who called the SIM that had called them (incoming calls, call/inbound.py)
        "called_back": sorted({cb.number for cb in callbacks}),
        "answer_rate": round((answered or 0) / calls, 4) if calls else None,
        "contacts_answered": statuses.get("answered", 0),
        "avg_answered_duration_s": round(avg, 2) if avg is not None else None,
        "by_modem": by_modem, "attempts_per_hour": per_hour,
        "answers": store.answer_counts(campaign_id),   # survey: per question, counts per answer
    }


def write_csv(out: Any, rows: Iterable[dict[str, Any]]) -> None:
    """The per-contact report as CSV (``report --format csv`` and the console's download)."""
    it = iter(rows)
    first = next(it, None)
    base = ["number", "status", "attempts", "last_outcome", "next_attempt_at", "keys", "answers"]
    w = csv.writer(out)
    if first is None:
        w.writerow(base)
        return
    # field columns come from the first contact (a CSV import gives every contact the same ones)
    field_names = list(first["fields"])
    w.writerow(base[:1] + field_names + base[1:])
    for r in itertools.chain([first], it):
        w.writerow([r["number"], *[r["fields"].get(f, "") for f in field_names], r["status"], r["attempts"],
                    r["last_outcome"] or "", r["next_attempt_at"] or "", r["keys"],
                    json.dumps(r["answers"], ensure_ascii=False) if r["answers"] else ""])
