"""Hostile and broken input to the service's API (issue 11 items 1, 8, 9, 10, 11): refused at
submission with a 4xx naming the culprit, never accepted to fail later in silence. A real
HTTP server on localhost, the simulated bank over real ptys, a real SQLite journal."""

from __future__ import annotations

import asyncio
import os

import test_service_alerts
from conftest import run_cli
from helpers import ALICE, BOB, TOKEN, Api, acked, called, free_port, over, wav, write_config

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import open_db

services = test_service_alerts.services          # the fixture: a service per test, stopped after
SINGLE = {"default": {"steps": [{"to": "alice"}], "sms_fallback": False, "message_repeat": 1}}


async def single_service(make_bank, tmp_path, services, **alerting_over):
    """A one-modem service with the SINGLE policy -> (config, API client)."""
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, policies=SINGLE, **alerting_over)
    svc = await services(loaded)
    return loaded, Api(svc)


def count(loaded, table: str) -> int:
    conn = open_db(loaded.database_path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
    finally:
        conn.close()


async def test_audio_is_confined_to_the_prompt_folders_and_checked_at_submission(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    wav(prompts / "disk.wav", 0.3)
    wav(tmp_path / "outside.wav", 0.3)               # a real WAV, but not in a prompt folder
    (prompts / "notes.wav").write_text("not audio\n")
    wav(prompts / "long.wav", 3.0)                   # 48 KB: over the cap below
    (prompts / "escape.wav").symlink_to(tmp_path / "outside.wav")
    (prompts / "hostname.wav").symlink_to("/etc/hostname")
    (prompts / "recordings").mkdir()                 # a flow's recordings next to its prompts
    wav(prompts / "recordings" / "call1-message.wav", 0.3)
    loaded = write_config(bank, tmp_path, policies=SINGLE, prompt_dirs=["prompts"], max_prompt_bytes=32768)
    svc = await services(loaded)
    api = Api(svc)
    hidden = "is not a WAV file in the prompt folders"
    for audio in ("/etc/hostname", "/etc/shadow", "/nonexistent.wav", "../outside.wav", str(tmp_path / "outside.wav"),
                  "escape.wav", "hostname.wav", "missing.wav", "/dev/zero", "prompts/../../outside.wav",
                  "recordings/call1-message.wav"):
        status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": audio})
        # the same answer whether the file exists or not: the API reveals nothing outside the folders
        assert status == 400 and r["error"] == f"'audio': {audio!r} {hidden} (alerting.prompt_dirs)", (audio, r)
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": "notes.wav"})
    assert status == 400 and "notes.wav: not a WAV file" in r["error"], r
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": "long.wav"})
    assert status == 400 and "more than alerting.max_prompt_bytes (32768)" in r["error"], r
    assert count(loaded, "alerts") == 0 and called(bank) == []
    # a prompt in the folder, by name or by absolute path, is played
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": "disk.wav"})
    assert status == 202, r
    await api.wait_alert(r["id"], acked)
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": str(prompts / "disk.wav"),
                                                     "dedup_key": "abs"})
    assert status == 202, r


async def test_control_characters_in_texts_are_refused(make_bank, tmp_path, services):
    from test_service_alerts import am_payload

    loaded, api = await single_service(make_bank, tmp_path, services)
    for text in ("Disk\x00full", "Disk \x1b[2J full", "a\u2028b"):
        status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": text})
        assert status == 400 and "text: control character" in r["error"], (text, r)
    status, r = await api.req("POST", "/v1/sms", {"to": ALICE, "text": "x\x00y"})
    assert status == 400 and "text: control character" in r["error"], r
    bad = am_payload("firing", policy=None)
    bad["alerts"][0]["annotations"]["summary"] = "Disk\x00full"
    status, r = await api.req("POST", "/v1/alertmanager", bad)
    assert status == 400 and "alerts[0].annotations.summary: control character" in r["error"], r
    assert count(loaded, "alerts") == 0 and count(loaded, "sms") == 0
    # new lines and tabs are ordinary in Alertmanager descriptions: they become spaces
    ok = am_payload("firing", policy=None)
    ok["alerts"][0]["annotations"] = {"summary": "Disk full\non db1\t(95%)"}
    status, r = await api.req("POST", "/v1/alertmanager", ok)
    assert status == 202, r
    a = (await api.req("GET", f"/v1/alerts/{r['id']}"))[1]
    assert a["text"] == "Disk full on db1 (95%)"


