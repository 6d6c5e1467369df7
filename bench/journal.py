"""Latency of the journal's hot writes on a real file (WAL, synchronous=FULL).

Goal: key() p99 <= 10 ms (a key press must be on disk before the flow reacts to it).
With --with-import, another process imports contacts into the same file meanwhile
(a CLI `campaign import` while the service dials): the journal then waits for the
import's write lock, one batch at a time.
Usage: .venv/bin/python bench/journal.py [--n 2000] [--dir DIR] [--with-import]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
from modem_dialer.store import Journal, open_db

ROOT = Path(__file__).resolve().parents[1]

IMPORTER = """
import sys
sys.path.insert(0, sys.argv[2])
from modem_dialer.store import Campaigns, open_db
s = Campaigns(open_db(sys.argv[1]))
cid = s.create_campaign("bench-import")
for round in range(1000):
    s.import_contacts(cid, ((i, "+3361%08d" % (i + round), {"n": round}) for i in range(2_000_000)))
"""


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="directory for the DB file (default: a temp dir)")
    ap.add_argument("--with-import", action="store_true", help="a concurrent contact import in another process")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        conn = open_db(Path(d) / "bench.db")
        importer = None
        if args.with_import:
            importer = subprocess.Popen([sys.executable, "-c", IMPORTER, str(Path(d) / "bench.db"), str(ROOT)])
            time.sleep(1.0)  # let it start importing
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        j = Journal(conn)
        results: dict[str, list[float]] = {"start_call": [], "key": [], "event": [], "finish_call": []}
        for i in range(args.n):
            t = time.perf_counter()
            cid = j.start_call("+33612345678", "modem0", "356938035643809", "8933150319000000000")
            results["start_call"].append(time.perf_counter() - t)
            t = time.perf_counter()
            j.key(cid, "0123456789*#"[i % 12], "inband")
            results["key"].append(time.perf_counter() - t)
            t = time.perf_counter()
            j.event(cid, "prompt", name="intro", ms=1234)
            results["event"].append(time.perf_counter() - t)
            t = time.perf_counter()
            j.finish_call(cid, "answered", hangup_by="callee")
            results["finish_call"].append(time.perf_counter() - t)
        if importer is not None:
            importer.kill()
            importer.wait()
        print(f"db={d}/bench.db journal_mode={mode} synchronous={sync} (2=FULL) n={args.n}"
              f"{' with a concurrent import' if importer else ''}")
        for name, xs in results.items():
            ms = [x * 1000 for x in xs]
            print(f"{name:12s} p50={pct(ms, 50):6.3f} ms  p99={pct(ms, 99):6.3f} ms  "
                  f"max={max(ms):7.3f} ms  mean={statistics.fmean(ms):6.3f} ms")
        conn.close()


if __name__ == "__main__":
    main()
