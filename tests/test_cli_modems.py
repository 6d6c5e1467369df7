"""`modem-dialer modems` as a user runs it: a subprocess against a simulated bank."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import yaml
from conftest import run_cli


async def test_modems_json_all_ready(make_bank, tmp_path):
    bank = await make_bank("quectel,simcom,sim800,huawei,generic", n=5)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, err = await run_cli("--config", str(cfg), "modems", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["family"] for r in rows] == ["quectel", "simcom", "sim800", "huawei", "generic"]
    for r, sim in zip(rows, bank.modems, strict=False):
        assert r["ready"] is True and r["error"] is None
        assert (r["imei"], r["iccid"], r["imsi"]) == (sim.imei, sim.iccid, sim.imsi)
        assert r["registration"] == "home" and r["signal_dbm"] == -73 and r["sim"] == "ready"
        for key in ("name", "port", "manufacturer", "model", "operator"):
            assert r[key]


async def test_missing_and_silent_modems_are_reported_others_still_shown(make_bank, tmp_path):
    bank = await make_bank("quectel", n=3)
    bank.modems[1].silent = True
    data = yaml.safe_load(bank.config_yaml())
    data["modems"][1]["probe_timeout"] = 0.5       # silent: any wait shows it
    data["modems"][2]["port"] = "/dev/ttyNOPE7"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, out, _err = await run_cli("--config", str(cfg), "modems", "--json", timeout=20)
    assert rc == 1
    rows = json.loads(out)
    assert rows[0]["ready"] is True
    assert rows[1]["ready"] is False and bank.modems[1].path in rows[1]["error"] and "does not answer" in rows[1]["error"]
    assert rows[2]["ready"] is False and "/dev/ttyNOPE7: no such port" in rows[2]["error"]


async def test_modems_table(make_bank, tmp_path):
    bank = await make_bank("huawei", n=2)
    bank.modems[1].reg_stat = 3
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, _ = await run_cli("--config", str(cfg), "modems")
    assert rc == 1
    assert "gsm0" in out and "gsm1" in out and "not registered (denied)" in out


async def test_sim_scenario_mistakes_are_one_line(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("default: {answr_after: 2}\n")
    rc, _, err = await run_cli("sim", "--scenario", str(bad))
    assert rc == 1 and "unknown callee setting 'answr_after'" in err and "Traceback" not in err


async def test_sim_stops_on_sigint_even_when_started_ignoring_it():
    """`modem-dialer sim &` in a script (or a test run in the background) starts with SIGINT
    ignored; Ctrl-C / `kill -INT` must still stop it (it was dropped: test teardowns then
    waited 15 s per simulator before killing it)."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", sys.executable, "-m", "modem_dialer.cli", "sim",
        "--modems", "1", env=dict(os.environ), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while not (line := (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()).startswith("gsm0:"):
        assert line, "sim exited"
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err


async def test_vv_logs_every_at_line_both_ways_per_modem_with_timestamps(make_bank, tmp_path):
    """Issue 11 item 18: `-vv` (documented as showing AT traffic) shows it."""
    import re
    bank = await make_bank("quectel,huawei", n=2)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, _out, err = await run_cli("--config", str(cfg), "-vv", "modems", "--json")
    assert rc == 0, err
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG modem_dialer\.at\.traffic: "
    for name, sim in (("gsm0", bank.modems[0]), ("gsm1", bank.modems[1])):
        assert re.search(stamp + name + r" > AT\+CGSN$", err, re.M), err[-2000:]
        assert re.search(stamp + name + " < " + sim.imei + "$", err, re.M)
        assert re.search(stamp + name + " < OK$", err, re.M)
    assert re.search(stamp + r"gsm0 > AT\+QINDCFG=\"ccinfo\",1,0$", err, re.M)
    # without -vv: not a line of it
    rc, _out, err = await run_cli("--config", str(cfg), "-v", "modems", "--json")
    assert rc == 0 and "modem_dialer.at.traffic" not in err


async def test_traffic_logging_costs_nothing_when_off(make_bank, monkeypatch):
    from conftest import modem_config

    from modem_dialer.at import channel
    from modem_dialer.modems.detect import open_driver

    def boom(*a, **kw):
        raise AssertionError("traffic formatted while logging is off")
    monkeypatch.setattr(channel.traffic, "debug", boom)
    bank = await make_bank("quectel")
    d = await open_driver(modem_config(bank))
    await d.identity()
    await d.close()


async def test_modems_shows_other_boxes_from_the_shared_database(make_bank, tmp_path):
    """Several boxes on one database (docs/scale-out.md): this box's modems probed, the
    others' as their box last recorded them, with the record's age and their box's state."""
    from datetime import timedelta

    from modem_dialer.store import open_db, set_modem_state, utc_now
    from modem_dialer.store.boxes import Boxes

    bank = await make_bank("quectel", n=1)
    data = yaml.safe_load(bank.config_yaml(database=str(tmp_path / "bank.db")))
    data["box"] = "pi-1"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    conn = open_db(tmp_path / "bank.db")
    Boxes(conn).register("pi-2", timedelta(seconds=30), host="other", pid=1)
    set_modem_state(conn, "gsm0", "ready", box="pi-2", at=utc_now() - timedelta(seconds=42))
    set_modem_state(conn, "gsm1", "down", reason="no SIM", box="pi-3")
    conn.close()
    rc, out, err = await run_cli("--config", str(cfg), "modems", "--json")
    assert rc == 0, err                       # this box's modems decide the exit status
    rows = json.loads(out)
    assert [(r["box"], r["name"], r["remote"], r["ready"]) for r in rows] == [
        ("pi-1", "gsm0", False, True), ("pi-2", "gsm0", True, True), ("pi-3", "gsm1", True, False)]
    assert 41 <= rows[1]["age_s"] <= 60 and rows[1]["box_status"] == "up" and rows[2]["box_status"] is None
    rc, out, _ = await run_cli("--config", str(cfg), "modems")
    assert "pi-2" in out and re.search(r"ready \(seen \d+ s ago\)", out) and "down: no SIM" in out
    assert "never started" in out
