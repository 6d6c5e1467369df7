"""The alerting service end to end: a real HTTP server on localhost, the simulated bank over
real ptys, a real SQLite journal. Also holds the `services` fixture other alerting tests import
(the shared helpers are in helpers.py)."""

from __future__ import annotations

import asyncio

import pytest
from gsmmodem.pdu import decodeSmsPdu
from helpers import (  # noqa: F401  (some test modules still import them from here)
    ALICE,
    BOB,
    CACHE,
    CAROL,
    TOKEN,
    Api,
    acked,
    alerting,
    called,
    over,
    settled,
    wait_until,
    write_config,
)

from modem_dialer.config import LoadedConfig, load_config
from modem_dialer.service.service import Service
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import from_ts, open_db


async def start_service(loaded: LoadedConfig, port: int | None = 0) -> Service:
    svc = Service(loaded, port=port)
    await svc.start()
    return svc


@pytest.fixture
async def services():
    running: list[Service] = []

    async def start(loaded: LoadedConfig, port: int | None = 0) -> Service:
        svc = await start_service(loaded, port)
        running.append(svc)
        return svc

    yield start
    for s in running:
        if not s.stopped.is_set():
            await s.stop()


# ---- tests -----------------------------------------------------------------------------
async def test_acknowledged_by_the_first_person(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.4, "1")])}))
    svc = await services(write_config(bank, tmp_path))
    api = Api(svc)
    status, r = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1", "dedup_key": "db1-disk"})
    assert status == 202 and r["created"] is True
    a = await api.wait_alert(r["id"], acked)
    assert a["acknowledged_by"] == f"alice {ALICE}" and a["result"] == "acknowledged"
    assert a["calls"][0]["keys"][0]["key"] == "1"
    # the same key while it is live: no second alert, no second call
    status, r2 = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1", "dedup_key": "db1-disk"})
    assert status == 200 and r2 == {**r2, "id": r["id"], "created": False}
    # the escalation is over (its task ended: no step is left to call bob), not just late
    await wait_until(lambda: svc.runner.queue_length == 0)
    assert called(bank) == [ALICE]
    events = svc.runner.journal.events_of(a["calls"][0]["id"])
    ack = [e for e in events if e["kind"] == "alert"]
    assert ack[0]["data"] == {"action": "acknowledged", "alert_id": r["id"], "key": "1", "by": f"alice {ALICE}"}


async def test_unanswered_first_person_escalates_to_the_second_after_the_delay(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={
        ALICE: Callee(outcome="no_answer", end_after=0.2),
        BOB: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    svc = await services(write_config(bank, tmp_path))
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1"})
    a = await api.wait_alert(r["id"], settled(2))
    assert called(bank) == [ALICE, BOB]
    c_alice, c_bob = a["calls"]
    assert c_alice["outcome"] == "no_answer" and c_bob["outcome"] == "answered"
    gap = (from_ts(c_bob["started_at"]) - from_ts(c_alice["ended_at"])).total_seconds()
    assert 1.0 <= gap < 2.5, gap
    assert a["acknowledged_by"] == f"bob {BOB}"
    assert [(h["who"], h["outcome"]) for h in a["history"]] == [("alice", "no_answer"), ("bob", "answered")]


async def test_busy_call_falls_back_to_sms_with_accents(make_bank, tmp_path, services):
    text = "Disque plein sur db1 — écriture échouée"
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(outcome="busy", end_after=0.1)}))
    bank.modems[0].delivery_report_after = 0.05
    loaded = write_config(bank, tmp_path, policies={"default": {"steps": [{"to": "alice"}], "sms_fallback": True}})
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": text})
    a = await api.wait_alert(r["id"], over)
    assert a["status"] == "expired" and a["result"] == "exhausted"
    assert [c["outcome"] for c in a["calls"]] == ["busy"]
    (tpdu_len, pdu), = bank.modems[0].sms
    d = decodeSmsPdu(pdu)
    assert d["number"] == ALICE and d["text"] == f"ALERT #{r['id']}: {text}" and d["tpdu_length"] == tpdu_len
    for _ in range(50):                            # the +CDS delivery report lands shortly after
        sms = (await api.req("GET", f"/v1/alerts/{r['id']}"))[1]["sms"]
        if sms[0]["status"] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert sms[0]["status"] == "delivered" and sms[0]["modem"] == "gsm0"
    _, metrics = await api.req("GET", "/metrics")
    assert 'modem_dialer_sms_sent_total{modem="gsm0"} 1' in metrics
    assert 'modem_dialer_calls_total{modem="gsm0",outcome="busy"} 1' in metrics


def am_payload(status: str, *, policy: str | None = "dba") -> dict:
    labels = {"alertname": "DiskFull", "instance": "db1:9100", "severity": "page"}
    if policy:
        labels["policy"] = policy
    return {
        "version": "4", "groupKey": '{}/{severity="page"}:{alertname="DiskFull"}', "truncatedAlerts": 0,
        "status": status, "receiver": "modem-dialer", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels, "commonAnnotations": {"summary": "Disk full on db1"},
        "externalURL": "http://am:9093",
        "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "Disk full on db1"},
                    "startsAt": "2025-03-01T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prom:9090/graph", "fingerprint": "c0ffee"}],
    }


