"""Several boxes on PostgreSQL when the server goes away (issue 14, docs/scale-out.md "What
happens when…"): real ``serve`` processes, each with its own simulated bank, on one
PostgreSQL schema of the test cluster, and ``pg_ctl stop`` for 10 s mid-campaign.

Kept cheap: two modems a box, short calls, few contacts; the outage itself is the wall
time. Checked against the database and against what the simulated SIMs saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from boxes import (
    bank_maker,
    in_two_calls_at_once,
    outgoing,
    serve,
    wait_until,
    write_campaign,
)
from helpers import run_cli as cli

from modem_dialer.store import from_ts

OUTAGE_S = 10.0      # the issue's figure; longer than the boxes' lease (5 s), so it is tested too


@pytest.fixture
async def bank_on_pg(pg_schema, tmp_path):
    async for make in bank_maker(tmp_path, database=pg_schema):
        yield make


async def test_postgresql_stopped_10s_under_three_boxes_everything_resumes(pg, bank_on_pg, tmp_path):
    # Three boxes, as the multi-box tests. The stop comes once each box has ended two
    # calls, with calls up. Each box dials two numbers and arms the next two (a row written
    # ahead of its ATD); the boxes take their shares first (contact ids modulo the boxes), so
    # each box's first two are among the first six of the list: short (the callee hangs up
    # 0.05 s after the answer), so that the condition is met at once; the next six, dialed as
    # those end, are up at the stop (~1.6 s: answer after 0.1 s, the callee hangs up 1.5 s
    # later) and end during the outage. Whatever the order the boxes claim in, a box that has
    # ended two calls while another box's long ones are up dials long ones too, so a call is
    # up at the stop. The rest, dialed after the outage (each box's armed rows at least),
    # only have to be called once each: short.
    nums = [f"+3361444{i:04d}" for i in range(30)]
    short = {"outcome": "answer", "ring_after": 0.01, "answer_after": 0.1, "hangup_after": 0.05}
    bank = await bank_on_pg(["b1", "b2", "b3"], 2, {"default": short,
                                                    "numbers": {n: short | {"hangup_after": 1.5} for n in nums[6:12]}})
    await asyncio.gather(*(serve(b) for b in bank.boxes))
    camp = write_campaign(tmp_path, nums, message_s=2.0)
    # handed to b1's serve in this process, as test_multibox does (an interpreter more: ~0.8 s of CPU)
    rc, out, err = await cli("--config", str(bank.box("b1").config), "campaign", "run", "--detach", str(camp),
                             timeout=120)
    assert rc == 0, out + err

    def mid_campaign() -> bool:
        rows = bank.rows("SELECT box, outcome FROM calls")
        ended = Counter(c["box"] for c in rows if c["outcome"] is not None)
        live = [c for c in rows if c["outcome"] is None]
        return all(ended[b.name] >= 2 for b in bank.boxes) and len(live) >= 2     # every box at work, calls up
    await wait_until(mid_campaign, 60, "every box with calls in progress", every=0.05)
    stopping_at = datetime.now(UTC)
    await asyncio.to_thread(pg.stop, "fast")
    stopped_at = datetime.now(UTC)
    t0 = time.monotonic()
    try:
        await asyncio.sleep(OUTAGE_S)
        # no box died of it
        assert all(b.serve is not None and b.serve.poll() is None for b in bank.boxes)
    finally:
        restart_at = datetime.now(UTC)
        await asyncio.to_thread(pg.start)
    assert time.monotonic() - t0 >= OUTAGE_S
    await wait_until(lambda: bank.rows("SELECT status FROM campaigns")[0]["status"] == "done", 90,
                     "the campaign done after the outage", every=0.1)

    statuses = Counter(r["status"] for r in bank.rows("SELECT status FROM contacts"))
    assert statuses == {"answered": len(nums)}, statuses
    calls = bank.rows("SELECT number, box, outcome, started_at, ended_at FROM calls")
    assert all(c["outcome"] == "answered" and c["ended_at"] is not None for c in calls), \
        [c for c in calls if c["outcome"] != "answered"]
    per_number = Counter(c["number"] for c in calls)
    assert per_number == dict.fromkeys(nums, 1)                          # nobody dialed twice (journal) ...
    assert outgoing(bank) == dict.fromkeys(nums, 1)                      # ... nor on the SIMs
    assert in_two_calls_at_once(bank) == []
    assert set(Counter(c["box"] for c in calls)) == {"b1", "b2", "b3"}
    # every box dialed again once the server was back (everything resumes, not one box for all)
    after = {c["box"] for c in calls if c["started_at"] is not None and from_ts(c["started_at"]) > restart_at}
    assert after == {"b1", "b2", "b3"}, after
    # no ATD while the server was away (a call committed just before the stop dials at once)
    during = [c["number"] for c in calls if c["started_at"] is not None
              and stopped_at + timedelta(seconds=0.5) < from_ts(c["started_at"]) < restart_at]
    assert during == [], during
    # the calls up at the stop ended during the outage and were recorded from the spool
    ended_during = [c for c in calls if stopping_at < from_ts(c["ended_at"]) < restart_at]
    assert ended_during, "no call ended during the outage: the test did not catch calls in progress"
    # no box mistook another for dead when all came back at once
    assert {b["name"]: b["status"] for b in bank.rows("SELECT name, status FROM boxes")} == \
        {"b1": "up", "b2": "up", "b3": "up"}
    logs = "".join(b.log.read_text() for b in bank.boxes)   # type: ignore[union-attr]
    assert "lost (no heartbeat" not in logs


OPT = "+33612999001"


async def test_opt_out_pressed_during_an_outage_survives_a_kill(pg, pg_schema, make_bank, tmp_path):
    """The callee presses the opt-out key while PostgreSQL is away, and the box is killed
    before the server is back: the suppression row, the refusal and the contact's status
    were kept in the box's spool and are replayed by the next run (never lost)."""
    import sqlite3

    import yaml
    from helpers import kill_while_server_away, setup, start_cli

    from modem_dialer.config import load_config
    from modem_dialer.sim.callee import Callee, Scenario
    from modem_dialer.store import open_db

    # the key comes 2 s after the answer: the server is stopped by then
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1),
                                               numbers={OPT: Callee("answer", answer_after=0.1, keys=[(2.0, "9")])}))
    cfg, camp = setup(tmp_path, bank, [OPT], message_s=6.0, extra="opt_out_key: 9\n")
    data = yaml.safe_load(cfg.read_text())
    data["database"] = pg_schema
    cfg.write_text(yaml.safe_dump(data))
    spool = load_config(str(cfg)).spool_path
    assert spool is not None
    watch = open_db(pg_schema)

    def spooled() -> set[str]:
        if not spool.exists():
            return set()
        with contextlib.closing(sqlite3.connect(spool)) as s:
            return {json.loads(r[0])["m"] for r in s.execute("SELECT op FROM spool")}

    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    await kill_while_server_away(
        pg, proc,
        lambda: wait_until(lambda: watch.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1, 30,
                           "the call row committed"),
        lambda: wait_until(lambda: {"suppress", "refusal", "finish_call", "settle_contact"} <= spooled(), 30,
                           "the opt-out, the outcome and the contact's status in the spool"))
    assert watch.execute("SELECT COUNT(*) FROM suppression").fetchone()[0] == 0     # not written before
    # the next run replays the spool first: nothing to dial again
    rc, out, err = await cli(*("--config", str(cfg), "campaign", "run", str(camp)), timeout=60)
    assert rc == 0 and "campaign test: done" in out, out + err
    assert spooled() == set()
    row = watch.execute("SELECT reason, source FROM suppression WHERE number = ?", (OPT,)).fetchone()
    assert row is not None and row["reason"] == "opt_out_key" and row["source"] == "campaign:test"
    assert watch.execute("SELECT COUNT(*) FROM refusals WHERE number = ?", (OPT,)).fetchone()[0] == 1
    c = watch.execute("SELECT status, attempts, last_outcome FROM contacts WHERE number = ?", (OPT,)).fetchone()
    assert (c["status"], c["attempts"], c["last_outcome"]) == ("opted_out", 1, "answered")
    calls = watch.execute("SELECT outcome FROM calls WHERE number = ?", (OPT,)).fetchall()
    assert [r["outcome"] for r in calls] == ["answered"]                # dialed once
    assert [c.number for m in bank.modems for c in m.calls if c.direction == "out"] == [OPT]    # the SIM's view
    watch.close()


