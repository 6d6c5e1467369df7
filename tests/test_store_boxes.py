"""Boxes, leases and take-over in the store (store/boxes.py), on a real SQLite file and on
the test PostgreSQL cluster. The processes themselves are tested in test_multibox.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_steps import contacts

from modem_dialer.config import load_config
from modem_dialer.errors import UserError
from modem_dialer.store import (
    Alerts,
    Campaigns,
    Journal,
    modem_states,
    open_db,
    other_boxes_modems,
    set_modem_state,
)
from modem_dialer.store.boxes import Boxes, Leases, claim_alert, set_this_box, this_box, unowned_alerts
from modem_dialer.store.lock import DialerLock, pg_dialer_lock_key
from modem_dialer.store.migrations import STEPS, migrate
from modem_dialer.store.pg import PgConnection, is_postgres
from modem_dialer.store.timestamps import to_ts

LEASE = timedelta(seconds=10)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def db(db_target):
    conn = open_db(db_target)
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _box_back():
    before = this_box()
    yield
    set_this_box(before)


def campaign(conn, numbers: list[str]) -> tuple[int, list[int]]:
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    store.import_contacts(cid, ((i, n, {}) for i, n in enumerate(numbers)))
    return cid, [c.id for c in contacts(store.conn, cid)]


def test_a_box_name_taken_on_another_host_is_refused(db):
    clock = Clock()
    Boxes(db, clock).register("b1", LEASE, host="pi-1", pid=10)
    with pytest.raises(UserError, match=r"'b1' is already up on pi-1 .*own 'box' name"):
        Boxes(db, clock).register("b1", LEASE, host="pi-2", pid=20)
    # on its own host the dialer lock says the old process is gone: it restarts at once
    Boxes(db, clock).register("b1", LEASE, host="pi-1", pid=11)
    clock.t += LEASE * 2       # once its lease ran out another host may take the name
    Boxes(db, clock).register("b1", LEASE, host="pi-2", pid=20)
    assert [(b["host"], b["pid"], b["status"]) for b in Boxes(db).list()] == [("pi-2", 20, "up")]


def test_claim_needs_the_box_lease_and_no_open_call_to_the_number(db):
    clock = Clock()
    cid, (a, b, c) = campaign(db, ["+33612345601", "+33612345602", "+33612345603"])
    leases = Leases(db, clock)
    with db:       # a box that never registered (library use) has no lease to check
        assert leases.claim(a, "+33612345601", "solo")
    Boxes(db, clock).register("b1", LEASE, host="h", pid=1)
    with db:
        assert not leases.claim(a, "+33612345601", "b1")          # taken
        assert leases.claim(b, "+33612345602", "b1")
    # a call open to the number (any box, any campaign) blocks the claim
    set_this_box("b2")
    Journal(db, clock).start_call("+33612345603", "gsm0")
    with db:
        assert not leases.claim(c, "+33612345603", "b1")
    assert Leases(db).held(cid) == {"solo": 1, "b1": 1}
    # past its lease (no heartbeat) the box claims nothing
    Journal(db, clock).recover_interrupted("b2")
    clock.t += LEASE + timedelta(seconds=1)
    with db:
        assert not leases.claim(c, "+33612345603", "b1")
    with db:
        assert Boxes(db, clock).heartbeat("b1", LEASE, pid=1)
    with db:
        assert leases.claim(c, "+33612345603", "b1")


def test_take_over_closes_calls_releases_contacts_and_alerts_once(db):
    clock = Clock()
    cid, (a, _) = campaign(db, ["+33612345601", "+33612345602"])
    for box in ("b1", "b2"):
        Boxes(db, clock).register(box, LEASE, host="h", pid=1)
    set_this_box("b2")
    with db:
        assert Leases(db, clock).claim(a, "+33612345601", "b2")
    call = Journal(db, clock).start_call("+33612345601", "gsm0", campaign_id=cid, contact_id=a)
    alert, _ = Alerts(db, clock).raise_alert("k", "default", "disk full")
    assert Boxes(db, clock).expired("b1") == []
    clock.t += LEASE + timedelta(seconds=1)
    with db:
        assert Boxes(db, clock).heartbeat("b1", LEASE, pid=1)
    assert Boxes(db, clock).expired("b1") == ["b2"]
    t = Boxes(db, clock).take_over("b2")
    assert t is not None and (t.box, t.calls, t.contacts, t.alerts) == ("b2", [call], 1, 1)
    assert Boxes(db, clock).take_over("b2") is None           # the second box to look does nothing
    row = Journal(db).get_call(call)
    assert (row["outcome"], row["cause_text"], row["box"]) == ("interrupted", "box b2 lost (no heartbeat)", "b2")
    assert [x.id for x in Leases(db).orphans(cid)] == [a]
    # settled once: the write is fenced on the lease (None: released)
    with db:
        assert not Leases(db, clock).settle(a, "b2", status="exhausted", next_attempt_at=None, last_outcome=None,
                                            last_call_id=None, attempts=1)
    assert Leases(db, clock).settle(a, None, status="exhausted", next_attempt_at=None, last_outcome="interrupted",
                                    last_call_id=call, attempts=1)
    assert not Leases(db, clock).settle(a, None, status="pending", next_attempt_at=None, last_outcome=None,
                                        last_call_id=None, attempts=1)
    assert Campaigns(db).get_contact(a).status == "exhausted"
    # the alert: one box adopts it
    assert unowned_alerts(db) == [alert]
    assert claim_alert(db, alert, "b1") and not claim_alert(db, alert, "b3")
    assert unowned_alerts(db) == []
    # the lost box may come back (its own restart): registered again, up
    Boxes(db, clock).register("b2", LEASE, host="h", pid=2)
    assert {b["name"]: b["status"] for b in Boxes(db).list()} == {"b1": "up", "b2": "up"}


def test_restart_closes_only_its_own_calls_and_releases_its_own_contacts(db):
    clock = Clock()
    cid, (a, b) = campaign(db, ["+33612345601", "+33612345602"])
    for box, contact, number in (("b1", a, "+33612345601"), ("b2", b, "+33612345602")):
        Boxes(db, clock).register(box, LEASE, host="h", pid=1)
        set_this_box(box)
        with db:
            assert Leases(db, clock).claim(contact, number, box)
        Journal(db, clock).start_call(number, "gsm0", campaign_id=cid, contact_id=contact)
    closed = Boxes(db, clock).register("b1", LEASE, host="h", pid=2)     # b1 restarted after a kill -9
    assert len(closed) == 1 and Journal(db).get_call(closed[0])["number"] == "+33612345601"
    assert [x.id for x in Leases(db).orphans(cid)] == [a]
    assert Leases(db).held(cid) == {"": 1, "b2": 1}    # b2's call and contact are b2's
    assert [r[0] for r in db.execute("SELECT box FROM calls WHERE outcome IS NULL")] == ["b2"]


def test_modem_state_is_per_box_and_old_rows_go_to_the_first_box(db_target):
    import sqlite3

    if is_postgres(db_target):
        conn: Any = PgConnection(db_target)
    else:
        conn = sqlite3.connect(db_target, isolation_level="IMMEDIATE")
        conn.row_factory = sqlite3.Row
    migrate(conn, STEPS[:5])             # a database from before boxes, with a modem row
    with conn:
        conn.execute("INSERT INTO modem_state (name, status, imei) VALUES ('gsm0', 'ready', '3520990000001')")
    conn.close()
    db = open_db(db_target)
    assert [(r["box"], r["name"]) for r in modem_states(db)] == [("", "gsm0")]
    Boxes(db).register("pi-1", LEASE, host="h", pid=1)
    set_this_box("pi-2")
    set_modem_state(db, "gsm0", "ready")           # the same modem name on another box
    rows = [(r["box"], r["name"], r["box_status"]) for r in modem_states(db)]
    assert rows == [("pi-1", "gsm0", "up"), ("pi-2", "gsm0", None)]
    assert [(r["box"], r["status"]) for r in other_boxes_modems(db, "pi-2")] == [("pi-1", "ready")]
    # an update without identity keeps the row's last one (the upsert's COALESCE)
    set_this_box("pi-1")
    set_modem_state(db, "gsm0", "failed", reason="no SIM")
    assert [(r["status"], r["imei"]) for r in modem_states(db, "pi-1")] == [("failed", "3520990000001")]
    db.close()


def test_dialer_lock_is_per_box_on_one_database(db_target, tmp_path):
    """Two boxes share a database (each its own lock); a second process of one box is refused."""
    target = db_target if is_postgres(db_target) else tmp_path / "l.db"
    with DialerLock(target, "b1"), DialerLock(target, "b2"):
        with pytest.raises(UserError, match="another dialing process of box 'b1'"):
            DialerLock(target, "b1").acquire()
    with DialerLock(target, "b1"):      # released with its holder
        pass


def test_dialer_lock_is_free_when_release_returns(db_target):
    """PostgreSQL: release() unlocks, then closes. A close alone leaves the lock to the
    server's backend until that process has exited, later on a loaded machine: the next run
    of the same box (test_pg_campaign re-running a finished campaign) was refused now and then
    (25 in 100 right after the close, at load 38)."""
    if not is_postgres(db_target):
        pytest.skip("SQLite: the flock goes with the file's close")
    key = pg_dialer_lock_key("b1") & (2**64 - 1)          # pg_locks shows it as two 32-bit halves
    watch = PgConnection(db_target)
    try:
        for _ in range(20):
            DialerLock(db_target, "b1").acquire().release()
            assert watch.execute(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ? AND objid = ?"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (key >> 32, key & 0xFFFFFFFF)).fetchone()[0] == 0
            watch.execute("COMMIT")
    finally:
        watch.close()


def test_box_in_the_config_is_checked(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("box: pi-1\nbox_lease: 20s\n")
    c = load_config(str(cfg)).config
    assert (c.box, c.box_lease) == ("pi-1", timedelta(seconds=20))
    cfg.write_text("box: 'room 2'\n")
    with pytest.raises(UserError, match=r"c.yaml:1: box: box name must be 1-32 letters.*'room 2'"):
        load_config(str(cfg))
    cfg.write_text("box_lease: 0s\n")
    with pytest.raises(UserError, match="box_lease: must be between 1s and 1h"):
        load_config(str(cfg))


def test_attempt_cap_is_checked_in_the_claim_across_boxes(db_target):
    """Two campaigns on two boxes call one number under a cap of 1 a day: both decisions
    read no attempt yet; b1 claims and calls; b2's claim (decided before that call) must be
    refused by the claim itself, else the number gets a second attempt in the day."""
    from modem_dialer.campaign import rules as R
    from modem_dialer.store import Compliance

    clock = Clock()
    conn1, conn2 = open_db(db_target), open_db(db_target)     # one connection per box
    try:
        number = "+33612345601"
        x, (a,) = campaign(conn1, [number])
        store = Campaigns(conn1)
        y = store.create_campaign("d")
        store.import_contacts(y, [(0, number, {})])
        b = contacts(store.conn, y)[0].id
        Boxes(conn1, clock).register("b1", LEASE, host="h", pid=1)
        Boxes(conn2, clock).register("b2", LEASE, host="h", pid=2)
        rules = R.RuleSet(caps=(R.Cap(1, timedelta(days=1)),))
        caps = [(c.max, c.per) for c in rules.caps]
        # both boxes decide: no attempt yet anywhere
        for conn in (conn1, conn2):
            assert R.check(number, rules, clock(), Compliance(conn)).allowed
        set_this_box("b1")
        with conn1:
            assert Leases(conn1, clock).claim(a, number, "b1", caps=caps)
        call = Journal(conn1, clock).start_call(number, "gsm0", campaign_id=x, contact_id=a)
        clock.t += timedelta(seconds=5)       # within both leases
        Journal(conn1, clock).finish_call(call, "busy")
        # b2's claim now: the cap is counted with the claim, over every box's calls
        set_this_box("b2")
        with conn2:
            assert not Leases(conn2, clock).claim(b, number, "b2", caps=caps)
        assert Campaigns(conn2).get_contact(b).status == "pending"
        # the rules now defer it until the window frees; without the cap the claim would go through
        dec = R.check(number, rules, clock(), Compliance(conn2))
        assert (dec.verdict, dec.rule, dec.until) == ("defer", "cap 1/1d", T0 + timedelta(days=1))
        clock.t = T0 + timedelta(days=1, seconds=1)       # the window freed: claimed
        with conn2:
            assert Boxes(conn2, clock).heartbeat("b2", LEASE, pid=2)
        with conn2:
            assert Leases(conn2, clock).claim(b, number, "b2", caps=caps)
    finally:
        conn1.close()
        conn2.close()


def _claim_scene(dsn: str, clock: Clock) -> tuple[Any, list[int], list[str]]:
    """A campaign of 8 contacts on box b1, each claim meeting another case: pending (c0, c6,
    c7), a call open to its number (c1), claimed by b2 already (c2), its cap of 1 a day used
    (c3), its number being claimed by another box right now (c4: lock held), this box fenced
    for it (c5)."""
    conn = open_db(dsn)
    numbers = [f"+3361234560{i}" for i in range(8)]
    _, ids = campaign(conn, numbers)
    Boxes(conn, clock).register("b1", LEASE, host="h", pid=1)
    Boxes(conn, clock).register("b2", LEASE, host="h", pid=2)
    set_this_box("b2")
    Journal(conn, clock).start_call(numbers[1], "gsm9")                       # open
    with conn:
        assert Leases(conn, clock).claim(ids[2], numbers[2], "b2")
    done = Journal(conn, clock).start_call(numbers[3], "gsm9")
    Journal(conn, clock).finish_call(done, "busy")                            # the day's one attempt
    return conn, ids, numbers


@pytest.mark.parametrize("together", [False, True])
def test_claims_run_together_give_what_they_give_one_by_one(pg_schema, together):
    """PostgreSQL: a writer group's claims with their call rows in two statements
    (boxes.claim_and_start) write exactly what each Claim then Journal.start_call writes."""
    from modem_dialer.store.boxes import CallRow, Claim, claim_and_start
    from modem_dialer.store.campaign_log import CampaignLog

    clock = Clock()
    conn, ids, numbers = _claim_scene(pg_schema, clock)
    other = open_db(pg_schema)
    try:
        cid = Campaigns(conn).get_contact(ids[0]).campaign_id
        clog = CampaignLog(conn, cid, clock)
        caps = ((1, timedelta(days=1)),)
        claims = [Claim(cid_, n, "b1", caps=caps, clock=clock, allowed=(lambda: False) if i == 5 else None,
                        log_row=clog.row("rule", contact_id=cid_, number=n, modem=f"gsm{i}", verdict="allow")
                        if i != 7 else None)
                  for i, (cid_, n) in enumerate(zip(ids, numbers, strict=True))]
        rows = [CallRow(n, f"gsm{i}", f"imei{i}", None, None, cid, None, clock(), armed=i == 6)
                for i, n in enumerate(numbers)]
        set_this_box("b1")
        # another box is claiming numbers[4] right now (its transaction holds the number's lock)
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (numbers[4],))
        with conn:
            if together:
                got = claim_and_start(conn, list(zip(claims, rows, strict=True)), "b1")
            else:
                got = [Journal(conn, clock).start_call(r.number, r.modem, r.imei, r.iccid, campaign_id=r.campaign_id,
                                                       contact_id=c.contact_id, armed=r.armed) if c(conn) else None
                       for c, r in zip(claims, rows, strict=True)]
        other.execute("ROLLBACK")
        assert [g is not None for g in got] == [True, False, False, False, False, False, True, True]
        assert got[0] < got[6] < got[7]         # in the order given
        calls = [dict(r) for r in conn.execute(
            "SELECT number, modem, imei, campaign_id, contact_id, created_at, box FROM calls WHERE box = 'b1'"
            " ORDER BY id")]
        assert calls == [{"number": numbers[i], "modem": f"gsm{i}", "imei": f"imei{i}", "campaign_id": cid,
                          "contact_id": ids[i], "created_at": to_ts(clock()), "box": "b1"} for i in (0, 6, 7)]
        events = [tuple(r) for r in conn.execute(
            "SELECT c.number, e.at, e.kind, e.data FROM call_events e JOIN calls c ON c.id = e.call_id"
            " WHERE c.box = 'b1' ORDER BY c.id, e.kind DESC")]
        t = to_ts(clock())
        assert events == [(numbers[0], t, "state", '{"state":"created"}'), (numbers[6], t, "state", '{"state":"created"}'),
                          (numbers[6], t, "armed", "{}"), (numbers[7], t, "state", '{"state":"created"}')]
        logged = [r["contact_id"] for r in clog.entries()]
        assert logged == [ids[0], ids[6]]
        held = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, status, lease_box FROM contacts")}
        assert [held[i] for i in ids] == [("in_progress", "b1"), ("pending", None), ("in_progress", "b2"),
                                          ("pending", None), ("pending", None), ("pending", None),
                                          ("in_progress", "b1"), ("in_progress", "b1")]
    finally:
        other.close()
        conn.close()


def test_a_campaign_change_is_told_to_the_boxes_of_its_schema_at_once(pg, pg_schema):
    """PostgreSQL: Campaigns.update_campaign notifies at its commit (the other boxes join a
    campaign at once, not at their next look); a change in another schema is not told."""
    import threading

    from modem_dialer.store.pg import listen_campaign_changes

    heard = threading.Event()
    conn = open_db(pg_schema)
    elsewhere = pg.new_schema()
    other = open_db(elsewhere)
    stop = listen_campaign_changes(pg_schema, heard.set)
    try:
        cid = Campaigns(conn).create_campaign("c")
        x = Campaigns(other).create_campaign("x")
        # the listener is up once a change of this schema is heard (it may have missed one
        # made before it listened): then another schema's change is not heard, this one's is
        while not heard.wait(0.2):
            Campaigns(conn).update_campaign(cid, status="running")
        heard.clear()
        Campaigns(other).update_campaign(x, status="running")
        Campaigns(conn).update_campaign(cid, status="paused")
        assert heard.wait(10)
        heard.clear()
        Campaigns(other).update_campaign(x, status="paused")
        assert not heard.wait(1.0)
    finally:
        stop()
        other.close()
        pg.drop_schema(elsewhere)
        conn.close()


def test_a_box_starting_a_running_campaign_writes_and_tells_nothing(pg_schema):
    """Campaigns.set_status writes (and notifies) only a change: the boxes joining a running
    campaign do not wake the others to read the campaigns again. The listener tells its
    caller when it listens, and calls on_change once then (a change made before is looked at)."""
    import threading

    from modem_dialer.store.pg import listen_campaign_changes

    heard, listening = threading.Event(), threading.Event()
    conn = open_db(pg_schema)
    cid = Campaigns(conn).create_campaign("c")
    stop = listen_campaign_changes(pg_schema, heard.set, listening=listening)
    try:
        assert heard.wait(30) and listening.is_set()     # told once as it starts to listen
        heard.clear()
        assert Campaigns(conn).set_status(cid, "running")
        assert heard.wait(10)
        heard.clear()
        before = Campaigns(conn).get_campaign_by_id(cid)
        assert not Campaigns(conn).set_status(cid, "running")
        assert Campaigns(conn).get_campaign_by_id(cid) == before     # nothing written: updated_at kept
        assert Campaigns(conn).set_status(cid, "paused")
        assert heard.wait(10)
    finally:
        stop()
        conn.close()
