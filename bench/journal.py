"""The journal writer on a real file (WAL, synchronous=FULL), with fsync delayed like a slow disk.

For each fsync delay (strace fault injection on this bench's own child process):

- latency: ``--lines`` simulated calls at once; each awaits its call row (what ATD waits
  for), then presses a key every ``--key-every`` s (queued, as the call path does) and
  finishes. Measured: start_call → committed, key → committed (the future resolves after
  the COMMIT that holds the row), finish → committed.
- throughput: ``--n`` event rows queued as fast as possible by the same number of lines;
  rows per second and rows per commit (group commit).

With --with-import, another process imports contacts into the same file meanwhile (a CLI
`campaign import` while the service dials): the writer waits for the import's lock.

Usage: .venv/bin/python bench/journal.py [--delays 0,40] [--lines 16] [--n 5000] [--with-import]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
from modem_dialer.store import open_db
from modem_dialer.store.call_journal import CallJournal

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
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def line_of(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"  {name:24s} p50 {pct(ms, 50):7.2f} ms  p99 {pct(ms, 99):7.2f} ms  max {max(ms):7.2f} ms  (n={len(ms)})"


async def one(args: argparse.Namespace, db: Path) -> None:
    conn = open_db(db)
    j = CallJournal(conn)
    starts: list[float] = []
    keys: list[float] = []
    finishes: list[float] = []

    def timed(fut, into: list[float]) -> None:
        t = time.perf_counter()
        fut.add_done_callback(lambda _f: into.append(time.perf_counter() - t))

    async def call(m: int, i: int) -> None:
        t = time.perf_counter()
        cid = await j.start_call(f"+336{12000000 + m * 1000 + i:08d}", f"m{m}", "356938035643809", "8933150319000000")
        starts.append(time.perf_counter() - t)
        j.mark_dialed(cid)
        j.mark_answered(cid)
        for k in range(args.keys):
            await asyncio.sleep(args.key_every)
            timed(j.key(cid, "0123456789*#"[k % 12], "urc"), keys)
            j.event(cid, "prompt", name="menu", ms=1234)
        t = time.perf_counter()
        await j.finish_call(cid, "answered", hangup_by="dialer")
        finishes.append(time.perf_counter() - t)

    async def line(m: int) -> None:
        for i in range(args.calls):
            await call(m, i)

    c0 = j.writer.commits
    await asyncio.gather(*(line(m) for m in range(args.lines)))
    await j.flush()
    print(f"latency: {args.lines} lines × {args.calls} calls, {args.keys} keys per call every {args.key_every:g} s "
          f"({j.writer.commits - c0} commits)")
    print(line_of("start_call → committed", starts))
    print(line_of("key → committed", keys))
    print(line_of("finish_call → committed", finishes))

    # throughput: rows queued as fast as the lines can, grouped by the writer
    cid = await j.start_call("+33612345678", "m0")
    c0, o0 = j.writer.commits, j.writer.ops_committed
    t = time.perf_counter()

    async def burst(m: int) -> None:
        for i in range(args.n // args.lines):
            j.event(cid, "node", line=m, i=i)
            if i % 50 == 0:
                await asyncio.sleep(0)      # other lines' turns, as on the real loop
    await asyncio.gather(*(burst(m) for m in range(args.lines)))
    await j.flush()
    dt = time.perf_counter() - t
    rows = j.writer.ops_committed - o0
    commits = j.writer.commits - c0
    print(f"throughput: {rows} rows in {dt:.2f} s = {rows / dt:,.0f} rows/s, {commits} commits "
          f"({rows / max(1, commits):.0f} rows per commit)")
    await j.aclose()
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delays", default="0,40", help="fsync/fdatasync delays in ms (strace), comma-separated")
    ap.add_argument("--lines", type=int, default=16)
    ap.add_argument("--calls", type=int, default=5, help="calls per line")
    ap.add_argument("--keys", type=int, default=4, help="keys per call")
    ap.add_argument("--key-every", type=float, default=0.25)
    ap.add_argument("--n", type=int, default=5000, help="rows for the throughput run")
    ap.add_argument("--dir", default=None, help="directory for the DB file (default: a temp dir)")
    ap.add_argument("--with-import", action="store_true", help="a concurrent contact import in another process")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)   # the DB file, when run under strace
    args = ap.parse_args()
    if args.child:
        asyncio.run(one(args, Path(args.child)))
        return
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed (apt install strace; scripts/setup.sh does it)")
    for delay in (int(x) for x in args.delays.split(",")):
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            db = Path(d) / "bench.db"
            open_db(db).close()
            importer = None
            if args.with_import:
                importer = subprocess.Popen([sys.executable, "-c", IMPORTER, str(db), str(ROOT)])
                time.sleep(1.0)
            trace = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=fsync,fdatasync"]
            if delay:
                trace += ["-e", f"inject=fsync,fdatasync:delay_enter={delay * 1000}"]
            child = [a for a in sys.argv[1:]]
            print(f"--- fsync +{delay} ms{' with a concurrent import' if importer else ''} (db {db})", flush=True)
            subprocess.run([*trace, sys.executable, __file__, *child, "--child", str(db)], check=True)
            if importer is not None:
                importer.kill()
                importer.wait()


if __name__ == "__main__":
    main()
