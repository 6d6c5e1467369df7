"""Transfer to an advisor on the simulated bank: bridge (both audio directions checked by
the simulator), ECT (AT+CHLD=2 / ATD / AT+CHLD=4), and an advisor who does not answer."""

from __future__ import annotations

import pytest
from test_flow_helpers import ADVISOR, ADVISOR2, NUMBER, Rig

from modem_dialer.call.advisors import AdvisorsConfig
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.voice import tone_share

CALLEE_HZ, ADVISOR_HZ = 700.0, 1300.0

FLOW = """
start: tx
nodes:
  tx:
    type: transfer
    strategy: {strategy}
    whisper: {whisper}
    timeout: {timeout}
    fallback: sorry
  sorry: {{type: hangup, prompts: [{{tone_hz: 2200, tone_ms: 300}}]}}
"""


# how long an advisor may ring: the tests where nobody answers wait it out in full (they assert
# the no-answer, not its length), so they use the shorter one
RING_S, NO_ANSWER_RING_S = 1.5, 0.8


def advisors(*numbers: str, order: str = "order") -> AdvisorsConfig:
    return AdvisorsConfig(order=order, people=[{"name": f"adv{i}", "number": n} for i, n in enumerate(numbers)])


@pytest.fixture
async def rig_for(make_bank, tmp_path):
    rigs = []

    async def make(scenario: Scenario, n: int = 2, family: str = "quectel") -> Rig:
        rig = await Rig(await make_bank(family, scenario, n=n), tmp_path).open()
        rigs.append(rig)
        return rig
    yield make
    for r in rigs:
        await r.close()


async def test_bridge_relays_both_directions_until_the_advisor_hangs_up(rig_for):
    callee = Callee(answer_after=0.1, tones=[(2.0, 1.0, CALLEE_HZ)])
    advisor = Callee(answer_after=0.2, keys=[(0.3, "1")], tones=[(1.0, 1.0, ADVISOR_HZ)], hangup_after=3.2)
    rig = await rig_for(Scenario(callee, {ADVISOR: advisor}))
    r = await rig.run(FLOW.format(timeout=RING_S, strategy="bridge", whisper="Accept"), advisors=advisors(ADVISOR))
    assert r.outcome == "answered"
    steps = [e["step"] for e in rig.events(r.call_id, "transfer")]
    assert steps == ["start", "dial", "connected", "ended"]
    ended = rig.events(r.call_id, "transfer")[-1]
    assert ended["by"] == "advisor" and 2.0 < ended["talk_s"] < 4.5
    result = rig.events(r.call_id, "transfer_result")[0]
    assert result["advisor"] == "adv0" and result["number"] == ADVISOR and result["wait_s"] < 2.5
    assert rig.answers(r.call_id) == {"transfer": "adv0"}
    # the advisor's own leg is journaled as a call, with the whisper and the accept key
    adv_rows = rig.journal.calls(number=ADVISOR)
    assert len(adv_rows) == 1 and adv_rows[0]["outcome"] == "answered"
    assert [k["key"] for k in rig.journal.keys_of(adv_rows[0]["id"])] == ["1"]
    # the simulator heard each side's voice on the other side, and not on its own
    callee_sim, advisor_sim = rig.bank.modems
    to_callee = callee_sim.audio.per_call[-1]
    to_advisor = advisor_sim.audio.per_call[-1]
    assert tone_share(to_advisor, CALLEE_HZ) > 0.15, "the advisor did not hear the callee"
    assert tone_share(to_callee, ADVISOR_HZ) > 0.15, "the callee did not hear the advisor"
    assert tone_share(to_callee, CALLEE_HZ) < 0.02 and tone_share(to_advisor, ADVISOR_HZ) < 0.02
    # either side hanging up ends both: the callee's call was hung up by us right after
    assert callee_sim.calls[0].ended_by == "dialer" and advisor_sim.calls[0].ended_by == "callee"
    assert callee_sim.calls[0].ended_at - advisor_sim.calls[0].ended_at < 1.0


async def test_advisor_who_does_not_answer_goes_to_the_fallback(rig_for):
    scenario = Scenario(Callee(answer_after=0.1), {
        ADVISOR: Callee(outcome="no_answer", end_after=30),
        ADVISOR2: Callee(outcome="busy", end_after=0.3),
    })
    rig = await rig_for(scenario)
    r = await rig.run(FLOW.format(timeout=NO_ANSWER_RING_S, strategy="bridge", whisper="null"), advisors=advisors(ADVISOR, ADVISOR2))
    tx = rig.events(r.call_id, "transfer")
    assert [(e["step"], e.get("result")) for e in tx if e["step"] == "not_connected"] == [
        ("not_connected", "no_answer"), ("not_connected", "busy")]
    assert rig.events(r.call_id, "transfer_result")[0]["result"] == "no_advisor"
    assert rig.answers(r.call_id) == {"transfer": "no_advisor"}
    assert rig.events(r.call_id, "node")[-1]["name"] == "sorry"
    assert [c["outcome"] for c in rig.journal.calls(number=ADVISOR)] == ["no_answer"]
    # the callee heard hold music while waiting, then the fallback prompt
    assert tone_share(rig.bank.modems[0].audio.per_call[-1], 2200) > 0.02


