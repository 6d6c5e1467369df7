"""Several boxes on one database (issue 14, docs/scale-out.md): what users run, measured.

``utilisation``: 3 boxes (``modem-dialer serve``; ``--boxes 1`` for the same path on one box) × N
simulated modems each (``modem-dialer
sim`` per box, its own process), one campaign submitted to one box and joined by the others.
Every callee answers after ``--answer`` s and hangs up ``--hold`` s later (the message is
longer: the callee's hang-up ends the call), the measure of bench/campaign_utilisation.py:
lower bound = ceil(M / lines) · (answer + hold), utilisation = bound / makespan. Makespan:
from the first call row to the last call's end, read from the database (the time the
boxes took to start is not the scheduler's).

``claims``: contacts claimed per second by 100 concurrent workers, each with its own
connection and registered box, doing what a campaign worker does per call: read the next
due contacts, then claim one (store/boxes.py ``Leases.claim``, in one write transaction).
``--pick share`` (default): each worker reads its own share of the queue (``id % workers``,
as serve's boxes each take their share first), so that workers rarely reach for the same
contact; ``--pick head``: all read the same head and pick one at random (the worst case).
SQLite file, or ``--postgresql`` a throw-away PostgreSQL cluster.

``import``: a campaign of ``--contacts`` rows imported with ``modem-dialer campaign import``
(the command users run), its time and peak RSS; then 3 boxes run that campaign for
``--run`` s, and each ``serve`` process's peak RSS (VmHWM) is printed.

Usage: .venv/bin/python bench/multibox.py utilisation [--modems 32] [--calls 960] [--postgresql]
       .venv/bin/python bench/multibox.py claims [--workers 100] [--contacts 20000] [--postgresql] [--pick head]
       .venv/bin/python bench/multibox.py import [--contacts 1000000] [--run 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from boxes import run_cli, serve, start_bank, stop_bank, wait_until, write_campaign

from modem_dialer.store import Campaigns, from_ts, open_db, utc_now
from modem_dialer.store.boxes import Boxes, Leases


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) of a live process; ``reaped``: with its waited-for children's."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_cpu_s(data_dir: Path) -> float:
    """The PostgreSQL server's CPU: the postmaster with its reaped backends, plus the live ones."""
    try:
        pm = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = cpu_s(pm, reaped=True)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pm:
                    total += cpu_s(int(d.name))
            except (OSError, ValueError):
                pass
    return total


def pg_transactions(dsn: str) -> int:
    """Transactions the server has ended in the database so far (pg_stat_database)."""
    conn = open_db(dsn, migrate=False)
    try:
        return int(conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                " WHERE datname = current_database()").fetchone()[0])
    finally:
        conn.close()


