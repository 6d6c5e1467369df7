"""The service's bank finds an unplugged modem again by IMEI when it comes back on new ports."""

from __future__ import annotations

import asyncio
import os

from helpers import wait_until, write_config
from test_recovery import live_candidates

from modem_dialer.modems.recovery import Supervisor
from modem_dialer.service.bank import Bank, Priority
from modem_dialer.sim.dialects import make_dialect
from modem_dialer.sim.modem import SimModem
from modem_dialer.store import modem_states, open_db


async def test_unplugged_modem_is_found_on_its_new_port_and_lent_again(make_bank, tmp_path):
    bank = await make_bank("quectel")
    old = bank.modems[0]
    loaded = write_config(bank, tmp_path)
    conn = open_db(loaded.database_path)
    live = list(bank.modems)
    sup = Supervisor(candidates=live_candidates(live), probe_timeout=0.5, search_timeout=5, poll_interval=0.05)
    b = Bank(list(loaded.config.modems), conn, health_interval=0.1, supervisor=sup)
    await b.start()
    try:
        slot = b.slots["gsm0"]
        assert slot.ready() and slot.imei == old.imei
        old_port = slot.cfg.port
        old.unplug()
        await wait_until(lambda: not slot.ready(), 10)   # the line's loss noticed (no fixed sleep)
        # a blocker takes the freed pty number, so the modem really comes back elsewhere
        blocker = os.openpty()
        back = SimModem(make_dialect("quectel"), "gsm0", imei=old.imei, iccid=old.iccid)
        await back.start()
        live.append(back)
        for _ in range(100):
            if slot.ready():
                break
            await asyncio.sleep(0.05)
        assert slot.ready() and slot.cfg.port == back.path != old_port
        assert slot.cfg.audio.port == back.audio.path
        async with b.lease(Priority.ALERT, timeout=2) as lent:
            assert lent.line.identity.imei == old.imei
        state = {r["name"]: r for r in modem_states(conn)}["gsm0"]
        assert state["status"] == "ready"
        await back.stop()
        for fd in blocker:
            os.close(fd)
    finally:
        await b.close()
        conn.close()


async def test_serve_refuses_a_public_address_without_token(make_bank, tmp_path):
    from conftest import run_cli

    bank = await make_bank("quectel")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml(database="x.db", alerting={"api": {"listen": "0.0.0.0", "port": 0}}))
    rc, _, err = await run_cli("--config", str(cfg), "serve", timeout=20)
    assert rc == 1 and "0.0.0.0 is not a loopback address and no token is set" in err
    assert "Traceback" not in err