async def test_ect_joins_the_callee_and_the_advisor_and_frees_the_modem(rig_for):
    rig = await rig_for(Scenario(Callee(answer_after=0.1), {ADVISOR: Callee(answer_after=0.4)}), n=1)
    r = await rig.run(FLOW.format(timeout=RING_S, strategy="ect", whisper="null"), advisors=advisors(ADVISOR))
    sim = rig.bank.modems[0]
    assert sim.transfers == [(NUMBER, ADVISOR)]
    cmds = sim.commands
    i = cmds.index("AT+CHLD=2")
    assert cmds[i + 1] == f"ATD{ADVISOR};" and "AT+CHLD=4" in cmds[i + 2:]
    assert [c.ended_by for c in sim.calls] == ["transfer", "transfer"] and sim.call is None and sim.held is None
    assert r.outcome == "answered"
    steps = [e["step"] for e in rig.events(r.call_id, "transfer")]
    assert steps == ["start", "dial", "advisor_answered", "connected"]
    assert rig.events(r.call_id, "transfer_result")[0]["strategy"] == "ect"
    # the line is free for the next call straight away
    assert not rig.lines[0].busy


async def test_ect_advisor_no_answer_retrieves_the_callee(rig_for):
    rig = await rig_for(Scenario(Callee(answer_after=0.1), {ADVISOR: Callee(outcome="no_answer", end_after=30)}), n=1)
    r = await rig.run(FLOW.format(timeout=NO_ANSWER_RING_S, strategy="ect", whisper="null"), advisors=advisors(ADVISOR))
    sim = rig.bank.modems[0]
    assert sim.transfers == []
    assert "AT+CHLD=13" in sim.commands and sim.commands.count("AT+CHLD=2") == 2   # release, retrieve
    assert rig.events(r.call_id, "node")[-1]["name"] == "sorry"
    assert r.outcome == "answered" and sim.calls[0].ended_by == "dialer"


async def test_ect_callee_hanging_up_on_hold_is_their_end_and_frees_the_advisor(rig_for):
    # the driver follows both calls: the held callee's end is theirs (it used to be journaled
    # as the dialer's hang-up, the driver being blinded during the transfer)
    rig = await rig_for(Scenario(Callee(answer_after=0.1, hangup_after=0.9),
                                 {ADVISOR: Callee(outcome="no_answer", end_after=30)}), n=1)
    r = await rig.run(FLOW.format(timeout=RING_S, strategy="ect", whisper="null"), advisors=advisors(ADVISOR))
    sim = rig.bank.modems[0]
    steps = [e["step"] for e in rig.events(r.call_id, "transfer")]
    assert steps == ["start", "dial", "callee_left"]
    assert r.row["hangup_by"] == "callee" and sim.calls[0].ended_by == "callee"
    assert "AT+CHLD=13" in sim.commands and sim.calls[1].ended_by == "dialer"   # the advisor's call released
    assert sim.call is None and sim.held is None


async def test_ect_off_for_the_modem_goes_to_the_fallback(rig_for):
    # Huawei: no ECT unless the modem's `ect` setting says on (chan_dongle's E1550 CHLD bugs)
    rig = await rig_for(Scenario(Callee(answer_after=0.1), {ADVISOR: Callee()}), n=1, family="huawei")
    r = await rig.run(FLOW.format(timeout=RING_S, strategy="ect", whisper="null"), advisors=advisors(ADVISOR))
    sim = rig.bank.modems[0]
    tx = rig.events(r.call_id, "transfer")
    assert [e["step"] for e in tx] == ["start", "unsupported"] and "explicit call transfer is off" in tx[1]["error"]
    assert not any(c.startswith(("AT+CHLD", "ATD" + ADVISOR)) for c in sim.commands)
    assert rig.events(r.call_id, "node")[-1]["name"] == "sorry"


async def test_ect_refused_releases_the_advisor_by_index_and_retrieves_the_callee(rig_for):
    rig = await rig_for(Scenario(Callee(answer_after=0.1), {ADVISOR: Callee(answer_after=0.3)}), n=1)
    sim = rig.bank.modems[0]
    handle = sim.dialect.handle
    sim.dialect.handle = lambda cmd, up: sim.error("operation not supported", 4) if up == "AT+CHLD=4" \
        else handle(cmd, up)
    r = await rig.run(FLOW.format(timeout=RING_S, strategy="ect", whisper="null"), advisors=advisors(ADVISOR))
    tx = rig.events(r.call_id, "transfer")
    assert [(e["step"], e.get("result")) for e in tx][-2:] == [("advisor_answered", None), ("not_connected", "ect_refused")]
    # the advisor's call by its index (AT+CHLD=1 alone would also take the callee back, and
    # the AT+CHLD=2 after it would put them on hold again), then the callee back
    cmds = sim.commands
    i = cmds.index("AT+CHLD=4")
    assert [c for c in cmds[i:] if c.startswith("AT+CHLD")] == ["AT+CHLD=4", "AT+CHLD=13", "AT+CHLD=2"]
    assert sim.transfers == [] and sim.calls[1].ended_by == "dialer"
    assert rig.events(r.call_id, "node")[-1]["name"] == "sorry" and r.row["hangup_by"] == "dialer"
