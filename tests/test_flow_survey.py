"""Flows end to end on the simulated bank over real ptys: a survey whose answers are stored,
opt-out by key in the middle of a prompt, timeouts and invalid keys."""

from __future__ import annotations

import pytest
from test_flow_helpers import NUMBER, Rig

from modem_dialer.call.flow import answers_summary
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import Campaigns, Compliance

SURVEY = """
name: survey
start: intro
fields: [first_name]
nodes:
  intro: {type: play, say: "Hi {first_name}", next: satisfied}
  satisfied:
    type: menu
    prompts: [{tone_hz: 500, tone_ms: 300}]
    choices: {1: customer, 2: customer}
    values: {1: "yes", 2: "no"}
    answer: satisfied
    timeout: 2
    on_fail: bye
  customer:
    type: input
    prompts: [{tone_hz: 600, tone_ms: 200}]
    answer: customer_number
    min_digits: 4
    max_digits: 6
    next: rating
    on_fail: bye
  rating:
    type: input
    prompts: [{tone_hz: 700, tone_ms: 200}]
    answer: rating
    max_digits: 1
    range: [1, 5]
    next: low_or_high
    on_fail: bye
  low_or_high: {type: branch, var: rating, cases: {"1..2": sorry}, default: thanks}
  sorry: {type: hangup, prompts: [{tone_hz: 800, tone_ms: 100}]}
  thanks: {type: hangup, prompts: [{tone_hz: 900, tone_ms: 100}]}
  bye: {type: hangup}
"""


@pytest.fixture
async def rig_for(make_bank, tmp_path):
    rigs = []

    async def make(scenario: Scenario, n: int = 1, family: str = "quectel") -> Rig:
        rig = await Rig(await make_bank(family, scenario, n=n), tmp_path).open()
        rigs.append(rig)
        return rig
    yield make
    for r in rigs:
        await r.close()


@pytest.mark.parametrize("family", ["quectel", "simcom"])
async def test_survey_answers_are_stored_and_summarised(rig_for, family):
    keys = [(0.2, "1"), (0.4, "4"), (0.5, "2"), (0.6, "4"), (0.7, "2"), (0.8, "#"), (0.9, "4")]
    rig = await rig_for(Scenario(Callee(answer_after=0.1, keys=keys)), family=family)
    camp_id = Campaigns(rig.conn).create_campaign("s1", file="x.csv")
    r = await rig.run(SURVEY, {"first_name": "Ann"}, campaign_id=camp_id)
    assert r.outcome == "answered"
    assert rig.answers(r.call_id) == {"satisfied": "yes", "customer_number": "4242", "rating": "4"}
    nodes = [e["name"] for e in rig.events(r.call_id, "node")]
    assert nodes == ["intro", "satisfied", "customer", "rating", "low_or_high", "thanks"]
    branch = rig.events(r.call_id, "branch")[0]
    assert branch == {"node": "low_or_high", "on": "rating", "value": "4", "to": "thanks"}
    # the say: prompt was personalised and really played (TTS at telephone level reached the modem)
    prompts = [e for e in rig.events(r.call_id, "prompt") if e["name"] == "intro"]
    assert prompts[-1]["state"] == "done" and prompts[-1]["ms"] > 300 and prompts[-1]["played_ms"] > 0
    assert answers_summary(rig.conn, camp_id) == {
        "customer_number": {"4242": 1}, "rating": {"4": 1}, "satisfied": {"yes": 1}}


async def test_opt_out_key_in_the_middle_of_a_prompt(rig_for):
    flow = """
    start: speech
    opt_out: {key: "9", say: "Ok"}
    nodes:
      speech: {type: play, prompts: [{tone_hz: 440, tone_ms: 4000}], next: bye}
      bye: {type: hangup}
    """
    rig = await rig_for(Scenario(Callee(answer_after=0.1, keys=[(0.5, "9")])))
    r = await rig.run(flow)
    assert r.outcome == "answered" and r.row["hangup_by"] == "dialer"
    assert r.row["duration_s"] < 3.0, "the 4 s prompt went on after the opt-out key"
    entries = [e for e in Compliance(rig.conn).export_suppression() if e["number"] == NUMBER]
    assert [e["reason"] for e in entries] == ["opt_out_key"]
    entry = entries[0]
    refusal = rig.conn.execute("SELECT at, source, call_id FROM refusals").fetchone()
    assert refusal["source"] == "key" and refusal["call_id"] == r.call_id
    assert entry["added_at"] <= refusal["at"]             # suppression first (A.5.4)
    events = rig.journal.events_of(r.call_id)
    kinds = [e["kind"] for e in events]
    assert kinds.index("refusal") < kinds.index("opt_out")
    confirmation = [e["data"] for e in events if e["kind"] == "prompt" and e["data"]["name"] == "opt_out"]
    assert confirmation and confirmation[-1]["state"] == "done"
    assert "bye" not in [e["data"].get("name") for e in events if e["kind"] == "node"]


