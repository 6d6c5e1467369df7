"""Import 1,000,000 generated contacts: time and peak RSS; then a re-import and next_due.

The rows are produced lazily, as a CSV reader would, so peak RSS shows what the
store itself holds (one batch), not the input.
Usage: .venv/bin/python bench/import_contacts.py [--rows 1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
from modem_dialer.store import Campaigns, open_db, utc_now


def rows(n: int, changed_every: int = 0) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for i in range(n):
        fields = {"name": f"Contact {i}", "ref": f"R{i:07d}", "city": "Lyon"}
        if changed_every and i % changed_every == 0:
            fields["city"] = "Paris"
        yield i + 2, f"+3361{i:08d}", fields  # line 1 is the CSV header


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "bench.db"
        conn = open_db(path)
        store = Campaigns(conn)
        cid = store.create_campaign("bench")
        print(f"rows={args.rows:,} rss at start={rss_mb():.1f} MB")

        t = time.perf_counter()
        r = store.import_contacts(cid, rows(args.rows))
        dt = time.perf_counter() - t
        print(f"first import : {dt:6.2f} s  ({args.rows / dt:,.0f} rows/s)  {r}  peak RSS={rss_mb():.1f} MB")

        t = time.perf_counter()
        r = store.import_contacts(cid, rows(args.rows, changed_every=100))
        dt = time.perf_counter() - t
        print(f"re-import    : {dt:6.2f} s  ({args.rows / dt:,.0f} rows/s)  {r}  peak RSS={rss_mb():.1f} MB")

        now = utc_now()
        exclude = [f"+3361{i:08d}" for i in range(50)]
        t = time.perf_counter()
        for _ in range(100):
            due = store.next_due(cid, now, limit=20, exclude_numbers=exclude)
        dt = (time.perf_counter() - t) / 100
        print(f"next_due(limit=20, 50 excluded): {dt * 1000:.3f} ms per call, first={due[0].number}")
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM contacts WHERE campaign_id = ? AND status = 'pending'"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT 20", (cid, "9")).fetchall()
        print("next_due plan:", "; ".join(p[3] for p in plan))
        t = time.perf_counter()
        counts = store.counts(cid)
        print(f"counts: {counts} in {(time.perf_counter() - t) * 1000:.1f} ms")
        conn.close()
        print(f"db size={path.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
