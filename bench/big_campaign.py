"""A 10,000,000-contact campaign: what users run on it, each command in its own process.

Writes a contacts CSV (streamed, never in memory: E.164 French mobile numbers in a
scattered order, ~0.1 % duplicates, ~0.1 % invalid numbers, a few rows with a missing or
an extra column, four extra fields), then runs the real commands, each as a child
process, and measures its wall time and peak RSS (``os.wait4``'s ``ru_maxrss`` of that
child, taken by a small launcher process; for ``serve`` also ``VmHWM`` from /proc while it runs):

1. ``campaign import``   the check and the import (rows/s);
2. ``campaign status``   and ``campaign status --json``;
3. ``report --format csv -o``, ``--format json -o``, ``--answers`` and the table;
4. ``campaign run``      dialing itself on a small simulated bank for ``--seconds``, then
   SIGINT (calls in progress finish);
5. ``serve``             the service with the console; ``campaign run --detach`` submits the
   campaign, it dials for ``--seconds`` while the console's campaign page, its contacts
   pages, its charts and the ``/v1/campaigns/NAME`` API are read (HTTP GET), then the
   console's streamed CSV export of the whole campaign is downloaded; SIGTERM.

Goal: every process ≤ 200 MB peak RSS. The simulated bank (``modem-dialer sim``) is a test
fixture, not measured. Everything lives under ``--dir`` (default: a temp dir in /tmp) and is
deleted at the end unless ``--keep``.

Usage: .venv/bin/python bench/big_campaign.py [--rows 10000000] [--modems 4] [--seconds 20]
       [--dir /tmp] [--keep] [--reuse DIR] [--prebuilt] [--skip report-table,...]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from campaign_utilisation import start_sim  # bench/ is this script's directory (sys.path[0])

from modem_dialer.sim.voice import write_tone_wav

GOAL_MB = 200
TOKEN = "bench-token"
# French mobile blocks phonenumbers accepts (06 39, 06 90-97 are not all valid: left out)
_BLOCKS = [f"6{d:02d}" for d in range(0, 100) if not (d == 39 or 90 <= d <= 97)] + \
          [f"7{d:02d}" for d in range(30, 100)]
_SPACE = len(_BLOCKS) * 1_000_000
_STEP = 48_271          # prime, coprime with _SPACE: i -> i * _STEP mod _SPACE is a permutation


def number_of(i: int) -> str:
    """The i-th distinct number, scattered over the space (imports do not arrive sorted)."""
    n = i * _STEP % _SPACE
    return f"+33{_BLOCKS[n // 1_000_000]}{n % 1_000_000:06d}"


def write_csv(path: Path, rows: int) -> dict[str, int]:
    """``rows`` data rows; returns how many of each kind of bad row were written."""
    bad = {"duplicate": 0, "invalid": 0, "missing column": 0, "extra column": 0}
    cities = ["Lyon", "Paris", "Lille", "Nantes", "Brest", "Nice", "Dijon", "Metz"]
    with path.open("w", buffering=1 << 20) as f:
        f.write("number,name,ref,city,segment\n")
        buf = []
        for i in range(rows):
            if i % 997 == 996:
                number, bad["duplicate"] = number_of(i - 500), bad["duplicate"] + 1
            elif i % 1009 == 1008:
                number, bad["invalid"] = f"+33 1 {i % 1000:03d}", bad["invalid"] + 1
            else:
                number = number_of(i)
            line = f"{number},Contact {i},R{i:08d},{cities[i % 8]},{'abc'[i % 3]}"
            if i % 50_021 == 50_020:
                line, bad["missing column"] = f"{number},Contact {i}", bad["missing column"] + 1
            elif i % 70_001 == 70_000:
                line, bad["extra column"] = line + ",surplus", bad["extra column"] + 1
            buf.append(line)
            if len(buf) >= 10_000:
                f.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")
    return bad


@dataclass
class Result:
    what: str
    wall_s: float
    peak_mb: float
    rc: int
    note: str = ""
    cpu_s: float = float("nan")


def vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# Each command runs under this small launcher, which waits for it and writes its rusage.
# Not straight from this process: Linux carries the RSS high-water mark of the forked copy
# into the exec'd child's ru_maxrss, so a command started from a big process (this one, after
# --prebuilt's 256 MB cache) would "peak" at this process's size. The launcher is ~10 MB.
LAUNCHER = """
import json, os, signal, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda n, f: p.send_signal(n))
_, status, ru = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([ru.ru_maxrss, ru.ru_utime + ru.ru_stime], f)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def launch(argv: list[str], usage: Path, stdout: object, stderr: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(usage), *argv],
                            stdout=stdout, stderr=stderr)  # type: ignore[arg-type]