@pytest.mark.parametrize("when", ["after", "during"])
async def test_serve_stops_promptly_on_sigterm_around_an_outage(pg, bank_on_pg, when):
    """SIGTERM ends ``serve`` within seconds right after PostgreSQL came back (the campaign
    listener, the journal's reader and writer reconnecting), and while it is still away (it
    used to wait for the server to come back: the box's leave queued behind the heartbeat
    the writer held for the server, with no bound)."""
    import signal

    # a lease of 2 s: the heartbeat (every quarter lease) finds the server away sooner; a lock
    # limit of 2 s: the stop waits that long for the server (the lesser of it and
    # UNREACHABLE_STOP_WAIT_S, 5 s), not the default 60 s (either way, not until it is back)
    bank = await bank_on_pg(["b1"], 1, {"default": {"outcome": "answer", "answer_after": 0.1, "hangup_after": 0.3}},
                            lease="2s", extra={"database_lock_limit": "2s"})
    box = bank.box("b1")
    await serve(box)
    await asyncio.to_thread(pg.stop, "fast")
    try:
        # the box's journal writer found the server away (a heartbeat waits in it)
        await wait_until(lambda: "no new calls until it is back" in box.log.read_text(),  # type: ignore[union-attr]
                         30, "the serve to see PostgreSQL away")
        if when == "during":
            box.serve.send_signal(signal.SIGTERM)                   # type: ignore[union-attr]
            t0 = time.monotonic()
            rc = await asyncio.to_thread(box.serve.wait, 60)      # type: ignore[union-attr]
            took = time.monotonic() - t0
    finally:
        await asyncio.to_thread(pg.start)
    if when == "after":
        box.serve.send_signal(signal.SIGTERM)                       # type: ignore[union-attr]
        t0 = time.monotonic()
        rc = await asyncio.to_thread(box.serve.wait, 60)          # type: ignore[union-attr]
        took = time.monotonic() - t0
    assert rc == 0
    # during: it waits the lock limit (2 s) for the server (before the fix: until it came
    # back); the rest is margin for a loaded machine
    assert took < (15 if when == "during" else 10), (took, box.log.read_text()[-3000:])  # type: ignore[union-attr]


