"""Campaigns and contacts: merge on re-import, next_due order and exclusion, statuses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import is_sorted_in_plan, query_plan
from store_steps import BOX, contacts, settle_contact

from modem_dialer.errors import UserError
from modem_dialer.store import Campaigns, open_db
from modem_dialer.store.boxes import Leases

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(db_target):
    conn = open_db(db_target)
    s = Campaigns(conn, clock=lambda: T0)
    yield s
    conn.close()


def contact_by_number(store: Campaigns, cid: int, number: str):
    """The campaign's contact with this number, or None (read as the report reads them)."""
    return next((c for c in contacts(store.conn, cid) if c.number == number), None)


def test_create_and_get_campaign(store):
    cid = store.create_campaign("spring", file="spring.csv", config={"purpose": "informational"})
    got = store.get_campaign("spring")
    assert got["id"] == cid and got["config"] == {"purpose": "informational"} and got["status"] == "created"
    with pytest.raises(UserError, match="spring"):
        store.create_campaign("spring")
    store.update_campaign(cid, status="running")
    assert store.get_campaign_by_id(cid)["status"] == "running"
    assert store.get_campaign("nope") is None


def test_fields_are_stored_as_one_text_whatever_their_order(store):
    # sorted keys, no spaces, letters as they are, other values as text: the same fields give
    # the same text, so a re-import with the columns in another order changes nothing
    cid = store.create_campaign("c")
    store.import_contacts(cid, [(2, "+33612345671", {"ville": "Orléans", "n": 3, "since": T0})])
    assert store.conn.execute("SELECT fields FROM contacts").fetchone()[0] == \
        '{"n":3,"since":"2025-03-03 10:00:00+00:00","ville":"Orléans"}'
    r = store.import_contacts(cid, [(2, "+33612345671", {"since": T0, "ville": "Orléans", "n": 3})])
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 1)


def test_reimport_merges(store):
    cid = store.create_campaign("c")
    rows = [(2, "+33612345671", {"name": "Ann"}), (3, "+33612345672", {"name": "Bob"})]
    r = store.import_contacts(cid, rows, batch_size=1)
    assert (r.inserted, r.updated, r.unchanged) == (2, 0, 0)
    bob = contact_by_number(store, cid, "+33612345672")
    settle_contact(store.conn, bob.id, "pending", count_attempt=True, last_outcome="busy",
                   next_attempt_at=T0 + timedelta(hours=1), clock=lambda: T0)

    rows2 = [(2, "+33612345671", {"name": "Ann"}), (3, "+33612345672", {"name": "Robert"}),
             (4, "+33612345673", {})]
    r = store.import_contacts(cid, rows2, batch_size=2)
    assert (r.inserted, r.updated, r.unchanged, r.total) == (1, 1, 1, 3)
    assert store.conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 3
    bob2 = store.get_contact(bob.id)
    # fields refreshed; progress kept
    assert bob2.fields == {"name": "Robert"}
    assert (bob2.attempts, bob2.last_outcome) == (1, "busy")
    assert bob2.next_attempt_at == "2025-03-03T11:00:00.000Z"


def test_same_number_in_two_campaigns(store):
    a, b = store.create_campaign("a"), store.create_campaign("b")
    store.import_contacts(a, [(1, "+33612345671", {})])
    store.import_contacts(b, [(1, "+33612345671", {})])
    assert store.counts(a) == {"pending": 1} and store.counts(b) == {"pending": 1}


