"""Incoming SMS: PDU decoding speed (ours vs python-gsmmodem-new in the same run) and the
time from the network delivering a message to its row in the journal, through the service.

The workload is what users send back: short replies ("STOP", "ok", "42") and long UCS-2
texts with emoji in three parts, on Quectel (stored: +CMTI → AT+CPMS/CMGR/CMGD), SIMCom
(stored, \\r\\r\\n URCs) and SIM800 (direct +CMT). Real ptys, real SQLite file (synchronous=FULL).

Usage: .venv/bin/python bench/sms_inbound.py [--n 60] [--decode 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
import yaml

from modem_dialer.config import load_config
from modem_dialer.modems.events import SmsReceived
from modem_dialer.modems.sms_pdu import decode_pdu
from modem_dialer.service.service import Service
from modem_dialer.sim.sim_bank import SimBank
from modem_dialer.sim.sms import InboundSms
from modem_dialer.sim.sms_pdu import deliver_pdus
from modem_dialer.store import open_db

LONG = "Bonjour, je ne pourrai pas être là demain, merci de me rappeler après 18 h 😀 " * 2


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def bench_decode(n: int) -> None:
    from gsmmodem.pdu import decodeSmsPdu

    logging.getLogger("gsmmodem").setLevel(logging.CRITICAL)
    pdus = deliver_pdus("+33612345601", "Disk full on db1, please check [ACK 42] €") + \
        deliver_pdus("+33612345601", LONG, encoding="ucs2")
    for name, fn in (("modem-dialer sms_pdu", decode_pdu), ("python-gsmmodem-new", decodeSmsPdu)):
        t0 = time.perf_counter()
        for _ in range(n):
            for p in pdus:
                fn(p)
        dt = time.perf_counter() - t0
        print(f"decode {name:22} {n * len(pdus) / dt:10.0f} PDUs/s")


async def bench_service(n: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    bank = await SimBank.of(3, "quectel,simcom,sim800").start()
    doc = yaml.safe_load(bank.config_yaml(database=str(tmp / "j.db")))
    doc["alerting"] = {"api": {"port": 0}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(doc))
    svc = Service(load_config(str(tmp / "c.yaml")), http=False)
    await svc.start()
    reader = open_db(tmp / "j.db")
    lat: dict[str, list[float]] = {"short": [], "long (3 parts)": []}
    stored = asyncio.Event()

    def on_event(ev: object) -> None:
        # registered after the service's own listener, which journals synchronously
        if isinstance(ev, SmsReceived) and reader.execute("SELECT COUNT(*) FROM sms_in").fetchone()[0] > before:
            stored.set()
    for slot in svc.bank.slots.values():
        assert slot.line is not None
        slot.line.driver.add_listener(on_event)
    before = 0
    try:
        for i in range(n):
            modem = bank.modems[i % 3]
            kind = "long (3 parts)" if i % 2 else "short"
            text = LONG if i % 2 else ("ok", "42", "Who is this?")[i % 3]
            before = reader.execute("SELECT COUNT(*) FROM sms_in").fetchone()[0]
            stored.clear()
            t0 = time.perf_counter()
            await modem.deliver_sms(InboundSms(from_=f"+336123456{i % 90 + 10:02d}", text=text, reference=i % 256,
                                               encoding="ucs2" if i % 2 else None), gap=0.0)
            await asyncio.wait_for(stored.wait(), 10)
            lat[kind].append(time.perf_counter() - t0)
        for kind, xs in lat.items():
            print(f"network → journal, {kind:15} n={len(xs):3}  median {statistics.median(xs) * 1000:6.1f} ms"
                  f"  p95 {pct(xs, 95) * 1000:6.1f} ms  max {max(xs) * 1000:6.1f} ms")
    finally:
        reader.close()
        await svc.stop()
        await bank.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60, help="incoming messages through the service")
    ap.add_argument("--decode", type=int, default=3000, help="decoding rounds")
    args = ap.parse_args()
    bench_decode(args.decode)
    asyncio.run(bench_service(args.n))


if __name__ == "__main__":
    main()
