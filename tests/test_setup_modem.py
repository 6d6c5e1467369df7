"""`modem-dialer setup-modem`: read, show, confirm, apply, read back; against simulated modems."""

from __future__ import annotations

import pytest
import yaml
from conftest import modem_config, run_cli

from modem_dialer.modems.setup import apply_plan, open_for_setup, read_plan
from modem_dialer.sim.sim_bank import SimSpec

WRITES = ("AT+QCFG=\"USBCFG\",", "AT+QCFG=\"IMS\",", "AT+QURCCFG=\"URCPORT\",", "AT+CVHU=", "AT^CVOICE=",
          "AT^U2DIAG=", "AT+CFUN=1,1")


def writes(sim) -> list[str]:
    return [c for c in sim.commands if c.upper().startswith(WRITES)]



async def test_quectel_uac_volte_urcport_confirmed(make_bank, tmp_path):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    q = sim.dialect
    q.usbcfg = [1, 1, 1, 0, 1, 1, 0]        # an owner turned modem off and ADB on: must be kept
    q.ims = 0
    q.urcport = "uart1"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, err = await run_cli("--config", str(cfg), "setup-modem", "gsm0", "--volte", "--uac", stdin="y\n")
    assert rc == 0, out + err
    # shown before asking: current value, new value, command, why, the reboot
    assert 'change URC port: uart1 -> usbat   (AT+QURCCFG="urcport","usbat")' in out
    assert 'AT+QCFG="usbcfg",0x2C7C,0x0125,1,1,1,0,1,1,1' in out
    assert "change VoLTE (IMS): disabled -> enabled" in out and "why:" in out
    assert "reboot the modem (AT+CFUN=1,1)" in out
    assert out.index("Apply these 3 change(s)") < out.index("(read back)")
    assert (q.usbcfg, q.ims, q.urcport) == ([1, 1, 1, 0, 1, 1, 1], 1, "usbat")
    assert "USB audio card (UAC flag of usbcfg): off -> on (read back)" in out
    assert writes(sim)[-1] == "AT+CFUN=1,1" and len(writes(sim)) == 4
    assert "rebooting" in out


async def test_declined_writes_nothing_and_exit_1(make_bank, tmp_path):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.dialect.urcport = "all"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, _ = await run_cli("--config", str(cfg), "setup-modem", "gsm0", stdin="n\n")
    assert rc == 1 and "gsm0: nothing changed" in out
    assert "keep   USB audio card (UAC flag of usbcfg): off   (not requested (--uac))" in out
    assert "keep   VoLTE (IMS): enabled, registered" in out
    assert writes(sim) == [] and sim.dialect.urcport == "all"


async def test_nothing_to_do_asks_nothing(make_bank, tmp_path):
    bank = await make_bank("quectel")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, _ = await run_cli("--config", str(cfg), "setup-modem", "gsm0")
    assert rc == 0 and "gsm0: nothing to change" in out and "Apply" not in out
    assert writes(bank.modems[0]) == []


async def test_simcom_and_huawei_with_yes(make_bank, tmp_path):
    bank = await make_bank([SimSpec("simcom"), SimSpec("huawei"), SimSpec("huawei", voice=False)])
    simcom, huawei, mute = bank.modems
    huawei.dialect.cvoice = 1
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    rc, out, _ = await run_cli("--config", str(cfg), "setup-modem", "gsm0", "--yes")
    assert rc == 0 and "hang-up mode (CVHU): 1 -> 0 (read back)" in out and "AT+CFUN=1,1" not in writes(simcom)
    rc, out, _ = await run_cli("--config", str(cfg), "setup-modem", "gsm1", "--yes", "--no-reboot")
    assert rc == 0, out
    assert (huawei.dialect.cvoice, huawei.dialect.u2diag) == (0, 0)
    assert writes(huawei) == ["AT^CVOICE=0", "AT^U2DIAG=0"] and "reboot the modem for the changes" in out
    rc, out, _ = await run_cli("--config", str(cfg), "setup-modem", "gsm2", "--yes")
    assert rc == 1 and "no voice firmware" in out and mute.dialect.u2diag == 0


