"""PostgreSQL store figures: database round trips per call.

A throw-away PostgreSQL cluster (tests/pgcluster.py) is started with fsync and synchronous
commits on, as a production server, on a unix socket; removed at the end.

Round trips per call: a real campaign (controller, call layer, AT channel) of ``--calls``
   contacts on ``--modems`` simulated modems (the simulator in its own process, every callee
   answers and hangs up after ``--hold`` s), with ``database:`` on the cluster. Every round
   trip of every connection of the dialing process is counted (writer, reads, claims), and
   the server's transactions (pg_stat_database).
Claim throughput with concurrent workers is measured on the product's own claim path (the
box leases' claim, store/boxes.py) by ``bench/multibox.py claims``.

Usage: .venv/bin/python bench/pg_store.py [--modems 16] [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--hold", type=float, default=0.3)
    args = ap.parse_args()
    with pg_cluster(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        asyncio.run(round_trips(args, pg.create_db("rt"), d))


if __name__ == "__main__":
    main()
