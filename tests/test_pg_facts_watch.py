"""PostgreSQL: a box hears the changes to a number's dial records (schema step 7's notices,
store/pg.py FactsWatch), so that an armed call's dial needs no second read of the records
when nothing changed since its arming read them (docs/scale-out.md "Armed next call"), and
does read them again when something did: a suppression from another process lets the armed
contact go undialed, as on SQLite (test_campaign_armed.py)."""

from __future__ import annotations

import asyncio

import yaml
from helpers import contacts, patiently, run_cli, setup, start_cli, wait_until

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import Campaigns, Compliance, Journal, call_journal, open_db, utc_now
from modem_dialer.store.call_journal import CallJournal
from modem_dialer.store.pg import FactsWatch, PgConnection

A, B, C, D, E = (f"+3361234800{i}" for i in range(1, 6))


async def test_the_watch_hears_suppressions_refusals_and_calls_outside_campaigns(pg_schema):
    watch = FactsWatch(pg_schema)
    assert watch.mark() is None             # not listening yet: nothing is vouched for
    assert not watch.unchanged(A, watch.mark())
    watch.start()
    conn = open_db(pg_schema)
    try:
        await asyncio.to_thread(watch.ready.wait, 30)
        mark = watch.mark()
        assert mark is not None and all(watch.unchanged(n, mark) for n in (A, B, C, D, E))
        Compliance(conn).suppress(A, "dnc", "api")
        j = Journal(conn)
        call_b = j.start_call(B, "modem0")              # an alert's or a manual call: no contact
        j.refusal(call_b)                               # B refused: heard (with its call)
        cid = Campaigns(conn).create_campaign("w")
        Campaigns(conn).import_contacts(cid, [(None, C, {})])
        contact = Campaigns(conn).next_due(cid, utc_now(), limit=1)[0]
        j.start_call(C, "modem0", campaign_id=cid, contact_id=contact.id)    # a claim's row: no notice
        Compliance(conn).suppress(D, "dnc", "api")      # committed after C's row: heard after it
        await wait_until(lambda: not watch.unchanged(D, mark), 30)
        assert not watch.unchanged(A, mark) and not watch.unchanged(B, mark)
        assert watch.unchanged(C, mark) and watch.unchanged(E, mark)
        # a mark taken after a change vouches for the records read after it
        later = watch.mark()
        assert watch.unchanged(A, later) and watch.unchanged(D, later)
        before = PgConnection.all_round_trips
        assert watch.unchanged(E, later)
        assert PgConnection.all_round_trips == before        # asked with no round trip
    finally:
        watch.stop()
        conn.close()
    assert watch.mark() is None and not watch.unchanged(E, mark)


async def test_call_journal_vouches_only_on_postgresql(pg_schema, tmp_path, monkeypatch):
    lite = CallJournal(open_db(tmp_path / "j.db"))
    lite.prepare_reads()
    assert lite.facts_mark() is None and not lite.facts_unchanged(A, lite.facts_mark())
    lite.close()
    conn = open_db(pg_schema)
    j = CallJournal(conn)
    try:
        j.prepare_reads()
        await wait_until(lambda: j.facts_mark() is not None, 30)
        mark = j.facts_mark()
        assert not j.facts_unchanged(A, mark)       # the server has not answered its writer yet
        await asyncio.wrap_future(j.submit(lambda c: None))      # a group committed: it has
        # a box whose writer has not committed lately (a connection cut silently) vouches for nothing
        monkeypatch.setattr(call_journal, "FACTS_FRESH_S", 0.0)
        assert not j.facts_unchanged(A, mark)
        # (the rest not bound by the time this test takes on a loaded machine)
        monkeypatch.setattr(call_journal, "FACTS_FRESH_S", 3600.0)
        assert j.facts_unchanged(A, mark) and j.facts_unchanged(B, mark)
        Compliance(conn).suppress(A, "dnc", "api")
        await wait_until(lambda: not j.facts_unchanged(A, mark), 30)
        assert j.facts_unchanged(B, mark)
    finally:
        await j.aclose()
        conn.close()
    assert j.facts_mark() is None


async def test_a_suppression_between_arming_and_dial_on_postgresql_lets_the_contact_go_undialed(
        make_bank, tmp_path, pg_schema):
    """One line, B's call long enough to act while C is armed (its arming comes well after the
    campaign started: the watch is listening, so without a notice heard the dial would not
    read C's records again)."""
    short = Callee("answer", answer_after=0.1, hangup_after=0.2)
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1),
                                               numbers={A: short, D: short}), n=1)
    cfg, camp = setup(tmp_path, bank, [A, B, C, D], message_s=1.5)
    data = yaml.safe_load(cfg.read_text())
    data["database"] = pg_schema
    cfg.write_text(yaml.safe_dump(data))
    conn = open_db(pg_schema)
    try:
        proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))

        def c_armed_during_b() -> bool:
            rows = conn.execute("SELECT number, answered_at, started_at, outcome FROM calls").fetchall()
            return (any(r["number"] == B and r["answered_at"] and r["outcome"] is None for r in rows)
                    and any(r["number"] == C and r["started_at"] is None and r["outcome"] is None for r in rows))
        await wait_until(c_armed_during_b, 60)
        rc, _out, err = await run_cli("--config", str(cfg), "suppress", "add", C, "--reason", "dnc")
        assert rc == 0, err
        out, err_b = await patiently(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode() + err_b.decode()
        assert C not in [c.number for m in bank.modems for c in m.calls]
        assert conn.execute("SELECT COUNT(*) FROM calls WHERE number = ?", (C,)).fetchone()[0] == 0
        c = contacts(conn)
        assert (c[C]["status"], c[C]["attempts"], c[C]["last_outcome"]) == ("suppressed", 0, "rule:suppressed")
        assert f"{C}: deny suppressed at the dial" in out.decode()
        assert c[A]["status"] == c[B]["status"] == c[D]["status"] == "answered"
    finally:
        conn.close()
