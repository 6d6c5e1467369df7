"""`modem-dialer alert` as monitoring scripts run it: a subprocess, exit codes 0 / 3 / 1."""

from __future__ import annotations

import pytest
from conftest import run_cli
from helpers import ALICE, TOKEN, called, free_port, write_config
from test_service_alerts import services  # noqa: F401 (fixture)

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import Alerts, open_db

SINGLE = {"default": {"steps": [{"to": "alice"}], "sms_fallback": False, "message_repeat": 1}}


@pytest.mark.slow
async def test_wait_exit_codes_through_the_service(make_bank, tmp_path, services):  # noqa: F811
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    (tmp_path / "token").write_text(TOKEN + "\n")
    loaded = write_config(bank, tmp_path, policies=SINGLE,
                          api={"port": free_port(), "token_file": str(tmp_path / "token")})
    await services(loaded, port=None)          # on the configured port, where the CLI looks
    cfg = str(loaded.path)
    rc, out, err = await run_cli("--config", cfg, "alert", "--to", "alice", "--say", "Disk full on db1", "--wait")
    assert rc == 0, (out, err)
    assert f"acknowledged by alice {ALICE}" in out
    alert_id = int(out.split()[1].rstrip(":"))
    # the callee stops answering: escalation exhausted, exit 3
    bank.scenario.numbers[ALICE] = Callee(outcome="busy", end_after=0.1)
    rc, out, err = await run_cli("--config", cfg, "alert", "--to", "alice", "--say", "Load high on web2", "--wait")
    assert rc == 3, (out, err)
    assert "expired" in out and "busy" in out
    # bad input: exit 1, one line naming the culprit, nothing called
    rc, out, err = await run_cli("--config", cfg, "alert", "--to", "mallory", "--say", "x", "--wait")
    assert rc == 1 and "'mallory'" in err and err.count("\n") == 1
    assert called(bank) == [ALICE, ALICE]
    rc, out, _ = await run_cli("--config", cfg, "alert", "status", str(alert_id))
    assert rc == 0 and "acknowledged" in out
    rc, out, _ = await run_cli("--config", cfg, "alert", "list", "--all")
    assert rc == 0 and "Disk full on db1" in out and "Load high on web2" in out
    rc, out, _ = await run_cli("--config", cfg, "alert", "resolve", str(alert_id))
    assert rc == 0 and out.strip() == f"alert {alert_id}: resolved"
    rc, out, _ = await run_cli("--config", cfg, "alert", "list")
    assert rc == 0 and out.strip() == "no alerts"


async def test_without_a_service_the_command_calls_itself(make_bank, tmp_path):
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    loaded = write_config(bank, tmp_path, policies=SINGLE, api={"port": free_port()})
    rc, out, err = await run_cli("--config", str(loaded.path), "alert", "--to", "alice", "--say", "Disk full on db1",
                                 "--wait")
    assert rc == 0, (out, err)
    assert called(bank) == [ALICE]
    conn = open_db(loaded.database_path)
    (a,) = [Alerts(conn).get_alert(r[0]) for r in conn.execute("SELECT id FROM alerts")]
    assert a["status"] == "acknowledged" and a["acknowledged_by"] == f"alice {ALICE}"
    conn.close()
