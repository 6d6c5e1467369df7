"""Import a 1,000,000-row contacts CSV with validation (phonenumbers) and duplicate checks.

Prints rows/s and peak RSS for the first import, then a re-import of the unchanged rows
(the merge path). Usage: .venv/bin/python bench/campaign_import.py [--rows 1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modem_dialer.campaign.contacts import import_contacts
from modem_dialer.store import Campaigns, open_db


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_csv(path: Path, rows: int, bad_every: int = 1000) -> None:
    with path.open("w") as f:
        f.write("number,name,ref,city\n")
        for i in range(rows):
            # national format, as people export it; every bad_every-th row is invalid
            number = "12345" if i % bad_every == 999 else f"06 {i // 1000000 % 100:02d} {i // 10000 % 100:02d} " \
                f"{i // 100 % 100:02d} {i % 100:02d}"
            f.write(f"{number},Contact {i},R{i:07d},Lyon\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        csv_path = Path(d) / "contacts.csv"
        t = time.perf_counter()
        write_csv(csv_path, args.rows)
        print(f"rows={args.rows:,}  csv {csv_path.stat().st_size / 1e6:.0f} MB written in {time.perf_counter() - t:.1f} s")
        conn = open_db(Path(d) / "bench.db")
        store = Campaigns(conn)
        cid = store.create_campaign("bench")
        bad = 0

        def on_bad(_row) -> None:
            nonlocal bad
            bad += 1
        for label in ("first import", "re-import"):
            t = time.perf_counter()
            rep = import_contacts(store, cid, csv_path, "FR", on_bad=on_bad)
            dt = time.perf_counter() - t
            print(f"{label:13}: {dt:6.1f} s  ({args.rows / dt:,.0f} rows/s)  inserted={rep.inserted:,} "
                  f"unchanged={rep.unchanged:,} bad={rep.bad_count:,}  peak RSS={rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
