"""Incoming SMS in the service, end to end: simulated modems over real ptys, a real SQLite
journal, the real HTTP API. STOP keywords, acknowledgement by SMS reply, the inbox, delivery
reports, reassembly across a restart, parts that never come, bad input, the simulator's
scenario file and control socket."""

from __future__ import annotations

import json

import pytest
import test_service_campaign
from helpers import ALICE, BOB, Api, run_cli, write_config
from helpers import wait_until as wait_for
from test_service_campaign import finished, rows, service_setup, wait_campaign

from modem_dialer.modems import sms_inbound
from modem_dialer.modems.sms_pdu import decode_pdu
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.control import ControlServer
from modem_dialer.sim.sms import InboundSms

STRANGER = "+33699999999"
services = test_service_campaign.services      # the campaign tests' service fixture (fast polling)


def sent_texts(sim) -> list[tuple[str | None, str | None]]:
    out = []
    for _, pdu in sim.sms:
        d = decode_pdu(pdu)
        out.append((d.recipient.number, d.text))       # type: ignore[union-attr]
    return out


async def inbox(api: Api, **query) -> list[dict]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = await api.req("GET", "/v1/sms/inbox" + (f"?{qs}" if qs else ""))
    assert status == 200, body
    return body["messages"]


async def wait_inbox(api: Api, pred, timeout: float = 10.0) -> list[dict]:
    body = await api.wait("/v1/sms/inbox", lambda b: pred(b["messages"]), timeout)
    return body["messages"]


async def test_stop_suppresses_first_then_confirms_in_french(make_bank, tmp_path, services):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path)
    doc_path = loaded.path
    text = doc_path.read_text() + "sms: {default_language: fr}\n"
    doc_path.write_text(text)
    from modem_dialer.config import load_config
    loaded = load_config(str(doc_path))
    svc = await services(loaded)
    api = Api(svc)
    sim = bank.modems[0]
    await sim.deliver_sms(InboundSms(from_=ALICE, text="  Arrêt ! "))
    await wait_for(lambda: len(sim.sms) == 1)
    (number, confirm), = sent_texts(sim)
    assert number == ALICE and confirm == "Vous êtes désinscrit : plus d'appels ni de SMS de notre part."
    (sup,) = rows(loaded, "SELECT * FROM suppression WHERE number = ?", ALICE)
    assert sup["source"] == "sms" and sup["reason"] == "SMS keyword ARRET"
    (conf,) = rows(loaded, "SELECT * FROM sms WHERE number = ?", ALICE)
    assert sup["added_at"] <= conf["created_at"]            # on the list before the confirmation was queued
    msgs = await wait_inbox(api, lambda m: m and m[0]["action"] and "confirmation" in m[0]["action"])
    assert msgs[0]["kind"] == "stop" and msgs[0]["sender"] == ALICE and msgs[0]["text"] == "  Arrêt ! "
    assert msgs[0]["action"] == f"suppressed; confirmation sms {conf['id']} sent"
    # another language's keyword works too; an ordinary reply is kept, not acted on
    await sim.deliver_sms(InboundSms(from_=BOB, text="unsubscribe"))
    await sim.deliver_sms(InboundSms(from_=STRANGER, text="Who is this?"))
    msgs = await wait_inbox(api, lambda m: len(m) == 3 and all(x["action"] for x in m))
    assert {(m["sender"], m["kind"]) for m in msgs} == {(ALICE, "stop"), (BOB, "stop"), (STRANGER, "reply")}
    assert [m["sender"] for m in await inbox(api, kind="reply")] == [STRANGER]
    assert (await api.req("GET", "/v1/sms/inbox?kind=nope"))[0] == 400
    assert (await api.req("GET", "/v1/sms/inbox?limit=x"))[0] == 400
    rc, out, err = await run_cli("--config", str(loaded.path), "sms-inbox", "--kind", "reply")
    assert rc == 0, err
    assert STRANGER in out and "'Who is this?'" in out and ALICE not in out