async def test_invalid_keys_and_timeouts_follow_their_branches(rig_for):
    flow = """
    start: menu
    nodes:
      menu:
        type: menu
        prompts: [{tone_hz: 500, tone_ms: 200}]
        choices: {1: code}
        timeout: 0.6
        retries: 2
        invalid: {prompts: [{tone_hz: 300, tone_ms: 100}]}
        no_input: {prompts: [{tone_hz: 350, tone_ms: 100}]}
        on_fail: failed
      code:
        type: input
        prompts: [{tone_hz: 600, tone_ms: 100}]
        answer: code
        max_digits: 2
        range: [10, 20]
        timeout: 1.0
        inter_digit_timeout: 0.5
        retries: 1
        next: done
        on_fail: failed
      done: {type: hangup}
      failed: {type: hangup}
    """
    # 7: invalid; then silence (timeout); then 1: choice; code 99 is out of range, 15 is fine
    keys = [(0.15, "7"), (1.6, "1"), (1.9, "9"), (2.0, "9"), (2.9, "1"), (3.0, "5")]
    rig = await rig_for(Scenario(Callee(answer_after=0.1, keys=keys)))
    r = await rig.run(flow)
    menu = [(e["result"], e.get("key")) for e in rig.events(r.call_id, "menu")]
    assert menu == [("invalid", "7"), ("no_input", None), ("choice", "1")]
    inputs = [(e["result"], e.get("digits"), e.get("reason")) for e in rig.events(r.call_id, "input")]
    assert inputs == [("invalid", "99", "range"), ("ok", "15", None)]
    assert rig.answers(r.call_id) == {"code": "15"}
    assert rig.events(r.call_id, "node")[-1]["name"] == "done"

    # nobody presses anything: retries, then on_fail; the call never crashes (the menu's
    # timeout waited out three times, shorter: no key is timed against it here)
    rig2 = await rig_for(Scenario(Callee(answer_after=0.1)))
    r2 = await rig2.run(flow.replace("timeout: 0.6", "timeout: 0.2"))
    results = [e["result"] for e in rig2.events(r2.call_id, "menu")]
    assert results == ["no_input", "no_input", "no_input", "failed"]
    assert rig2.events(r2.call_id, "node")[-1]["name"] == "failed"
    assert not [e for e in rig2.journal.events_of(r2.call_id) if e["kind"] == "error"]


async def test_record_until_silence_then_sms_through_the_same_modem(rig_for):
    flow = """
    start: rec
    fields: [first_name]
    nodes:
      rec:
        type: record
        prompts: [{tone_hz: 500, tone_ms: 100}]
        answer: message
        max_seconds: 6
        silence_seconds: 0.6
        next: text
      text: {type: sms, text: "Thanks {first_name}", next: bye}
      bye: {type: hangup}
    """
    rig = await rig_for(Scenario(Callee(answer_after=0.1, tones=[(0.7, 1.0, 300.0)])))
    r = await rig.run(flow, {"first_name": "Zoé"})
    from modem_dialer.audio.prompts import load_wav
    from modem_dialer.sim.voice import tone_share

    rec = rig.events(r.call_id, "record")[0]
    assert rec["ended_by"] == "silence" and rec["voice"] is True
    assert 1.0 < rec["seconds"] < 2.6
    wav = load_wav(rec["path"])
    assert abs(len(wav) / 8000 - rec["seconds"]) < 0.05
    assert tone_share(wav, 300.0) > 0.3                   # the callee's "voice" is in the file
    import os
    import stat
    # a person's voice: only the dialer's user may read it (issue 11 item 11)
    assert stat.S_IMODE(os.stat(rec["path"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(rec["path"])).st_mode) == 0o700
    assert rig.answers(r.call_id)["message"] == rec["path"]
    sms = rig.events(r.call_id, "sms")[0]
    assert sms["result"] == "sent" and sms["parts"] == 1
    sim = rig.bank.modems[0]
    assert len(sim.sms) == 1
    pdu = sim.sms[0][1]
    assert "0B913316325476F8" in pdu                      # to the callee: +33612345678, semi-octets
    assert pdu[pdu.index("F8") + 6:][:2] == "0A"           # "Thanks Zoé": 10 GSM 7-bit characters
    assert r.outcome == "answered"


def test_examples_pass_the_checks():
    from pathlib import Path

    from modem_dialer.call.flow import flow_warnings, load_flow

    root = Path(__file__).resolve().parents[1] / "examples" / "flows"
    names = sorted(p.name for p in root.glob("*.yaml") if not p.name.endswith("config.yaml"))
    assert names == ["appointment.yaml", "debt.yaml", "survey.yaml"]
    for name in names:
        flow = load_flow(root / name)
        assert flow_warnings(flow, preset="fr") == [], name