async def test_a_pause_on_one_box_stops_every_box_on_postgresql(bank_on_pg, tmp_path):
    """While a box hears the campaigns' changes (LISTEN/NOTIFY) its campaigns read their status
    only when a change is heard (or every 2 s, a safety net: service/campaigns.py
    JOIN_LOOK_LISTENING_S): a `campaign pause` given to one box stops every box from starting
    calls, and `campaign resume` lets them finish, each number called once."""
    nums = [f"+3361555{i:04d}" for i in range(16)]
    call = {"outcome": "answer", "ring_after": 0.01, "answer_after": 0.1, "hangup_after": 0.3}
    bank = await bank_on_pg(["b1", "b2"], 2, {"default": call})
    await asyncio.gather(*(serve(b) for b in bank.boxes))
    camp = write_campaign(tmp_path, nums, message_s=2.0)
    rc, out, err = await cli("--config", str(bank.box("b1").config), "campaign", "run", "--detach", str(camp),
                             timeout=120)
    assert rc == 0, out + err
    await wait_until(lambda: {c["box"] for c in bank.rows("SELECT box FROM calls WHERE started_at IS NOT NULL")}
                     == {"b1", "b2"}, 60, "both boxes dialing", every=0.05)
    rc, out, err = await cli("--config", str(bank.box("b2").config), "campaign", "pause", "multi")
    assert rc == 0, out + err
    await wait_until(lambda: all("campaign multi: paused" in b.log.read_text(errors="replace")   # type: ignore[union-attr]
                                 for b in bank.boxes), 60, "every box paused", every=0.05)
    # the calls in progress end; none starts meanwhile (an armed one is let go, its row deleted)
    await wait_until(lambda: not bank.rows("SELECT id FROM calls WHERE outcome IS NULL"), 60, "calls ended",
                     every=0.05)
    assert bank.rows("SELECT status FROM contacts WHERE status = 'pending'")     # work left for the resume
    rc, out, err = await cli("--config", str(bank.box("b1").config), "campaign", "resume", "multi")
    assert rc == 0, out + err
    await wait_until(lambda: bank.rows("SELECT status FROM campaigns")[0]["status"] == "done", 120, "done",
                     every=0.1)
    assert Counter(r["status"] for r in bank.rows("SELECT status FROM contacts")) == {"answered": len(nums)}
    assert outgoing(bank) == dict.fromkeys(nums, 1)
