"""Answering machines on the simulated bank: the callee's modem sends a voice-like greeting
in the uplink; AMD and the beep detector run on what the dialer captures."""

from __future__ import annotations

import functools

import numpy as np
from test_flow_helpers import Rig

from modem_dialer.sim import voice
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.voice import tone_share

VOICEMAIL_HZ, MESSAGE_HZ = 1700.0, 440.0

FLOW = """
start: message
machine:
  mode: {mode}
  voicemail: {{prompts: [{{tone_hz: 1700, tone_ms: 600}}]}}
nodes:
  message: {{type: play, prompts: [{{tone_hz: 440, tone_ms: 6000}}], next: bye}}
  bye: {{type: hangup}}
"""


async def _rig(make_bank, tmp_path, greeting: str) -> Rig:
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1, greeting=greeting)))
    return await Rig(bank, tmp_path).open()


# the simulated machine says 5 words before its beep (its default, 10, takes 4.4 s): still more
# than AMD's word limit (2), and as long a greeting as AMD's 1.5 s; what the replay waits for
# is the beep, whenever it comes
MACHINE_WORDS = 5


async def test_machine_greeting_replay_waits_for_the_beep_then_plays_the_voicemail(make_bank, tmp_path, monkeypatch):
    monkeypatch.setattr(voice, "machine_greeting", functools.partial(voice.machine_greeting, words=MACHINE_WORDS))
    rig = await _rig(make_bank, tmp_path, "machine")
    try:
        r = await rig.run(FLOW.format(mode="replay"))
        amd = rig.events(r.call_id, "amd")[0]
        assert amd["verdict"] == "MACHINE" and amd["at_ms"] < 3000
        beep = rig.events(r.call_id, "beep")[0]
        assert abs(beep["hz"] - 1000) < 30
        vm = next(e for e in rig.events(r.call_id, "machine") if e["action"] == "voicemail")
        assert vm["after"] == "beep"
        prompts = [(e["name"], e["state"]) for e in rig.events(r.call_id, "prompt")]
        assert ("voicemail", "done") in prompts and ("message", "done") not in prompts
        assert r.outcome == "answered" and "bye" not in [e["name"] for e in rig.events(r.call_id, "node")]
        # the voicemail went out after the beep, once, whole
        down = np.frombuffer(rig.bank.modems[0].audio.per_call[-1], dtype="<i2")
        # the sim machine's greeting (words, pause, beep) of this call (seed: the call's number)
        greeting_end_s = len(voice.greeting("machine", seed=1)) / 8000
        assert greeting_end_s > 2.5
        frames = down[: len(down) // 160 * 160].reshape(-1, 160)
        vm_frames = [i for i in range(len(frames)) if tone_share(frames[i], VOICEMAIL_HZ) == 1.0]
        assert 25 <= len(vm_frames) <= 32 and vm_frames[0] * 0.02 > greeting_end_s - 1.5
    finally:
        await rig.close()


async def test_human_hello_keeps_the_flow_going(make_bank, tmp_path):
    rig = await _rig(make_bank, tmp_path, "human")
    try:
        flow = FLOW.replace("tone_ms: 6000", "tone_ms: 2000").format(mode="replay")
        r = await rig.run(flow)
        assert rig.events(r.call_id, "amd")[0]["verdict"] == "HUMAN"
        assert not rig.events(r.call_id, "machine")
        assert [e["name"] for e in rig.events(r.call_id, "node")] == ["message", "bye"]
        assert tone_share(rig.bank.modems[0].audio.per_call[-1], MESSAGE_HZ) > 0.5
    finally:
        await rig.close()


async def test_skip_mode_hangs_up_with_outcome_machine(make_bank, tmp_path):
    rig = await _rig(make_bank, tmp_path, "machine")
    try:
        r = await rig.run(FLOW.format(mode="skip"))
        assert r.outcome == "machine" and r.row["hangup_by"] == "dialer"
        assert r.row["duration_s"] < 3.5
        assert rig.bank.modems[0].calls[0].ended_by == "dialer"
    finally:
        await rig.close()
