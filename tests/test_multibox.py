"""Several boxes, one bank (issue 14, docs/scale-out.md): three real ``serve`` processes, each
with its own simulated bank in its own process, on one database. The campaign is submitted
to one box; the others join it. Checked against the database and against what the
simulated SIMs saw (``sim-ctl SOCK calls``), not against our own counters."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest
from boxes import Bank, bank_maker, in_two_calls_at_once, outgoing, serve, wait_until, write_campaign
from helpers import run_cli

FINAL = ("answered", "exhausted", "invalid", "suppressed", "no_consent", "opted_out", "refused", "cancelled")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> str | None:
    """The boxes' shared database, once per backend: None for a SQLite file in the test's
    directory (bank_maker's default), or a fresh schema on the test cluster (the scale-out
    deployment of docs/scale-out.md). Requested before ``bank_of``, so that the boxes are
    stopped before the schema is dropped."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_schema")


@pytest.fixture
async def bank_of(tmp_path):
    async for make in bank_maker(tmp_path):
        yield make


def numbers(n: int) -> list[str]:
    return [f"+3361{i:07d}" for i in range(n)]


def open_contacts(bank: Bank) -> int:
    return bank.rows("SELECT COUNT(*) AS n FROM contacts WHERE status IN ('pending', 'in_progress')")[0]["n"]


async def submit(bank: Bank, camp, box: str = "b1") -> None:
    # in this process (helpers.run_cli: click's runner on a thread), as a user's `campaign run
    # --detach` would hand the campaign to the box's serve; an interpreter more cost ~1 s of CPU
    rc, out, err = await run_cli("--config", str(bank.box(box).config), "campaign", "run", "--detach", str(camp),
                                 timeout=120)
    assert rc == 0, out + err


# 3,000 contacts (issue 14), on PostgreSQL: the scale-out deployment (docs/scale-out.md) and
# the test. A call there costs the boxes, their simulators and the server ~3.5 ms of CPU
# (~1.4 ms on SQLite): each call's steps are ~5 statements from the box's journal writer, sent
# together (about one round trip a call), each parsed and planned by the server
# (bench/multibox.py utilisation --trace shows the round trips by statement). On a 2-core
# machine shared with other jobs that makes ~10 s of CPU, so the count can be lowered for a
# quick run: MULTIBOX_PG_CONTACTS=600.
PG_CONTACTS = int(os.environ.get("MULTIBOX_PG_CONTACTS", "3000"))

# SQLite (several boxes on one file: a side case, one box is SQLite's deployment): the same
# claims and cooperation on fewer contacts; the count is carried by the PostgreSQL
# test above, and 3,000 here too cost ~4 s of CPU more for nothing more checked
# (MULTIBOX_CONTACTS=3000 for the full count)
CONTACTS = int(os.environ.get("MULTIBOX_CONTACTS", "300"))

# The campaign must keep moving: it fails when no contact has been finished for STALL_S (a
# hang, a lost claim), not when a busy machine makes it slow. ~20 s of CPU for 3,000 contacts
# took 2 min of wall time at load 20 (and 120 s was the whole test's limit): the limit of the
# whole test is now what CI's budget takes for a run that still progresses.
STALL_S = 60
WHOLE_S = 900


@pytest.mark.timeout(WHOLE_S + 60)
async def test_three_boxes_finish_a_3000_contact_campaign_on_postgresql(pg_schema, bank_of, tmp_path):
    await three_boxes_finish(bank_of, tmp_path, PG_CONTACTS, database=pg_schema)


@pytest.mark.timeout(WHOLE_S + 60)
async def test_three_boxes_finish_a_campaign_on_sqlite(bank_of, tmp_path):
    await three_boxes_finish(bank_of, tmp_path, CONTACTS)


