"""Alerting API figures on the simulated bank: how fast alerts are accepted, how a flood of
identical alerts is absorbed (dedup), and the delay from POST to the modem's ATD.

    .venv/bin/python bench/alert_api.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from modem_dialer.config import load_config
from modem_dialer.service.service import Service
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sim_bank import SimBank


async def main(n: int) -> None:
    bank = await SimBank.of(2, "quectel", Scenario(Callee(answer_after=0.1, keys=[(0.2, "1")]))).start()
    with tempfile.TemporaryDirectory() as tmp:
        doc = yaml.safe_load(bank.config_yaml(database=str(Path(tmp) / "j.db")))
        doc["cache_dir"] = "/tmp/modem-dialer-test-tts-cache"
        doc["alerting"] = {"people": {"alice": "+33612345601"}, "api": {"port": 0, "token": "t"},
                           "policies": {"default": {"steps": [{"to": "alice"}], "sms_fallback": False}}}
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(doc))
        svc = Service(load_config(str(Path(tmp) / "config.yaml")), port=0)
        await svc.start()
        url = f"http://127.0.0.1:{svc.port}"
        h = {"Authorization": "Bearer t"}
        try:
            async with aiohttp.ClientSession(headers=h) as s:
                # 1. a flood of identical alerts: one call
                lat = []
                t0 = time.perf_counter()
                for _ in range(n):
                    t = time.perf_counter()
                    async with s.post(f"{url}/v1/alerts", json={"to": "alice", "text": "Disk full on db1",
                                                                "dedup_key": "flood"}) as r:
                        await r.read()
                    lat.append(time.perf_counter() - t)
                dt = time.perf_counter() - t0
                await asyncio.sleep(1.5)
                calls = sum(len(m.calls) for m in bank.modems)
                print(f"{n} identical alerts: {n / dt:.0f} req/s, latency median {statistics.median(lat) * 1e3:.1f} ms,"
                      f" p99 {sorted(lat)[int(0.99 * (n - 1))] * 1e3:.1f} ms -> {calls} call(s)")
                # 2. distinct alerts: acceptance latency and POST → ATD delay
                delays = []
                for i in range(5):
                    before = {m.name: len(m.commands) for m in bank.modems}
                    t = time.perf_counter()
                    async with s.post(f"{url}/v1/alerts", json={"to": "alice", "text": f"Disk {i} full"}) as r:
                        await r.read()
                    while not any(c.startswith("ATD") for m in bank.modems  # noqa: ASYNC110 (polls the sim)
                                  for c in m.commands[before.get(m.name, 0):]):
                        await asyncio.sleep(0.002)
                    delays.append(time.perf_counter() - t)
                    await asyncio.sleep(2.5)       # let the call finish (TTS + ack)
                print("POST -> ATD (prompt TTS from cache): " + ", ".join(f"{d * 1e3:.0f} ms" for d in delays))
                t = time.perf_counter()
                for _ in range(50):
                    async with s.get(f"{url}/metrics") as r:
                        await r.read()
                print(f"GET /metrics: {(time.perf_counter() - t) / 50 * 1e3:.1f} ms")
        finally:
            await svc.stop()
            await bank.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