def cpu_now(bank, pg_data: Path | None = None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """CPU seconds so far of every box's serve and simulator, and of the database server."""
    got = {}
    for b in bank.boxes:
        if b.serve is not None:
            got[f"{b.name} serve"] = cpu_s(b.serve.pid, reaped=True)
        got[f"{b.name} sim"] = cpu_s(b.sim.pid, reaped=True)
    if pg_data is not None:
        got["postgresql"] = pg_cpu_s(pg_data)
    return got


def print_peaks(bank, calls: int | None = None, pg_data: Path | None = None,  # type: ignore[no-untyped-def]
                before: dict[str, float] | None = None, per_box: dict[str, int] | None = None) -> None:
    """Each box's serve peak RSS and CPU (before it stops; since ``before`` when given: the
    campaign's, without the start-up), its simulator's CPU, the database server's, and the
    machine's load."""
    base = before or {}
    total = 0.0
    for b in bank.boxes:
        assert b.serve is not None and b.log is not None
        if b.serve.poll() is not None:
            errors = [ln for ln in b.log.read_text().splitlines() if '"error"' in ln or '"warning"' in ln]
            print(f"{b.name}: serve EXITED {b.serve.returncode}: " + "\n  ".join(errors[-5:]))
        else:
            serve = cpu_s(b.serve.pid, reaped=True) - base.get(f"{b.name} serve", 0.0)
            sim = cpu_s(b.sim.pid, reaped=True) - base.get(f"{b.name} sim", 0.0)
            total += serve + sim
            mine = (f" ({serve / (per_box[b.name] or 1) * 1000:.1f} ms per call of its {per_box[b.name]})"
                    if per_box and b.name in per_box else "")
            print(f"{b.name}: serve peak RSS {peak_rss_mb(b.serve.pid) or 0:.0f} MB, CPU {serve:.1f} s{mine}; "
                  f"its simulator CPU {sim:.1f} s, peak RSS {peak_rss_mb(b.sim.pid) or 0:.0f} MB")
    if pg_data is not None:
        pg = pg_cpu_s(pg_data) - base.get("postgresql", 0.0)
        total += pg
        print(f"PostgreSQL server CPU {pg:.1f} s")
    if calls:
        print(f"CPU of the boxes, simulators and database{' during the campaign' if before else ''}: "
              f"{total:.1f} s, {total / calls * 1000:.0f} ms per call")
    print(load())


# ---- utilisation ------------------------------------------------------------------------

def trace_serves(out: Path) -> None:
    """Each box's serve through bench/serve_trace.py (its steps and threads' CPU in OUT/NAME.*)."""
    import subprocess

    import boxes

    out.mkdir(parents=True, exist_ok=True)

    def spawn(box: boxes.Box) -> None:
        box.log = box.dir / "serve.log"
        with box.log.open("ab") as log:
            box.serve = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_trace.py")),
                                          str(out / box.name), "--config", str(box.config), "serve"],
                                         stdout=log, stderr=subprocess.STDOUT)
    boxes.spawn_serve = spawn


def traced(out: Path, names: list[str], calls: int, answer: float, hold: float) -> None:
    """What the traced serves wrote: where a line's time goes in the service (its steps between
    two ATDs), each thread's CPU per call, and the loop thread's heaviest functions."""
    import pstats
    from statistics import median

    from campaign_utilisation import Timeline

    tl = Timeline()
    threads: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    for n in names:
        got = json.loads((out / f"{n}.json").read_text())
        tl.calls.update({f"{n}/{k}": v for k, v in got["calls"].items()})
        threads.update({re.sub(r"[-_ ]?\d+(_\d+)?$", "", k): v for k, v in got["thread_cpu"].items()})
        commands.update(got["commands"])
        statements.update(got.get("statements", {}))
    seg: dict[str, list[float]] = {}
    for cs in tl.calls.values():
        for a, b in itertools.pairwise(cs):
            steps = [("freed", a), ("turn", a), ("leased", a), ("call", a), ("row_awaited", a), ("rechecked", a),
                     ("atd", b)]
            have = [(k, m[k]) for k, m in steps if k in m]
            for (x, tx), (y, ty) in itertools.pairwise(have):
                seg.setdefault(f"{x} -> {y}", []).append((ty - tx) * 1000)
            # the dial's rules read, asked ahead of the line's next turn (controller._prefetch_recheck)
            for x, y in (("end", "read_asked"), ("read_asked", "freed"), ("read_asked", "read_back"),
                         ("read_back", "rechecked")):
                if x in a and y in a:
                    seg.setdefault(f"{x} -> {y}", []).append((a[y] - a[x]) * 1000)
    tl.report(answer, hold)
    print("between two calls of a line, in the service (median / p90 ms): freed = the call's end handled, turn ="
          " the worker asks the bank, leased = the line lent, call = the armed call taken, row_awaited = its row"
          " committed, rechecked = the rules read again at the dial; read_asked/read_back = that read asked ahead"
          " (as the call's end is handled: Controller._prefetch_recheck) and its answer back")
    for name, xs in seg.items():
        xs.sort()
        print(f"  {name:44} {median(xs):7.1f} {xs[int(0.9 * (len(xs) - 1))]:7.1f}   ({len(xs)})")
    print("CPU of the serve processes' threads during the campaign, per call: " + ", ".join(
        f"{k} {v / calls * 1000:.2f} ms" for k, v in threads.most_common() if v > 0.05))
    print("AT commands per call during the campaign (every box, the health checks too): " + ", ".join(
        f"{k} {v / calls:.2f}" for k, v in commands.most_common()))
    if statements:
        by_thread: Counter[str] = Counter()
        for k, v in statements.items():
            by_thread[re.sub(r"[-_ ]?\d+(_\d+)?$", "", k.split(": ", 1)[0])] += v
        print(f"PostgreSQL round trips per call (every box, load-independent): {sum(statements.values()) / calls:.2f}; "
              "by thread: " + ", ".join(f"{k} {v / calls:.2f}" for k, v in by_thread.most_common()))
        print("PostgreSQL round trips per call (every box; by thread and statement): " + ", ".join(
            f"{k} {v / calls:.2f}" for k, v in statements.most_common() if v / calls >= 0.05))
    marks = {n: json.loads((out / f"{n}.json").read_text()).get("starts", []) for n in names}
    t0 = min((t for ms in marks.values() for t, _ in ms), default=0.0)
    for n, ms in marks.items():
        print(f"box {n}'s start (s after the first box's first mark): " + ", ".join(f"{step} {t - t0:.3f}"
                                                                                   for t, step in ms))
    for n in names[:1]:
        if not (out / f"{n}.prof").exists():
            break
        print(f"box {n}: the event loop thread's CPU by function (cProfile, thread time; the profiler's own"
              " cost inflates it), top 25 cumulative:")
        st = pstats.Stats(str(out / f"{n}.prof"))
        st.sort_stats("cumulative").print_stats(25)
        st.sort_stats("tottime").print_stats(25)
        if (out / f"{n}.journal").exists():
            print(f"box {n}: the journal writer thread's CPU by function, top 30 cumulative:")
            pstats.Stats(str(out / f"{n}.journal")).sort_stats("cumulative").print_stats(30)


