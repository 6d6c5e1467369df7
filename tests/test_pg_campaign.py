"""`campaign run` end to end on PostgreSQL: the simulated bank, the CLI as a user runs it,
`database: postgresql://…` in the config, and every contact final."""

from __future__ import annotations

import itertools
import json

import yaml
from test_campaign_run import (
    ANSWER,
    BUSY,
    INVALID,
    KEYS,
    NOANS,
    OPTOUT,
    OUTCOMES,
    SUPP,
    contacts,
    run_cli,
    setup,
)

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import from_ts, open_db

FINAL = {"answered", "exhausted", "invalid", "opted_out", "suppressed", "refused", "no_consent", "cancelled"}


async def test_campaign_run_on_postgresql(make_bank, tmp_path, pg):
    dsn = pg.new_schema()
    bank = await make_bank("quectel,simcom", OUTCOMES, n=4)
    nums = [ANSWER, BUSY, NOANS, INVALID, OPTOUT, SUPP, KEYS]
    extra = [f"+3361111{i:04d}" for i in range(20)]      # keep four lines busy for a while
    cfg, camp = setup(tmp_path, bank, nums + extra, message_s=0.3, extra=(
        "opt_out_key: 9\nretry:\n  busy: {after: 1s, max: 3}\n  no_answer: {after: 1s, max: 2}\n"))
    data = yaml.safe_load(cfg.read_text())
    data["database"] = dsn
    cfg.write_text(yaml.safe_dump(data))

    rc, out, err = await run_cli(cfg, "suppress", "add", SUPP, "--reason", "dnc")
    assert rc == 0 and "added" in out, err
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp), timeout=60)
    assert rc == 0, out + err
    assert "campaign test: done" in out, out

    conn = open_db(dsn)
    c = contacts(conn)
    assert {n: (c[n]["status"], c[n]["attempts"]) for n in nums} == {
        ANSWER: ("answered", 1), BUSY: ("exhausted", 3), NOANS: ("exhausted", 2), INVALID: ("invalid", 1),
        OPTOUT: ("opted_out", 1), SUPP: ("suppressed", 0), KEYS: ("answered", 1)}
    assert all(row["status"] in FINAL for row in c.values()) and len(c) == len(nums) + len(extra)
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT reason FROM suppression WHERE number = ?", (OPTOUT,)).fetchone()[0] == "opt_out_key"
    assert conn.execute("SELECT COUNT(*) FROM refusals WHERE number = ?", (OPTOUT,)).fetchone()[0] == 1
    # every extra contact called once, no number ever in two calls at once
    calls_per_number = dict(conn.execute("SELECT number, COUNT(*) FROM calls GROUP BY number").fetchall())
    assert all(calls_per_number[n] == 1 for n in extra)
    spans = conn.execute("SELECT number, created_at, ended_at FROM calls ORDER BY number, id").fetchall()
    for a, b in itertools.pairwise(spans):
        if a["number"] == b["number"]:
            assert b["created_at"] >= a["ended_at"]
            assert (from_ts(b["created_at"]) - from_ts(a["ended_at"])).total_seconds() >= 0.99
    rows = conn.execute("SELECT key FROM keys k JOIN calls c ON c.id = k.call_id WHERE c.number = ? ORDER BY k.id",
                        (KEYS,)).fetchall()
    assert [r[0] for r in rows] == ["1", "2"]

    rc, out, err = await run_cli(cfg, "report", "test", "--format", "json")
    assert rc == 0, err
    s = json.loads(out)["summary"]
    assert s["calls"] == 9 + len(extra) and s["outcomes"]["busy"] == 3 and s["contacts_answered"] == 2 + len(extra)
    rc, out, err = await run_cli(cfg, "campaign", "status", "test")
    assert rc == 0, err
    # re-running the finished campaign: nothing dialed again
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp))
    assert rc == 0 and "unchanged since the last import" in out, out + err
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 9 + len(extra)
    conn.close()


