"""The simulator's control socket: a running sim places an incoming call on command."""

from __future__ import annotations

import time

from conftest import run_cli

from modem_dialer.sim.control import ControlServer, send


async def test_control_socket_places_an_incoming_call(make_bank, tmp_path):
    bank = await make_bank("simcom", n=2)
    ctl = await ControlServer(bank, tmp_path / "sim.sock").start()
    try:
        r = await send(tmp_path / "sim.sock", {"cmd": "call", "from": "+33612345678", "modem": "gsm1"})
        assert r == {"ok": True, "modem": "gsm1", "placed": True}
        assert bank["gsm1"].call.direction == "in" and bank["gsm1"].call.number == "+33612345678"
        # when each call was dialed and ended, on the machine's monotonic clock (several
        # simulators' calls compared: test_multibox's "no number in two calls at once")
        t = time.monotonic()
        (c,) = (await send(tmp_path / "sim.sock", {"cmd": "calls"}))["modems"]["gsm1"]
        assert c["number"] == "+33612345678" and c["dialed_at"] <= t and c["ended_at"] is None
        bank["gsm1"].end_call(bank["gsm1"].call, 16, "callee")
        (c,) = (await send(tmp_path / "sim.sock", {"cmd": "calls"}))["modems"]["gsm1"]
        assert c["dialed_at"] <= c["ended_at"] <= time.monotonic()
        r = await send(tmp_path / "sim.sock", {"cmd": "call", "modem": "gsm9"})
        assert r["ok"] is False and "gsm9" in r["error"]
        assert (await send(tmp_path / "sim.sock", {"cmd": "nope"}))["ok"] is False
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "calls")
        assert code == 0 and '"direction": "in"' in out, err
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "call", "--keys", "x")
        assert code == 1 and "--keys" in err
    finally:
        await ctl.close()


async def test_scenario_inbound_calls_ring_on_time(make_bank, tmp_path):
    import asyncio
    import time

    import pytest

    from modem_dialer.sim.callee import Scenario

    path = tmp_path / "sc.yaml"
    path.write_text('inbound_calls:\n  - {at: 0.3, from: "+33612345678", modem: gsm1, keys: [[1, "9"]], '
                    'hangup_after: 2}\n  - {at: 0.1, from: null}\n')
    sc = Scenario.load(path)
    assert [(c.from_, c.modem, c.keys) for c in sc.inbound_calls] == [
        ("+33612345678", "gsm1", [(1.0, "9")]), (None, None, [])]
    t0 = time.monotonic()
    bank = await make_bank("huawei", sc, n=2)
    while not bank["gsm1"].calls:
        assert time.monotonic() - t0 < 5
        await asyncio.sleep(0.02)
    assert time.monotonic() - t0 >= 0.3
    assert bank["gsm0"].calls[0].withheld and bank["gsm1"].calls[0].number == "+33612345678"
    path.write_text("inbound_calls:\n  - {at: 1, form: x}\n")
    with pytest.raises(ValueError, match="unknown inbound call setting 'form'"):
        Scenario.load(path)
    path.write_text("inbound_calls:\n  - {at: 1, modem: gsm7}\n")
    with pytest.raises(ValueError, match="no simulated modem 'gsm7'"):
        await make_bank("quectel", Scenario.load(path), n=1)


async def test_one_socket_and_one_scenario_for_calls_and_sms(make_bank, tmp_path):
    import asyncio
    import json

    from modem_dialer.sim.callee import Scenario

    path = tmp_path / "sc.yaml"
    path.write_text('inbound_calls:\n  - {at: 0.1, from: "+33612345678", modem: gsm1}\n'
                    'inbound_sms:\n  - {at: 0.1, from: "+33612345679", text: "hello", modem: gsm0}\n')
    sc = Scenario.load(path)
    assert len(sc.inbound_calls) == 1 and len(sc.inbound_sms) == 1
    bank = await make_bank("quectel", sc, n=2)
    ctl = await ControlServer(bank, tmp_path / "sim.sock").start()
    try:
        for _ in range(100):
            if bank["gsm1"].calls and bank["gsm0"].inbound:
                break
            await asyncio.sleep(0.05)
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "sms-log")
        assert code == 0 and json.loads(out)["modems"]["gsm0"]["received"], err
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "calls")
        assert code == 0 and json.loads(out)["modems"]["gsm1"][0]["number"] == "+33612345678", err
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "sms", "--from", "+33612345670",
                                       "--text", "hi", "--modem", "gsm1")
        assert code == 0 and json.loads(out)["modem"] == "gsm1", err
    finally:
        await ctl.close()
