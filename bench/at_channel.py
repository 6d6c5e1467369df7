"""AT round trips per second over a pty against the simulator, ours vs python-gsmmodem-new.

Both clients talk to the same simulated modem, which runs in its own process
(`modem-dialer sim`), so each figure includes a real process boundary and the pty.

    .venv/bin/python bench/at_channel.py [--n 3000] [--family quectel]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modem_dialer.at.channel import ATChannel  # noqa: E402


def start_sim(family: str) -> tuple[subprocess.Popen, list[dict]]:
    cfg = Path(tempfile.mkdtemp()) / "sim.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "modem_dialer.cli", "sim", "--modems", "2", "--family", family,
                             "--write-config", str(cfg)], stdout=subprocess.DEVNULL, cwd=ROOT)
    for _ in range(100):
        if cfg.exists() and cfg.stat().st_size:
            break
        time.sleep(0.05)
    return proc, yaml.safe_load(cfg.read_text())["modems"]


async def ours(port: str, n: int, command: str) -> float:
    ch = await ATChannel.open(port)
    await ch.command("ATE0")
    for _ in range(50):
        await ch.command(command)
    t = time.perf_counter()
    for _ in range(n):
        await ch.command(command)
    dt = time.perf_counter() - t
    await ch.close()
    return n / dt


def peer(port: str, n: int, command: str) -> tuple[float, str]:
    logging.getLogger("gsmmodem").setLevel(logging.CRITICAL)
    from gsmmodem.modem import GsmModem

    modem = GsmModem(port, 115200)
    how = "GsmModem.connect() + write()"
    try:
        modem.connect()
    except Exception as exc:  # the peer's init may trip on a dialect; fall back to its raw layer
        how = f"SerialComms.connect() + write() (GsmModem.connect failed: {type(exc).__name__})"
        from gsmmodem.serial_comms import SerialComms
        try:
            modem.close()
        except Exception:
            pass
        modem = SerialComms(port, 115200)
        modem.connect()
        writer = modem.write
        modem.write("ATE0\r")
        for _ in range(50):
            writer(command + "\r")
        t = time.perf_counter()
        for _ in range(n):
            writer(command + "\r")
        dt = time.perf_counter() - t
        modem.close()
        return n / dt, how
    for _ in range(50):
        modem.write(command)
    t = time.perf_counter()
    for _ in range(n):
        modem.write(command)
    dt = time.perf_counter() - t
    modem.close()
    return n / dt, how


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--family", default="quectel")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    proc, modems = start_sim(args.family)
    try:
        print(f"simulated {args.family} modem in its own process; {args.n} round trips per run, {args.runs} runs")
        print(f"{'command':10} {'modem-dialer (cmd/s)':>22} {'python-gsmmodem-new (cmd/s)':>28}")
        for command in ("AT", "AT+CSQ"):
            mine = [asyncio.run(ours(modems[0]["port"], args.n, command)) for _ in range(args.runs)]
            theirs = [peer(modems[1]["port"], args.n, command) for _ in range(args.runs)]
            med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
            print(f"{command:10} {med(mine):>22,.0f} {med([t[0] for t in theirs]):>28,.0f}")
        print(f"peer measured through: {theirs[0][1]}")
    finally:
        proc.terminate()
        proc.wait(5)
        os.environ.pop("X", None)


if __name__ == "__main__":
    main()
