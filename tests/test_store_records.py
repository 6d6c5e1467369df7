"""Alerts and SMS, modem bank state, retention purge and erasure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from modem_dialer.store import Campaigns, Compliance, Journal, open_db
from modem_dialer.store.alerts import Alerts
from modem_dialer.store.modem_states import modem_states, set_modem_state
from modem_dialer.store.retention import erase_number, purge_before

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def conn(db_target):
    c = open_db(db_target)
    yield c
    c.close()


def test_alert_dedup_ack_resolve(conn):
    a = Alerts(conn, clock=lambda: T0)
    first, created = a.raise_alert("disk-full:web1", "oncall", "Disk full on web1")
    assert created
    again, created = a.raise_alert("disk-full:web1", "oncall", "Disk full on web1 (repeat)")
    assert (again, created) == (first, False)
    a.set_state(first, {"step": 2, "called": ["+33612345678"]})
    assert a.get_alert(first)["state"] == {"step": 2, "called": ["+33612345678"]}
    assert a.acknowledge(first, "+33612345678") and not a.acknowledge(first, "someone else")
    assert a.get_alert(first)["acknowledged_by"] == "+33612345678"
    assert [x["id"] for x in a.live_alerts()] == [first]
    assert a.resolve(first) and not a.resolve(first)
    assert a.live_alerts() == []
    new, created = a.raise_alert("disk-full:web1", "oncall", "again")
    assert created and new != first


def test_sms_lifecycle(conn):
    a = Alerts(conn, clock=lambda: T0)
    old = a.add_sms("+33612345678", "first")
    a.sms_sent(old, "m0", 7)
    a.sms_delivered("m0", 7)
    new = a.add_sms("+33612345678", "second")
    a.sms_sent(new, "m0", 7)  # the reference wrapped around
    assert a.sms_delivered("m0", 7) == new
    assert a.sms_delivered("m1", 7) is None
    assert a.get_sms(new)["status"] == "delivered" and a.get_sms(new)["delivered_at"] is not None
    bad = a.add_sms("+33612345678", "third")
    a.sms_failed(bad, "+CMS ERROR: 500", modem="m1")
    assert (a.get_sms(bad)["status"], a.get_sms(bad)["modem"]) == ("failed", "m1")
    assert not conn.in_transaction


def test_modem_state_upsert_keeps_identity(conn):
    set_modem_state(conn, "m0", "ready", imei="356938035643809", iccid="8933150319000000000", at=T0)
    set_modem_state(conn, "m0", "lost", reason="port vanished", seen=False)
    (row,) = modem_states(conn)
    assert (row["status"], row["reason"], row["imei"]) == ("lost", "port vanished", "356938035643809")
    assert row["last_seen"] == "2025-03-03T10:00:00.000Z"


def test_purge_and_erasure(conn):
    now = [T0 - timedelta(days=400)]
    j = Journal(conn, clock=lambda: now[0])
    old = j.start_call("+33612345678", "m0")
    j.key(old, "1", "inband")
    j.finish_call(old, "answered")
    now[0] = T0
    recent = j.start_call("+33612345678", "m0")
    j.finish_call(recent, "busy")
    assert purge_before(conn, T0 - timedelta(days=365))["calls"] == 1
    assert [c["id"] for c in j.calls()] == [recent]
    assert conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 0  # cascaded

    camps = Campaigns(conn)
    cid = camps.create_campaign("c")
    camps.import_contacts(cid, [(2, "+33612345678", {"name": "Ann"}), (3, "+33612345679", {})])
    comp = Compliance(conn)
    comp.add_consent("+33612345678", "automated_calls", "form", T0)
    with conn:
        conn.execute("INSERT INTO campaign_log (campaign_id, number, at, kind, verdict, rule)"
                      " VALUES (?, '+33612345678', ?, 'rule', 'deny', 'fr.window')", (cid, "2024-01-01T00:00:00.000Z"))
        conn.execute("INSERT INTO campaign_log (campaign_id, number, at, kind, verdict, rule)"
                      " VALUES (?, '+33612345679', ?, 'rule', 'allow', '')", (cid, "2024-01-01T00:00:00.000Z"))
    counts = erase_number(conn, "+33612345678")
    assert counts["calls"] == 1 and counts["contacts"] == 1 and counts["consent"] == 1
    assert counts["campaign_log"] == 1
    assert purge_before(conn, T0)["campaign_log"] == 1         # the other number's old decision
    assert comp.is_suppressed("+33612345678")
    assert camps.counts(cid) == {"pending": 1}


def test_console_change_mark_moves_with_every_commit(db_target):
    """The console re-reads the bank only when the mark moved: every commit by another
    connection moves it, including one whose transaction began before the mark was read;
    no write, no move."""
    from modem_dialer.store.console import ConsoleQueries

    reader, writer = open_db(db_target), open_db(db_target)
    try:
        q = ConsoleQueries(reader)
        mark = q.change_mark()
        assert q.change_mark() == mark
        with writer:
            writer.execute("INSERT INTO modem_state (box, name, status) VALUES ('b', 'gsm0', 'ready')")
        assert q.change_mark() != mark
        writer.execute("BEGIN")       # written before the mark is read, committed after
        writer.execute("UPDATE modem_state SET status = 'failed' WHERE name = 'gsm0'")
        mark = q.change_mark()
        writer.execute("COMMIT")
        assert q.change_mark() != mark
    finally:
        reader.close()
        writer.close()