async def test_alert_acknowledged_by_sms_reply(make_bank, tmp_path, services):
    bank = await make_bank("simcom")
    # alice by SMS first; bob is called only if nobody acknowledges within 60 s
    loaded = write_config(bank, tmp_path, policies={"default": {
        "steps": [{"to": "alice", "via": "sms", "delay": 60}, {"to": "bob"}], "sms_fallback": False}})
    svc = await services(loaded)
    api = Api(svc)
    sim = bank.modems[0]
    _, other = await api.req("POST", "/v1/alerts", {"text": "older alert", "dedup_key": "a"})
    _, r = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1", "dedup_key": "b"})
    await wait_for(lambda: len(sim.sms) == 2)
    # someone the alert was not sent to cannot acknowledge it
    await sim.deliver_sms(InboundSms(from_=STRANGER, text="ACK"))
    await wait_inbox(api, lambda m: m and m[0]["action"] == "kept")
    # "ack <id>" names the alert; a bare "ACK" takes the newest one texted to this number
    await sim.deliver_sms(InboundSms(from_=ALICE, text=f"ack {other['id']}"))
    a = await api.wait_alert(other["id"], lambda a: a["status"] == "acknowledged")
    assert a["acknowledged_by"] == f"sms {ALICE}" and a["result"] == "acknowledged"
    assert (await api.req("GET", f"/v1/alerts/{r['id']}"))[1]["status"] == "open"
    await sim.deliver_sms(InboundSms(from_=ALICE, text="Ack."))
    b = await api.wait_alert(r["id"], lambda a: a["status"] == "acknowledged")
    assert b["acknowledged_by"] == f"sms {ALICE}"
    msgs = await wait_inbox(api, lambda m: len(m) == 3 and all(x["action"] for x in m))
    assert [(m["kind"], m["alert_id"], m["action"]) for m in msgs] == [
        ("ack", r["id"], f"acknowledged alert {r['id']}"),
        ("ack", other["id"], f"acknowledged alert {other['id']}"),
        ("reply", None, "kept")]
    assert {n for n, _ in sent_texts(sim)} == {ALICE} and sim.calls == []   # the escalation stopped: bob never called


async def test_delivery_report_updates_the_sms_status_huawei_stored_reports(make_bank, tmp_path, services):
    bank = await make_bank("huawei")                      # AT+CNMI=2,1,0,2,0: "+CDSI" then AT+CMGR in "SR"
    sim = bank.modems[0]
    sim.delivery_report_after = 0.05
    loaded = write_config(bank, tmp_path)
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/sms", {"to": ALICE, "text": "ping"})
    await api.wait(f"/v1/sms/{r['id']}", lambda s: s["status"] == "delivered")
    assert any(c.startswith("+CDSI") or c == 'AT+CPMS="SR"' for c in sim.commands)
    # a failure report marks it failed
    sim.delivery_status = 0x41
    _, r2 = await api.req("POST", "/v1/sms", {"to": BOB, "text": "ping"})
    s = await api.wait(f"/v1/sms/{r2['id']}", lambda s: s["status"] == "failed")
    assert s["error"] == "delivery report status 0x41"


async def test_quectel_cdsi_sm_quirk_through_the_service(make_bank, tmp_path, services, monkeypatch):
    monkeypatch.setitem(sms_inbound.CNMI, "quectel", "AT+CNMI=2,1,0,2,0")   # as chan_quectel had it
    bank = await make_bank("quectel")
    bank.modems[0].delivery_report_after = 0.05
    loaded = write_config(bank, tmp_path)
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/sms", {"to": ALICE, "text": "ping"})
    await api.wait(f"/v1/sms/{r['id']}", lambda s: s["status"] == "delivered")


async def test_parts_survive_a_restart_and_missing_parts_are_stored_flagged(make_bank, tmp_path, services):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    loaded = write_config(bank, tmp_path)
    loaded.path.write_text(loaded.path.read_text() + "sms: {parts_timeout: 0.6}\n")
    from modem_dialer.config import load_config
    loaded = load_config(str(loaded.path))
    long_text = "Bonjour, je ne pourrai pas venir demain matin, rappelez-moi 😀 " * 3
    pdus = InboundSms(from_=ALICE, text=long_text, ref_bits=16, reference=777).pdus()
    assert len(pdus) == 3
    svc = await services(loaded)
    for pdu in pdus[:2]:
        sim.receive_pdu(pdu)
    await wait_for(lambda: rows(loaded, "SELECT COUNT(*) AS n FROM sms_in_parts")[0]["n"] == 2)
    await svc.stop()
    # the last part comes while the service is down: it waits on the SIM (+CMTI unheard)
    sim.receive_pdu(pdus[2])
    svc = await services(loaded)
    api = Api(svc)
    msgs = await wait_inbox(api, lambda m: m and m[0]["action"])
    assert (msgs[0]["text"], msgs[0]["parts"], msgs[0]["complete"]) == (long_text, 3, True)
    # a message whose part 2 never comes is stored after parts_timeout, flagged, with a gap
    await sim.deliver_sms(InboundSms(from_=BOB, text="x" * 400, reference=9, drop_parts=(2,)))
    msgs = await wait_inbox(api, lambda m: len(m) == 2 and m[0]["action"])
    assert msgs[0]["sender"] == BOB and not msgs[0]["complete"] and msgs[0]["action"] == "kept (incomplete)"
    assert msgs[0]["text"] == "x" * 153 + "[…]" + "x" * 94 and "part(s) 2 of 3 never arrived" in msgs[0]["error"]
    assert rows(loaded, "SELECT COUNT(*) AS n FROM sms_in_parts")[0]["n"] == 0