async def three_boxes_finish(bank_of, tmp_path, contacts: int, **kw) -> None:
    # short calls: every callee is busy 10 ms after ATD (no audio to play: the test measures
    # the claims and the boxes' cooperation, not the audio path); no retry rule: final
    # a box lease of 30 s, not 5: no box dies here, and at load 20 a heartbeat that waited 2.8 s
    # for the database fenced a box, whose calls hung up were dialed again (311 calls for 300
    # contacts): the fence is right there, and test_box_fence's and the SIGKILL test's subject
    bank = await bank_of(["b1", "b2", "b3"], 16, {"default": {"outcome": "busy", "ring_after": 0.005,
                                                               "end_after": 0.01}}, lease="30s", **kw)
    await asyncio.gather(*(serve(b) for b in bank.boxes))
    nums = numbers(contacts)
    camp = write_campaign(tmp_path, nums, message_s=0.2)
    t0 = time.monotonic()
    await submit(bank, camp)
    left, moved = contacts, time.monotonic()
    while bank.rows("SELECT status FROM campaigns")[0]["status"] != "done":
        now, was = time.monotonic(), left
        left = open_contacts(bank)
        if left < was:
            moved = now
        assert now - moved < STALL_S, f"no contact finished for {STALL_S} s ({left} of {contacts} open)"
        assert now - t0 < WHOLE_S, f"{contacts - left} of {contacts} contacts in {WHOLE_S} s"
        await asyncio.sleep(0.5)
    took = time.monotonic() - t0
    statuses = Counter(r["status"] for r in bank.rows("SELECT status FROM contacts"))
    assert set(statuses) <= set(FINAL) and sum(statuses.values()) == contacts, statuses    # every contact final
    assert statuses == {"exhausted": contacts}, statuses
    calls = bank.rows("SELECT number, box, outcome FROM calls")
    assert len(calls) == contacts and {c["outcome"] for c in calls} == {"busy"}
    per_box = Counter(c["box"] for c in calls)
    assert set(per_box) == {"b1", "b2", "b3"}, per_box        # every box took part
    seen = outgoing(bank)
    assert sum(seen.values()) == contacts and set(seen) == set(nums)    # each number dialed once, by one box
    assert in_two_calls_at_once(bank) == []                             # so never in two calls at once
    # the whole bank, with each modem's box, from any box
    status, modems = await bank.box("b2").req("GET", "/v1/modems")
    assert status == 200 and Counter(m["box"] for m in modems) == {"b1": 16, "b2": 16, "b3": 16}
    assert {m["remote"] for m in modems if m["box"] != "b2"} == {True}
    print(f"{contacts} contacts on 3 boxes x 16 modems in {took:.1f} s; calls per box {dict(per_box)}")