async def test_cli_alert_with_a_bad_file_exits_1_with_one_line(make_bank, tmp_path, services):
    bank = await make_bank("quectel")
    (tmp_path / "token").write_text(TOKEN + "\n")
    loaded = write_config(bank, tmp_path, policies=SINGLE,
                          api={"port": free_port(), "token_file": str(tmp_path / "token")})
    cfg = str(loaded.path)
    # without a service: the command checks the file itself
    rc, out, err = await run_cli("--config", cfg, "alert", "--to", "alice", "--message", "/etc/hostname", "--wait")
    assert rc == 1 and "'/etc/hostname' is not a WAV file in the prompt folders" in err and err.count("\n") == 1, err
    await services(loaded, port=None)
    rc, out, err = await run_cli("--config", cfg, "alert", "--to", "alice", "--message", "/etc/hostname")
    assert rc == 1 and "'/etc/hostname' is not a WAV file in the prompt folders" in err and err.count("\n") == 1, err
    assert out == "" and count(loaded, "alerts") == 0 and called(bank) == []


async def test_a_prompt_that_fails_at_call_time_still_reaches_people(make_bank, tmp_path, services, monkeypatch):
    """TTS breaks after the alert was accepted (here: espeak-ng is gone): the alert is not
    expired in silence; the text goes by SMS, and the error is in the alert and the log."""
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    loaded = write_config(bank, tmp_path, policies=SINGLE)
    svc = await services(loaded)
    api = Api(svc)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    text = f"Backup failed on nas{os.getpid()}"           # not in the shared TTS cache
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": text})
    assert status == 202, r
    a = await api.wait_alert(r["id"], over)
    assert a["status"] == "expired" and called(bank) == []
    assert [(h["via"], h["outcome"]) for h in a["history"]] == [("call", "prompt_failed"), ("sms", "sent")]
    assert "espeak-ng not installed" in a["errors"][0]["error"], a["errors"]
    (_, pdu), = bank.modems[0].sms
    from gsmmodem.pdu import decodeSmsPdu

    assert decodeSmsPdu(pdu)["text"] == f"ALERT #{r['id']}: {text}"


async def test_deeply_nested_json_is_a_400(make_bank, tmp_path, services):
    _, api = await single_service(make_bank, tmp_path, services)
    for path in ("/v1/alerts", "/v1/alertmanager", "/v1/sms"):
        status, r = await api.req("POST", path, raw=b"[" * 50000, headers={"Content-Type": "application/json"})
        assert status == 400 and "nested too deeply" in r["error"], (path, status, r)
        status, r = await api.req("POST", path, raw=b'{"to": ' + b"[" * 50000,
                                  headers={"Content-Type": "application/json"})
        assert status == 400, (path, status, r)


async def test_cross_site_and_rebinding_requests_are_refused(make_bank, tmp_path, services):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, policies=SINGLE, api={"port": 0, "allowed_hosts": ["dialer.lan"],
                                                                "allowed_origins": ["https://dialer.example.com"]})
    svc = await services(loaded)
    api = Api(svc)
    body = b'{"to": "alice", "text": "Disk full"}'
    own = f"http://127.0.0.1:{svc.port}"
    refused = [
        # a page's form or fetch without preflight: text/plain, form-encoded, or no type
        ({"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "Origin"),
        ({"Content-Type": "application/json", "Origin": "null"}, 403, "Origin"),
        ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403, "Origin"),   # another local app
        ({"Content-Type": "application/json", "Host": "evil.example"}, 403, "Host"),   # DNS rebinding
        ({"Content-Type": "application/json", "Host": f"evil.example:{svc.port}"}, 403, "Host"),
    ]
    for headers, code, needle in refused:
        status, r = await api.req("POST", "/v1/alerts", raw=body, headers=headers)
        assert status == code and needle in r["error"], (headers, status, r)
    # reading is refused too: a rebound page must not read people's numbers
    status, r = await api.req("GET", "/v1/alerts", headers={"Host": "evil.example"})
    assert status == 403, r
    assert count(loaded, "alerts") == 0
    accepted = [
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "application/json", "Origin": own, "dedup_key": "x"},
        {"Content-Type": "application/json", "Host": f"dialer.lan:{svc.port}", "Origin": f"http://dialer.lan:{svc.port}"},
        {"Content-Type": "application/json", "Host": "localhost", "Origin": "https://dialer.example.com"},
        {"Content-Type": "application/json", "Host": f"[::1]:{svc.port}"},
        {"Content-Type": "application/json", "Host": f"192.168.1.5:{svc.port}"},   # the box by its address
    ]
    for i, headers in enumerate(accepted):
        headers = {k: v for k, v in headers.items() if k != "dedup_key"}
        status, r = await api.req("POST", "/v1/alerts", raw=body.replace(b"}", f', "dedup_key": "k{i}"}}'.encode()),
                                  headers=headers)
        assert status == 202, (headers, status, r)
    # a POST without a body (resolve) needs no type, but still a good Origin
    status, _ = await api.req("POST", "/v1/alerts/1/resolve", raw=b"")
    assert status == 200
    status, _ = await api.req("POST", "/v1/alerts/2/resolve", raw=b"", headers={"Origin": "http://evil.example"})
    assert status == 403


