"""One acknowledgement record and one ``alert.acknowledged`` event whatever the source (a key
in the call, an SMS reply, the HTTP API, ``alert ack`` while the service is stopped), and the
SMS side's ``sms.received`` / ``sms.delivered`` events: simulated modems over real ptys, a
real SQLite outbox, the real HTTP API and CLI."""

from __future__ import annotations

import json

import test_service_campaign
import yaml
from conftest import run_cli
from helpers import ALICE, BOB, Api, write_config
from helpers import wait_until as wait_for
from test_service_campaign import rows

from modem_dialer.config import load_config
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sms import InboundSms
from modem_dialer.store import Alerts

STRANGER = "+33699999999"
services = test_service_campaign.services      # the campaign tests' service fixture (fast polling)


def with_webhooks(loaded):
    # nothing listens there: the events stay in the outbox, which is what is checked
    doc = yaml.safe_load(loaded.path.read_text())
    doc["webhooks"] = [{"url": "http://127.0.0.1:9/hook", "secret": "s"}]
    loaded.path.write_text(yaml.safe_dump(doc))
    return load_config(str(loaded.path))


def events(loaded, name: str) -> list[dict]:
    return [json.loads(r["payload"])["data"] for r in
            rows(loaded, "SELECT payload FROM webhook_outbox WHERE event = ? ORDER BY id", name)]


def ack_record(loaded, alert_id: int) -> tuple[str, str, str]:
    (row,) = rows(loaded, "SELECT acknowledged_by, state FROM alerts WHERE id = ?", alert_id)
    st = json.loads(row["state"])
    (entry,) = [e for e in st["ack_log"] if e["action"] == "acknowledged"]
    assert entry["by"] == row["acknowledged_by"] and st["result"] == "acknowledged"
    return row["acknowledged_by"], st["acknowledged_via"], entry["via"]


async def test_key_api_and_cli_write_the_same_record_and_event(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")]),
                                                        BOB: Callee("no_answer", end_after=0.2)}))
    loaded = with_webhooks(write_config(bank, tmp_path, policies={
        "default": {"steps": [{"to": "alice"}], "message_repeat": 1, "sms_fallback": False},
        "bob": {"steps": [{"to": "bob", "attempts": 3, "retry_delay": 30}], "message_repeat": 1,
                "sms_fallback": False}}))
    svc = await services(loaded)
    api = Api(svc)
    _, by_key = await api.req("POST", "/v1/alerts", {"text": "db1 down"})
    _, by_api = await api.req("POST", "/v1/alerts", {"text": "db2 down", "policy": "bob"})
    _, by_cli = await api.req("POST", "/v1/alerts", {"text": "db3 down", "policy": "bob", "dedup_key": "c"})
    await api.wait_alert(by_key["id"], lambda a: a["status"] == "acknowledged")
    assert (await api.req("POST", f"/v1/alerts/{by_api['id']}/ack", {"by": "carol"}))[1]["acknowledged"]
    await svc.stop()
    rc, out, err = await run_cli("--config", str(loaded.path), "alert", "ack", str(by_cli["id"]), "--by", "dave")
    assert rc == 0 and "acknowledged by dave" in out, err
    assert ack_record(loaded, by_key["id"]) == (f"alice {ALICE}", "key", "key")
    assert ack_record(loaded, by_api["id"]) == ("carol", "api", "api")
    assert ack_record(loaded, by_cli["id"]) == ("dave", "cli", "cli")
    got = {(e["alert_id"], e["by"], e["via"]) for e in events(loaded, "alert.acknowledged")}
    assert got == {(by_key["id"], f"alice {ALICE}", "key"), (by_api["id"], "carol", "api"),
                   (by_cli["id"], "dave", "cli")}
    # a second acknowledgement of the same alert is refused and emits nothing
    rc, out, _ = await run_cli("--config", str(loaded.path), "alert", "ack", str(by_cli["id"]), "--by", "eve")
    assert rc == 0 and "was not open" in out and len(events(loaded, "alert.acknowledged")) == 3


async def test_sms_ack_received_and_delivered_events(make_bank, tmp_path, services):
    bank = await make_bank("simcom")
    sim = bank.modems[0]
    sim.delivery_report_after = 0.05
    loaded = with_webhooks(write_config(bank, tmp_path, policies={"default": {
        "steps": [{"to": "alice", "via": "sms", "delay": 60}, {"to": "bob"}], "sms_fallback": False}}))
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1"})
    await wait_for(lambda: rows(loaded, "SELECT id FROM sms WHERE status = 'delivered'"))
    (sms_row,) = rows(loaded, "SELECT * FROM sms")
    await wait_for(lambda: events(loaded, "sms.delivered"))
    (d,) = events(loaded, "sms.delivered")
    assert d["sms_id"] == sms_row["id"] and d["alert_id"] == r["id"] and d["number"] == ALICE and d["delivered"]
    await sim.deliver_sms(InboundSms(from_=ALICE, text="ACK"))
    await sim.deliver_sms(InboundSms(from_=STRANGER, text="Who is this?"))
    await wait_for(lambda: len(events(loaded, "sms.received")) == 2)
    got = {(e["sender"], e["kind"], e["action"], e["text"]) for e in events(loaded, "sms.received")}
    assert got == {(ALICE, "ack", f"acknowledged alert {r['id']}", "ACK"), (STRANGER, "reply", "kept", "Who is this?")}
    assert ack_record(loaded, r["id"]) == (f"sms {ALICE}", "sms", "sms")
    (e,) = events(loaded, "alert.acknowledged")
    assert (e["alert_id"], e["by"], e["via"]) == (r["id"], f"sms {ALICE}", "sms")
    # a failure report is an sms.delivered event too, with delivered false
    sim.delivery_status = 0x41
    _, r2 = await api.req("POST", "/v1/sms", {"to": BOB, "text": "ping"})
    await wait_for(lambda: len(events(loaded, "sms.delivered")) == 2)
    f = events(loaded, "sms.delivered")[-1]
    assert f["sms_id"] == r2["id"] and f["delivered"] is False and f["error"] == "delivery report status 0x41"
    # a garbled PDU is journaled and is an event as well
    await sim.deliver_sms(InboundSms(pdu="07913306091093F0040B91331632"))
    await wait_for(lambda: len(events(loaded, "sms.received")) == 3)
    assert events(loaded, "sms.received")[-1]["kind"] == "bad"
    assert Alerts(svc.conn).get_alert(r["id"])["status"] == "acknowledged"

