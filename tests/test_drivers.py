"""Every family's driver against its simulated dialect over real ptys (modems.md §9 transcripts)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import FAMILIES, modem_config
from helpers import wait_until

from modem_dialer.at.errors import ATCommandError, ATError
from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.driver import DriverError
from modem_dialer.modems.events import Answered, Ended, HangupBy, KeyPressed, ModemLost, Registration, Ringing
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sim_bank import SimSpec

NUMBER = "+15551234567"


async def events_until_end(driver, timeout: float = 5.0) -> list:
    q, remove = driver.event_queue()
    out = []
    try:
        while True:
            ev = await asyncio.wait_for(q.get(), timeout)
            out.append(ev)
            if isinstance(ev, Answered):
                await driver.audio_on()
            if isinstance(ev, (Ended, ModemLost)):
                return out
    finally:
        remove()


async def dial_and_collect(driver, number=NUMBER, *, hangup_after: float | None = None, timeout=5.0) -> list:
    q, remove = driver.event_queue()
    out: list = []

    async def collect():
        while True:
            ev = await q.get()
            out.append(ev)
            if isinstance(ev, Answered):
                await driver.audio_on()
                if hangup_after is not None:
                    await asyncio.sleep(hangup_after)
                    await driver.hangup()
            if isinstance(ev, (Ended, ModemLost)):
                return

    task = asyncio.create_task(collect())
    await driver.dial(number)
    try:
        await asyncio.wait_for(task, timeout)
    finally:
        remove()
    return out


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.parametrize("family", FAMILIES)
async def test_init_identity_health(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    assert d.family == family
    assert not sim.echo and sim.cmee == 2         # echo off and verbose errors after init
    ident = await d.identity()
    assert (ident.imei, ident.iccid, ident.imsi) == (sim.imei, sim.iccid, sim.imsi)
    assert ident.manufacturer == sim.dialect.manufacturer and ident.model == sim.dialect.model
    h = await d.health()
    assert h.sim == "ready" and h.registration == Registration.HOME and h.tech == "4G"
    assert h.operator == "Orange F" and h.signal_dbm == -113 + 2 * sim.rssi
    assert h.volte is (True if family == "quectel" else None)
    await d.close()


@pytest.mark.parametrize("family", FAMILIES)
async def test_auto_detects_family(make_bank, family):
    bank = await make_bank(family)
    d = await open_driver(modem_config(bank, family="auto"))
    assert d.family == family
    await d.close()


@pytest.mark.parametrize("family", FAMILIES)
async def test_answered_key_local_hangup(make_bank, family):
    inband = family == "huawei"
    bank = await make_bank(family, Scenario(Callee(answer_after=0.15, keys=[(0.05, "1")], inband=inband)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    evs = await dial_and_collect(d, hangup_after=0.3)
    ks = kinds(evs)
    assert ks[0] == "Dialing" and "Answered" in ks and ks[-1] == "Ended"
    if family != "generic":                  # polling may miss a short alerting phase
        assert ks.index("Ringing") < ks.index("Answered")
    keys = [e.key for e in evs if isinstance(e, KeyPressed)]
    assert keys == ([] if family in ("huawei", "generic") else ["1"])
    end = evs[-1]
    assert end.by == HangupBy.DIALER and end.cause == 16
    assert sim.calls[-1].state == "ended" and sim.calls[-1].ended_by == "dialer"
    await d.close()


@pytest.mark.parametrize("family", FAMILIES)
async def test_callee_hangs_up(make_bank, family):
    # the callee talks longer than one CLCC poll (0.25 s): the generic family learns of the
    # answer only at its next poll, so a 0.3 s call could measure 0.06 s under load
    bank = await make_bank(family, Scenario(Callee(answer_after=0.1, hangup_after=0.6)))
    d = await open_driver(modem_config(bank))
    evs = await dial_and_collect(d)
    end = evs[-1]
    assert isinstance(end, Ended) and end.by == HangupBy.CALLEE and end.cause == 16
    assert end.duration_s is not None and 0.1 <= end.duration_s <= 1.5
    await d.close()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("outcome", "cause", "by"), [
    ("busy", 17, HangupBy.NETWORK), ("no_answer", 19, HangupBy.NETWORK),
    ("rejected", 21, HangupBy.CALLEE), ("invalid", 28, HangupBy.NETWORK),
])
async def test_unanswered_outcomes_carry_the_cause(make_bank, family, outcome, cause, by):
    bank = await make_bank(family, Scenario(Callee(outcome=outcome, end_after=0.3)))
    d = await open_driver(modem_config(bank))
    evs = await dial_and_collect(d)
    assert "Answered" not in kinds(evs)
    end = evs[-1]
    assert isinstance(end, Ended) and end.cause == cause and end.by == by
    await d.close()


async def test_sim7600_ath_is_ignored_until_cvhu0(make_bank):
    bank = await make_bank("simcom", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    assert sim.dialect.cvhu == 0                   # the driver switched the trap off
    # prove the trap exists in the simulator: with CVHU=1, ATH answers OK and the call goes on
    await d.ch.command("AT+CVHU=1")
    q, remove = d.event_queue()
    await d.dial(NUMBER)
    while not isinstance(await asyncio.wait_for(q.get(), 3), Answered):
        pass
    assert (await d.ch.command("ATH")).final == "OK"
    await asyncio.sleep(0.1)
    assert sim.call is not None and sim.call.state == "active"
    await d.hangup()                               # AT+CHUP works whatever CVHU says
    assert sim.call is None
    remove()
    await d.close()


async def test_simcom_pcm_gated_by_cpcmreg_after_answer(make_bank):
    bank = await make_bank("simcom", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    evs_task = asyncio.create_task(dial_and_collect(d, hangup_after=0.3))
    await wait_until(lambda: sim.dialect.cpcmreg is True, 10)   # after the answer (no fixed sleep)
    assert sim.dialect.cpcmreg is True and "AT+CPCMREG=1" in sim.commands
    await evs_task
    await d.audio_off()
    assert sim.dialect.cpcmreg is False
    await d.close()


async def test_quectel_routes_pcm_to_tty_before_dial_and_filters_lte_pseudo_call(make_bank):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    task = asyncio.create_task(dial_and_collect(d, hangup_after=0.2))
    await wait_until(lambda: any(";D+" in c for c in sim.commands), 10)  # (the call is up for 0.25 s)
    assert sim.dialect.qpcmv == (1, 0)
    assert 'AT+QGPSCFG="outport","none"' in sim.commands    # no NMEA on the PCM tty
    # in the dial's own command line, as asterisk-chan-quectel dials (dial_in_one_line: auto)
    assert f"AT+QPCMV=0;+QPCMV=1,0;D{NUMBER};" in sim.commands, sim.commands
    assert not any(c.startswith("AT+QPCMV=1") for c in sim.commands)
    clcc = await d.ch.command("AT+CLCC")
    assert clcc.lines[0] == '+CLCC: 1,0,0,1,0,"",128'        # the data "call" the driver must ignore
    evs = await task
    assert [e.call_id for e in evs if isinstance(e, (Ringing, Answered))] == [2, 2]
    await d.close()


async def test_quectel_routes_pcm_a_command_each_when_dial_in_one_line_is_off(make_bank):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank, dial_in_one_line="off"))
    task = asyncio.create_task(dial_and_collect(d, hangup_after=0.2))
    await wait_until(lambda: any(c.startswith("ATD") for c in sim.commands), 10)
    assert sim.dialect.qpcmv == (1, 0)
    i = sim.commands.index("AT+QPCMV=0")
    assert sim.commands[i + 1] == "AT+QPCMV=1,0" and sim.commands[i + 2] == f"ATD{NUMBER};"
    assert any(isinstance(e, Answered) for e in await task)
    await d.close()


async def test_quectel_dial_line_stops_at_a_refused_routing(make_bank):
    # the module refuses QPCMV=1,x while a mode is on: the line fails there, nothing is dialed,
    # and the dial says so (the line's one final result)
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    sim.dialect.handle = lambda cmd, up, handle=sim.dialect.handle: (  # type: ignore[method-assign]
        sim.error("operation not allowed", 3) if up.startswith("AT+QPCMV=1") else handle(cmd, up))
    with pytest.raises(ATCommandError) as exc:
        await d.dial("+33612345678")
    assert "operation not allowed" in exc.value.final and not sim.calls
    await d.close()


async def test_quectel_dsci_variant(make_bank):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1, hangup_after=0.1)))
    d = await open_driver(modem_config(bank))
    await d.ch.command('AT+QINDCFG="ccinfo",0,0')
    await d.ch.command("AT^DSCI=1")
    evs = await dial_and_collect(d)
    assert kinds(evs) == ["Dialing", "Ringing", "Answered", "Ended"]
    assert evs[-1].by == HangupBy.CALLEE
    await d.close()


async def test_huawei_without_voice_firmware_is_refused(make_bank):
    bank = await make_bank([SimSpec("huawei", voice=False)])
    with pytest.raises(DriverError, match="no voice firmware"):
        await open_driver(modem_config(bank))


@pytest.mark.parametrize(("variant", "orig"), [(None, "^ORIG:1,0"), ("mu609", "^ORIG: 1,0")])
async def test_huawei_orig_spacing_of_each_firmware(make_bank, variant, orig):
    """The E1550 prints ``^ORIG:1,0``, the MU609 ``^ORIG: 1,0``: one form per firmware (the
    simulator used to toss a coin per call); the driver reads both."""
    bank = await make_bank([SimSpec("huawei", variant=variant)], Scenario(Callee(answer_after=0.1, hangup_after=0.2)))
    sim, sent = bank.modems[0], []
    urc = sim.urc
    sim.urc = lambda line, crcrlf=False: (sent.append(line), urc(line, crcrlf))[1]
    d = await open_driver(modem_config(bank))
    evs = await dial_and_collect(d)
    assert kinds(evs) == ["Dialing", "Ringing", "Answered", "Ended"]
    assert [x for x in sent if x.startswith("^ORIG")] == [orig]
    await d.close()


async def test_huawei_noise_urcs_are_harmless(make_bank):
    bank = await make_bank([SimSpec("huawei", noise=True)], Scenario(Callee(answer_after=0.2, hangup_after=0.3)))
    d = await open_driver(modem_config(bank))
    for _ in range(3):
        ident = await d.identity()
        assert ident.imei == bank.modems[0].imei
    evs = await dial_and_collect(d)
    assert kinds(evs)[-1] == "Ended" and "Answered" in kinds(evs)
    await d.close()


async def test_sim_pin_from_config(make_bank):
    bank = await make_bank([SimSpec("quectel", pin="4321")])
    with pytest.raises(DriverError, match="SIM PIN required"):
        await open_driver(modem_config(bank, pin=None))
    d = await open_driver(modem_config(bank))          # the bank's config carries the pin
    assert (await d.health()).sim == "ready"
    await d.close()


async def test_wrong_pin(make_bank):
    bank = await make_bank([SimSpec("quectel", pin="4321")])
    with pytest.raises(DriverError, match="SIM PIN rejected"):
        await open_driver(modem_config(bank, pin="1111"))


@pytest.mark.parametrize("family", FAMILIES)
async def test_unplug_mid_call_is_an_event_not_a_hang(make_bank, family):
    bank = await make_bank(family, Scenario(Callee(answer_after=0.05, unplug_after=0.3)))
    d = await open_driver(modem_config(bank))
    t = time.monotonic()
    evs = await dial_and_collect(d, timeout=3)
    assert isinstance(evs[-1], ModemLost) and bank.modems[0].path in evs[-1].error
    assert time.monotonic() - t < 1.5
    with pytest.raises(ATError):
        await d.hangup() if False else await d.ch.command("AT")
    await d.close()


async def test_silent_modem_times_out_naming_the_port(make_bank):
    bank = await make_bank("quectel")
    bank.modems[0].silent = True
    t = time.monotonic()
    with pytest.raises(ATError, match=bank.modems[0].path):
        await open_driver(modem_config(bank, probe_timeout=0.5))
    assert time.monotonic() - t < 2


async def test_not_registered_dial_fails_cleanly(make_bank):
    bank = await make_bank("sim800")
    bank.modems[0].reg_stat = 2
    d = await open_driver(modem_config(bank))
    assert (await d.health()).registration == Registration.SEARCHING
    await d.close()


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_call_left_up_by_a_dead_owner_is_found_by_clcc_and_ended(make_bank, family):
    """Issue 11 item 6: the owner died mid-call; the next opener ends that call before dialing."""
    bank = await make_bank(family, Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    first = await open_driver(modem_config(bank))
    await first.dial(NUMBER)
    deadline = time.monotonic() + 5
    while not (sim.call is not None and sim.call.state == "active"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await first.close()                              # gone without hanging up
    second = await open_driver(modem_config(bank))
    assert await second.clear_left_call() == 1
    assert sim.call is None and sim.calls[-1].ended_by == "dialer"
    assert await second.clear_left_call() == 0       # idle: nothing to end, nothing sent but CLCC
    await second.dial(NUMBER)                        # and the modem dials again
    await second.close()


async def test_a_call_already_disconnecting_is_not_a_left_call(make_bank):
    """SIM800/SIMCom list a call that is ending with state 6 ("disconnect"): the hang-up is
    already under way (seen right after one on a loaded machine); nothing to end."""
    bank = await make_bank("sim800", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    d = await open_driver(modem_config(bank))
    sent = len(sim.commands)
    sim.inject_before("AT+CLCC", [f'+CLCC: 1,0,6,0,0,"{NUMBER}",145'])
    assert await d.clear_left_call() == 0
    assert [c for c in sim.commands[sent:] if c.upper() != "AT+CLCC"] == []
    await d.close()


# --- issue 11 item 27: a Quectel without AT+QINDCFG="ccinfo" (EP06) --------------------------

@pytest.mark.parametrize(("variant", "source"), [(None, "ccinfo"), ("ep06", "dsci"), ("ep06-nodsci", "clcc_poll")])
async def test_quectel_call_states_fall_back_ccinfo_dsci_clcc(make_bank, variant, source):
    bank = await make_bank([SimSpec("quectel", variant=variant)],
                           Scenario(Callee(answer_after=0.15, ring_after=0.05, hangup_after=0.4)))
    d = await open_driver(modem_config(bank))       # used to fail: ccinfo was required
    assert d.call_state_source == source
    events = await dial_and_collect(d, timeout=8)
    assert kinds(events)[-1] == "Ended" and "Answered" in kinds(events)
    end = events[-1]
    assert end.by == HangupBy.CALLEE
    await d.close()


async def test_modems_json_says_which_call_state_source_is_used(make_bank, tmp_path):
    import json

    from conftest import run_cli
    bank = await make_bank([SimSpec("quectel"), SimSpec("quectel", variant="ep06"),
                            SimSpec("quectel", variant="ep06-nodsci"), SimSpec("simcom"), SimSpec("huawei")])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml(database=str(tmp_path / "d.db")))
    rc, out, err = await run_cli("--config", str(cfg), "modems", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["call_states"] for r in rows] == ["ccinfo", "dsci", "clcc_poll", "clcc_urc", "huawei_urc"]
    assert [r["ect"] for r in rows] == [True, True, True, True, False]     # Huawei: off unless `ect: on`
    assert rows[1]["model"] == "EP06"


async def test_a_dial_cancelled_while_routing_audio_then_hung_up_takes_no_ones_ok(make_bank):
    """Issue 10 (seen in the full-disk test): a campaign stopping cancels a dial while its
    AT+QPCMV=0 is in flight, then hangs up at once. The late OK of AT+QPCMV=0 must not be
    AT+CHUP's (which then returned before the modem had hung up and left its own OK
    unclaimed)."""
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    d = await open_driver(modem_config(bank, dial_in_one_line="off"))     # AT+QPCMV=0 on its own
    task = asyncio.create_task(d.dial("+33612345678"))
    # cancelled in the loop turn after the write: the simulator's OK is not read yet
    for _ in range(100_000):
        pending = d.ch._pending
        if pending is not None and pending.command == "AT+QPCMV=0":
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("AT+QPCMV=0 was never in flight: the case this test is about did not happen")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await d.hangup()
    await d.ch.command("AT")                 # whatever is left of the answers has come in
    assert "OK" not in d.ch.unsolicited, d.ch.unsolicited
    await d.close()