async def test_caps_on_live_alerts_targets_and_sms(make_bank, tmp_path, services):
    # alice's call holds the only line for a while, so alerts stay live and SMS wait for it
    bank = await make_bank("quectel", Scenario(default=Callee(answer_after=0.1, hangup_after=60)))
    loaded = write_config(bank, tmp_path, policies={"default": {"steps": [{"to": "alice"}], "sms_fallback": False}},
                          max_live_alerts=2, max_targets=3, max_queued_sms=2)
    svc = await services(loaded)
    api = Api(svc)
    ids = []
    for i in range(2):
        status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": f"Disk {i} full"})
        assert status == 202, r
        ids.append(r["id"])
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": "Disk 3 full"})
    assert status == 429 and "2 live alerts (alerting.max_live_alerts)" in r["error"], r
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": "Disk 0 full"})   # the same alert
    assert status == 200 and r["id"] == ids[0]
    await api.req("POST", f"/v1/alerts/{ids[1]}/resolve")
    status, r = await api.req("POST", "/v1/alerts", {"to": ["alice", "bob", "carol", "+33612345699"], "text": "x"})
    assert status == 400 and "'to': 4 entries, at most 3 (alerting.max_targets)" in r["error"], r
    status, r = await api.req("POST", "/v1/alerts", {"to": ["dba", "carol", "+33612345699"], "text": "y"})
    assert status == 400 and "4 people, at most 3 (alerting.max_targets)" in r["error"], r
    await api.wait_alert(ids[0], lambda a: a["calls"])     # the line is busy now
    for i in range(2):
        status, r = await api.req("POST", "/v1/sms", {"to": BOB, "text": f"sms {i}"})
        assert status == 202, r
    status, r = await api.req("POST", "/v1/sms", {"to": BOB, "text": "sms 3"})
    assert status == 429 and "2 SMS queued (alerting.max_queued_sms)" in r["error"], r
    await api.req("POST", f"/v1/alerts/{ids[0]}/resolve")
    await asyncio.sleep(0)


async def test_a_broken_voice_falls_back_to_the_default_voice(make_bank, tmp_path, services):
    """The configured espeak-ng voice is missing on this box: the alert is still spoken (in the
    default voice), acknowledged, and the error is in the alert."""
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee(answer_after=0.1, keys=[(0.3, "1")])}))
    loaded = write_config(bank, tmp_path, policies=SINGLE)
    doc = loaded.path.read_text().replace("tts_voice: en\n", "")
    loaded.path.write_text(doc + "tts_voice: xx-nonexistent\n")
    from modem_dialer.config import load_config

    svc = await services(load_config(str(loaded.path)))
    api = Api(svc)
    status, r = await api.req("POST", "/v1/alerts", {"to": "alice", "text": "Replication broken on db2"})
    assert status == 202, r
    a = await api.wait_alert(r["id"], acked)
    assert called(bank) == [ALICE] and a["acknowledged_by"] == f"alice {ALICE}"
    assert "unknown voice 'xx-nonexistent'" in a["errors"][0]["error"], a["errors"]
