"""Two corners of the service's armed next call (docs/architecture.md "Armed next call",
docs/scale-out.md "How the boxes share the work"), on the service in this process, the
simulated bank over real ptys and a real SQLite journal:

- a box that fences itself (its lease not renewed: another process holds the database's
  write lock, as a stuck disk would) lets its armed contacts go, as a pause does: the armed
  row is deleted, the contact is pending again, no attempt is counted, nothing is dialed
  while fenced;
- a call armed for one line and dialed on another (an alert took the line it was armed for)
  names the line that dials it *before* its ATD: a kill -9 just after the ATD must leave the
  row on the SIM that dialed, or that SIM's daily count (per-SIM limits, seeded from the
  journal at the next start) is one short and the other SIM's one too many.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import test_service_campaign
import yaml
from helpers import Api, setup, write_config
from helpers import wait_until as wait_for

from modem_dialer.config import LoadedConfig, load_config
from modem_dialer.service.bank import Priority
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import Journal, open_db, utc_now

services = test_service_campaign.services      # the fixture: a service in this process

NUMS = [f"+336123470{i:02d}" for i in range(3)]


def configure(tmp_path: Path, bank, numbers: list[str], message_s: float, **over) -> tuple[LoadedConfig, Path]:
    _, camp = setup(tmp_path, bank, numbers, message_s=message_s)
    loaded = write_config(bank, tmp_path)
    doc = yaml.safe_load(loaded.path.read_text())
    doc.update(over)
    loaded.path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(str(loaded.path)), camp


def rows(db: Path, sql: str, *args) -> list[dict]:
    conn = open_db(db)
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def armed_rows(db: Path) -> list[dict]:
    """Campaign calls written ahead of their dial (an 'armed' event, no dial mark, no outcome)."""
    return rows(db, "SELECT c.id, c.number, c.modem, c.iccid, c.contact_id, c.created_at FROM calls c WHERE c.outcome IS NULL"
                    " AND c.started_at IS NULL AND EXISTS (SELECT 1 FROM call_events e"
                    " WHERE e.call_id = c.id AND e.kind = 'armed')")


async def test_a_fenced_box_lets_its_armed_contact_go(make_bank, tmp_path, services):
    # the first contact's callee listens to the whole (long) message: its call is up when the
    # box fences; the others hang up soon after answering, so the run ends quickly afterwards
    sc = Scenario(default=Callee("answer", answer_after=0.1, hangup_after=0.3),
                  numbers={NUMS[0]: Callee("answer", answer_after=0.1)})
    bank = await make_bank("quectel", sc, n=1)
    loaded, camp = configure(tmp_path, bank, NUMS, 30.0, box="fence2", box_lease="2s")
    db = loaded.database_path
    svc = await services(loaded)
    api = Api(svc)
    assert (await api.req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 202
    sim = bank.modems[0]
    await wait_for(lambda: armed_rows(db) and sim.calls and sim.calls[-1].state == "active", timeout=15)
    playing, armed = sim.calls[-1], armed_rows(db)[0]
    assert playing.number == NUMS[0] and armed["number"] == NUMS[1]
    # another process takes the write lock: no heartbeat goes through from now
    lock = sqlite3.connect(db, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        await wait_for(lambda: playing.state == "ended", timeout=15)
        assert playing.ended_by == "dialer" and svc.keeper.fenced is not None
        # fenced: the armed call is not dialed (nor anything else)
        assert [c.number for c in sim.calls] == [NUMS[0]]
    finally:
        lock.execute("ROLLBACK")        # the disk is back: the heartbeat lifts the fence
        lock.close()
    await api.wait("/v1/campaigns/test", lambda c: c["status"] == "done" and not c["running"], timeout=30)
    calls = rows(db, "SELECT id, number, outcome, created_at, started_at, cause_text FROM calls ORDER BY id")
    # the call cut by the fence says why
    assert calls[0]["number"] == NUMS[0] and calls[0]["cause_text"].startswith("box fence2 fenced"), calls
    # the armed row was taken back (never dialed: no attempt, nothing on record; SQLite may
    # give its id to the next row); its contact was dialed once after the fence was lifted,
    # with a row of its own
    again = [c for c in calls if c["number"] == NUMS[1]]
    assert len(again) == 1 and again[0]["created_at"] > armed["created_at"] and again[0]["started_at"] is not None
    got = rows(db, "SELECT status, attempts, last_call_id FROM contacts WHERE id = ?", armed["contact_id"])
    assert got == [{"status": "answered", "attempts": 1, "last_call_id": again[0]["id"]}]
    assert sorted(c.number for c in sim.calls) == sorted(NUMS)


async def test_an_armed_call_dialed_on_another_line_names_it_before_its_atd(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=2)
    loaded, camp = configure(tmp_path, bank, NUMS[:2], 1.0)
    db = loaded.database_path
    svc = await services(loaded)
    api = Api(svc)
    iccid = {name: s.line.identity.iccid for name, s in svc.bank.slots.items()}
    assert len(set(iccid.values())) == 2 and None not in iccid.values()
    gsm0, gsm1 = bank.modems
    # the durable state as a kill -9 at gsm1's ATD would leave it: the committed rows, copied
    # the instant the SIM receives the ATD (the simulator runs on this loop)
    at_atd = tmp_path / "at-atd.db"
    dial = gsm1._dial

    def dial_and_copy(number: str) -> list[str]:
        src, dst = sqlite3.connect(db), sqlite3.connect(at_atd)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return dial(number)
    gsm1._dial = dial_and_copy

    async def hold(name: str, got: asyncio.Event, release: asyncio.Event) -> None:
        # what an alert does: take the line (alerts first) and keep it
        async with svc.bank.lease(Priority.ALERT, accept=lambda s: s.name == name):
            got.set()
            await release.wait()
    held0, held1, release0, release1 = (asyncio.Event() for _ in range(4))
    tasks = [asyncio.ensure_future(hold("gsm1", held1, release1))]
    try:
        await held1.wait()
        # the campaign has gsm0 only: its first call there, its next call armed for gsm0
        assert (await api.req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 202
        await wait_for(lambda: armed_rows(db) and gsm0.calls and gsm0.calls[-1].state == "active", timeout=15)
        armed = armed_rows(db)[0]
        assert armed["modem"] == "gsm0" and armed["number"] == NUMS[1]
        # an alert waits for gsm0 (it gets it when that call ends, before the armed call) ...
        tasks.append(asyncio.ensure_future(hold("gsm0", held0, release0)))
        await wait_for(lambda: any(w[0] == Priority.ALERT and not w[4].done() for w in svc.bank._waiters), timeout=5)
        # ... and gsm1 is free: the armed call is dialed there
        release1.set()
        await wait_for(lambda: gsm1.calls and held0.is_set(), timeout=15)
    finally:
        release0.set()
        release1.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [c.number for c in gsm1.calls] == [NUMS[1]] and [c.number for c in gsm0.calls] == [NUMS[0]]
    await api.wait("/v1/campaigns/test", lambda c: c["status"] == "done" and not c["running"], timeout=30)
    row = rows(db, "SELECT id, modem, iccid FROM calls WHERE number = ?", NUMS[1])
    assert row == [{"id": armed["id"], "modem": "gsm1", "iccid": iccid["gsm1"]}]
    # killed at that ATD: the next start closes the row as interrupted and seeds each SIM's
    # day from the journal; the SIM that dialed counts that call, the other one does not
    conn = open_db(at_atd)
    try:
        j = Journal(conn)
        assert [r["id"] for r in j.calls(number=NUMS[1])] == [armed["id"]]
        j.recover_interrupted()
        since = utc_now() - timedelta(days=1)
        used = {name: j.outbound_usage(since, since, iccid=iccid[name]).calls for name in ("gsm0", "gsm1")}
        dialed_on = conn.execute("SELECT modem, iccid FROM calls WHERE id = ?", (armed["id"],)).fetchone()
    finally:
        conn.close()
    assert used == {"gsm0": 1, "gsm1": 1}, used
    assert (dialed_on["modem"], dialed_on["iccid"]) == ("gsm1", iccid["gsm1"])
