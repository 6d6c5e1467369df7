"""Flow files are checked when loaded: every mistake is one line naming file:line and node;
``flow check``, ``flow try`` and ``call --flow`` as a user runs them."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import run_cli
from test_flow_helpers import write_flow

from modem_dialer.call.flow import flow_warnings, load_flow
from modem_dialer.errors import UserError
from modem_dialer.sim.callee import Callee, Scenario

GOOD = """\
name: ok
start: hello
opt_out: {key: "9"}
nodes:
  hello:
    type: play
    say: "Hello {first_name}, press 9 to stop these calls"
    next: menu
  menu:
    type: menu
    say: "Press 1 to confirm"
    choices: {1: bye}
    on_fail: bye
  bye: {type: hangup}
"""


def error_of(tmp_path, text: str, fields=None) -> str:
    with pytest.raises(UserError) as exc:
        load_flow(write_flow(tmp_path, text), fields)
    return str(exc.value)


def test_good_flow_loads_and_placeholders_are_checked_against_known_fields(tmp_path):
    flow = load_flow(write_flow(tmp_path, GOOD), ["first_name"])
    assert flow.name == "ok" and list(flow.doc.nodes) == ["hello", "menu", "bye"]
    assert flow.node("menu").choices == {"1": "bye"}          # YAML's int 1 is the key "1"
    msg = error_of(tmp_path, GOOD, ["name"])
    assert msg.endswith("flow.yaml:7: node hello: placeholder {first_name} is not a contact field (known: name)")
    assert flow_warnings(flow, preset="fr") == []
    warn = flow_warnings(load_flow(write_flow(tmp_path, GOOD.replace(", press 9 to stop these calls", ""))),
                         preset="us", machine="skip")
    assert len(warn) == 2 and "does not announce the opt-out key '9'" in warn[0] and "abandoned" in warn[1]


@pytest.mark.parametrize(("edit", "expected"), [
    (("next: menu", "next: menuu"), "flow.yaml:8: node hello: next goes to unknown node 'menuu'"),
    (("choices: {1: bye}", "choices: {1: bye, 2: nowhere}"),
     "flow.yaml:12: node menu: choices.2 goes to unknown node 'nowhere'"),
    (("start: hello", "start: nope"), "flow.yaml:2: start node 'nope' is not defined"),
    (("    next: menu\n", ""), "flow.yaml:5: node hello: no exit"),
    (("  bye: {type: hangup}", "  bye: {type: hangup}\n  lost: {type: hangup}"),
     "flow.yaml:15: node lost: unreachable from the start node 'hello'"),
    (('say: "Press 1 to confirm"', "wav: prompts/confirm.wav"),
     "flow.yaml:11: node menu: prompt file not found: prompts/confirm.wav"),
    (("choices: {1: bye}", "choices: {x: bye}"), "flow.yaml:12: node menu: choices: not a phone key: 'x'"),
    (("type: menu", "type: manu"), "flow.yaml:10: node menu: type: unknown or missing node type (one of play"),
    (("choices: {1: bye}", "choices: {9: bye}"), "flow.yaml:12: node menu: key '9' is the opt-out key"),
    (("{first_name}", "{first_name!r}"), "flow.yaml:7: node hello: bad placeholder {first_name}"),
    (("    on_fail: bye\n", ""), "flow.yaml:9: node menu: a menu needs on_fail:"),
    (("  bye: {type: hangup}", "  bye: {type: hangup\n"), "flow.yaml:16: invalid YAML"),
])
def test_each_mistake_names_file_line_and_node(tmp_path, edit, expected):
    old, new = edit
    assert old in GOOD
    msg = error_of(tmp_path, GOOD.replace(old, new))
    assert expected.split(": ", 1)[1][:40] in msg and msg.split(": ")[0].endswith(expected.split(": ")[0]), msg



async def test_flow_check_and_try_commands(tmp_path):
    good = write_flow(tmp_path, GOOD, "good.yaml")
    bad = write_flow(tmp_path, GOOD.replace("next: menu", "next: menuu"), "bad.yaml")
    (rc, out, _), (rc2, _, err2) = await asyncio.gather(
        run_cli("flow", "check", str(good), "--fields", "first_name"), run_cli("flow", "check", str(bad)))
    assert rc == 0 and "ok (3 nodes, start hello)" in out
    assert rc2 == 1 and err2.strip() == f"modem-dialer: {bad}:8: node hello: next goes to unknown node 'menuu'"
    quick = write_flow(tmp_path, GOOD.replace('say: "Press 1 to confirm"', "prompts: [{tone_hz: 500, tone_ms: 200}]")
                       .replace("Hello {first_name}, press 9 to stop these calls", "Hi {first_name}"), "quick.yaml")
    rc, out, err = await run_cli("flow", "try", str(quick), "--number", "0612345678", "--field", "first_name=Bo",
                                 "--keys", "0.3:1", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["call"]["outcome"] == "answered" and d["call"]["number"] == "+33612345678"
    assert [k["key"] for k in d["call"]["keys"]] == ["1"]
    nodes = [e["data"]["name"] for e in d["events"] if e["kind"] == "node"]
    assert nodes == ["hello", "menu", "bye"]


async def test_call_with_a_flow(make_bank, tmp_path):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1, keys=[(0.3, "1")])))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml(database=str(tmp_path / "j.db")))
    flow = write_flow(tmp_path, """\
        start: menu
        nodes:
          menu:
            type: menu
            prompts: [{tone_hz: 500, tone_ms: 300}]
            choices: {1: bye}
            answer: confirmed
            on_fail: bye
          bye: {type: hangup}
        """)
    rc, out, err = await run_cli("--config", str(cfg), "call", "0612345678", "--flow", str(flow),
                                 "--ring-timeout", "15", "--json")
    assert rc == 0, err
    assert json.loads(out)["outcome"] == "answered"
    from modem_dialer.store import Journal, open_db

    conn = open_db(tmp_path / "j.db")
    call_id = Journal(conn).calls()[0]["id"]
    assert [(a["name"], a["value"]) for a in Journal(conn).answers_of(call_id)] == [("confirmed", "1")]
    conn.close()
    rc, _, err = await run_cli("--config", str(cfg), "call", "0612345678", "--flow", str(flow), "--say", "hi")
    assert rc == 1 and "exactly one of" in err
