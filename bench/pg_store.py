"""PostgreSQL store figures: database round trips per call, and claim throughput.

A throw-away PostgreSQL cluster (tests/pgcluster.py) is started with fsync and synchronous
commits on, as a production server, on a unix socket; removed at the end.

1. Round trips per call: a real campaign (controller, call layer, AT channel) of ``--calls``
   contacts on ``--modems`` simulated modems (the simulator in its own process, every callee
   answers and hangs up after ``--hold`` s), with ``database:`` on the cluster. Every round
   trip of every connection of the dialing process is counted (writer, reads, claims), and
   the server's transactions (pg_stat_database).
2. Claim throughput: ``--workers`` threads, each with its own connection, claim the due
   contacts of a ``--contacts`` campaign one at a time (``Campaigns.claim_due``: one UPDATE
   … FOR UPDATE SKIP LOCKED … RETURNING) until none is left; every contact must be claimed
   exactly once. The same on a SQLite file for comparison (``--sqlite``).

Usage: .venv/bin/python bench/pg_store.py [--modems 16] [--calls 400] [--workers 100] [--contacts 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from campaign_utilisation import QuietView, listen, start_sim  # bench/ is this script's directory
from pgcluster import pg_cluster

from modem_dialer.call.line import open_lines
from modem_dialer.campaign.controller import Controller
from modem_dialer.campaign.limits import LimitsConfig
from modem_dialer.campaign.spec import CampaignSpec
from modem_dialer.modems.options import ModemConfig
from modem_dialer.store import Campaigns, open_db
from modem_dialer.store.pg import PgConnection

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def server_xacts(dsn: str) -> int:
    conn = open_db(dsn)
    n = int(conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                         " WHERE datname = current_database()").fetchone()[0])
    conn.close()
    return n


async def round_trips(args: argparse.Namespace, dsn: str, d: Path) -> None:
    sim, cfg_path = start_sim(d, args.modems, 0.05, args.hold)
    try:
        data = yaml.safe_load(cfg_path.read_text())
        cfgs = [ModemConfig(**{k: v for k, v in m.items() if k != "audio"}) for m in data["modems"]]
        conn = open_db(dsn)
        store = Campaigns(conn)
        cid = store.create_campaign("bench")
        store.import_contacts(cid, ((i + 2, f"+3361{i:07d}0", {}) for i in range(args.calls)))
        spec = CampaignSpec.model_validate({"name": "bench", "contacts": "x.csv", "say": "-",
                                            "purpose": "informational", "rules": "none"})
        lines, errors = await open_lines(cfgs)
        assert not errors, errors
        ctrl = Controller(conn, cid, spec, lines, LimitsConfig(), lambda c: listen, view=QuietView(), poll=0.2)
        rt0, x0, t0 = PgConnection.all_round_trips, server_xacts(dsn), time.perf_counter()
        reads0 = conn.round_trips
        result = await ctrl.run()
        writer_rt = ctrl.journal.writer._conn.round_trips
        reads = conn.round_trips - reads0
        await ctrl.close()
        elapsed = time.perf_counter() - t0
        rt, xacts = PgConnection.all_round_trips - rt0, server_xacts(dsn) - x0 - 1   # -1: our own count
        await asyncio.gather(*(line.close() for line in lines))
        n = conn.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'answered'").fetchone()[0]
        final = conn.execute("SELECT COUNT(*) FROM contacts WHERE status = 'answered'").fetchone()[0]
        print(f"campaign on PostgreSQL: {result}, {n}/{args.calls} calls answered, {final} contacts answered, "
              f"{len(lines)} lines, {elapsed:.1f} s")
        print(f"  round trips: {rt} = {rt / args.calls:.1f} per call (writer, reads, claims, every connection "
              f"of the dialing process); server transactions {xacts} = {xacts / args.calls:.1f} per call")
        print(f"  of which the journal writer {writer_rt / args.calls:.1f} per call, the controller's reads "
              f"{reads / args.calls:.1f} per call, other connections {(rt - writer_rt - reads) / args.calls:.1f}")
        conn.close()
    finally:
        sim.terminate()
        sim.wait()


def claims(target: str, workers: int, contacts: int, label: str) -> None:
    conn = open_db(target)
    store = Campaigns(conn)
    cid = store.create_campaign(f"claims-{workers}")
    store.import_contacts(cid, ((i + 2, f"+3362{i:07d}0", {}) for i in range(contacts)))
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(workers + 1)

    def worker() -> None:
        c = open_db(target, busy_timeout_ms=60_000)
        s = Campaigns(c)
        mine: list[int] = []
        start.wait()
        while batch := s.claim_due(cid, NOW, limit=1):
            mine.append(batch[0].id)
        with lock:
            got.extend(mine)
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert len(got) == contacts == len(set(got)), (len(got), len(set(got)), contacts)
    print(f"claims on {label}: {contacts} contacts by {workers} concurrent workers in {elapsed:.1f} s = "
          f"{contacts / elapsed:,.0f} claims/s, each contact exactly once")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--hold", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--sqlite", action="store_true", help="also measure claims on a SQLite file")
    ap.add_argument("--skip-campaign", action="store_true")
    args = ap.parse_args()
    with pg_cluster(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if not args.skip_campaign:
            asyncio.run(round_trips(args, pg.create_db("rt"), d))
        claims(pg.create_db("claims"), args.workers, args.contacts, "PostgreSQL")
        if args.sqlite:
            claims(str(d / "claims.db"), args.workers, args.contacts, "SQLite")


if __name__ == "__main__":
    main()