def command_pid(launcher: subprocess.Popen) -> int:
    """The measured command's pid (the launcher's child)."""
    for _ in range(600):
        kids = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise SystemExit("the command did not start")


def wait_child(proc: subprocess.Popen) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, CPU seconds) of the command alone (its launcher's
    os.wait4). The CPU time says what the wall time would be on an idle machine."""
    rc = proc.wait()
    maxrss_kb, cpu = json.loads(Path(proc.args[4]).read_text())  # type: ignore[index]
    return rc, maxrss_kb / 1024, cpu


class Bench:
    def __init__(self, args: argparse.Namespace, d: Path) -> None:
        self.args, self.d = args, d
        self.cfg = d / "config.yaml"
        self.results: list[Result] = []
        self.n = 0
        self.cli = [sys.executable, "-m", "modem_dialer.cli", "--config", str(self.cfg)]

    def spawn(self, argv: list[str], out: Path | None = None) -> subprocess.Popen:
        # stdout/stderr go to files: a pipe nobody reads would block a child that prints much
        o = (out or self.d / "stdout.txt").open("wb")
        e = (self.d / "stderr.txt").open("ab")
        self.n += 1
        return launch(self.cli + argv, self.d / f"usage-{self.n}.json", o, e)

    def run(self, what: str, argv: list[str], out: Path | None = None, note: str = "") -> Result:
        print(f"-> {what}: modem-dialer {' '.join(argv)}", flush=True)
        t = time.perf_counter()
        rc, peak, cpu = wait_child(self.spawn(argv, out))
        r = Result(what, time.perf_counter() - t, peak, rc, note, cpu)
        self.results.append(r)
        print(f"   {r.wall_s:.1f} s (CPU {cpu:.1f} s), peak RSS {r.peak_mb:.0f} MB, exit {rc}", flush=True)
        return r

    def stop_after(self, what: str, argv: list[str], seconds: float, sig: int, started: str) -> Result:
        """Run until it prints ``started`` (its start-up at 10M contacts is part of the
        measure, but the dialing must last ``seconds``), then ``seconds`` more, then ``sig``."""
        print(f"-> {what}: modem-dialer {' '.join(argv)} (for {seconds:g} s once dialing)", flush=True)
        out = self.d / "run-stdout.txt"
        t = time.perf_counter()
        p = self.spawn(argv, out)
        while started not in out.read_text(errors="replace") and p.poll() is None:
            time.sleep(0.2)
        startup = time.perf_counter() - t
        time.sleep(seconds)
        p.send_signal(sig)
        rc, peak, cpu = wait_child(p)
        r = Result(what, time.perf_counter() - t, peak, rc, f"start-up {startup:.1f} s, signal {seconds:g} s later", cpu)
        self.results.append(r)
        print(f"   {r.wall_s:.1f} s, peak RSS {r.peak_mb:.0f} MB, exit {rc}", flush=True)
        return r


def build_db(db: Path, rows: int, csv_path: Path, camp: Path) -> None:
    """``--prebuilt``: the campaign's contacts written by SQLite itself, a million a
    transaction (bench-only fixture, as bench/console.py's call history), with the
    fingerprint of ``csv_path`` so that ``campaign run`` finds the file unchanged."""
    from modem_dialer.campaign.contacts import file_fingerprint
    from modem_dialer.store import Campaigns, open_db, to_ts, utc_now

    t = time.perf_counter()
    conn = open_db(db)
    conn.execute("PRAGMA cache_size = -262144")      # 256 MB for this build (the bench is not measured)
    store = Campaigns(conn)
    cid = store.create_campaign("big", file=str(camp), config={"contacts_fingerprint": file_fingerprint(csv_path, "FR")})
    now = to_ts(utc_now())
    for start in range(0, rows, 1_000_000):
        with conn:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO contacts (campaign_id, number, fields, line_no, next_attempt_at, created_at, updated_at)"
                " SELECT ?, '+336' || printf('%08d', i * 48271 % 100000000),"
                " json_object('name', 'Contact ' || i, 'ref', printf('R%08d', i), 'city', 'Lyon', 'segment', 'a'),"
                " i + 2, ?, ?, ? FROM n", (start, min(rows, start + 1_000_000) - 1, cid, now, now, now))
        print(f"   prebuilt {min(rows, start + 1_000_000):,} contacts in {time.perf_counter() - t:.0f} s", flush=True)
    conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def calls_so_far(b: Bench) -> str:
    out = b.d / "status.json"
    p = b.spawn(["campaign", "status", "big", "--json"], out)
    wait_child(p)
    try:
        st = json.loads(out.read_text())
    except ValueError:
        return "?"
    return f"{st['calls']:,} calls, contacts {st['statuses']}"


def serve_phase(b: Bench, port: int) -> None:
    args = b.args
    print(f"-> serve: modem-dialer serve --port {port} (console, campaign submitted, {args.seconds:g} s)", flush=True)
    t0 = time.perf_counter()
    p = b.spawn(["serve", "--port", str(port), "--log-format", "text"], b.d / "serve.log")
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        p.kill()
        raise SystemExit("serve did not answer /healthz")
    serve_pid = command_pid(p)
    hwm = {"started": vm_hwm_mb(serve_pid)}
    b.run("campaign run --detach (to serve)", ["campaign", "run", str(b.d / "big.yaml"), "--detach"])
    t = time.perf_counter()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = urllib.request.Request(base + "/console/login", data=b"token=" + TOKEN.encode(), method="POST")
    opener.open(login, timeout=30).read()
    gets: list[tuple[str, float, int]] = []

    def get(path: str, bearer: bool = False) -> bytes:
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"} if bearer else {})
        t1 = time.perf_counter()
        body = opener.open(req, timeout=600).read()
        gets.append((path, time.perf_counter() - t1, len(body)))
        return body

    while time.perf_counter() - t < args.seconds:
        get("/console/api/campaigns")
        get("/console/api/campaigns/big")
        page = json.loads(get("/console/api/campaigns/big/contacts?limit=50"))
        if page.get("next"):
            get(f"/console/api/campaigns/big/contacts?limit=50&after={page['next']}")
        get("/console/api/campaigns/big/contacts?status=answered&limit=50")
        get("/console/api/campaigns/big/contacts?q=%2B3361234&limit=50")
        get("/console/api/campaigns/big/charts")
        get("/v1/campaigns/big", bearer=True)
        time.sleep(1)
    hwm["campaign + console pages"] = vm_hwm_mb(serve_pid)
    if "export" not in args.skip:
        t1 = time.perf_counter()
        req = urllib.request.Request(base + "/console/api/campaigns/big/report.csv")
        size = 0
        with opener.open(req, timeout=3600) as r:
            while chunk := r.read(1 << 20):
                size += len(chunk)
        gets.append(("/console/api/campaigns/big/report.csv (whole campaign)", time.perf_counter() - t1, size))
        hwm["+ console CSV export"] = vm_hwm_mb(serve_pid)
    p.send_signal(signal.SIGTERM)
    rc, peak, cpu = wait_child(p)
    b.results.append(Result("serve (console, campaign, GETs)", time.perf_counter() - t0, peak, rc,
                            "VmHWM " + ", ".join(f"{k} {v:.0f} MB" for k, v in hwm.items()), cpu))
    print(f"   serve exit {rc}, peak RSS {peak:.0f} MB; " + b.results[-1].note, flush=True)
    worst: dict[str, tuple[float, int, int]] = {}
    for path, dt, size in gets:
        key = path.split("&after=")[0]
        w = worst.get(key, (0.0, 0, 0))
        worst[key] = (max(w[0], dt), size, w[2] + 1)
    print(f"   {'GET':64} {'n':>3} {'worst s':>8} {'bytes':>12}")
    for key, (dt, size, n) in worst.items():
        print(f"   {key:64} {n:3} {dt:8.2f} {size:12,}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--modems", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the CSV and database")
    ap.add_argument("--reuse", default=None, help="a directory kept by --keep: skip the CSV and the import")
    ap.add_argument("--skip", default="",
                    help="comma-separated: status, report-csv, report-json, report-answers, report-table, run, "
                         "serve, export")
    ap.add_argument("--prebuilt", action="store_true",
                    help="contacts written by SQL, not imported from a CSV: every process but the import "
                         "at a size the import cannot reach in the time at hand")
    args = ap.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    d = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="big-campaign-", dir=args.dir))
    if args.reuse:
        args.keep = True
        (d / "stderr.txt").unlink(missing_ok=True)
    sim = None
    load0 = os.getloadavg()[0]
    try:
        b = Bench(args, d)
        if args.prebuilt:
            (d / "big.csv").write_text("number\n+33612345678\n")
            build_db(d / "big.db", args.rows, d / "big.csv", d / "big.yaml")
        elif not args.reuse:
            t = time.perf_counter()
            bad = write_csv(d / "big.csv", args.rows)
            print(f"CSV: {args.rows:,} rows, {(d / 'big.csv').stat().st_size / 1e6:,.0f} MB in "
                  f"{time.perf_counter() - t:.0f} s; bad rows written: {bad}", flush=True)
        write_tone_wav(d / "hello.wav", 0.5)
        (d / "big.yaml").write_text("name: big\ncontacts: big.csv\nmessage: hello.wav\npurpose: informational\n"
                                    "rules: none\nregion: FR\n")
        (d / "sim-config.yaml").unlink(missing_ok=True)     # start_sim waits for a fresh one
        sim, sim_cfg = start_sim(d, args.modems, 0.2, 0.5)
        doc = yaml.safe_load(sim_cfg.read_text())
        port = free_port()
        doc.update(database=str(d / "big.db"), cache_dir=str(d / "cache"),
                   alerting={"api": {"port": port, "token": TOKEN}})
        b.cfg.write_text(yaml.safe_dump(doc))

        if not args.reuse and not args.prebuilt:
            r = b.run("campaign import", ["campaign", "import", str(d / "big.yaml")])
            r.note = f"{args.rows / r.wall_s:,.0f} rows/s ({args.rows / r.cpu_s:,.0f} per CPU s); db {(d / 'big.db').stat().st_size / 1e9:.2f} GB"
            print("   " + (d / "stdout.txt").read_text().strip().splitlines()[-1], flush=True)
        if "status" not in args.skip:
            b.run("campaign status", ["campaign", "status", "big"])
            b.run("campaign status --json", ["campaign", "status", "big", "--json"])
        for fmt in ("csv", "json"):
            if f"report-{fmt}" not in args.skip:
                b.run(f"report --format {fmt} -o", ["report", "big", "--format", fmt, "-o", str(d / f"report.{fmt}")])
                b.results[-1].note = f"{(d / f'report.{fmt}').stat().st_size / 1e6:,.0f} MB written"
                (d / f"report.{fmt}").unlink()
        if "report-answers" not in args.skip:
            b.run("report --answers", ["report", "big", "--answers"])
        if "report-table" not in args.skip:
            b.run("report (table) -o", ["report", "big", "-o", str(d / "report.txt")])
            b.results[-1].note = f"{(d / 'report.txt').stat().st_size / 1e6:,.0f} MB written"
            (d / "report.txt").unlink()
        if "run" not in args.skip:
            b.stop_after("campaign run (itself dialing)", ["campaign", "run", str(d / "big.yaml")],
                         args.seconds, signal.SIGINT, started=" line(s): ")
            b.results[-1].note += "; " + calls_so_far(b)
        if "serve" not in args.skip:
            if args.reuse:                  # the last run ended with a pause
                b.run("campaign resume", ["campaign", "resume", "big"])
            serve_phase(b, port)
            b.run("campaign pause (after serve)", ["campaign", "pause", "big"])
            b.results[-1].note = calls_so_far(b)
        print(f"\nload average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (at the start {load0:.1f})")
        db_mb = sum(p.stat().st_size for p in d.glob("big.db*")) / 1e6
        print(f"{args.rows:,} contacts; database {db_mb:,.0f} MB (with -wal)")
        print(f"{'process':36} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12} {'exit':>5}  note")
        for r in b.results:
            flag = "" if r.peak_mb <= GOAL_MB else f"  OVER {GOAL_MB} MB"
            print(f"{r.what:36} {r.wall_s:8.1f} {r.cpu_s:7.1f} {r.peak_mb:12.0f} {r.rc:5}  {r.note}{flag}")
        worst = max(b.results, key=lambda r: r.peak_mb)
        print(f"worst peak: {worst.peak_mb:.0f} MB ({worst.what}); goal ≤ {GOAL_MB} MB: "
              f"{'met' if worst.peak_mb <= GOAL_MB else 'NOT met'}")
        err = (d / "stderr.txt").read_text(errors="replace").splitlines()
        print(f"stderr: {len(err):,} lines (bad rows, service log); last: {err[-1] if err else '-'}")
    finally:
        if sim is not None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        if args.keep:
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
