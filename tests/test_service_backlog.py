"""Issue 11 item 2: under a backlog an alert waits for a line as long as its policy allows,
and is called when one frees. Scaled down from "72 alerts of 8 s calls on 4 modems": 8 or 12
short calls on 2 simulated modems (real ptys), the old fixed 120 s wait patched to 1 s (a
backlog of 8 alerts outlasts it)."""

from __future__ import annotations

import asyncio

from helpers import Api, over, wav, write_config
from test_service_alerts import services  # noqa: F401 (fixture)

from modem_dialer.alerting import escalation
from modem_dialer.sim.callee import Callee, Scenario

NUMBERS = [f"+336123457{i:02d}" for i in range(12)]


async def _burst(make_bank, tmp_path, services, numbers: list[str] = NUMBERS,  # noqa: F811
                 **policy) -> list[dict]:
    bank = await make_bank("quectel", Scenario(default=Callee(answer_after=0.1, hangup_after=0.5)), n=2)
    (tmp_path / "prompts").mkdir()
    wav(tmp_path / "prompts" / "job.wav", 0.3)
    loaded = write_config(bank, tmp_path, policies={"default": {
        "steps": [{"to": numbers[0]}], "sms_fallback": False, "message_repeat": 1, **policy}})
    svc = await services(loaded)
    api = Api(svc)
    # All at once, as a burst comes: posted one after the other, on a loaded machine the
    # requests took longer than the calls, the lines were free again for the last alerts and
    # no backlog formed.
    posted = await asyncio.gather(*(api.req("POST", "/v1/alerts", {"to": n, "audio": str(tmp_path / "prompts" / "job.wav")})
                                    for n in numbers))
    assert all(status == 202 for status, _ in posted), posted
    ids = sorted(r["id"] for _, r in posted)
    return [await api.wait_alert(i, over, timeout=60) for i in ids]


async def test_every_alert_of_a_backlog_is_called(make_bank, tmp_path, services, monkeypatch):  # noqa: F811
    monkeypatch.setattr(escalation, "LEASE_TIMEOUT", 1.0, raising=False)   # the old fixed wait, scaled down
    # eight alerts on two lines: the last ones wait three calls (0.5 s or more each), past that
    # 1 s (twelve waited six calls for the same proof)
    numbers = NUMBERS[:8]
    alerts = await _burst(make_bank, tmp_path, services, numbers)
    outcomes = [h["outcome"] for a in alerts for h in a["history"]]
    assert outcomes == ["answered"] * len(numbers), outcomes
    assert sorted(c["number"] for a in alerts for c in a["calls"]) == sorted(numbers)


async def test_line_wait_bounds_the_wait_when_the_policy_says_so(make_bank, tmp_path, services):  # noqa: F811
    alerts = await _burst(make_bank, tmp_path, services, line_wait=1.5)
    outcomes = [h["outcome"] for a in alerts for h in a["history"]]
    # the first calls get lines (both, at once); the others give up after 1.5 s: "no_line",
    # never silent. (Which alerts are first is the order in which the burst's requests reached
    # the service, not their ids: the lease queue's order is tested in test_service_bank.)
    assert outcomes.count("answered") >= 2 and "no_line" in outcomes, outcomes
    assert set(outcomes) == {"answered", "no_line"}
    await asyncio.sleep(0)