async def utilisation(args: argparse.Namespace, d: Path) -> None:
    if args.trace:
        trace_serves(Path(args.trace))
    if args.postgresql:
        # a private cluster (tests/pgcluster.py) with fsync and synchronous commits on, as a
        # production server: the boxes share one database on it
        from pgcluster import pg_cluster

        with pg_cluster(durable=True) as cluster:
            print(f"database: PostgreSQL (throw-away cluster, fsync on) in {cluster.dir}")
            await _utilisation(args, d, cluster.create_db("bench"), cluster.data)
    else:
        print("database: one SQLite file shared by the boxes")
        await _utilisation(args, d, None)


async def _utilisation(args: argparse.Namespace, d: Path, database: str | None, pg_data: Path | None = None) -> None:
    scenario = {"default": {"outcome": "answer", "ring_after": 0.02, "answer_after": args.answer,
                            "hangup_after": args.hold}}
    names = [f"b{i + 1}" for i in range(args.boxes)]
    bank = await start_bank(d, names, args.modems, scenario, lease="10s", database=database)
    try:
        await asyncio.gather(*(serve(b, timeout=180) for b in bank.boxes))
        print(f"{args.boxes} box(es) up, {args.boxes * args.modems} lines; {load()}")
        nums = [f"+3361{i:07d}" for i in range(args.calls)]
        camp = write_campaign(d, nums, message_s=args.answer + args.hold + 5)
        before = cpu_now(bank, pg_data)
        tx0 = pg_transactions(database) if database else 0
        r = await asyncio.to_thread(run_cli, bank.box("b1").config, "campaign", "run", "--detach", str(camp))
        assert r.returncode == 0, r.stdout + r.stderr
        await wait_until(lambda: bank.rows("SELECT status FROM campaigns")[0]["status"] == "done", 3600,
                         "the campaign done", every=0.5)
        rows = bank.rows("SELECT box, modem, created_at, started_at, ended_at, outcome, cause_text FROM calls"
                         " ORDER BY created_at")
        start, end = from_ts(rows[0]["created_at"]), max(from_ts(r["ended_at"]) for r in rows)
        makespan = (end - start).total_seconds()
        lines = args.boxes * args.modems
        bound = math.ceil(args.calls / lines) * (args.answer + args.hold)
        per_box: dict[str, int] = {}
        first: dict[str, float] = {}
        for r in rows:
            per_box[r["box"]] = per_box.get(r["box"], 0) + 1
            at = (from_ts(r["started_at"] or r["created_at"]) - start).total_seconds()
            first[r["box"]] = min(first.get(r["box"], at), at)
        answered = sum(1 for r in rows if r["outcome"] == "answered")
        others = Counter(f"{r['outcome']} ({r['cause_text']})" for r in rows if r["outcome"] != "answered")
        print(f"calls {len(rows):,} (answered {answered:,}{'; ' + str(dict(others)) if others else ''}) on {lines} lines; per box {per_box}; each box's first "
              "dial after the first call row: " + ", ".join(f"{b} {s:.2f} s" for b, s in sorted(first.items())))

        def dialed(r: dict) -> float:
            # the dial mark (an armed row is written while the line's last call still plays)
            return from_ts(r["started_at"] or r["created_at"]).timestamp()

        def pct(xs: list[float]) -> str:
            xs = sorted(xs)
            return f"median {xs[len(xs) // 2]:.0f} ms, 90th {xs[len(xs) * 9 // 10]:.0f} ms"
        gaps = [(dialed(b) - from_ts(a["ended_at"]).timestamp()) * 1000
                for a, b in itertools.pairwise(sorted(rows, key=lambda r: (r["box"], r["modem"], dialed(r))))
                if (a["box"], a["modem"]) == (b["box"], b["modem"])]
        inside = [(from_ts(r["ended_at"]).timestamp() - dialed(r)) * 1000 - (args.answer + args.hold) * 1000
                  for r in rows]
        ahead = [(dialed(r) - from_ts(r["created_at"]).timestamp()) * 1000 for r in rows]
        print(f"from a line's call end to its next dial: {pct(gaps)}; from the dial to the end beyond answer + "
              f"hold: {pct(inside)}; call row written before its dial by {pct(ahead)}")
        line_budget(rows, start, args.answer + args.hold)
        print(f"makespan {makespan:.1f} s  lower bound {bound:.1f} s ({math.ceil(args.calls / lines)} calls per "
              f"line × {args.answer + args.hold:g} s)  utilisation {bound / makespan:.1%}")
        if database:
            tx = pg_transactions(database) - tx0
            print(f"PostgreSQL transactions (commits + rollbacks, every box): {tx:,}, {tx / len(rows):.1f} per call")
        print_peaks(bank, len(rows), pg_data, before, per_box)
    finally:
        await asyncio.to_thread(stop_bank, bank)
        if args.trace:      # each box's serve log next to its trace (what it did when, e.g. joining)
            for b in bank.boxes:
                if b.log is not None and b.log.exists():
                    (Path(args.trace) / f"{b.name}.log").write_bytes(b.log.read_bytes())
    if args.trace:
        traced(Path(args.trace), names, len(rows), args.answer, args.hold)


