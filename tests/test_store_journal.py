"""The call journal on a real file, read back through a second connection (another process's view)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import query_plan

from modem_dialer.store import Compliance, Journal, from_ts, open_db


class Clock:
    """A settable wall clock so that stored times can be asserted exactly."""

    def __init__(self) -> None:
        self.t = datetime(2025, 3, 1, 9, 30, 0, 123000, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def db(db_target):
    writer, reader = open_db(db_target), open_db(db_target)
    yield writer, reader
    writer.close()
    reader.close()


def test_call_row_is_committed_before_atd(db):
    writer, reader = db
    j = Journal(writer)
    call_id = j.start_call("+33612345678", "modem0", "356938035643809", "8933150319000000000")
    # Nothing else happened yet (ATD not sent): another connection must already see the row.
    row = reader.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
    assert row is not None
    assert (row["number"], row["modem"], row["imei"]) == ("+33612345678", "modem0", "356938035643809")
    assert row["started_at"] is None and row["outcome"] is None
    assert not writer.in_transaction


def test_full_call_is_journaled_in_order(db):
    writer, reader = db
    clock = Clock()
    j = Journal(writer, clock=clock)
    call_id = j.start_call("+33612345678", "modem0", campaign_id=None)
    clock.advance(0.5)
    j.mark_dialed(call_id)
    clock.advance(12)
    j.mark_answered(call_id)
    j.event(call_id, "prompt", name="intro", ms=4200)
    clock.advance(4.2)
    j.key(call_id, "1", "inband")
    clock.advance(0.3)
    j.key(call_id, "#", "urc")
    j.event(call_id, "node", node="thanks")
    clock.advance(2)
    assert j.finish_call(call_id, "answered", cause=16, cause_text="normal clearing", hangup_by="callee")

    kinds = [(r["kind"], r["data"]) for r in reader.execute(
        "SELECT kind, data FROM call_events WHERE call_id = ? ORDER BY id", (call_id,))]
    assert [k for k, _ in kinds] == ["state", "state", "state", "prompt", "node", "state"]
    assert '"state":"dialing"' in kinds[1][1] and '"outcome":"answered"' in kinds[-1][1]

    call = Journal(reader).get_call(call_id)
    assert call["created_at"] == "2025-03-01T09:30:00.123Z"
    assert call["started_at"] == "2025-03-01T09:30:00.623Z"
    assert call["answered_at"] == "2025-03-01T09:30:12.623Z"
    assert call["ended_at"] == "2025-03-01T09:30:19.123Z"
    assert call["duration_s"] == pytest.approx(6.5)
    assert (call["outcome"], call["cause"], call["hangup_by"]) == ("answered", 16, "callee")
    assert call["keys"] == [
        {"key": "1", "source": "inband", "at": "2025-03-01T09:30:16.823Z"},
        {"key": "#", "source": "urc", "at": "2025-03-01T09:30:17.123Z"},
    ]
    assert Journal(reader).events_of(call_id)[3]["data"] == {"name": "intro", "ms": 4200}


def test_keys_are_read_with_one_indexed_query(db):
    writer, _ = db
    plan = query_plan(writer, "SELECT key, source, at FROM keys WHERE call_id = 1 ORDER BY id")
    assert any("keys_call" in p for p in plan), plan


def test_finish_twice_and_bad_values(db):
    writer, _ = db
    j = Journal(writer)
    call_id = j.start_call("+33612345678", "modem0")
    assert j.finish_call(call_id, "busy", cause=17)
    assert not j.finish_call(call_id, "answered")
    assert j.get_call(call_id)["outcome"] == "busy"
    assert j.get_call(call_id)["duration_s"] == 0.0
    with pytest.raises(ValueError):
        j.finish_call(call_id, "exploded")
    with pytest.raises(ValueError):
        j.key(call_id, "x", "inband")
    with pytest.raises(KeyError):
        j.finish_call(9999, "busy")
    with pytest.raises(KeyError):
        j.mark_dialed(9999)
    # a call the caller timed is closed in one statement: the same answers
    timed = j.start_call("+33612345679", "modem0")
    assert j.finish_call(timed, "answered", duration_s=12.5)
    assert not j.finish_call(timed, "busy", duration_s=1.0)
    assert j.get_call(timed)["outcome"] == "answered" and j.get_call(timed)["duration_s"] == 12.5
    with pytest.raises(KeyError):
        j.finish_call(9999, "answered", duration_s=1.0)


def test_recover_interrupted(db_target):
    path = db_target
    first = open_db(path)
    j = Journal(first)
    done = j.start_call("+33612345678", "m0")
    j.finish_call(done, "no_answer")
    ringing = j.start_call("+33612345679", "m1")
    j.mark_dialed(ringing)
    talking = j.start_call("+33612345670", "m2")
    j.mark_answered(talking)
    first.close()  # the process "died" with two calls open

    j2 = Journal(open_db(path))
    assert j2.recover_interrupted() == [ringing, talking]
    assert j2.get_call(ringing)["outcome"] == "interrupted"
    assert j2.get_call(talking)["ended_at"] is not None
    assert j2.get_call(talking)["duration_s"] >= 0
    assert j2.get_call(done)["outcome"] == "no_answer"
    assert j2.events_of(talking)[-1]["data"] == {"state": "ended", "outcome": "interrupted"}
    assert j2.recover_interrupted() == []


def test_an_armed_row_not_dialed_is_taken_back_or_recovered_as_maybe_dialed(db_target):
    """A campaign line's next call is written ahead of its ATD (``armed``): its own process may
    take it back (never dialed); after a kill it is closed saying it may not have been dialed."""
    conn = open_db(db_target)
    j = Journal(conn)
    current = j.start_call("+33612345678", "m0")
    j.mark_dialed(current)
    armed = j.start_call("+33612345679", "m0", armed=True)
    assert [e["kind"] for e in j.events_of(armed)] == ["state", "armed"]
    # the number's own armed row is not "a call open elsewhere"; any other open row is
    def open_call(number: str, except_call: int | None = None) -> bool:
        return Compliance(conn).dial_facts(number, since=None, except_call=except_call).open_call

    assert open_call("+33612345679") and not open_call("+33612345679", except_call=armed)
    assert open_call("+33612345678", except_call=armed)
    # taken back: the row and its events are gone; a dialed or finished row is never taken back
    assert j.drop_undialed_call(armed) and not open_call("+33612345679")
    with pytest.raises(KeyError):
        j.get_call(armed)
    assert j.events_of(armed) == []
    assert not j.drop_undialed_call(current) and j.get_call(current)["outcome"] is None
    # killed with an armed row open: closed as interrupted, saying it may not have been dialed
    armed = j.start_call("+33612345679", "m0", armed=True)
    conn.close()
    j2 = Journal(open_db(db_target))
    assert j2.recover_interrupted() == [current, armed]
    assert [(j2.get_call(x)["outcome"], j2.get_call(x)["cause_text"]) for x in (current, armed)] == [
        ("interrupted", "process stopped during the call"), ("interrupted", "process stopped before or as it dialed")]


def test_calls_query_and_refusal(db):
    writer, reader = db
    clock = Clock()
    j = Journal(writer, clock=clock)
    a = j.start_call("+33612345678", "m0")
    clock.advance(60)
    b = j.start_call("+33612345679", "m0")
    clock.advance(60)
    c = j.start_call("+33612345678", "m1")
    j.finish_call(a, "busy")
    j.answer(c, "satisfaction", 4)
    j.refusal(c, "key")

    r = Journal(reader)
    assert [x["id"] for x in r.calls(number="+33612345678")] == [c, a]
    assert [x["id"] for x in r.calls(open_only=True, newest_first=False)] == [b, c]
    assert [x["id"] for x in r.calls(since=clock.t - timedelta(seconds=90))] == [c, b]
    assert [x["id"] for x in r.calls(outcome="busy")] == [a]
    assert r.answers_of(c)[0]["value"] == "4"
    row = reader.execute("SELECT number, at FROM refusals").fetchone()
    assert row["number"] == "+33612345678" and from_ts(row["at"]) == clock.t


def test_bind_line_renames_the_line_of_a_call_written_ahead_until_its_dial(db):
    """A service campaign's armed call is bound to the line the bank lends it at the dial
    (Journal.bind_line, with the dial mark); once dialed the row keeps its line."""
    writer, _ = db
    j = Journal(writer)
    cid = j.start_call("+33612345678", "gsm0", "imei0", "iccid0", armed=True)
    assert j.bind_line(cid, "gsm3", "imei3", None)
    row = j.get_call(cid)
    assert (row["modem"], row["imei"], row["iccid"]) == ("gsm3", "imei3", None)
    j.mark_dialed(cid)
    assert not j.bind_line(cid, "gsm1", "imei1", "iccid1")
    assert j.get_call(cid)["modem"] == "gsm3"


def test_outbound_usage_of_several_sims_in_one_statement(db):
    """Journal.outbound_usage_many (a campaign seeding every line's counters at once) answers
    what outbound_usage answers for each, by ICCID (every box) or by modem name (this box)."""
    from modem_dialer.store.boxes import set_this_box, this_box

    db, _ = db
    t0 = Clock()()
    before = this_box()
    try:
        for box, modem, iccid, minutes in [("b1", "gsm0", "8933", 5), ("b2", "gsm0", "8933", 50), ("b1", "gsm1", None, 70),
                                           ("b2", "gsm1", None, 10), ("b1", "gsm1", None, 20), ("b1", "gsm2", None, 30)]:
            set_this_box(box)
            t = t0 + timedelta(minutes=minutes)
            j = Journal(db, clock=lambda t=t: t)
            call = j.start_call("+33612345678", modem, iccid=iccid)
            j.mark_answered(call, t)
            j.finish_call(call, "answered", duration_s=minutes, ended_at=t + timedelta(seconds=minutes))
        set_this_box("b1")
        day, hour = t0, t0 + timedelta(minutes=15)
        asks = [(day, hour, "8933", "gsm0"), (day, hour, None, "gsm1"), (day, hour, None, "gsm9"),
                (day, t0 + timedelta(minutes=25), None, "gsm2")]
        got = Journal(db).outbound_usage_many(asks)
        assert got == [Journal(db).outbound_usage(a[0], a[1], iccid=a[2], modem=a[3]) for a in asks]
        assert [(u.calls, u.seconds, len(u.hour)) for u in got] == [(2, 55, 1), (2, 90, 2), (0, 0, 0), (1, 30, 1)]
    finally:
        set_this_box(before)


def test_store_timestamps_text():
    """to_ts keeps each second's text (a cache shared by the loop and the writer thread):
    the result is still the whole isoformat text to the millisecond, truncated, in UTC."""
    import random

    from modem_dialer.store.timestamps import to_ts

    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(7)
    for _ in range(2000):   # the same second twice, the next second, far away: each its own text
        w = base + timedelta(microseconds=rng.randrange(0, 10**13))
        for t in (w, w + timedelta(microseconds=rng.randrange(0, 1000)), w + timedelta(seconds=1)):
            assert to_ts(t) == t.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
            assert from_ts(to_ts(t)) == t.replace(microsecond=t.microsecond // 1000 * 1000)
    assert to_ts(datetime(2026, 3, 1, 10, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))) == \
        "2026-03-01T08:00:00.999Z"
    assert to_ts(datetime(5, 1, 1, tzinfo=timezone.utc)) == "0005-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        to_ts(datetime(2026, 1, 1))


def test_a_calls_steps_are_one_round_trip_each_on_postgresql(pg_schema):
    """PostgreSQL: the dial mark, the answer mark and a timed call's close each write the call's
    row and its state event in one statement (the journal writer runs them in its group
    transaction: one round trip each, not two); what they write is the same as on SQLite
    (test_full_call_is_journaled_in_order, on both backends)."""
    conn = open_db(pg_schema)
    try:
        j = Journal(conn)
        call_id = j.start_call("+33612345678", "modem0")
        with conn:                                  # as in the writer's group
            conn.execute("SELECT 1")
            before = conn.round_trips
            j.mark_dialed(call_id)
            j.mark_answered(call_id)
            assert j.finish_call(call_id, "answered", duration_s=2.0)
            assert conn.round_trips - before == 3
            with pytest.raises(KeyError):
                j.mark_answered(call_id + 1)
        states = [e["data"].get("state") for e in j.events_of(call_id)]
        assert states == ["created", "dialing", "answered", "ended"]
        assert j.get_call(call_id)["started_at"] is not None
    finally:
        conn.close()