async def test_unreadable_setting_is_never_written_blind(make_bank):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    cfg = modem_config(bank, 0)
    orig = sim.dialect.handle
    sim.dialect.handle = lambda cmd, up: ["ERROR"] if up == 'AT+QCFG="USBCFG"' else orig(cmd, up)
    ch, family = await open_for_setup(cfg)
    try:
        plan = await read_plan(ch, cfg, family, uac=True)
        [uac] = [s for s in plan.settings if s.key == "uac"]
        assert not uac.change and "not written blind" in (uac.note or "")
        # the modem changes behind our back between showing and applying: nothing is written
        sim.dialect.urcport = "uart2"
        try:
            await apply_plan(ch, cfg, plan)
            raise AssertionError("apply_plan should refuse")
        except Exception as exc:
            assert "changed since they were shown" in str(exc)
    finally:
        await ch.close()
    assert writes(sim) == []


async def test_unknown_modem_and_missing_port(make_bank, tmp_path):
    bank = await make_bank("quectel")
    data = yaml.safe_load(bank.config_yaml())
    data["modems"][0]["port"] = "/dev/ttyNOPE3"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, _, err = await run_cli("--config", str(cfg), "setup-modem", "gsm9")
    assert rc == 1 and "no modem named 'gsm9'" in err
    rc, _, err = await run_cli("--config", str(cfg), "setup-modem", "gsm0")
    assert rc == 1 and err.strip() == "modem-dialer: /dev/ttyNOPE3: no such port"


@pytest.mark.parametrize("reboot", [True, False])
async def test_after_uac_the_user_is_told_to_rerun_discover_and_udev(make_bank, tmp_path, reboot):
    """Issue 11 item 22: the new card needs discover (its place in the config) AND udev (its
    stable gsm_… id); saying only discover left cards without stable ids."""
    bank = await make_bank("quectel")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml())
    args = ["--config", str(cfg), "setup-modem", "gsm0", "--uac", "--yes"] + ([] if reboot else ["--no-reboot"])
    rc, out, err = await run_cli(*args)
    assert rc == 0, out + err
    assert "modem-dialer discover --write-config" in out
    assert "modem-dialer udev" in out and "udevadm" in out
    assert out.index("discover --write-config") < out.index("modem-dialer udev")


# The per-family settings are a table of typed definitions (modems/setup.py FAMILY_SETTINGS);
# these are the exact commands the family-by-family code sent before it, kept as they were.
SETUP_AT = {
    "quectel": ['AT+QURCCFG="urcport"', 'AT+QCFG="usbcfg"', 'AT+QCFG="ims"',            # read_plan
                'AT+QURCCFG="urcport"', 'AT+QCFG="usbcfg"', 'AT+QCFG="ims"',            # apply: read again
                'AT+QURCCFG="urcport","usbat"', 'AT+QURCCFG="urcport"',                 # write, read back
                'AT+QCFG="usbcfg",0x2C7C,0x0125,1,1,1,0,1,1,1', 'AT+QCFG="usbcfg"',
                'AT+QCFG="ims",1', 'AT+QCFG="ims"'],
    "simcom": ["AT+CVHU?", "AT+CVHU?", "AT+CVHU=0", "AT+CVHU?"],
    "huawei": ["AT^CVOICE?", "AT^U2DIAG?", "AT^CVOICE?", "AT^U2DIAG?", "AT^CVOICE=0", "AT^CVOICE?",
               "AT^U2DIAG=0", "AT^U2DIAG?"],
    "sim800": [],
    "generic": [],
}


@pytest.mark.parametrize("family", list(SETUP_AT))
async def test_each_family_sends_exactly_its_setup_commands(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    if family == "quectel":
        sim.dialect.usbcfg, sim.dialect.ims, sim.dialect.urcport = [1, 1, 1, 0, 1, 1, 0], 0, "uart1"
    elif family == "simcom":
        sim.dialect.cvhu = 1
    elif family == "huawei":
        sim.dialect.cvoice = 1
    cfg = modem_config(bank, 0)
    ch, found = await open_for_setup(cfg)
    before = len(sim.commands)
    try:
        plan = await read_plan(ch, cfg, found, volte=True, uac=True)
        done = await apply_plan(ch, cfg, plan, reboot=False)
    finally:
        await ch.close()
    assert sim.commands[before:] == SETUP_AT[family]
    assert all((s.after or "").startswith(s.wanted) for s in done.changes)   # "enabled, registered"
    if family not in ("quectel",):
        assert plan.problems == [f"gsm0: --volte: no VoLTE switch known for family {family}",
                                 "gsm0: --uac: only Quectel modems have a UAC switch"]
