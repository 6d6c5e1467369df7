"""Identity by shape (issue 11 items 25, 26): unsolicited lines never become a command's value,
SIM busy after plug-in is waited out, and a modem without a readable identity is not ready."""

from __future__ import annotations

import pytest
from conftest import FAMILIES, modem_config

from modem_dialer.modems import driver as driver_mod
from modem_dialer.modems import identity as identity_mod
from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.driver import DriverError
from modem_dialer.modems.identity import iccid_from, iccid_from_crsm, imei_from, imsi_from, luhn_ok, name_from
from modem_dialer.modems.probe import probe
from modem_dialer.sim.sim_bank import SimSpec

# An EG25-G after a reset (transcripts/quectel-eg25g__eg25-manager-boot-urcs.txt, log 2)
EG25_BOOT = ["RDY", "+CPIN: READY", "+QUSIM: 1", "+CFUN: 1", "+QIND: SMS DONE"]


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(identity_mod, "IDENTITY_RETRY_DELAY", 0.05)
    monkeypatch.setattr(driver_mod, "SIM_BUSY_POLL", 0.05, raising=False)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("command", ["AT+CGSN", "AT+CIMI", "AT+CGMI", "AT+CGMM"])
async def test_boot_burst_during_a_bare_value_command_is_not_its_value(make_bank, family, command):
    bank = await make_bank(family)
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    sim.inject_before(command, EG25_BOOT)
    ident = await d.identity()
    assert not sim.injections                       # the burst really came during that command
    assert (ident.imei, ident.imsi) == (sim.imei, sim.imsi)
    assert (ident.manufacturer, ident.model) == (sim.dialect.manufacturer, sim.dialect.model)
    assert "RDY" in d.ch.unsolicited                 # kept for diagnostics, not lost silently
    await d.close()


async def test_a_burst_that_swallows_the_whole_answer_is_asked_again(make_bank):
    """The burst alone (no IMEI line at all) → the command is asked again, not answered None."""
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    real_imei = sim.imei
    sim.imei = "RDY"                                  # first answer: no IMEI-shaped line
    sim.inject_before("AT+CGSN", EG25_BOOT)

    asked = []
    orig = d.ch.command

    async def spy(cmd, *a, **kw):
        asked.append(cmd)
        if cmd == "AT+CGSN" and asked.count("AT+CGSN") == 2:
            sim.imei = real_imei                      # the modem has settled
        return await orig(cmd, *a, **kw)
    d.ch.command = spy                                # type: ignore[method-assign]
    ident = await d.identity()
    assert ident.imei == real_imei and asked.count("AT+CGSN") == 2
    await d.close()


async def test_no_valid_imei_means_not_ready(make_bank):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.imei = "867698041234560"                     # wrong Luhn check digit
    r = await probe(modem_config(bank))
    assert r.identity.imei is None
    d = r.as_dict()
    assert d["ready"] is False and "IMEI" in d["error"]


def test_shapes() -> None:
    assert luhn_ok("490154203237518") and not luhn_ok("490154203237519")
    assert imei_from(["RDY", "+CPIN: READY", "490154203237518"]) == "490154203237518"
    assert imei_from(["+CGSN: 490154203237518"]) == "490154203237518"
    assert imei_from(["+CGSN: \"490154203237518\""]) == "490154203237518"
    assert imei_from(["IMEI: 490154203237518"]) == "490154203237518"
    assert imei_from(["4901542032375180"]) is None                       # 16 digits: IMEISV, not IMEI
    assert imei_from(["+QUSIM: 1", "+CFUN: 1"]) is None
    assert imsi_from(["+QIND: SMS DONE", "255071013516311"]) == "255071013516311"   # E1550 transcript
    assert imsi_from(["+CPIN: READY"]) is None
    assert name_from(["RDY", "+CPIN: READY", "Quectel"]) == "Quectel"
    assert name_from(["+CGMM: SIMCOM_SIM7600G-H"]) == "SIMCOM_SIM7600G-H"
    assert name_from(["+QIND: SMS DONE"]) is None
    assert iccid_from(["+QCCID: 89860318760226008387F"]) == "89860318760226008387"[:20]
    assert iccid_from(["+QCCID: 8986031876022600838F"]) == "8986031876022600838"
    assert iccid_from(['+CCID: "89330123456789012345"']) == "89330123456789012345"
    assert iccid_from(["RDY"]) is None
    assert iccid_from_crsm(['+CRSM: 144,0,"98331032547698103254"']) == "89330123456789012345"
    assert iccid_from_crsm(['+CRSM: 148,4,""']) is None


async def test_sim_busy_after_plug_in_is_waited_out(make_bank):
    bank = await make_bank("huawei")
    sim = bank.modems[0]
    sim.sim_busy_for(0.4)
    d = await open_driver(modem_config(bank))       # used to fail: "SIM problem: SIM busy"
    assert sum(c == "AT+CPIN?" for c in sim.commands) >= 2
    h = await d.health()
    assert h.sim == "ready"
    ident = await d.identity()
    assert ident.iccid == sim.iccid
    await d.close()


async def test_sim_busy_for_too_long_is_a_one_line_error(make_bank, monkeypatch):
    monkeypatch.setattr(driver_mod, "SIM_BUSY_WAIT", 0.3)
    bank = await make_bank([SimSpec("quectel")])
    bank.modems[0].sim_busy_for(30)
    with pytest.raises(DriverError, match=r"SIM still busy after 0\.3 s"):
        await open_driver(modem_config(bank))


def test_every_registration_state_is_documented() -> None:
    """Issue 11 item 28: the documented set is the set the code reports, stat by stat."""
    import re
    from pathlib import Path

    from modem_dialer.modems.events import Registration
    from modem_dialer.modems.info import parse_creg
    doc = (Path(__file__).parent.parent / "docs" / "modems.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", doc, re.M))
    assert set(rows) >= {r.value for r in Registration}
    for value, stats in rows.items():
        if value not in {r.value for r in Registration}:
            continue
        for stat in re.findall(r"\d", stats):
            assert parse_creg(f"2,{stat}")[0].value == value, (value, stat)


async def test_not_registered_is_reported_as_documented(make_bank):
    bank = await make_bank("quectel")
    bank.modems[0].reg_stat = 0
    r = await probe(modem_config(bank))
    d = r.as_dict()
    assert d["registration"] == "not_registered" and d["ready"] is False
    assert "not registered (not_registered)" in d["error"]
