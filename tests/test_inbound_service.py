"""Incoming calls end to end: the service (real HTTP, real SQLite) and `campaign run` (the
pool) against the simulated bank over real ptys."""

from __future__ import annotations

import asyncio

import yaml
from helpers import TOKEN, Api, contacts, db, setup
from helpers import wait_until as wait_for
from test_campaign_run import run_cli
from test_service_campaign import finished, rows, service_setup, services, wait_campaign  # noqa: F401

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import open_db

A, B, C, D = (f"+3361234580{i}" for i in range(4))


async def test_callback_reaches_the_inbound_flow_and_opts_out(make_bank, tmp_path, services):  # noqa: F811
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=1)
    loaded, camp = service_setup(tmp_path, bank, [A, B], token=TOKEN)
    svc = await services(loaded)
    api = Api(svc, TOKEN)
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert status == 202, r
    c = await wait_campaign(api, "test", finished)
    # A calls the SIM back and presses the opt-out key (9) during the inbound flow's greeting,
    # then hangs up 0.8 s later, during the spoken confirmation (~3 s: not what is asserted;
    # the suppression is written before it plays)
    sim = bank.modems[0]
    assert sim.incoming_call(A, keys=[(0.4, "9")], hangup_after=1.2) is not None
    await wait_for(lambda: bool(svc.inbound.handled), timeout=20)
    row = svc.inbound.store.get(svc.inbound.handled[0])
    assert row["action"] == "answered" and row["number"] == A and row["campaign_id"] == c["id"]
    assert row["contact_id"] == contacts(open_db(loaded.database_path))[A]["id"]
    # suppressed: the number will not be dialed again by any campaign
    assert rows(loaded, "SELECT reason FROM suppression WHERE number = ?", A)[0]["reason"] == "opt_out_key"
    call = rows(loaded, "SELECT direction, number, outcome, campaign_id FROM calls WHERE id = ?", row["call_id"])[0]
    assert call == {"direction": "in", "number": A, "outcome": "answered", "campaign_id": None}
    assert rows(loaded, "SELECT key FROM keys WHERE call_id = ?", row["call_id"])[0]["key"] == "9"
    # the incoming call is not an attempt on the campaign (attempt caps, report)
    assert rows(loaded, "SELECT COUNT(*) AS n FROM calls WHERE campaign_id = ?", c["id"])[0]["n"] == 2
    # the report says who called back
    code, out, err = await run_cli(loaded.path, "report", "test")
    assert code == 0, err
    line = next(x for x in out.splitlines() if "called back" in x)
    assert f"1 contact(s): {A}" in line, out


async def test_withheld_caller_is_answered_and_journaled(make_bank, tmp_path, services):  # noqa: F811
    bank = await make_bank("huawei", n=1)
    loaded, _ = service_setup(tmp_path, bank, [A], token=TOKEN)
    svc = await services(loaded)
    bank.modems[0].incoming_call(None, hangup_after=0.5)
    await wait_for(lambda: bool(svc.inbound.handled), timeout=20)
    row = svc.inbound.store.get(svc.inbound.handled[0])
    assert row["withheld"] == 1 and row["number"] is None and row["contact_id"] is None
    assert row["action"] == "answered"