async def test_sigkill_of_one_box_the_others_finish_its_contacts(database, bank_of, tmp_path):
    # calls of ~1 s, so the kill finds some in progress
    bank = await bank_of(["b1", "b2", "b3"], 4, {"default": {"outcome": "answer", "ring_after": 0.01,
                                                              "answer_after": 0.05, "hangup_after": 0.8}},
                         database=database)
    await asyncio.gather(*(serve(b) for b in bank.boxes))
    # 60 contacts (it was 120): b2 is killed in the second round of calls (~24 contacts in), and
    # the ~36 left keep b1 and b3 busy until b2's lease (5 s) has run out and its calls are retried
    nums = numbers(60)
    # the interrupted calls are dialed again 0.1 s after the take-over (the retry rule is what
    # is tested, not its delay)
    camp = write_campaign(tmp_path, nums, message_s=2.0, extra="retry:\n  interrupted: {after: 100ms, max: 2}\n")
    await submit(bank, camp)
    b2 = bank.box("b2")

    def b2_mid_campaign() -> bool:
        done = bank.rows("SELECT COUNT(*) AS n FROM calls WHERE box = 'b2' AND outcome IS NOT NULL")[0]["n"]
        live = bank.rows("SELECT COUNT(*) AS n FROM calls WHERE box = 'b2' AND outcome IS NULL")[0]["n"]
        # and a call written ahead of its ATD (a worker's armed next call), no dial on record yet
        armed = bank.rows("SELECT id FROM calls WHERE box = 'b2' AND outcome IS NULL AND started_at IS NULL"
                          " AND EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = calls.id AND e.kind = 'armed')")
        return done >= 4 and live >= 2 and bool(armed)
    await wait_until(b2_mid_campaign, 90, "b2 with calls in progress and a next call armed")
    assert b2.serve is not None
    b2.serve.kill()                                       # SIGKILL: no clean-up at all
    b2.serve.wait()
    in_flight = {r["id"] for r in bank.rows("SELECT id FROM calls WHERE box = 'b2' AND outcome IS NULL")}
    assert in_flight
    await wait_until(lambda: bank.rows("SELECT status FROM campaigns")[0]["status"] == "done", 120,
                     "the campaign done by b1 and b3", every=0.1)
    assert bank.rows("SELECT name, status FROM boxes WHERE name = 'b2'") == [{"name": "b2", "status": "lost"}]
    statuses = Counter(r["status"] for r in bank.rows("SELECT status FROM contacts"))
    assert statuses == {"answered": len(nums)}, statuses
    # b2's calls in flight were recorded as interrupted (by the box that took it over) ...
    interrupted = bank.rows("SELECT id, number, box, cause_text FROM calls WHERE outcome = 'interrupted'")
    assert {c["id"] for c in interrupted} == in_flight
    assert all(c["box"] == "b2" and c["cause_text"] == "box b2 lost (no heartbeat)" for c in interrupted)
    # ... and went through the retry rule: called again once, by another box
    again = {c["number"] for c in interrupted}
    calls = bank.rows("SELECT number, box, outcome FROM calls WHERE outcome != 'interrupted'")
    per_number = Counter(c["number"] for c in calls)
    assert set(per_number) == set(nums) and set(per_number.values()) == {1}
    assert all(c["box"] != "b2" for c in calls if c["number"] in again)
    # an armed row of b2 (written ahead of its ATD, no dial on record) was closed by the box
    # that took b2 over, and is not one of its contact's attempts
    assert bank.rows("SELECT id FROM calls WHERE box = 'b2' AND outcome = 'interrupted' AND started_at IS NULL"
                     " AND EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = calls.id AND e.kind = 'armed')")
    for c in bank.rows("SELECT c.number, c.attempts, (SELECT COUNT(*) FROM calls k WHERE k.contact_id = c.id"
                       " AND NOT (k.outcome = 'interrupted' AND k.started_at IS NULL AND EXISTS (SELECT 1"
                       " FROM call_events e WHERE e.call_id = k.id AND e.kind = 'armed'))) AS dialed FROM contacts c"):
        assert c["attempts"] == c["dialed"], c
    # what the SIMs saw: one call per number, two for an interrupted one (if its ATD went out)
    seen = outgoing(bank)
    assert set(seen) == set(nums)
    assert {n: k for n, k in seen.items() if k != 1} == {n: 2 for n in again if seen[n] != 1}
    assert all(seen[n] <= 2 for n in again)
    # and a number called again was not dialed while its interrupted call was still up
    assert in_two_calls_at_once(bank) == []
    log = "".join(bank.box(b).log.read_text() for b in ("b1", "b3"))   # type: ignore[union-attr]
    assert "box b2 lost (no heartbeat" in log


ALICE = "+33612345601"


async def test_two_boxes_racing_for_one_alert_call_once(database, bank_of):
    alerting = {"people": {"alice": ALICE}, "policies": {"default": {"steps": [{"to": "alice", "delay": 1.0}],
                                                                      "message_repeat": 1, "sms_fallback": False}}}
    bank = await bank_of(["b1", "b2"], 2, {"default": {"outcome": "answer", "answer_after": 0.1},
                                           "numbers": {ALICE: {"outcome": "answer", "answer_after": 0.1,
                                                               "keys": [[0.5, "1"]]}}},
                         extra={"alerting": alerting}, database=database)
    await asyncio.gather(*(serve(b) for b in bank.boxes))
    body = {"text": "disk full on db1", "dedup_key": "db1-disk"}
    (s1, r1), (s2, r2) = await asyncio.gather(*(b.req("POST", "/v1/alerts", body) for b in bank.boxes))
    assert {s1, s2} == {200, 202} and r1["id"] == r2["id"] and {r1["created"], r2["created"]} == {True, False}
    await wait_until(lambda: bank.rows("SELECT status FROM alerts")[0]["status"] == "acknowledged", 60,
                     "the alert acknowledged")
    await asyncio.sleep(2.0)          # room for a second call, were there one
    assert len(bank.rows("SELECT id FROM alerts")) == 1
    assert [c["number"] for c in bank.rows("SELECT number FROM calls")] == [ALICE]
    assert outgoing(bank) == {ALICE: 1}
