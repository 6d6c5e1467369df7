"""A campaign that runs an IVR flow: answers in the report, opt-out mid-prompt, and a bridge
transfer that borrows another free line of the campaign's own pool."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import db
from test_campaign_run import run_cli

from modem_dialer.sim.callee import Callee, Scenario

SURVEY, OPTOUT, BUSY, TRANSFER, ADVISOR = "+33612345671", "+33612345672", "+33612345673", "+33612345674", "+33612345690"

FLOW = """
start: ask
opt_out: {say: "Bye"}
nodes:
  ask:
    type: menu
    prompts: [{tone_hz: 500, tone_ms: 800}]
    choices: {1: digits, 2: digits, 0: agent}
    values: {1: "yes", 2: "no"}
    answer: happy
    timeout: 3
    retries: 1
    on_fail: bye
  digits:
    type: input
    prompts: [{tone_hz: 600, tone_ms: 300}]
    answer: code
    min_digits: 3
    max_digits: 3
    next: bye
    on_fail: bye
  agent:
    type: transfer
    strategy: bridge
    timeout: 2
    fallback: bye
  bye: {type: hangup, prompts: [{tone_hz: 800, tone_ms: 200}]}
"""


@pytest.mark.slow
async def test_flow_campaign_answers_opt_out_then_a_bridge_on_the_pool(make_bank, tmp_path):
    sc = Scenario(default=Callee(answer_after=0.1), numbers={
        # (the keys 1 and 9 come during the 0.8 s question: barge-in; the code after its prompt)
        SURVEY: Callee(answer_after=0.1, keys=[(0.5, "1"), (1.5, "4"), (1.6, "2"), (1.7, "7")]),
        OPTOUT: Callee(answer_after=0.1, keys=[(0.4, "9")]),
        BUSY: Callee("busy", end_after=0.1),
        TRANSFER: Callee(answer_after=0.1, keys=[(0.3, "0")], hangup_after=1.8),
        ADVISOR: Callee(answer_after=0.2),
    })
    bank = await make_bank("quectel", sc, n=2)
    data = yaml.safe_load(bank.config_yaml(database=str(tmp_path / "dialer.db")))
    data["advisors"] = {"people": [{"name": "ada", "number": ADVISOR}]}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "contacts.csv").write_text("number\n" + "".join(f"{n}\n" for n in (SURVEY, OPTOUT, BUSY)))
    camp = tmp_path / "camp.yaml"
    camp.write_text("name: flowtest\ncontacts: contacts.csv\nflow: flow.yaml\npurpose: survey\nrules: none\n"
                    "opt_out_key: '9'\nretry: {busy: {after: 1s, max: 1}}\n")
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp), timeout=60)
    assert rc == 0, err + out
    conn = db(tmp_path)
    status = {r["number"]: r["status"] for r in conn.execute("SELECT number, status FROM contacts")}
    assert status == {SURVEY: "answered", OPTOUT: "opted_out", BUSY: "exhausted"}
    assert conn.execute("SELECT 1 FROM suppression WHERE number = ?", (OPTOUT,)).fetchone()
    rc, out, _ = await run_cli(cfg, "report", "flowtest", "--format", "json")
    rows = {r["number"]: r for r in json.loads(out)["contacts"]}
    assert rows[SURVEY]["answers"] == {"happy": "yes", "code": "427"}
    assert rows[OPTOUT]["answers"] == {}

    # a second campaign: one contact asks for an advisor while the other modem is free
    (tmp_path / "contacts2.csv").write_text(f"number\n{TRANSFER}\n")
    camp2 = tmp_path / "camp2.yaml"
    camp2.write_text("name: transfer\ncontacts: contacts2.csv\nflow: flow.yaml\npurpose: survey\nrules: none\n")
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp2), timeout=60)
    assert rc == 0, err + out
    rc, out, _ = await run_cli(cfg, "report", "transfer", "--format", "json")
    rows = {r["number"]: r for r in json.loads(out)["contacts"]}
    # the transfer borrowed the other modem of the pool to dial the advisor
    assert rows[TRANSFER]["answers"].get("transfer") == "ada"
    adv = conn.execute("SELECT modem, outcome FROM calls WHERE number = ?", (ADVISOR,)).fetchall()
    callee_modem = conn.execute("SELECT modem FROM calls WHERE number = ?", (TRANSFER,)).fetchone()[0]
    assert len(adv) == 1 and adv[0]["outcome"] == "answered" and adv[0]["modem"] != callee_modem