@pytest.mark.parametrize("family", ["sim800", "quectel"])      # direct +CMT; stored +CMTI → AT+CMGR
async def test_bad_input_is_journaled_and_nothing_crashes(make_bank, tmp_path, services, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    loaded = write_config(bank, tmp_path)
    svc = await services(loaded)
    api = Api(svc)
    await sim.deliver_sms(InboundSms(pdu="07913306091093F0040B91331632"))          # cut short
    await sim.deliver_sms(InboundSms(pdu="NOT HEX AT ALL"))
    await sim.deliver_sms(InboundSms(from_=ALICE, text="compressed?", dcs=0x8C))     # reserved coding group
    await sim.deliver_sms(InboundSms(from_="", text="STOP"))                        # no number
    await sim.deliver_sms(InboundSms(from_="MyBank", text="STOP"))                  # alphanumeric
    await sim.deliver_sms(InboundSms(from_=ALICE, text="still listening"))
    msgs = await wait_inbox(api, lambda m: len(m) == 6 and all(x["action"] or x["kind"] == "bad" for x in m))
    by_text = {m["text"]: m for m in msgs}
    assert by_text["still listening"]["action"] == "kept"
    bad = [m for m in msgs if m["kind"] == "bad"]
    assert sorted(m["encoding"] for m in bad) == ["garbled", "garbled", "unknown"]
    assert any("unknown data coding scheme 0x8c" in (m["error"] or "") for m in bad)
    hidden = [m for m in msgs if m["sender"] is None and m["kind"] == "reply"]
    assert len(hidden) == 1 and hidden[0]["text"] == "STOP" and hidden[0]["action"] == "kept (no number to act on)"
    assert by_text.get("STOP") is not None
    assert rows(loaded, "SELECT COUNT(*) AS n FROM suppression")[0]["n"] == 0
    garbled = rows(loaded, "SELECT pdu FROM sms_in WHERE encoding = 'garbled' ORDER BY id")
    assert [g["pdu"] for g in garbled] == ["07913306091093F0040B91331632", "NOT HEX AT ALL"]


async def test_stop_by_sms_suppresses_before_the_next_campaign_attempt(make_bank, tmp_path, services):
    busy = "+33612345670"
    sc = Scenario(default=Callee("answer", answer_after=0.1), numbers={busy: Callee("busy", end_after=0.1)})
    bank = await make_bank("quectel", sc)
    # the retry is due 1.5 s after the busy attempt: the STOP (delivered at once, in this process;
    # recorded 0.02 s later at load 3.5) comes well before it (and the test waits for its row)
    loaded, camp = service_setup(tmp_path, bank, [busy], extra="retry:\n  busy: {after: 1.5s, max: 3}\n")
    svc = await services(loaded)
    api = Api(svc)
    status, _r = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert status == 202
    # the first attempt is busy; the contact texts STOP before the retry is due
    await wait_for(lambda: any(c.number == busy and c.state == "ended" for m in bank.modems for c in m.calls))
    await bank.modems[0].deliver_sms(InboundSms(from_=busy, text="STOP"))
    await wait_for(lambda: rows(loaded, "SELECT COUNT(*) AS n FROM suppression WHERE number = ?", busy)[0]["n"] == 1)
    c = await wait_campaign(api, "test", finished, timeout=30)
    calls = [x for m in bank.modems for x in m.calls if x.number == busy]
    assert len(calls) == 1, "the contact was called again after texting STOP"
    assert rows(loaded, "SELECT COUNT(*) AS n FROM calls WHERE number = ?", busy)[0]["n"] == 1
    assert c["status"] == "done"
    denied = rows(loaded, "SELECT rule FROM campaign_log WHERE number = ? AND verdict = 'deny'", busy)
    assert denied and denied[0]["rule"]


async def test_sim_control_socket_and_sim_ctl_command(make_bank, tmp_path, services):
    bank = await make_bank("simcom")
    ctl = await ControlServer(bank, tmp_path / "sim.sock").start()
    try:
        loaded = write_config(bank, tmp_path)
        svc = await services(loaded)
        api = Api(svc)
        rc, out, err = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "sms", "--from", ALICE, "--text",
                                     "Réponse: oui 👍", "--encoding", "ucs2")
        assert rc == 0, err
        assert json.loads(out) == {"ok": True, "modem": "gsm0", "parts": 1}
        msgs = await wait_inbox(api, lambda m: m and m[0]["action"])
        assert (msgs[0]["sender"], msgs[0]["text"], msgs[0]["encoding"]) == (ALICE, "Réponse: oui 👍", "ucs2")
        rc, out, _ = await run_cli("sim-ctl", str(tmp_path / "sim.sock"), "sms", "--modem", "nope", "--text", "x")
        assert rc == 1 and "no simulated modem 'nope'" in json.loads(out)["error"]
        rc, _, err = await run_cli("sim-ctl", str(tmp_path / "missing.sock"), "sms", "--text", "x")
        assert rc != 0 and "no simulator control socket" in err and "Traceback" not in err
    finally:
        await ctl.close()