async def test_database_stopped_mid_campaign_holds_then_resumes(make_bank, tmp_path, pg):
    """PostgreSQL stopped (pg_ctl stop -m fast) for some seconds mid-campaign: no call is
    started while it is away, the calls in progress end and are recorded when it is back,
    the run resumes by itself, every contact is final, no number is dialed twice."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    from conftest import wait_until
    from test_campaign_run import start_cli

    dsn = pg.new_schema()
    nums = [f"+3361222{i:04d}" for i in range(32)]
    # the stop comes after 8 calls ended (12-16 numbers taken by then, with the lines' calls and
    # armed next calls): the last 16 are called after the outage, and only have to be called
    # once each: their callee hangs up 0.05 s after answering instead of hearing the 0.4 s message
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1), numbers={
        n: Callee("answer", answer_after=0.1, hangup_after=0.05) for n in nums[16:]}), n=4)
    cfg, camp = setup(tmp_path, bank, nums, message_s=0.4)
    data = yaml.safe_load(cfg.read_text())
    data["database"] = dsn
    cfg.write_text(yaml.safe_dump(data))
    watch = open_db(dsn)
    proc = await start_cli(cfg, "campaign", "run", str(camp))
    try:
        def ended() -> int:
            return watch.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NOT NULL").fetchone()[0]

        await wait_until(lambda: ended() >= 8, timeout=40)
        await asyncio.to_thread(pg.stop, "fast")
        stopped_at = datetime.now(timezone.utc)
        # the server stays away until the calls up at the stop have ended on the SIMs (their
        # lines free), then longer than a held worker's look (its poll, 1 s): a line that
        # dialed while the server was away would have done so by then
        await wait_until(lambda: all(c.state == "ended" for m in bank.modems for c in m.calls), timeout=20)
        await asyncio.sleep(1.5)
        restart_at = datetime.now(timezone.utc)
        await asyncio.to_thread(pg.start)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, out + err
    assert "campaign test: done" in out, out
    assert "no new calls until it is back" in out + err and "resume" in out + err, out + err
    c = contacts(watch)
    assert {row["status"] for row in c.values()} == {"answered"} and len(c) == len(nums)
    per_number = dict(watch.execute("SELECT number, COUNT(*) FROM calls GROUP BY number").fetchall())
    assert per_number == dict.fromkeys(nums, 1)                   # nobody dialed twice
    assert watch.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0
    # no ATD while the server was away (a call committed just before the stop dials at once)
    dialed = [from_ts(r[0]) for r in watch.execute("SELECT started_at FROM calls").fetchall()]
    during = [t for t in dialed if stopped_at + timedelta(seconds=0.5) < t < restart_at]
    assert during == [], during
    watch.close()


async def test_serve_on_postgresql_runs_a_campaign_and_an_alert(make_bank, tmp_path, pg):
    """`serve` (the service in-process: HTTP API, bank, alert runner, campaigns) on PostgreSQL."""
    from test_service_alerts import ALICE, TOKEN, Api, acked, alerting
    from test_service_campaign import finished, wait_campaign

    from modem_dialer.config import load_config
    from modem_dialer.service.service import Service

    dsn = pg.new_schema()
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1), numbers={
        ALICE: Callee(answer_after=0.1, keys=[(0.4, "1")])}), n=2)
    nums = [f"+3361333{i:04d}" for i in range(6)]
    _, camp = setup(tmp_path, bank, nums, message_s=0.3)
    doc = yaml.safe_load(bank.config_yaml(database=dsn))
    doc["alerting"] = alerting(api={"port": 0, "token": TOKEN})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    svc = Service(load_config(str(tmp_path / "config.yaml")), port=0, min_ring_timeout=1.0)
    svc.campaigns.poll = 0.2
    await svc.start()
    try:
        api = Api(svc, TOKEN)
        status, r = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
        assert status == 202 and r["started"] is True, r
        status, a = await api.req("POST", "/v1/alerts", {"text": "Disk full on db1", "dedup_key": "db1-disk"})
        assert status == 202 and a["created"] is True, a
        got = await api.wait_alert(a["id"], acked)
        assert got["acknowledged_by"] == f"alice {ALICE}"
        c = await wait_campaign(api, "test", finished, timeout=60)
        assert c["statuses"] == {"answered": len(nums)}
        _, modems = await api.req("GET", "/v1/modems")
        assert sum(sum(m["calls"].values()) for m in modems) == len(nums) + 1
    finally:
        await svc.stop()
    conn = open_db(dsn)
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM alerts WHERE id = ?", (a["id"],)).fetchone()[0] == "acknowledged"
    conn.close()