async def test_alertmanager_firing_then_resolved_makes_one_call_and_stops(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, hangup_after=0.5)}))
    loaded = write_config(bank, tmp_path, policies={
        "default": {"steps": [{"to": "carol"}]},
        "dba": {"steps": [{"to": "alice", "delay": 1.5}, {"to": "bob"}], "sms_fallback": False}})
    svc = await services(loaded)
    api = Api(svc)
    status, r = await api.req("POST", "/v1/alertmanager", am_payload("firing"))
    assert status == 202 and r["created"]
    status, again = await api.req("POST", "/v1/alertmanager", am_payload("firing"))   # AM re-sends
    assert status == 200 and again["id"] == r["id"] and not again["created"]
    a = await api.wait_alert(r["id"], lambda a: a["history"])     # alice's call is over, not acknowledged
    assert a["policy"] == "dba" and a["text"] == "Disk full on db1" and a["status"] == "open"
    status, res = await api.req("POST", "/v1/alertmanager", am_payload("resolved"))
    assert status == 200 and res["resolved"] == r["id"]
    # the escalation is over (its task ended before the step delay: bob is never called)
    await wait_until(lambda: svc.runner.queue_length == 0)
    a = (await api.req("GET", f"/v1/alerts/{r['id']}"))[1]
    assert a["status"] == "resolved" and called(bank) == [ALICE]


async def test_restart_mid_escalation_resumes_where_it_was(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={
        ALICE: Callee(outcome="no_answer", end_after=0.2),
        BOB: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    loaded = write_config(bank, tmp_path, policies={
        "default": {"steps": [{"to": "alice", "delay": 2.0}, {"to": "bob"}], "sms_fallback": False}})
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1"})
    a = await api.wait_alert(r["id"], lambda a: a["position"]["step"] == 1)   # waiting before bob
    next_at = from_ts(a["next_at"])
    await svc.stop()                                # the service goes away mid-escalation
    conn = open_db(loaded.database_path)
    assert conn.execute("SELECT status FROM alerts WHERE id = ?", (r["id"],)).fetchone()[0] == "open"
    conn.close()
    svc2 = await services(load_config(str(loaded.path)))
    api2 = Api(svc2)
    a = await api2.wait_alert(r["id"], settled(2))
    assert called(bank) == [ALICE, BOB]             # alice is not called again
    assert from_ts(a["calls"][1]["started_at"]) >= next_at
    assert a["acknowledged_by"] == f"bob {BOB}"


async def test_auth_and_bad_input_never_queue_or_call(make_bank, tmp_path, services):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, api={"port": 0, "token": TOKEN, "max_body_bytes": 2048})
    svc = await services(loaded)
    anon, wrong, good = Api(svc), Api(svc, "nope"), Api(svc, TOKEN)
    body = {"text": "Disk full", "to": "alice"}
    for api in (anon, wrong):
        for method, path, b in (("POST", "/v1/alerts", body), ("POST", "/v1/alertmanager", am_payload("firing")),
                                ("GET", "/v1/alerts/1", None), ("GET", "/metrics", None), ("GET", "/v1/modems", None)):
            status, r = await api.req(method, path, b)
            assert status == 401 and r == {"error": "missing or wrong bearer token"}, (path, r)
    assert (await anon.req("GET", "/healthz"))[0] == 200
    bad = [
        (None, b"{not json", 400, "malformed JSON"),
        (None, b"[1, 2]", 400, "JSON object"),
        ({**body, "colour": "red"}, None, 400, "colour: unknown field"),
        ({"text": "x", "to": "+33 1"}, None, 400, "+33 1"),
        ({"text": "x", "to": "mallory"}, None, 400, "'mallory'"),
        ({"text": "x", "policy": "nope"}, None, 400, "unknown policy 'nope'"),
        ({"to": "alice"}, None, 400, "exactly one of"),
        ({"text": "x" * 3000, "to": "alice"}, None, 413, ""),
        ({"text": "x", "to": "alice", "ack_key": "12"}, None, 400, "ack key"),
    ]
    for b, raw, code, needle in bad:
        status, r = await good.req("POST", "/v1/alerts", b, raw=raw, headers={"Content-Type": "application/json"})
        assert status == code and isinstance(r, dict) and needle in r["error"], (b, raw, status, r)
    status, r = await good.req("POST", "/v1/alertmanager", {"status": "firing", "alerts": [{"status": "weird"}]})
    assert status == 400 and "alerts.0.status" in r["error"]
    assert (await good.req("POST", "/v1/alerts/resolve", {"dedup_key": "nope"})) == (200, {"resolved": None,
                                                                                         "dedup_key": "nope"})
    assert (await good.req("GET", "/v1/alerts/999"))[0] == 404
    assert (await good.req("GET", "/v1/nowhere"))[0] == 404
    conn = open_db(loaded.database_path)
    assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0
    conn.close()
    assert called(bank) == []
    status, modems = await good.req("GET", "/v1/modems")
    assert status == 200 and modems[0]["ready"] is True and modems[0]["signal_dbm"] == -73
    status, metrics = await good.req("GET", "/metrics")
    assert 'modem_dialer_modem_ready{modem="gsm0"} 1' in metrics
    assert 'modem_dialer_modem_signal_dbm{modem="gsm0"} -73' in metrics
    assert "modem_dialer_alert_queue_length 0" in metrics
