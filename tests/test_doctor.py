"""`modem-dialer doctor` against a simulated bank with problems injected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from sysfs_builder import FakeSysfs, ec25

from modem_dialer.config import Config
from modem_dialer.modems.doctor import DoctorEnv, check_clock, check_database, exit_code, run_doctor
from modem_dialer.sim.sim_bank import SimSpec

LOCKER = ("import fcntl, os, sys, time\n"
          "fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)\n"
          "fcntl.flock(fd, fcntl.LOCK_EX)\n"
          "print('locked', flush=True)\n"
          "time.sleep(60)\n")


@pytest.fixture
def locker():
    """Open a port and lock it exclusively from a child process (what a second dialer does)."""
    procs: list[subprocess.Popen] = []

    def lock(port: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", LOCKER, port], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        return p

    yield lock
    for p in procs:
        p.kill()
        p.wait()


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


async def test_every_injected_problem_is_found_with_its_fix(make_bank, tmp_path, locker):
    bank = await make_bank([SimSpec("quectel"), SimSpec("quectel"), SimSpec("quectel", pin="1234"),
                            SimSpec("huawei", voice=False), SimSpec("quectel"), SimSpec("quectel"),
                            SimSpec("simcom"), SimSpec("quectel")])
    silent, searching, _pinned, _mute, busy, weak, held, _uac = bank.modems
    silent.silent = True
    searching.reg_stat = 2
    weak.rssi = 2                       # -109 dBm
    weak.dialect.ims = 0                # on 4G without VoLTE
    doc = yaml.safe_load(bank.config_yaml(database=str(tmp_path / "a-file" / "calls.db")))
    (tmp_path / "a-file").write_text("not a directory")
    doc["modems"][0]["probe_timeout"] = 0.5
    del doc["modems"][2]["pin"]                                     # PIN-locked SIM, no pin in config
    doc["modems"][7]["audio"] = {"kind": "uac", "device": "hw:CARD=gsm_1_1_3,DEV=0"}
    doc["modems"].append({"name": "gone", "port": "/dev/ttyNOPE5", "family": "quectel"})
    config = Config.model_validate(doc)
    child = locker(busy.path)

    proc = tmp_path / "proc"                                        # a ModemManager holding gsm6
    (proc / "4242" / "fd").mkdir(parents=True)
    (proc / "4242" / "comm").write_text("ModemManager\n")
    os.symlink(held.path, proc / "4242" / "fd" / "9")
    (proc / "self").mkdir()
    (tmp_path / "timesync").mkdir()                                 # timesyncd runs, not synced
    sysfs = FakeSysfs(tmp_path / "sys")
    ec25(sysfs, "1-1.3", 0, (1, "Android"))                         # the card was never renamed

    env = DoctorEnv(proc_root=str(proc), sysfs_root=str(sysfs.root), find_library=lambda _: None,
                    which=lambda _: None, timedatectl=None,
                    timesync_flag=str(tmp_path / "timesync" / "synchronized"))
    checks = await run_doctor(config.modems, Path(doc["database"]), env)
    c = by_name(checks)
    assert exit_code(checks) == 1

    assert c["ModemManager"].status == "fail" and "ModemManager[4242] is running and holds gsm6" in c["ModemManager"].message
    assert "ID_MM_DEVICE_IGNORE" in c["ModemManager"].fix
    assert c["gsm6: port"].status == "fail" and "held by ModemManager[4242]" in c["gsm6: port"].message
    assert c["libportaudio2"].status == "fail" and "gsm7" in c["libportaudio2"].message
    assert c["libportaudio2"].fix == "sudo apt-get install libportaudio2"
    assert c["espeak-ng"].status == "warn" and "apt-get install espeak-ng" in c["espeak-ng"].fix
    assert c["clock"].status == "warn" and "not synchronised" in c["clock"].message
    assert c["database"].status == "fail" and "not a directory" in c["database"].message

    assert c["gsm0: answers"].status == "fail" and "silent" in c["gsm0: answers"].message
    assert silent.path in c["gsm0: answers"].message
    assert c["gsm1: network"].status == "fail" and "not registered (searching)" in c["gsm1: network"].message
    assert c["gsm2: SIM"].status == "fail" and "PIN locked" in c["gsm2: SIM"].message
    assert "pin:" in c["gsm2: SIM"].fix
    assert c["gsm3: voice"].status == "fail" and "no voice firmware" in c["gsm3: voice"].message
    assert c["gsm4: port"].status == "fail" and f"[{child.pid}]" in c["gsm4: port"].message
    assert "busy" in c["gsm4: port"].message
    assert c["gsm5: signal"].status == "warn" and "-109 dBm" in c["gsm5: signal"].message
    assert c["gsm5: network"].status == "warn" and "without VoLTE" in c["gsm5: network"].message
    assert "--volte" in c["gsm5: network"].fix
    assert c["gsm7: audio"].status == "fail" and "hw:CARD=gsm_1_1_3,DEV=0 not found" in c["gsm7: audio"].message
    assert "setup-modem gsm7 --uac" in c["gsm7: audio"].fix
    assert c["gone: port"].status == "fail" and "/dev/ttyNOPE5 missing" in c["gone: port"].message
    # the healthy parts of sick modems are still reported
    assert c["gsm6: network"].status == "ok" and c["gsm5: audio"].status == "ok"
    assert all(ch.fix for ch in checks if ch.status != "ok")

    # --lte-only turns 4G-without-VoLTE into a failure
    lte = DoctorEnv(proc_root=str(tmp_path / "none"), lte_only=True, timedatectl=None)
    five = Config.model_validate({"modems": [doc["modems"][5]]})
    assert by_name(await run_doctor(five.modems, None, lte))["gsm5: network"].status == "fail"


async def test_clock_sources(tmp_path):
    flag = tmp_path / "ts" / "synchronized"
    env = DoctorEnv(timedatectl=None, timesync_flag=str(flag))
    assert (await check_clock(env)).status == "warn" and "unknown" in (await check_clock(env)).message
    flag.parent.mkdir()
    flag.write_text("")
    assert (await check_clock(env)).status == "ok"
    # a fake timedatectl that says "no"
    exe = tmp_path / "timedatectl"
    exe.write_text("#!/bin/sh\necho no\n")
    exe.chmod(0o755)
    env = DoctorEnv(timedatectl=str(exe), which=lambda name: name, timesync_flag=str(flag))
    check = await check_clock(env)
    assert check.status == "warn" and "NTPSynchronized=no" in check.message


def test_database_checks(tmp_path):
    db = tmp_path / "calls.db"
    assert check_database(db).status == "ok" and "will be created" in check_database(db).message
    import sqlite3

    sqlite3.connect(db).close()
    assert check_database(db).message.endswith("is writable")
    assert check_database(tmp_path / "no" / "dir.db").status == "fail"


def test_database_check_on_postgresql(pg, tmp_path):
    ok = check_database(pg.new_schema())
    assert ok.status == "ok" and ok.message.endswith("is reachable and writable")
    down = check_database(f"postgresql://dialer:pw@/dialer?host={tmp_path}&port=1")
    assert down.status == "fail" and "cannot connect" in down.message and ":pw@" not in down.message


async def test_cli_healthy_bank_exits_0_and_a_missing_port_exits_1(make_bank, tmp_path):
    bank = await make_bank("quectel,simcom", n=2)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml(database=str(tmp_path / "calls.db")))
    rc, out, err = await run_cli("--config", str(cfg), "doctor", "--json")
    rows = json.loads(out)
    assert rc == 0, out + err
    assert {r["status"] for r in rows if r["modem"]} == {"ok"}
    assert [r["name"] for r in rows if r["modem"] == "gsm0"] == [
        "gsm0: port", "gsm0: network", "gsm0: signal", "gsm0: audio"]
    doc = yaml.safe_load(cfg.read_text())
    doc["modems"][1]["port"] = "/dev/ttyNOPE1"
    cfg.write_text(yaml.safe_dump(doc))
    rc, out, _ = await run_cli("--config", str(cfg), "doctor")
    assert rc == 1
    assert "FAIL gsm1: port: /dev/ttyNOPE1 missing" in out and "fix: is the modem plugged in" in out
    assert "1 problem(s)" in out
    rc, out, _ = await run_cli("--config", str(tmp_path / "nope.yaml"), "doctor", "--json")
    assert rc == 1 and json.loads(out)[0]["name"] == "config"
