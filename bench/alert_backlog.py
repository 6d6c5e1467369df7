"""Alerts under a backlog (issue 11 item 2): N alerts of S-second calls on M simulated modems,
all raised at once through the HTTP API. Before the fix an alert gave up after a fixed 120 s
wait for a line (72 alerts of 8 s calls on 4 modems: 3 never called); now each waits as
long as its policy's ``line_wait`` (default: until a line frees).

    .venv/bin/python bench/alert_backlog.py [--alerts 72] [--modems 4] [--call-seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import wave
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modem_dialer.config import load_config  # noqa: E402
from modem_dialer.service.service import Service  # noqa: E402
from modem_dialer.sim.callee import Callee, Scenario  # noqa: E402
from modem_dialer.sim.sim_bank import SimBank  # noqa: E402


async def main(alerts: int, modems: int, call_s: float) -> None:
    bank = await SimBank.of(modems, "quectel", Scenario(Callee(answer_after=0.1, hangup_after=call_s))).start()
    numbers = [f"+3361234{i:04d}" for i in range(alerts)]
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts"
        prompts.mkdir()
        with wave.open(str(prompts / "alert.wav"), "wb") as w:     # longer than the call: the callee hangs up
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes((np.sin(np.arange(int(8000 * (call_s + 2))) * 0.3) * 8000).astype(np.int16).tobytes())
        doc = yaml.safe_load(bank.config_yaml(database=str(Path(tmp) / "j.db")))
        doc["cache_dir"] = "/tmp/modem-dialer-test-tts-cache"
        doc["alerting"] = {"api": {"port": 0}, "rate_limit": {"per_number": 100},
                           "policies": {"default": {"steps": [{"to": numbers[0]}], "sms_fallback": False,
                                                    "message_repeat": 1}}}
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(doc))
        svc = Service(load_config(str(Path(tmp) / "config.yaml")), port=0)
        await svc.start()
        url = f"http://127.0.0.1:{svc.port}"
        t0 = time.monotonic()
        try:
            async with aiohttp.ClientSession() as s:
                ids = []
                for n in numbers:
                    async with s.post(f"{url}/v1/alerts", json={"to": n, "audio": str(prompts / "alert.wav")}) as r:
                        ids.append((await r.json())["id"])
                done: dict[int, dict] = {}
                while len(done) < len(ids):
                    for i in ids:
                        if i not in done:
                            async with s.get(f"{url}/v1/alerts/{i}") as r:
                                a = await r.json()
                            if a["status"] != "open" or a["result"]:
                                done[i] = a
                    await asyncio.sleep(1.0)
        finally:
            await svc.stop()
            await bank.stop()
    wall = time.monotonic() - t0
    outcomes = Counter(h["outcome"] for a in done.values() for h in a["history"])
    called = len({c.number for m in bank.modems for c in m.calls})
    print(f"{alerts} alerts of {call_s:g} s calls on {modems} modems: {called} numbers called, "
          f"outcomes {dict(outcomes)}, all settled after {wall:.0f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=72)
    ap.add_argument("--modems", type=int, default=4)
    ap.add_argument("--call-seconds", type=float, default=8.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)      # one line per alert would drown the figure
    asyncio.run(main(args.alerts, args.modems, args.call_seconds))
