"""Suppression, consent (append-only), refusals, and attempts counted across campaigns."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from modem_dialer.store import Campaigns, Compliance, Journal, open_db, to_ts

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=timezone.utc)


def refusal_without_call(conn, number: str, source: str, at: datetime) -> None:
    """A refusal row with no call (an old inbound or manual entry): no command writes one
    today, but the rules and last_refusal must count such rows as the schema allows them."""
    with conn:
        conn.execute("INSERT INTO refusals (number, at, source) VALUES (?, ?, ?)", (number, to_ts(at), source))


@pytest.fixture
def conn(db_target):
    c = open_db(db_target)
    yield c
    c.close()


def test_suppression_list(conn):
    s = Compliance(conn, clock=lambda: T0)
    assert s.suppress("+33612345678", "opt_out_key", "call:1")
    assert not s.suppress("+33612345678", "manual", "cli")  # first record kept
    assert [e["reason"] for e in s.export_suppression() if e["number"] == "+33612345678"] == ["opt_out_key"]
    assert s.is_suppressed("+33612345678") and not s.is_suppressed("+33612345679")
    assert s.import_suppression((f"+336000000{i:02d}" for i in range(50)), reason="dnc", source="list.csv",
                                batch_size=7) == 50
    assert s.import_suppression(["+33600000001", "+33612345678", "+33611111111"], reason="dnc", source="x") == 1
    exported = list(s.export_suppression(chunk=10))
    assert len(exported) == 52 and exported == sorted(exported, key=lambda e: e["number"])
    assert s.unsuppress("+33612345678") and not s.unsuppress("+33612345678")
    assert not s.is_suppressed("+33612345678")


def test_consent_find_revoke_and_immutability(conn):
    s = Compliance(conn, clock=lambda: T0)
    old = s.add_consent("+33612345678", "automated_calls", "form", T0 - timedelta(days=30), "sha256:aa",
                        text_shown="I agree to automated calls", tz="Europe/Paris")
    new = s.add_consent("+33612345678", "automated_calls", "form", T0 - timedelta(days=1), "sha256:bb")
    assert s.find_consent("+33612345678", "automated_calls")["id"] == new
    assert s.find_consent("+33612345678", "automated_calls", at=T0 - timedelta(days=10))["id"] == old
    assert s.find_consent("+33612345678", "political") is None
    with pytest.raises(sqlite3.IntegrityError, match="immutable"), conn:
        conn.execute("UPDATE consent SET text_shown = 'edited' WHERE id = ?", (old,))
    assert s.revoke_consent("+33612345678", via="key", at=T0) == 2
    assert s.find_consent("+33612345678", "automated_calls") is None
    # still in force before the revocation: the proof of past calls remains
    assert s.find_consent("+33612345678", "automated_calls", at=T0 - timedelta(hours=1))["id"] == new
    with pytest.raises(sqlite3.IntegrityError, match="already revoked"), conn:
        conn.execute("UPDATE consent SET revoked_at = 'later' WHERE id = ?", (old,))


def test_attempt_times_count_every_attempt_across_campaigns(conn):
    now = [T0 - timedelta(days=40)]
    j = Journal(conn, clock=lambda: now[0])
    camps = Campaigns(conn)
    a, b = camps.create_campaign("a"), camps.create_campaign("b")
    j.start_call("+33612345678", "m0", campaign_id=a)  # 40 days ago: outside the window
    for days, camp in ((20, a), (10, b), (1, None)):
        now[0] = T0 - timedelta(days=days)
        cid = j.start_call("+33612345678", "m1", campaign_id=camp)
        j.finish_call(cid, "no_answer")
    j.start_call("+33699999999", "m0")
    s = Compliance(conn)
    assert len(s.attempt_times("+33612345678", T0 - timedelta(days=30))) == 3
    assert len(s.attempt_times("+33612345678", T0 - timedelta(days=50))) == 4
    assert s.attempt_times("+33600000000", T0 - timedelta(days=50)) == []


def test_last_refusal(conn):
    s = Compliance(conn)
    assert s.last_refusal("+33612345678") is None
    refusal_without_call(conn, "+33612345678", "inbound", T0 - timedelta(days=70))
    j = Journal(conn, clock=lambda: T0 - timedelta(days=3))
    call = j.start_call("+33612345678", "m0")
    j.refusal(call, "key")
    refusal_without_call(conn, "+33612345678", "manual", T0 - timedelta(days=10))
    assert s.last_refusal("+33612345678") == T0 - timedelta(days=3)


def test_dial_facts_answer_what_the_four_reads_answer_in_one(conn):
    """Compliance.dial_facts (one statement: the campaign's read before a dial) agrees with
    is_suppressed, last_refusal and attempt_times, on both backends."""
    s, j = Compliance(conn, clock=lambda: T0), Journal(conn, clock=lambda: T0)
    n, other = "+33612345678", "+33698765432"
    f = s.dial_facts(n, since=T0 - timedelta(days=1))
    assert (f.suppressed, f.last_refusal, f.attempts, f.open_call) == (False, None, (), False)
    times = [T0 - timedelta(hours=30), T0 - timedelta(hours=5), T0 - timedelta(hours=1)]
    ids = []
    for t in times:
        cid = Journal(conn, clock=lambda t=t: t).start_call(n, "m1")
        ids.append(cid)
        Journal(conn, clock=lambda t=t: t).finish_call(cid, "no_answer")
    busy = Journal(conn, clock=lambda: T0 - timedelta(minutes=30)).start_call(n, "m1")
    j.finish_call(busy, "line_busy")                # a dial refused by an incoming call: no attempt
    j.start_call(other, "m1")                        # another number's open call
    refusal_without_call(conn, n, "key", T0 - timedelta(days=3))
    refusal_without_call(conn, n, "key", T0 - timedelta(days=2))
    f = s.dial_facts(n, since=T0 - timedelta(days=1))
    assert f.attempts == tuple(times[1:]) == tuple(s.attempt_times(n, T0 - timedelta(days=1)))
    assert f.last_refusal == s.last_refusal(n) == T0 - timedelta(days=2)
    assert not f.suppressed and not f.open_call
    assert s.dial_facts(n, since=None).attempts == ()          # no cap: the attempts are not read
    own = j.start_call(n, "m2")
    assert s.dial_facts(n, since=None).open_call
    assert not s.dial_facts(n, since=None, except_call=own).open_call
    s.suppress(n, "opt_out_key", "call:1")
    f = s.dial_facts(n, since=T0 - timedelta(hours=2), except_call=own)
    assert f.suppressed and f.attempts == (times[2], T0) and not f.open_call and f.contact_status is None
    # a campaign contact's status now (another box may have claimed it since it was read as due)
    camp = Campaigns(conn, clock=lambda: T0)
    cid = camp.create_campaign("c")
    camp.import_contacts(cid, [(1, n, {})])
    contact = camp.next_due(cid, T0 + timedelta(days=1))[0]
    assert s.dial_facts(n, since=None, contact_id=contact.id).contact_status == "pending"
    assert s.dial_facts(n, since=T0, contact_id=contact.id).contact_status == "pending"
    assert s.dial_facts(n, since=None, contact_id=contact.id + 1000).contact_status is None
    # several numbers' questions in one statement (a box's lines starting at once): the same answers
    asks = [(n, T0 - timedelta(hours=2), own, contact.id), (other, None, None, None), (n, None, None, None),
            ("+33600000000", T0 - timedelta(days=9), None, contact.id + 1000), (n, T0 - timedelta(days=1), None, None)]
    assert s.dial_facts_many(asks) == [s.dial_facts(a[0], since=a[1], except_call=a[2], contact_id=a[3])
                                       for a in asks]


async def test_urgent_rules_reads_asked_together_are_one_statement(pg_schema):
    """PostgreSQL: the rules' reads a box's lines ask at once (CallJournal.dial_facts, urgent)
    are read together in the reader thread (Compliance.dial_facts_many), with the suppression
    asked as a call ends (suppressed_now): each gets its own number's answer, in fewer round
    trips than asks; a shape read again and again is prepared on the server."""
    import asyncio

    from modem_dialer.store.call_journal import CallJournal

    conn = open_db(pg_schema)
    j = CallJournal(conn)
    try:
        s = Compliance(conn, clock=lambda: T0)
        numbers = [f"+336123456{i:02d}" for i in range(12)]
        s.suppress(numbers[3], "opt_out_key", "call:1")
        Journal(conn, clock=lambda: T0).start_call(numbers[5], "m1")      # open
        since = T0 - timedelta(days=1)
        await j.dial_facts(numbers[0], since=since, urgent=True)          # the reader's connection opened
        assert j._reader_conn is not None
        before = j._reader_conn.round_trips
        got = await asyncio.gather(*(j.dial_facts(n, since=since, urgent=True) for n in numbers),
                                   *(j.suppressed_now(n) for n in numbers[2:5]))
        assert got[:len(numbers)] == [s.dial_facts(n, since=since) for n in numbers]
        assert got[len(numbers):] == [False, True, False]
        assert [f.suppressed for f in got[:len(numbers)]].index(True) == 3
        assert [f.open_call for f in got[:len(numbers)]].index(True) == 5
        assert j._reader_conn.round_trips - before < len(numbers)
        for _ in range(6):          # one shape, again and again (psycopg prepares from the 5th)
            assert await j.suppressed_now(numbers[3])
        prepared = await asyncio.get_running_loop().run_in_executor(j._reader, j._reader_conn.fetchall,
                                                                    "SELECT statement FROM pg_prepared_statements")
        assert any("FROM suppression" in p for (p,) in prepared), prepared
    finally:
        j.close()
        conn.close()
