"""Peak RSS with 1,000,000 contacts imported (CSV, validated) and a campaign running on them.

The simulated bank (``--modems``) runs in its own process; the campaign runs for
``--seconds`` and is then stopped the graceful way. Goal: peak RSS ≤ 150 MB.
Usage: .venv/bin/python bench/campaign_memory.py [--rows 1000000] [--modems 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from campaign_import import write_csv
from campaign_utilisation import QuietView, listen, start_sim

from modem_dialer.call.line import open_lines
from modem_dialer.campaign.contacts import import_contacts
from modem_dialer.campaign.controller import Controller
from modem_dialer.campaign.limits import LimitsConfig
from modem_dialer.campaign.report import summary
from modem_dialer.campaign.spec import CampaignSpec
from modem_dialer.modems.options import ModemConfig
from modem_dialer.store import Campaigns, open_db


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(args: argparse.Namespace, d: Path, cfg_path: Path) -> None:
    conn = open_db(d / "bench.db")
    store = Campaigns(conn)
    cid = store.create_campaign("bench")
    csv_path = d / "contacts.csv"
    write_csv(csv_path, args.rows)
    t = time.perf_counter()
    rep = import_contacts(store, cid, csv_path, "FR")
    print(f"imported {rep.inserted:,} contacts ({rep.bad_count:,} bad rows) in {time.perf_counter() - t:.0f} s; "
          f"peak RSS so far {rss_mb():.0f} MB, now {current_rss_mb():.0f} MB")
    data = yaml.safe_load(cfg_path.read_text())
    cfgs = [ModemConfig(**{k: v for k, v in m.items() if k != "audio"}) for m in data["modems"]]
    lines, _ = await open_lines(cfgs)
    spec = CampaignSpec.model_validate({"name": "bench", "contacts": "x.csv", "say": "-", "purpose": "informational",
                                        "rules": "none"})
    ctrl = Controller(conn, cid, spec, lines, LimitsConfig(), lambda c: listen, view=QuietView(), poll=0.2)
    task = asyncio.ensure_future(ctrl.run())
    for _ in range(int(args.seconds)):
        await asyncio.sleep(1)
        ctrl.snapshot()                     # what the live view asks 4 times a second
    ctrl.request_stop()
    result = await task
    await asyncio.gather(*(line.close() for line in lines))
    s = summary(conn, cid)
    print(f"campaign {result} after {args.seconds:g} s: {s['calls']:,} calls on {len(lines)} lines; "
          f"contacts {s['statuses']}")
    print(f"peak RSS {rss_mb():.0f} MB (goal ≤ 150 MB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        sim, cfg = start_sim(Path(d), args.modems, 0.2, 0.5)
        try:
            asyncio.run(run(args, Path(d), cfg))
        finally:
            os.kill(sim.pid, signal.SIGINT)
            sim.wait(10)


if __name__ == "__main__":
    main()
