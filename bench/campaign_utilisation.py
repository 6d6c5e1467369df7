"""Port utilisation: N simulated modems, M short scripted calls through the real controller.

The simulated bank runs in its own process (``modem-dialer sim``), so this process's CPU
time is the dialer's alone: controller + call layer + AT channel. Every callee answers
after ``--answer`` s and hangs up ``--hold`` s later; the script just listens, so a call
lasts (answer + hold) by the script and the lower bound of the makespan is
ceil(M / N) · (answer + hold). Audio paths are left out of the config (64 paced PCM
streams would measure the audio layer, not the scheduler).

Usage: .venv/bin/python bench/campaign_utilisation.py [--modems 64] [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import itertools

from modem_dialer.call.line import open_lines
from modem_dialer.call.session import ActiveCall
from modem_dialer.campaign.controller import Controller
from modem_dialer.campaign.spec import CampaignSpec
from modem_dialer.campaign.view import PlainView
from modem_dialer.config import ModemConfig
from modem_dialer.config_campaign import LimitsConfig
from modem_dialer.store import Campaigns, open_db


async def listen(call: ActiveCall) -> None:
    while True:                      # until the callee hangs up (CallEnded / cancellation)
        await call.get_key(None)


class QuietView(PlainView):
    def event(self, kind: str, text: str) -> None:
        if kind not in ("dial", "call", "rule"):
            super().event(kind, text)


def start_sim(d: Path, modems: int, answer: float, hold: float) -> tuple[subprocess.Popen, Path]:
    sc = d / "scenario.yaml"
    sc.write_text(yaml.safe_dump({"default": {"outcome": "answer", "answer_after": answer, "hangup_after": hold,
                                              "ring_after": 0.02}}))
    cfg = d / "sim-config.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "modem_dialer.cli", "sim", "--modems", str(modems),
                             "--scenario", str(sc), "--write-config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if cfg.exists() and cfg.stat().st_size:
            return proc, cfg
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("simulator did not start")


async def run(args: argparse.Namespace, d: Path, cfg_path: Path) -> None:
    data = yaml.safe_load(cfg_path.read_text())
    cfgs = [ModemConfig(**{k: v for k, v in m.items() if k != "audio"}) for m in data["modems"]]
    conn = open_db(d / "bench.db")
    store = Campaigns(conn)
    cid = store.create_campaign("bench")
    store.import_contacts(cid, ((i + 2, f"+3361{i:07d}0", {}) for i in range(args.calls)))
    spec = CampaignSpec.model_validate({"name": "bench", "contacts": "x.csv", "say": "-", "purpose": "informational",
                                        "rules": "none"})
    t = time.perf_counter()
    lines, errors = await open_lines(cfgs)
    print(f"opened {len(lines)} lines in {time.perf_counter() - t:.1f} s; errors: {errors or 'none'}")
    ctrl = Controller(conn, cid, spec, lines, LimitsConfig(), lambda c: listen, view=QuietView(), poll=0.2)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = await ctrl.run()
    makespan = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await asyncio.gather(*(line.close() for line in lines))
    n = conn.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'answered'").fetchone()[0]
    per_line = math.ceil(args.calls / len(lines))
    bound = per_line * (args.answer + args.hold)
    print(f"result={result}  answered calls={n:,}/{args.calls:,}  lines={len(lines)}")
    print(f"makespan {makespan:.1f} s  lower bound {bound:.1f} s  ({per_line} calls per line × "
          f"{args.answer + args.hold:g} s)  utilisation {bound / makespan:.1%}")
    print(f"dialer CPU {cpu:.1f} s = {cpu / args.calls * 1000:.2f} ms per call (controller + call layer + AT); "
          f"controller alone {ctrl.cpu / args.calls * 1000:.3f} ms per call")
    # where the time beyond the bound goes: between calls on a line (dispatch: outcome, rules,
    # claim, next contact) vs inside a call (ATD round trip, end detection, hang-up)
    from statistics import mean, median

    from modem_dialer.store import from_ts
    rows = conn.execute("SELECT modem, created_at, ended_at FROM calls ORDER BY modem, id").fetchall()
    gaps = [(from_ts(b[1]) - from_ts(a[2])).total_seconds() * 1000
            for a, b in itertools.pairwise(rows) if a[0] == b[0]]
    inside = [(from_ts(r[2]) - from_ts(r[1])).total_seconds() * 1000 - (args.answer + args.hold) * 1000 for r in rows]
    print(f"between calls on a line: median {median(gaps):.1f} ms, mean {mean(gaps):.1f} ms; "
          f"in-call overhead beyond the script: median {median(inside):.1f} ms, mean {mean(inside):.1f} ms")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modems", type=int, default=64)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--answer", type=float, default=0.2)
    ap.add_argument("--hold", type=float, default=0.5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        sim, cfg = start_sim(Path(d), args.modems, args.answer, args.hold)
        try:
            asyncio.run(run(args, Path(d), cfg))
        finally:
            os.kill(sim.pid, signal.SIGINT)
            sim.wait(10)


if __name__ == "__main__":
    main()