async def test_scenario_file_inbound_sms_is_checked(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("inbound_sms: [{at: 1, from: '+33600000000', txt: STOP}]\n")
    with pytest.raises(ValueError, match="unknown inbound_sms setting 'txt'"):
        Scenario.load(bad)
    good = tmp_path / "g.yaml"
    good.write_text("inbound_sms: [{at: 2, from: '+33600000000', text: STOP, encoding: ucs2, ref_bits: 16}]\n")
    (m,) = Scenario.load(good).inbound_sms
    assert (m.at, m.from_, m.text, m.encoding, m.ref_bits) == (2, "+33600000000", "STOP", "ucs2", 16)


def test_bad_sms_config_names_file_line_and_key(tmp_path):
    from modem_dialer.config import load_config
    from modem_dialer.errors import UserError

    p = tmp_path / "c.yaml"
    p.write_text("modems: []\nsms:\n  languages:\n    fr: {stop: ['!!']}\n")
    with pytest.raises(UserError, match=r"c.yaml:4: sms.languages.fr.stop: a keyword is empty"):
        load_config(str(p))
    p.write_text("modems: []\nsms: {default_language: xx}\n")
    with pytest.raises(UserError, match=r"c.yaml:2: sms: default_language: 'xx' is not one of en, fr, de, es"):
        load_config(str(p))


def test_incoming_sms_are_erased_with_the_number_and_purged_by_age(tmp_path):
    from datetime import datetime, timedelta, timezone

    from modem_dialer.store import IncomingPart, SmsInbox, erase_number, open_db, purge_before

    conn = open_db(tmp_path / "j.db")
    old = SmsInbox(conn, clock=lambda: datetime(2024, 1, 1, tzinfo=timezone.utc))
    old.add_message("gsm0", BOB, "old reply", "gsm7")
    inbox = SmsInbox(conn)
    inbox.add_message("gsm0", ALICE, "STOP", "gsm7")
    inbox.add_part(IncomingPart("gsm0", ALICE, 1, 8, 2, 1, "half", "gsm7", "00"))
    inbox.add_message("gsm0", BOB, "new reply", "gsm7")
    assert erase_number(conn, ALICE)["sms_in"] == 2
    assert purge_before(conn, datetime.now(timezone.utc) - timedelta(days=30))["sms_in"] == 1
    assert [m.text for m in inbox.messages()] == ["new reply"] and inbox.conn.execute("SELECT COUNT(*) FROM sms_in_parts").fetchone()[0] == 0


async def test_sim_command_with_control_socket_and_scenario_sms(tmp_path):
    import asyncio
    import sys

    from modem_dialer.sim.control import send

    sock = tmp_path / "ctl.sock"
    scen = tmp_path / "s.yaml"
    scen.write_text("inbound_sms: [{at: 0.2, from: '+33600000001', text: 'STOP', modem: gsm1}]\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modem_dialer.cli", "sim", "--modems", "2", "--family", "huawei,sim800",
        "--scenario", str(scen), "--control", str(sock), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "sim exited"
            if line.startswith("control socket:"):
                break
        reply = await send(sock, {"cmd": "sms", "from": "+33600000002", "text": "é€😀", "modem": "gsm0"})
        assert reply == {"ok": True, "modem": "gsm0", "parts": 1}
        assert (await send(sock, {"cmd": "nope"}))["error"].startswith("unknown cmd 'nope'")
        for _ in range(100):
            log = (await send(sock, {"cmd": "sms_log"}))["modems"]
            if log["gsm1"]["received"] and log["gsm0"]["received"]:
                break
            await asyncio.sleep(0.05)
        assert decode_pdu(log["gsm1"]["received"][0]).text == "STOP"          # type: ignore[union-attr]
        assert decode_pdu(log["gsm0"]["received"][0]).text == "é€😀"          # type: ignore[union-attr]
    finally:
        proc.terminate()
        await proc.wait()