def line_budget(rows: list[dict], start: datetime, per_call: float) -> None:
    """Where a line's time goes, read from the database: per line (box, modem), its first
    dial after the run's first call row (the box joining), its calls' time beyond answer +
    hold (ATD to the end: the AT round trips, the callee's timers, end detection) and its
    gaps (a call's end to the line's next dial); for the line that ended last (it sets the
    makespan) and the median line."""

    by_line: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_line.setdefault((r["box"], r["modem"]), []).append(r)
    budgets = []
    for key, calls in by_line.items():
        calls.sort(key=lambda r: from_ts(r["started_at"] or r["created_at"]))
        dial = [from_ts(r["started_at"] or r["created_at"]) for r in calls]
        end = [from_ts(r["ended_at"]) for r in calls]
        budgets.append({"line": f"{key[0]}/{key[1]}", "calls": len(calls),
                        "join": (dial[0] - start).total_seconds(),
                        "inside": sum((e - d).total_seconds() - per_call for d, e in zip(dial, end, strict=True)),
                        "gaps": sum((d - e).total_seconds() for e, d in zip(end, dial[1:], strict=False)),
                        "end": (end[-1] - start).total_seconds()})
    per_line = Counter(b["calls"] for b in budgets)
    last = max(budgets, key=lambda b: b["end"])

    def show(b: dict) -> str:
        return (f"{b['calls']} calls × {per_call:g} s + first dial {b['join']:.2f} s + beyond answer + hold "
                f"{b['inside']:.2f} s + gaps {b['gaps']:.2f} s = {b['end']:.2f} s")
    mid = sorted(budgets, key=lambda b: b["end"])[len(budgets) // 2]
    print("where a line's time goes (from the first call row): the last line to end "
          f"({last['line']}): {show(last)}; the median line ({mid['line']}): {show(mid)}; "
          f"lines by calls: {dict(sorted(per_line.items()))}; worst first dial {max(b['join'] for b in budgets):.2f} s, "
          f"worst sum of gaps {max(b['gaps'] for b in budgets):.2f} s, worst beyond answer + hold "
          f"{max(b['inside'] for b in budgets):.2f} s")


# ---- claims -----------------------------------------------------------------------------

def claims(args: argparse.Namespace, d: Path) -> None:
    if args.postgresql:
        from pgcluster import pg_cluster

        with pg_cluster(durable=True) as cluster:
            _claims(args, cluster.create_db("claims"), "PostgreSQL (throw-away cluster, fsync on; row lock"
                    " FOR UPDATE SKIP LOCKED + a tried advisory lock on the number, one transaction per claim)")
    else:
        _claims(args, str(d / "claims.db"), "SQLite (WAL, synchronous=FULL, one fsync per claim)")


def _claims(args: argparse.Namespace, db: str, label: str) -> None:
    conn = open_db(db)
    store = Campaigns(conn)
    cid = store.create_campaign("claims")
    store.import_contacts(cid, ((i, f"+3361{i:07d}", {}) for i in range(args.contacts)))
    boxes = [f"w{i}" for i in range(args.workers)]
    for b in boxes:
        Boxes(conn).register(b, timedelta(minutes=10), pid=os.getpid())
    conn.close()
    claimed = [0] * args.workers
    lost = [0] * args.workers
    go = threading.Event()

    reads = [0] * args.workers

    def worker(i: int) -> None:
        c = open_db(db, migrate=False)
        try:
            store, leases = Campaigns(c), Leases(c)
            go.wait()
            while True:
                # --pick share (as serve's boxes): the worker's own share of the due contacts
                # (id % workers), a few at a time; once it is empty, the head like the others
                due = store.next_due(cid, utc_now(), limit=8, share=(i, args.workers)) if args.pick == "share" else []
                reads[i] += 1
                if not due:
                    head = store.next_due(cid, utc_now(), limit=32)
                    reads[i] += args.pick == "share"
                    if not head:
                        return
                    due = [random.choice(head)]      # every worker reading the same head: spread a little
                for contact in due:
                    with c:
                        ok = leases.claim(contact.id, contact.number, boxes[i])
                    if ok:
                        claimed[i] += 1
                    else:
                        lost[i] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    from modem_dialer.store.pg import PgConnection

    trips0 = PgConnection.all_round_trips
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    n = sum(claimed)
    how = ("its share of the due contacts (id % workers, 8 a read; the head once it is empty)" if args.pick == "share"
           else "the head of the due contacts (32), one picked at random")
    print(f"backend: {label}; each worker: its own connection and box, reads {how}, claims one contact a"
          " transaction (store/boxes.py Leases.claim)")
    print(f"{n:,} contacts claimed by {args.workers} concurrent workers in {dt:.1f} s: {n / dt:,.0f} claims/s; "
          f"{sum(lost):,} claims lost to another worker ({sum(lost) / max(1, n + sum(lost)):.1%}); "
          f"{sum(reads) / max(1, n):.2f} reads of the due contacts a claim")
    check = open_db(db, migrate=False)
    try:
        dup = check.execute("SELECT COUNT(*) FROM contacts WHERE status = 'in_progress'").fetchone()[0]
    finally:
        check.close()
    print(f"contacts in_progress after the run: {dup:,} (each claimed once: {dup == n})")
    trips = PgConnection.all_round_trips - trips0     # counted without a lock: about
    if trips:
        print(f"PostgreSQL round trips: about {trips / max(1, n):.1f} per contact claimed (its reads of the due"
              " contacts, its claims lost and won)")
    print(load())


# ---- import -----------------------------------------------------------------------------

def write_contacts(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("number,name\n")
        for i in range(rows):
            f.write(f"+336{i // 10_000_000 % 10}{i % 10_000_000:07d},Contact {i}\n")


async def big_import(args: argparse.Namespace, d: Path) -> None:
    scenario = {"default": {"outcome": "busy", "ring_after": 0.01, "end_after": 0.05}}
    bank = await start_bank(d, ["b1", "b2", "b3"], 4, scenario, lease="10s")
    try:
        camp = write_campaign(d, [], message_s=0.2)
        t = time.perf_counter()
        write_contacts(d / "contacts.csv", args.contacts)
        print(f"{args.contacts:,} contacts: CSV {(d / 'contacts.csv').stat().st_size / 1e6:.0f} MB written in "
              f"{time.perf_counter() - t:.0f} s; {load()}")
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        before, cpu0 = ru.ru_maxrss, ru.ru_utime + ru.ru_stime
        t = time.perf_counter()
        r = await asyncio.to_thread(run_cli, bank.box("b1").config, "campaign", "import", str(camp), timeout=7200)
        dt = time.perf_counter() - t
        assert r.returncode == 0, r.stdout + r.stderr
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak, cpu = ru.ru_maxrss, ru.ru_utime + ru.ru_stime - cpu0     # the import's alone (the only child reaped)
        print(f"`campaign import`: {dt:.0f} s ({args.contacts / dt:,.0f} rows/s), CPU {cpu:.0f} s "
              f"({cpu / args.contacts * 1e6:.0f} µs a row); peak RSS "
              f"{peak / 1024:.0f} MB" + ("" if peak > before else " (not above an earlier child's)") + f"; {load()}")
        print("  " + r.stdout.strip().replace("\n", "\n  "))
        await asyncio.gather(*(serve(b, timeout=180) for b in bank.boxes))
        rr = await asyncio.to_thread(run_cli, bank.box("b1").config, "campaign", "run", "--detach", str(camp))
        assert rr.returncode == 0, rr.stdout + rr.stderr
        await asyncio.sleep(args.run)
        n = bank.rows("SELECT COUNT(*) AS n FROM calls")[0]["n"]
        print(f"3 boxes × 4 modems ran it for {args.run} s: {n:,} calls")
        print_peaks(bank)
    finally:
        await asyncio.to_thread(stop_bank, bank)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    u = sub.add_parser("utilisation")
    u.add_argument("--modems", type=int, default=32)
    u.add_argument("--boxes", type=int, default=3, help="1: the same path on a single box, for comparison")
    u.add_argument("--calls", type=int, default=960)
    u.add_argument("--answer", type=float, default=1.0)
    u.add_argument("--hold", type=float, default=2.0)
    u.add_argument("--postgresql", action="store_true", help="the boxes on a throw-away PostgreSQL cluster")
    u.add_argument("--trace", metavar="DIR", help="each serve through bench/serve_trace.py: its steps between "
                   "calls, its threads' CPU and AT commands (and with BENCH_SERVE_PROFILE=1 in the environment a "
                   "cProfile of its loop), written to DIR and summed up at the end")
    c = sub.add_parser("claims")
    c.add_argument("--workers", type=int, default=100)
    c.add_argument("--contacts", type=int, default=20_000)
    c.add_argument("--postgresql", action="store_true", help="on a throw-away PostgreSQL cluster")
    c.add_argument("--pick", choices=("share", "head"), default="share",
                   help="share: each worker reads its own share of the due contacts (as serve's boxes do); "
                        "head: every worker reads the same 32 and picks one at random (the worst case)")
    i = sub.add_parser("import")
    i.add_argument("--contacts", type=int, default=1_000_000)
    i.add_argument("--run", type=float, default=20.0)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        if args.what == "utilisation":
            asyncio.run(utilisation(args, Path(d)))
        elif args.what == "claims":
            claims(args, Path(d))
        else:
            asyncio.run(big_import(args, Path(d)))


if __name__ == "__main__":
    main()
