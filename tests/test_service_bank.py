"""The service's bank: priority leases, a modem that comes back, `serve` as systemd runs it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
from helpers import free_port, write_config

from modem_dialer.service.bank import Bank, Priority
from modem_dialer.store import modem_states, open_db


async def test_alerts_get_the_next_free_line_before_waiting_campaign_calls(make_bank, tmp_path):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path)
    b = Bank(list(loaded.config.modems), health_interval=60)
    await b.start()
    order: list[str] = []

    async def user(name: str, prio: Priority) -> None:
        async with b.lease(prio, timeout=5):
            order.append(name)
            await asyncio.sleep(0.05)
    try:
        async with b.lease(Priority.CAMPAIGN) as slot:
            assert slot.name == "gsm0" and b.free_lines() == []
            tasks = [asyncio.ensure_future(user("campaign-1", Priority.CAMPAIGN))]
            await asyncio.sleep(0.01)
            tasks.append(asyncio.ensure_future(user("alert", Priority.ALERT)))
            tasks.append(asyncio.ensure_future(user("campaign-2", Priority.CAMPAIGN)))
            await asyncio.sleep(0.01)
            assert b.waiting == 3
        await asyncio.gather(*tasks)
        assert order == ["alert", "campaign-1", "campaign-2"]
    finally:
        await b.close()


async def test_a_line_busy_with_calls_is_not_health_checked_between_them(make_bank, tmp_path):
    """A line lent out again and again (a campaign's, between its calls) skips the health
    checks; an idle one is checked every interval. The AT commands each line got tell."""
    bank = await make_bank("quectel", n=2)
    loaded = write_config(bank, tmp_path)
    interval = 1.0
    b = Bank(list(loaded.config.modems), health_interval=interval)
    await b.start()
    loop = asyncio.get_running_loop()
    try:
        busy, idle = b.slots["gsm0"], b.slots["gsm1"]
        assert busy.line is not None and idle.line is not None
        sent = {s.name: s.line.driver.ch.commands_sent for s in (busy, idle)}   # type: ignore[union-attr]
        checks, last = 0, idle.checked_at
        free_longest, freed = 0.0, None
        deadline = loop.time() + 60
        while checks < 2:               # the idle line checked twice meanwhile
            assert loop.time() < deadline, "the idle line was not health-checked"
            async with b.lease(Priority.CAMPAIGN, accept=lambda s: s.name == "gsm0", timeout=5):
                if freed is not None:
                    free_longest = max(free_longest, loop.time() - freed)
                await asyncio.sleep(0.01)
            freed = loop.time()
            await asyncio.sleep(0.01)   # free for a moment, as between two calls
            if idle.checked_at != last:
                checks, last = checks + 1, idle.checked_at
        assert idle.line.driver.ch.commands_sent > sent["gsm1"]                  # type: ignore[union-attr]
        # (a loop stalled for a whole interval with the line free may check it: then it is idle)
        assert busy.line.driver.ch.commands_sent == sent["gsm0"] or free_longest >= interval  # type: ignore[union-attr]
    finally:
        await b.close()


async def test_a_modem_that_comes_back_is_reopened(make_bank, tmp_path):
    bank = await make_bank("simcom")
    sim = bank.modems[0]
    sim.silent = True                                       # hung at start-up
    loaded = write_config(bank, tmp_path)
    conn = open_db(loaded.database_path)
    cfgs = [m.model_copy(update={"probe_timeout": 0.3}) for m in loaded.config.modems]
    b = Bank(cfgs, conn, health_interval=0.2)
    await b.start()
    try:
        slot = b.slots["gsm0"]
        assert not slot.ready() and "does not answer" in slot.error
        assert modem_states(conn)[0]["status"] == "down"
        sim.silent = False                                  # reset done: it answers again
        for _ in range(40):
            if slot.ready():
                break
            await asyncio.sleep(0.1)
        assert slot.ready() and slot.error is None and slot.line.identity.imei == sim.imei
        assert modem_states(conn)[0]["status"] == "ready"
    finally:
        await b.close()
        conn.close()


async def test_serve_runs_logs_json_and_stops_on_sigterm(make_bank, tmp_path):
    bank = await make_bank("quectel")
    port = free_port()
    loaded = write_config(bank, tmp_path, api={"port": port})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modem_dialer.cli", "--config", str(loaded.path), "serve",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        health = None
        deadline = asyncio.get_running_loop().time() + 30     # a bound for a loaded machine
        async with aiohttp.ClientSession() as s:
            while proc.returncode is None and asyncio.get_running_loop().time() < deadline:
                try:
                    async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                        health = (r.status, await r.json())
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert health == (200, {"ok": True, "modems_ready": 1, "modems": 1})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.decode().splitlines()]
    assert any(r["msg"].startswith("API listening on http://127.0.0.1:") for r in logs)
    assert logs[-1]["msg"] == "stopping" or any(r["msg"] == "stopping" for r in logs)
    assert all({"level", "logger", "msg"} <= set(r) for r in logs)
