"""Acknowledge from anywhere: the API (with who), the CLI, and the acknowledgement timeout
that notifies again (a real HTTP server on localhost, the simulated bank, real SQLite)."""

from __future__ import annotations

from conftest import run_cli
from helpers import ALICE, Api, called, write_config
from test_service_alerts import services  # noqa: F401

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import Alerts, open_db


def policy(**over) -> dict:
    return {"default": {"steps": [{"to": "alice", "attempts": 3, "retry_delay": 30}], "message_repeat": 1,
                        "sms_fallback": False, **over}}


async def test_ack_by_api_stops_escalation_and_renotifies_after_the_timeout(make_bank, tmp_path,
                                                                           services):  # noqa: F811
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee("no_answer", end_after=0.2)}))
    svc = await services(write_config(bank, tmp_path, policies=policy(ack_timeout=1.5)))
    api = Api(svc)
    status, r = await api.req("POST", "/v1/alerts", {"text": "db1 down"})
    assert status == 202
    aid = r["id"]
    await api.wait_alert(aid, lambda a: len(a["history"]) >= 1)          # first call made, not acked
    # bad input: a 4xx, nothing changes
    assert (await api.req("POST", f"/v1/alerts/{aid}/ack", {"by": ""}))[0] == 400
    assert (await api.req("POST", f"/v1/alerts/{aid}/ack", {"who": "x"}))[0] == 400
    assert (await api.req("POST", "/v1/alerts/999/ack", {"by": "carol"}))[0] == 404
    status, r = await api.req("POST", f"/v1/alerts/{aid}/ack", {"by": "carol"})
    assert status == 200 and r["acknowledged"] is True and r["acknowledged_by"] == "carol" and r["renotify_at"]
    a = await api.wait_alert(aid, lambda a: a["status"] == "acknowledged")
    assert a["ack_log"][0]["by"] == "carol" and a["ack_log"][0]["via"] == "api"
    assert (await api.req("POST", f"/v1/alerts/{aid}/ack", {"by": "dave"}))[1]["acknowledged"] is False
    # not resolved within 1.5 s: open again, journaled, and alice is called again at once
    n_calls = len(called(bank))
    a = await api.wait_alert(aid, lambda a: a["status"] == "open" and a["ack_log"][-1]["action"] == "renotify",
                             timeout=10)
    assert a["ack_log"][-1]["acknowledged_by"] == "carol"
    await api.wait_alert(aid, lambda a: len(called(bank)) > n_calls, timeout=10)
    # resolve with who
    status, r = await api.req("POST", f"/v1/alerts/{aid}/resolve", {"by": "carol"})
    assert status == 200 and r["resolved"] is True
    row = Alerts(svc.conn).get_alert(aid)
    assert row["status"] == "resolved" and row["state"]["resolved_by"] == "carol"


async def test_resolved_in_time_is_not_renotified(make_bank, tmp_path, services):  # noqa: F811
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee("no_answer", end_after=0.2)}))
    svc = await services(write_config(bank, tmp_path, policies=policy(ack_timeout=1.0)))
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "db2 down"})
    aid = r["id"]
    await api.wait_alert(aid, lambda a: len(a["history"]) >= 1)
    await api.req("POST", f"/v1/alerts/{aid}/ack", {"by": "bob"})
    await api.req("POST", f"/v1/alerts/{aid}/resolve", {"by": "bob"})
    n_calls = len(called(bank))
    assert aid not in svc.runner.renotify
    a = (await api.req("GET", f"/v1/alerts/{aid}"))[1]
    assert a["status"] == "resolved" and [e["action"] for e in a["ack_log"]] == ["acknowledged"]
    assert len(called(bank)) == n_calls


async def test_alert_ack_cli_without_a_service(tmp_path, make_bank):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, policies=policy())
    conn = open_db(loaded.database_path)
    aid, _ = Alerts(conn).raise_alert("k", "default", "disk full")
    code, out, err = await run_cli("--config", str(loaded.path), "alert", "ack", str(aid), "--by", "alice")
    assert code == 0, err
    assert out.strip() == f"alert {aid}: acknowledged by alice"
    assert Alerts(conn).get_alert(aid)["acknowledged_by"] == "alice"
    code, _, err = await run_cli("--config", str(loaded.path), "alert", "ack", "999", "--by", "alice")
    assert code == 1 and err.strip() == "modem-dialer: no alert 999"


async def test_alert_dial_refused_by_a_ringing_caller_goes_to_the_next_line(make_bank, tmp_path,
                                                                            services):  # noqa: F811
    sc = Scenario(numbers={ALICE: Callee("answer", answer_after=0.1, keys=[(0.3, "1")],
                                         rings_in_on_dial="+33700000009")})
    bank = await make_bank("quectel", sc, n=2)
    svc = await services(write_config(bank, tmp_path, policies=policy()))
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "db3 down"})
    a = await api.wait_alert(r["id"], lambda a: a["status"] == "acknowledged" and a["history"], timeout=20)
    # one attempt in the history (the refused dial is not one), answered on the other line
    assert [h["outcome"] for h in a["history"]] == ["answered"]
    outcomes = [c["outcome"] for c in a["calls"]]
    assert outcomes == ["line_busy", "answered"]
    modems = [c["modem"] for c in a["calls"]]
    assert modems[0] != modems[1]
    ringing = next(m for m in bank.modems if any(c.direction == "in" for c in m.calls))
    assert ringing.name == modems[0]
