"""On-call schedules: hand-overs at the local time across DST (zoneinfo), overrides, the
`oncall` command, and an alert to a schedule calling whoever is on call."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml
from conftest import run_cli
from helpers import ALICE, BOB, CAROL, Api, called, write_config
from pydantic import ValidationError
from test_service_alerts import services  # noqa: F401

from modem_dialer.alerting.schedules import ScheduleConfig, on_call
from modem_dialer.sim.callee import Callee, Scenario

UTC = timezone.utc
PRIMARY = {"timezone": "Europe/Paris", "rotation": ["alice", "bob", "carol"], "handover": "sun 09:00",
           "start": "2026-03-22", "every_days": 7,
           "overrides": [{"from": "2026-04-05 12:00", "to": "2026-04-05 18:00", "who": "alice"}]}


def sched(**over) -> ScheduleConfig:
    return ScheduleConfig(**{**PRIMARY, **over})


def test_handover_at_local_time_across_the_spring_dst_change():
    s = sched()
    # 2026-03-29: Paris goes from UTC+1 to UTC+2 at 02:00. The 09:00 hand-over that Sunday is
    # 07:00 UTC, not 08:00 UTC (which it was the week before).
    assert on_call("p", s, datetime(2026, 3, 22, 7, 59, tzinfo=UTC)).who == "carol"     # 08:59 CET, before
    assert on_call("p", s, datetime(2026, 3, 22, 8, 0, tzinfo=UTC)).who == "alice"      # 09:00 CET
    assert on_call("p", s, datetime(2026, 3, 29, 6, 59, tzinfo=UTC)).who == "alice"     # 08:59 CEST
    oc = on_call("p", s, datetime(2026, 3, 29, 7, 0, tzinfo=UTC))                       # 09:00 CEST
    assert oc.who == "bob" and oc.since.utcoffset().total_seconds() == 7200
    assert oc.since.astimezone(UTC) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    # alice's turn across the change lasted 7 days minus one hour
    first = on_call("p", s, datetime(2026, 3, 25, tzinfo=UTC))
    # (aware datetimes in the same zone subtract as wall clocks: compare in UTC)
    assert (first.until.astimezone(UTC) - first.since.astimezone(UTC)).total_seconds() == 7 * 86400 - 3600


def test_handover_across_the_autumn_dst_change_and_wraparound():
    s = sched(start="2026-10-18")
    # 2026-10-25: back to UTC+1 at 03:00; the 09:00 hand-over is 08:00 UTC
    assert on_call("p", s, datetime(2026, 10, 25, 7, 59, tzinfo=UTC)).who == "alice"
    assert on_call("p", s, datetime(2026, 10, 25, 8, 0, tzinfo=UTC)).who == "bob"
    assert on_call("p", s, datetime(2026, 11, 8, 8, 0, tzinfo=UTC)).who == "alice"     # rotation wraps
    assert on_call("p", s, datetime(2026, 10, 12, tzinfo=UTC)).who == "carol"          # the turn before start
    assert on_call("p", s, datetime(2026, 10, 10, tzinfo=UTC)).who == "bob"            # and the one before


def test_override_wins_for_its_span():
    s = sched()
    assert on_call("p", s, datetime(2026, 4, 5, 9, 0, tzinfo=UTC)).who == "carol"       # 11:00 CEST: rotation
    oc = on_call("p", s, datetime(2026, 4, 5, 10, 0, tzinfo=UTC))                       # 12:00 CEST: override
    assert oc.who == "alice" and oc.override
    assert on_call("p", s, datetime(2026, 4, 5, 16, 0, tzinfo=UTC)).who == "carol"      # 18:00: back


@pytest.mark.parametrize("over, text", [
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"handover": "funday 09:00"}, "handover"),
    ({"start": "2026-03-23"}, "not the handover day"),
    ({"overrides": [{"from": "2026-04-05 18:00", "to": "2026-04-05 12:00", "who": "bob"}]}, "not after"),
])
def test_bad_schedules_are_named(over, text):
    with pytest.raises(ValidationError, match=text):
        sched(**over)


async def test_oncall_command_and_alert_to_a_schedule(make_bank, tmp_path, services):  # noqa: F811
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1, keys=[(0.3, "1")])))
    loaded = write_config(bank, tmp_path, schedules={"primary": PRIMARY},
                          policies={"default": {"steps": [{"to": "primary"}], "message_repeat": 1,
                                                "sms_fallback": False}})
    cfg = str(loaded.path)
    code, out, err = await run_cli("--config", cfg, "oncall", "primary", "--at", "2026-03-29 09:00")
    assert code == 0, err
    assert out.strip() == f"primary: bob ({BOB}) since Sun 2026-03-29 09:00 CEST until Sun 2026-04-05 09:00 CEST"
    code, out, _ = await run_cli("--config", cfg, "oncall", "--at", "2026-03-29T06:59Z", "--json")
    assert code == 0 and '"who": "alice"' in out
    code, _, err = await run_cli("--config", cfg, "oncall", "nope")
    assert code == 1 and err.strip() == "modem-dialer: unknown schedule 'nope' (have: primary)"
    code, _, err = await run_cli("--config", cfg, "oncall", "--at", "tomorrow")
    assert code == 1 and "--at" in err
    # a schedule naming someone who is not a person: one line naming the culprit
    bad = yaml.safe_load(loaded.path.read_text())
    bad["alerting"]["schedules"]["primary"]["rotation"] = ["alice", "zed"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = await run_cli("--config", str(tmp_path / "bad.yaml"), "oncall")
    assert code == 1 and "'zed' is not a person" in err and len(err.strip().splitlines()) == 1
    # the alert goes to whoever is on call now
    expected = on_call("primary", loaded.config.alerting.schedules["primary"], datetime.now(UTC)).who
    svc = await services(loaded)
    api = Api(svc)
    _, r = await api.req("POST", "/v1/alerts", {"text": "db1 down"})
    a = await api.wait_alert(r["id"], lambda a: a["status"] == "acknowledged")
    assert called(bank) == [{"alice": ALICE, "bob": BOB, "carol": CAROL}[expected]]
    assert a["acknowledged_by"].startswith(expected)
