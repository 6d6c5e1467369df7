"""The simulator's control socket: a running sim places an incoming call on command."""

from __future__ import annotations

from conftest import run_cli

from modem_dialer.sim.control import ControlServer, send


async def test_control_socket_places_an_incoming_call(make_bank, tmp_path):
    bank = await make_bank("simcom", n=2)
    ctl = await ControlServer(bank, tmp_path / "sim.sock").start()
    try:
        r = await send(tmp_path / "sim.sock", {"cmd": "call", "from": "+33612345678", "modem": "gsm1"})
        assert r == {"ok": True, "modem": "gsm1", "placed": True}
        assert bank["gsm1"].call.direction == "in" and bank["gsm1"].call.number == "+33612345678"
        r = await send(tmp_path / "sim.sock", {"cmd": "call", "modem": "gsm9"})
        assert r["ok"] is False and "gsm9" in r["error"]
        assert (await send(tmp_path / "sim.sock", {"cmd": "nope"}))["ok"] is False
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "calls")
        assert code == 0 and '"direction": "in"' in out, err
        code, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "call", "--keys", "x")
        assert code == 1 and "--keys" in err
    finally:
        await ctl.close()