async def test_campaign_not_disturbed_by_an_incoming_call(make_bank, tmp_path):
    """`campaign run` (the pool): a caller holds gsm0 for 1 s; gsm1 goes on, every contact is
    reached once, and no dial is lost or counted twice."""
    numbers = [A, B, C, D]
    sc = Scenario(default=Callee("answer", answer_after=0.1))
    bank = await make_bank("quectel,simcom", sc, n=2)
    cfg, camp = setup(tmp_path, bank, numbers, message_s=0.3)
    # gsm0 rests 0.5 s between its calls (dial_gap), so the caller below finds it free at some
    # point while the campaign runs (the simulator has no call waiting: a busy line is refused)
    data = yaml.safe_load(cfg.read_text())
    data["modems"][0]["dial_gap"] = 0.5
    cfg.write_text(yaml.safe_dump(data))
    sim = bank.modems[0]
    # in this process, on a thread (no interpreter to start: nothing here is about signals)
    run = asyncio.ensure_future(run_cli(cfg, "campaign", "run", str(camp), timeout=60))
    # once the dialer owns the lines (its start-up check for a call left up: AT+CLCC), a
    # caller rings gsm0: it may hit a dial in progress (that ATD fails: not an attempt) or a free line
    await wait_for(lambda: "AT+CLCC" in sim.commands or run.done(), timeout=20)
    assert not run.done(), run.result()
    # gsm0 may be in a call of ours right now (the caller would hear busy): ring just after
    await wait_for(lambda: sim.incoming_call("+33700000001", hangup_after=1.0, ring_for=10) is not None)
    rc, out, err = await run
    assert rc == 0, (out, err)
    conn = db(tmp_path)
    got = {n: (v["status"], v["attempts"]) for n, v in contacts(conn).items()}
    assert got == {n: ("answered", 1) for n in numbers}
    inbound = [dict(r) for r in conn.execute("SELECT modem, action, number FROM inbound_calls")]
    assert inbound == [{"modem": "gsm0", "action": "answered", "number": "+33700000001"}]
    out_calls = [dict(r) for r in conn.execute("SELECT modem, outcome FROM calls WHERE direction = 'out'")]
    assert all(x["outcome"] in ("answered", "line_busy") for x in out_calls)
    assert sum(1 for x in out_calls if x["outcome"] == "answered") == 4


async def test_serve_campaign_routes_around_an_incoming_call(make_bank, tmp_path, services):  # noqa: F811
    """In the service: a caller holds gsm0 for 1 s during a campaign; the bank lends the other
    line, every contact is reached once; the call is listed by GET /v1/inbound."""
    numbers = [A, B, C, D]
    bank = await make_bank("quectel,huawei", Scenario(default=Callee("answer", answer_after=0.1)), n=2)
    loaded, camp = service_setup(tmp_path, bank, numbers, message_s=0.5, token=TOKEN)
    svc = await services(loaded)
    api = Api(svc, TOKEN)
    sim = bank.modems[0]
    # held 1 s (not 2): gsm1 calls meanwhile and gsm0 is back for the rest of the list
    await wait_for(lambda: sim.incoming_call("+33700000002", hangup_after=1.0, ring_for=10) is not None)
    await wait_for(lambda: svc.bank.slots["gsm0"].leased)           # claimed: busy for everyone else
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert status == 202, r
    await wait_campaign(api, "test", finished, timeout=40)
    got = {n: (v["status"], v["attempts"]) for n, v in contacts(open_db(loaded.database_path)).items()}
    assert got == {n: ("answered", 1) for n in numbers}
    status, inbound = await api.req("GET", "/v1/inbound")
    assert status == 200 and [(x["modem"], x["action"], x["number"]) for x in inbound] == [
        ("gsm0", "answered", "+33700000002")]
    assert (await api.req("GET", "/v1/inbound?limit=x"))[0] == 400
    # gsm0 was busy while the caller held it: its first campaign call started after the caller hung up
    outgoing = [c for c in sim.calls if c.direction == "out"]
    incoming = next(c for c in sim.calls if c.direction == "in")
    assert all(c.dialed_at >= incoming.ended_at for c in outgoing)


async def test_bad_inbound_config_is_named_before_anything_runs(make_bank, tmp_path):
    import pytest
    import yaml

    from modem_dialer.config import load_config
    from modem_dialer.errors import UserError
    from modem_dialer.service.service import Service

    bank = await make_bank("quectel", n=1)
    loaded, _ = service_setup(tmp_path, bank, [A])
    doc = yaml.safe_load(loaded.path.read_text())
    doc["inbound"] = {"flow": "nope.yaml"}
    loaded.path.write_text(yaml.safe_dump(doc))
    svc = Service(load_config(str(loaded.path)), port=0)
    with pytest.raises(UserError, match=r"nope\.yaml"):
        await svc.start()
    doc["inbound"] = {"modems": {"gsm9": {"action": "reject"}}}
    loaded.path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match="no modem named 'gsm9'"):
        load_config(str(loaded.path))
    doc["inbound"] = {"opt_out_key": "x"}
    loaded.path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match=r"inbound\.opt_out_key"):
        load_config(str(loaded.path))