def test_next_due_order_time_and_exclusion(store):
    cid = store.create_campaign("c")
    other = store.create_campaign("other")
    store.import_contacts(cid, [(i + 2, f"+3361234567{i}", {}) for i in range(6)])
    store.import_contacts(other, [(2, "+33699999999", {})])
    c = {x.number[-1]: x.id for x in contacts(store.conn, cid)}
    # 0: retried later (not due yet); 1: retry due earlier than the fresh ones; 2: done; 3: excluded
    settle_contact(store.conn, c["0"], "pending", next_attempt_at=T0 + timedelta(hours=2))
    settle_contact(store.conn, c["1"], "pending", next_attempt_at=T0 - timedelta(minutes=5))
    settle_contact(store.conn, c["2"], "answered")
    due = store.next_due(cid, T0, limit=10, exclude_numbers={"+33612345673"})
    assert [x.number for x in due] == ["+33612345671", "+33612345674", "+33612345675"]
    assert [x.number for x in store.next_due(cid, T0, limit=2, exclude_numbers=["+33612345673"])] == [
        "+33612345671", "+33612345674"]
    later = store.next_due(cid, T0 + timedelta(hours=3), limit=10)
    assert [x.number for x in later] == ["+33612345671", "+33612345673", "+33612345674", "+33612345675",
                                         "+33612345670"]
    assert store.next_due(cid, T0 - timedelta(hours=1), limit=10) == []


def test_next_due_uses_the_pending_index(store):
    plan = query_plan(store.conn, "SELECT id FROM contacts WHERE campaign_id = 1 AND status = 'pending'"
                                  " AND next_attempt_at <= 'x' ORDER BY next_attempt_at, id LIMIT 5")
    assert any("contacts_due" in p for p in plan) and not is_sorted_in_plan(plan), plan


def test_claim_status_and_counts(store):
    cid = store.create_campaign("c")
    store.import_contacts(cid, [(2, "+33612345671", {}), (3, "+33612345672", {}), (4, "+33612345673", {})])
    first, second, third = contacts(store.conn, cid)
    leases = Leases(store.conn, lambda: T0)

    def claim(c, box=BOX) -> bool:
        with store.conn:
            return leases.claim(c.id, c.number, box)

    assert claim(first) and not claim(first) and not claim(first, "another-box")   # one worker has it
    assert claim(second)
    settle_contact(store.conn, third.id, "suppressed")
    assert store.counts(cid) == {"in_progress": 2, "suppressed": 1}
    assert [x.id for x in contacts(store.conn, cid, ["suppressed"])] == [third.id]
    assert not leases.settle(third.id, BOX, status="pending", next_attempt_at=None, last_outcome=None,
                             last_call_id=None, attempts=0)          # settled already: not in progress
    assert not leases.settle(first.id, "another-box", status="answered", next_attempt_at=None,
                             last_outcome=None, last_call_id=None, attempts=1)   # not that box's lease
    assert not leases.settle(999, BOX, status="pending", next_attempt_at=None, last_outcome=None,
                             last_call_id=None, attempts=0)
    assert store.counts(cid) == {"in_progress": 2, "suppressed": 1}


def test_claims_give_each_contact_to_one_of_many_workers(db_target):
    # eight workers with their own connections claim at once, as the dialer's workers do (the
    # due contacts read, then each claimed under its box's lease): every contact once, each
    # worker's in due order
    import threading

    setup = open_db(db_target)
    s = Campaigns(setup, clock=lambda: T0)
    cid = s.create_campaign("race")
    s.import_contacts(cid, [(i + 2, f"+336123{i:05d}", {}) for i in range(400)])
    got: list[list[int]] = []
    start = threading.Barrier(8)

    def worker(box: str) -> None:
        conn = open_db(db_target, busy_timeout_ms=20_000)
        mine: list[int] = []
        start.wait()
        leases = Leases(conn, lambda: T0)
        while batch := Campaigns(conn, clock=lambda: T0).next_due(cid, T0, limit=3):
            for c in batch:
                with conn:
                    if leases.claim(c.id, c.number, box):
                        mine.append(c.id)
        got.append(mine)
        conn.close()

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [i for mine in got for i in mine]
    assert len(got) == 8 and sorted(ids) == sorted(set(ids)) and len(ids) == 400
    assert all(m == sorted(m) for m in got)               # each worker got them earliest first
    assert s.counts(cid) == {"in_progress": 400} and s.next_due(cid, T0) == []
    setup.close()
