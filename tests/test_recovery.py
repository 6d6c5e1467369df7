"""Recovery: a modem unplugged and back on new ptys is found by IMEI; a hung one is reset,
power-cycled through a fake sysfs ``authorized`` file, and quarantined when nothing helps."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from conftest import modem_config
from sysfs_builder import FakeSysfs, ec25

from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.options import AudioConfig
from modem_dialer.modems.recovery import (
    Candidate,
    RecoveryStep,
    Supervisor,
    candidates_from_sysfs,
    usb_path_of,
)
from modem_dialer.sim.dialects import make_dialect
from modem_dialer.sim.modem import SimModem
from modem_dialer.sim.sim_bank import with_luhn
from modem_dialer.store import modem_states, open_db, set_modem_state


def live_candidates(modems: list[SimModem]):
    return lambda: [Candidate(m.path, AudioConfig(kind="serial", port=m.audio.path) if m.audio else None)
                    for m in modems if m.plugged]


def journal(conn, steps: list[RecoveryStep]):
    def report(step: RecoveryStep) -> None:
        steps.append(step)
        set_modem_state(conn, step.modem, step.status, reason=f"{step.step}: {step.detail}", imei=step.imei)
    return report


async def test_unplugged_modem_comes_back_on_new_ptys_and_is_found_by_imei(make_bank, tmp_path):
    bank = await make_bank("quectel", n=2)
    live = list(bank.modems)
    cfg = modem_config(bank, 1)
    lost = bank.modems[1]
    imei, old_port, old_audio = lost.imei, lost.path, lost.audio.path
    lost.unplug()
    # other devices take the freed pty numbers, as other ttys would after a re-enumeration
    squatters = [os.openpty() for _ in range(2)]
    back: list[SimModem] = []

    async def replug() -> None:
        await asyncio.sleep(0.3)
        m = SimModem(make_dialect("quectel"), "gsm1", imei=imei, iccid=lost.iccid, imsi=lost.imsi)
        await m.start()
        back.append(m)
        live.append(m)

    conn = open_db(tmp_path / "j.db")
    steps: list[RecoveryStep] = []
    sup = Supervisor(candidates=live_candidates(live), report=journal(conn, steps), probe_timeout=1,
                     search_timeout=5, poll_interval=0.1)
    try:
        plug = asyncio.create_task(replug())
        new_cfg = await sup.recover(cfg, imei, lost=True)   # as after a ModemLost event
        await plug
        [m] = back
        assert new_cfg is not None and new_cfg.port == m.path and new_cfg.port != old_port
        assert new_cfg.audio is not None and new_cfg.audio.port == m.audio.path != old_audio
        assert (new_cfg.name, new_cfg.family) == (cfg.name, cfg.family)
        assert [s.step for s in steps] == ["lost", "found"] and f"{old_port} -> {m.path}" in steps[-1].detail
        driver = await open_driver(new_cfg)          # back in rotation: the real stack opens it
        try:
            assert (await driver.identity()).imei == imei
        finally:
            await driver.close()
        [row] = [r for r in modem_states(conn) if r["name"] == "gsm1"]
        assert (row["status"], row["imei"]) == ("ready", imei) and row["reason"].startswith("found: ")
        assert "AT+CGSN" in bank.modems[0].commands     # the other modem was asked, and not taken
    finally:
        for m in back:
            await m.stop()
        for a, b in squatters:
            os.close(a)
            os.close(b)
        conn.close()


async def test_modem_that_never_returns_fails_and_is_quarantined(make_bank):
    bank = await make_bank("quectel")
    cfg = modem_config(bank, 0)
    # an IMEI no other test worker's simulated modem has: its freed pty may be reused at once
    # by another worker's gsm0, which would otherwise answer with the very same IMEI
    imei = bank.modems[0].imei = with_luhn(f"35{random.randrange(10**12):012d}")
    bank.modems[0].unplug()
    steps: list[RecoveryStep] = []
    sup = Supervisor(candidates=live_candidates(bank.modems), report=steps.append, max_failures=2,
                     search_timeout=0.2, poll_interval=0.05)
    assert await sup.recover(cfg, imei) is None and steps[-1].status == "failed"
    assert await sup.recover(cfg, imei) is None and steps[-1].step == "quarantined"
    assert sup.quarantined == {"gsm0"}


def fake_box(root: Path) -> FakeSysfs:
    fs = FakeSysfs(root)
    ec25(fs, "1-1.3", 0, None)
    return fs


async def watch(path: Path, seen: list[str], on_off=None) -> None:
    """Record every value the authorized file takes (what a power cycle looks like)."""
    while True:
        v = path.read_text().strip()
        if not seen or seen[-1] != v:
            seen.append(v)
            if v == "0" and on_off:
                on_off()
        await asyncio.sleep(0.005)


async def test_hung_modem_reset_then_power_cycled_back(make_bank, tmp_path):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.silent = True                          # hung: reads, never answers (CFUN=1,1 does not help)
    cfg = modem_config(bank, 0)
    fs = fake_box(tmp_path)
    auth = fs.root / "bus/usb/devices/1-1.3/authorized"
    seen: list[str] = []
    # power coming back revives it
    watcher = asyncio.create_task(watch(auth, seen, on_off=lambda: setattr(sim, "silent", False)))
    steps: list[RecoveryStep] = []
    sup = Supervisor(sysfs_root=fs.root, candidates=live_candidates(bank.modems), report=steps.append,
                     probe_timeout=0.3, reboot_wait=0.3, power_off_s=0.1, poll_interval=0.05)
    try:
        back = await sup.recover(cfg, sim.imei, usb_path="1-1.3")
        await asyncio.sleep(0.05)              # let the watcher see the last write
    finally:
        watcher.cancel()
    assert back is not None and back.port == sim.path
    assert "AT+CFUN=1,1" in sim.commands
    assert seen == ["1", "0", "1"] and auth.read_text() == "1"
    assert [s.step for s in steps] == ["reset", "power_cycle", "power_cycle", "found"]
    assert sup.failures == {"gsm0": 1} and not sup.quarantined
    sup.note_success("gsm0")
    assert sup.failures == {}


async def test_hung_modem_quarantined_after_repeated_failures(make_bank, tmp_path):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.silent = True
    cfg = modem_config(bank, 0)
    fs = fake_box(tmp_path)
    auth = fs.root / "bus/usb/devices/1-1.3/authorized"
    seen: list[str] = []
    watcher = asyncio.create_task(watch(auth, seen))
    steps: list[RecoveryStep] = []
    sup = Supervisor(sysfs_root=fs.root, candidates=live_candidates(bank.modems), report=steps.append,
                     max_failures=2, probe_timeout=0.2, reboot_wait=0.2, power_off_s=0.05, poll_interval=0.05)
    try:
        assert await sup.recover(cfg, sim.imei, usb_path="1-1.3") is None
        assert steps[-1].step == "failed" and "failure 1 of 2" in steps[-1].detail
        assert await sup.recover(cfg, sim.imei) is None          # the USB path was remembered
        assert steps[-1].step == "quarantined" and steps[-1].status == "quarantined"
        await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
    assert sim.commands.count("AT+CFUN=1,1") == 2 and seen == ["1", "0", "1", "0", "1"]
    sent = len(sim.commands)
    assert await sup.recover(cfg, sim.imei) is None and len(sim.commands) == sent   # not touched
    sup.release("gsm0")
    assert not sup.quarantined


async def test_power_cycle_not_permitted_is_reported(make_bank, tmp_path):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.silent = True
    fs = fake_box(tmp_path)
    auth = fs.root / "bus/usb/devices/1-1.3/authorized"
    auth.unlink()
    auth.mkdir()                                # writing fails (EISDIR), whoever we are
    steps: list[RecoveryStep] = []
    sup = Supervisor(sysfs_root=fs.root, candidates=live_candidates(bank.modems), report=steps.append,
                     probe_timeout=0.2, reboot_wait=0.1, power_off_s=0.01, poll_interval=0.05)
    assert await sup.recover(modem_config(bank, 0), sim.imei, usb_path="1-1.3") is None
    [pc] = [s for s in steps if s.step == "power_cycle"]
    assert "not permitted on USB 1-1.3" in pc.detail


def test_sysfs_candidates_and_usb_path(tmp_path):
    fs = FakeSysfs(tmp_path)
    ec25(fs, "1-1.3", 4, None)
    ec25(fs, "1-1.4", 0, (1, "Android"))
    c3, c4 = candidates_from_sysfs(fs.root)
    assert (c3.port, c3.usb_path, c3.audio.kind, c3.audio.port) == ("/dev/ttyUSB6", "1-1.3", "serial", "/dev/ttyUSB5")
    assert (c4.port, c4.audio.kind, c4.audio.device) == ("/dev/ttyUSB2", "uac", "hw:CARD=Android,DEV=0")
    assert usb_path_of("/dev/gsm/1-1.7-at") == "1-1.7"
    assert usb_path_of("/dev/ttyUSB6", fs.root) == "1-1.3"
    assert usb_path_of("/dev/ttyUSB99", fs.root) is None
