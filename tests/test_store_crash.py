"""Crash safety: a writer process is SIGKILLed at random points; every row it saw committed is there.

The child prints one line *after* each commit returns; whatever reached the pipe before
the kill was committed and must be found when the database is opened again.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from modem_dialer.store import Journal, open_db

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from modem_dialer.store import Journal, open_db
j = Journal(open_db(sys.argv[1]))
n = 0
while True:
    n += 1
    number = "+336%08d" % n
    cid = j.start_call(number, "m%d" % (n % 4), "imei", "iccid")
    print("call", cid, number, flush=True)
    j.mark_dialed(cid)
    print("dialed", cid, flush=True)
    kid = j.key(cid, "0123456789*#"[n % 12], "inband")
    print("key", cid, kid, flush=True)
    eid = j.event(cid, "node", n=n, text="x" * (n % 300))
    print("event", cid, eid, flush=True)
    j.finish_call(cid, "answered", hangup_by="callee")
    print("finished", cid, flush=True)
"""


def run_and_kill(path: Path, rng: random.Random, child: str = CHILD) -> list[list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", child, str(path), str(ROOT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def reader() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            started.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert started.wait(20), proc.stderr.read()  # type: ignore[union-attr]
    time.sleep(rng.uniform(0.0, 0.25))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    t.join(10)
    assert proc.returncode == -signal.SIGKILL
    # a line without its newline may have been cut by the kill: it proves nothing
    return [line.split() for line in lines if line.endswith("\n")]


def check_reported(path: Path, reported: list[list[str]]) -> sqlite3.Connection:
    """Every row a child printed as committed is in the file, which is sound."""
    conn = open_db(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    for rec in reported:
        kind, cid = rec[0], int(rec[1])
        call = conn.execute("SELECT * FROM calls WHERE id = ?", (cid,)).fetchone()
        assert call is not None, rec
        if kind == "call":
            assert call["number"] == rec[2]
        elif kind == "dialed":
            assert call["started_at"] is not None
        elif kind == "key":
            assert conn.execute("SELECT call_id FROM keys WHERE id = ?", (int(rec[2]),)).fetchone()[0] == cid
        elif kind == "event":
            assert conn.execute("SELECT call_id FROM call_events WHERE id = ?", (int(rec[2]),)).fetchone()[0] == cid
        elif kind == "finished":
            assert call["outcome"] == "answered" and call["started_at"] is not None
    return conn


def test_committed_rows_survive_sigkill(tmp_path, rng):
    path = tmp_path / "crash.db"
    open_db(path).close()
    reported: list[list[str]] = []
    for _ in range(5):
        reported += run_and_kill(path, rng)
    assert len(reported) > 20

    conn = check_reported(path, reported)
    j = Journal(conn)
    # each killed run left at most one call open; recovery closes exactly those
    finished = {int(r[1]) for r in reported if r[0] == "finished"}
    opened = j.recover_interrupted()
    assert len(opened) <= 5 and not finished & set(opened)
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0


WRITER_CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from modem_dialer.store import open_db
from modem_dialer.store.call_journal import CallJournal

async def line(j, m):
    n = 0
    while True:
        n += 1
        number = "+336%02d%06d" % (m, n)
        cid = await j.start_call(number, "m%d" % m, "imei", "iccid")      # committed before "ATD"
        print("call", cid, number, flush=True)
        j.mark_dialed(cid)
        k = j.key(cid, "0123456789*#"[n % 12], "inband")              # queued, not awaited
        e = j.event(cid, "node", n=n, text="x" * (n % 300))
        await j.finish_call(cid, "answered", hangup_by="callee")     # committed with all before it
        print("key", cid, k.result(), flush=True)
        print("event", cid, e.result(), flush=True)
        print("finished", cid, flush=True)

async def main():
    j = CallJournal(open_db(sys.argv[1]))
    await asyncio.gather(*(line(j, m) for m in range(8)))

asyncio.run(main())
"""


def test_writer_group_commits_survive_sigkill(tmp_path, rng):
    """The same with the journal writer: 8 lines at once, rows grouped per commit; whatever a
    caller was told is committed (an awaited write, or a queued one followed by an awaited one)
    is there after kill -9."""
    path = tmp_path / "crash.db"
    open_db(path).close()
    reported: list[list[str]] = []
    for _ in range(4):
        reported += run_and_kill(path, rng, WRITER_CHILD)
    assert len(reported) > 20
    check_reported(path, reported)
