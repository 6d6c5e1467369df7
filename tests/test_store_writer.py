"""The journal writer thread on real SQLite files: order, group commit, isolation, locks, file modes."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from helpers import LOCKER

from modem_dialer.store import Journal, open_db, utc_now
from modem_dialer.store import writer as W
from modem_dialer.store.call_journal import CallJournal
from modem_dialer.store.writer import DatabaseFault, DbWriter


def hold_lock(path, seconds: float) -> subprocess.Popen:
    """Another process holds the database's write lock for ``seconds`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


async def test_rows_commit_in_order_and_in_groups(db_target):
    conn = open_db(db_target)
    j = CallJournal(conn)
    try:
        ids = await asyncio.gather(*(j.start_call(f"+3361234{i:04d}", f"m{i % 4}") for i in range(200)))
        assert sorted(ids) == ids and len(set(ids)) == 200          # in the order submitted
        for cid in ids:
            j.event(cid, "node", n=cid)
            j.key(cid, "5", "urc")
        await j.flush()
        # 600 rows in far fewer transactions: group commit
        assert j.writer.ops_committed >= 601 and j.writer.commits < 300, (j.writer.commits, j.writer.ops_committed)
        assert conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 200
        ev_ids = [r[0] for r in conn.execute("SELECT call_id FROM call_events WHERE kind = 'node' ORDER BY id")]
        assert ev_ids == ids
    finally:
        j.close()
        conn.close()


async def test_a_failing_operation_is_rolled_back_alone(db_target):
    conn = open_db(db_target)
    j = CallJournal(conn)
    try:
        cid = await j.start_call("+33612345678", "m0")
        bad = j.key(cid, "X", "urc")               # not a DTMF key: ValueError in the writer
        good = j.key(cid, "1", "urc")
        with pytest.raises(KeyError):
            await j.finish_call(cid + 99, "answered")
        with pytest.raises(ValueError):
            bad.result(5)
        assert good.result(5) > 0
        assert await j.finish_call(cid, "answered")
        row = await j.get_call(cid)
        assert row["outcome"] == "answered" and [k["key"] for k in row["keys"]] == ["1"]
    finally:
        j.close()
        conn.close()


async def test_reads_through_the_writer_see_queued_rows(db_target):
    conn = open_db(db_target)
    j = CallJournal(conn)
    try:
        cid = await j.start_call("+33612345678", "m0")
        j.mark_answered(cid)
        j.key(cid, "7", "inband")
        j.finish_call_nowait(cid, "answered", hangup_by="callee")
        row = await j.get_call(cid)               # queued after them: sees them, committed
        assert row["outcome"] == "answered" and row["keys"][0]["key"] == "7"
        assert Journal(conn).get_call(cid)["outcome"] == "answered"
    finally:
        j.close()
        conn.close()


async def test_writes_wait_for_a_lock_held_by_another_process(tmp_path, caplog, monkeypatch):
    # the lock held 1.5 s against a 0.5 s limit, warned about every 0.25 s (the same story as
    # 3 s, 1 s and 0.5 s, in half the time)
    monkeypatch.setattr(W, "LOCK_WARN_EVERY_S", 0.25)
    path = tmp_path / "j.db"
    conn = open_db(path)
    j = CallJournal(conn, lock_limit_s=0.5)
    faults: list[DatabaseFault] = []
    j.writer.add_fault_listener(faults.append)
    try:
        cid = await j.start_call("+33612345678", "m0")
        locker = hold_lock(path, 1.5)
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="modem_dialer.store"):
            done = await j.finish_call(cid, "answered")
        waited = time.monotonic() - t0
        locker.wait(10)
        assert done and waited >= 1.0                   # waited for the lock, not dropped
        assert any(f"database {path} is locked by another process" in r.getMessage() for r in caplog.records)
        assert any("unlocked" in r.getMessage() for r in caplog.records)
        # past the limit, the run is told (to stop starting calls); the write still went through
        assert [f.kind for f in faults] == ["locked"] and str(path) in str(faults[0])
        assert Journal(conn).get_call(cid)["outcome"] == "answered"
    finally:
        j.close()
        conn.close()


async def test_close_gives_up_on_a_lock_that_never_ends_and_counts_the_loss(tmp_path):
    path = tmp_path / "j.db"
    conn = open_db(path)
    w = DbWriter(path, lock_limit_s=30)
    locker = hold_lock(path, 30.0)
    try:
        fut = w.submit(lambda c: c.execute("INSERT INTO modem_state (name, status) VALUES ('x', 'ready')"))
        lost = w.close(give_up_after=0.5)
        assert locker.poll() is None            # gave up while the lock was still held
        assert lost == 0
        with pytest.raises(DatabaseFault, match="locked by another process"):
            fut.result(1)
    finally:
        locker.kill()
        locker.wait()
        conn.close()


def test_database_wal_and_shm_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new.db"
        conn = open_db(path)
        conn.execute("SELECT 1 FROM calls").fetchall()
        with conn:
            conn.execute("INSERT INTO modem_state (name, status) VALUES ('a', 'ready')")
        for p in (path, tmp_path / "new.db-wal", tmp_path / "new.db-shm"):
            assert p.exists(), p
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
        conn.close()
    finally:
        os.umask(old)


@pytest.mark.parametrize("answered", [True, False])
async def test_the_row_as_queued_is_the_row_committed(tmp_path, answered):
    # get_call(committed=False) answers from what was queued (no round trip through the
    # writer, so a campaign line is free at once): it must be what the writer commits
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    call_id = await j.start_call("+33612345678", "gsm0", "867698041234561", "89330123456789012345")
    assert call_id is not None
    j.mark_dialed(call_id)
    if answered:
        j.mark_answered(call_id)
        j.key(call_id, "1", "inband")
        j.key(call_id, "#", "urc")
        j.finish_call_nowait(call_id, "answered", cause=16, hangup_by="dialer", duration_s=1.25)
    else:
        j.finish_call_nowait(call_id, "no_answer", cause_text="no answer within 45 s", hangup_by="dialer")
    queued = await j.get_call(call_id, committed=False)
    committed = await j.get_call(call_id)
    assert queued["outcome"] == ("answered" if answered else "no_answer")
    assert {k: committed[k] for k in queued} == queued
    await j.aclose()


@pytest.mark.parametrize("answered", [True, False])
async def test_a_call_started_here_is_finished_without_reading_its_row(db_target, answered):
    # its duration (from the answer as queued, 0 if none) is what the journal would read
    # from the row, so the row is not read first: one statement less per call, a round trip
    # to the server on PostgreSQL (issue 14: ~1 of a call's ~7)
    from modem_dialer.store import from_ts

    conn = open_db(db_target)
    j = CallJournal(conn)
    try:
        call_id = await j.start_call("+33612345678", "gsm0")
        assert call_id is not None
        j.mark_dialed(call_id)
        if answered:
            j.mark_answered(call_id)
        await j.flush()
        sent: list[str] = []

        def record(c) -> None:           # the writer's connection, in its thread
            run = c.execute
            c.execute = lambda sql, *a: (sent.append(sql), run(sql, *a))[1]
        await asyncio.wrap_future(j.writer.submit(record))
        await asyncio.sleep(0.01)
        assert await j.finish_call(call_id, "answered" if answered else "busy", cause=16)
        assert [q for q in sent if q.lstrip().upper().startswith("SELECT")] == [], sent
        row = j.read.get_call(call_id)
        # (the row's times are kept to the millisecond, the duration from the end's exact time)
        want = (from_ts(row["ended_at"]) - from_ts(row["answered_at"])).total_seconds() if answered else 0.0
        assert row["duration_s"] == pytest.approx(want, abs=1e-3) and (row["duration_s"] > 0) == answered
    finally:
        await j.aclose()
        conn.close()


async def test_a_step_the_journal_refuses_is_read_back_from_the_writer(tmp_path):
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    call_id = await j.start_call("+33612345678", "gsm0")
    assert call_id is not None
    bad = j.finish_call_nowait(call_id, "exploded")
    row = await j.get_call(call_id, committed=False)
    assert row["outcome"] is None          # what the database holds, not what was asked
    with pytest.raises(ValueError):
        bad.result(5)
    await j.aclose()


async def test_writes_queued_while_a_group_runs_share_its_commit(tmp_path):
    # a call row queued while the writer runs a group rides in that group's COMMIT (one
    # fsync) instead of waiting for it and then paying its own
    import threading
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    running, release = threading.Event(), threading.Event()

    def slow(c) -> None:
        running.set()
        release.wait(10)
    try:
        await j.flush()
        before = j.writer.commits
        j.submit(slow)
        assert await asyncio.to_thread(running.wait, 10)
        late = asyncio.ensure_future(j.start_call("+33612345678", "gsm0"))
        await asyncio.sleep(0.05)                      # queued while the group runs
        release.set()
        assert await late is not None
        assert j.writer.commits == before + 1
    finally:
        release.set()
        j.close()
        conn.close()


async def test_lazy_steps_ride_with_the_next_waited_write(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "LAZY_COMMIT_S", 10.0)     # only a waited-for write can commit them
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    try:
        call_id = await j.start_call("+33612345678", "gsm0")
        assert call_id is not None
        before = j.writer.commits
        marks = [j.mark_dialed(call_id), j.event(call_id, "state", state="ringing"), j.mark_answered(call_id)]
        await asyncio.sleep(0.2)
        assert not any(f.done() for f in marks)      # no commit of their own
        await j.start_call("+33612345679", "gsm1")   # the next call row takes them along
        assert all(f.done() and f.exception() is None for f in marks)
        assert j.writer.commits == before + 1
    finally:
        j.close()
        conn.close()


async def test_lazy_steps_alone_commit_soon(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "LAZY_COMMIT_S", 0.05)
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    try:
        call_id = await j.start_call("+33612345678", "gsm0")
        assert call_id is not None
        await asyncio.wait_for(asyncio.wrap_future(j.mark_dialed(call_id)), 5)
        assert conn.execute("SELECT started_at FROM calls WHERE id = ?", (call_id,)).fetchone()[0]
    finally:
        j.close()
        conn.close()


async def test_an_armed_row_is_lazy_and_hurried_when_its_line_dials(tmp_path, monkeypatch):
    """A campaign line's armed next call row rides with the line's other steps (no commit
    of its own); its future still resolves only once the row is committed, and hurry()
    (the line about to dial it) commits it at once."""
    monkeypatch.setattr(W, "LAZY_COMMIT_S", 30.0)     # only hurry() can commit it here
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    try:
        await j.flush()
        before = j.writer.commits
        row = j.start_call_soon("+33612345678", "gsm0", armed=True)
        await asyncio.sleep(0.2)
        assert not row.done() and j.writer.commits == before     # no commit of its own
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0
        j.writer.hurry()
        call_id = await asyncio.wait_for(row, 5)
        assert call_id is not None and j.writer.commits == before + 1
        # durable when resolved: another connection sees it
        assert conn.execute("SELECT number FROM calls WHERE id = ?", (call_id,)).fetchone()[0] == "+33612345678"
    finally:
        j.close()
        conn.close()


async def test_blocks_inside_an_operation_roll_back_only_their_own_rows(tmp_path):
    # An operation's first `with conn:` block shares the operation's savepoint (one statement
    # pair less per journal step); what a failed block wrote must still go, and nothing else.
    conn = open_db(tmp_path / "j.db")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.commit()
    w = DbWriter(tmp_path / "j.db")

    def failing_block(c, value: str) -> None:  # type: ignore[no-untyped-def]
        """A `with c:` block that inserts ``value`` and fails; the caller goes on."""
        try:
            with c:
                c.execute("INSERT INTO t VALUES (?)", (value,))
                raise ValueError("the block fails")
        except ValueError:
            pass

    def caught_then_more(c):  # type: ignore[no-untyped-def]
        failing_block(c, "first block, rolled back")
        with c:
            c.execute("INSERT INTO t VALUES ('second block')")

    def outside_then_failed_block(c):  # type: ignore[no-untyped-def]
        c.execute("INSERT INTO t VALUES ('outside any block')")
        failing_block(c, "failed block")

    def nested_failure(c):  # type: ignore[no-untyped-def]
        with c:
            c.execute("INSERT INTO t VALUES ('outer block')")
            failing_block(c, "inner block, rolled back")

    def failed_operation(c):  # type: ignore[no-untyped-def]
        with c:
            c.execute("INSERT INTO t VALUES ('failed operation')")
        raise RuntimeError("the operation fails after its block")

    try:
        futs = [w.submit(fn) for fn in (caught_then_more, outside_then_failed_block, nested_failure,
                                        failed_operation)]
        await w.flush()
        with pytest.raises(RuntimeError):
            futs[3].result(5)
        rows = sorted(r[0] for r in conn.execute("SELECT v FROM t"))
        assert rows == ["outer block", "outside any block", "second block"]
        assert w.careful_groups >= 1     # the savepoint-free first attempt was rolled back
    finally:
        w.close()
        conn.close()


async def test_a_group_where_nothing_fails_runs_no_savepoint(tmp_path):
    # A group's first attempt has no savepoint per operation (two statements fewer per
    # journal step): what a call writes, step by step, is then a few statements each.
    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    statements: list[str] = []
    j.writer._conn.set_trace_callback(statements.append)
    try:
        cid = await j.start_call("+33612345678", "m0")
        j.mark_dialed(cid)
        j.mark_answered(cid)
        j.event(cid, "prompt", name="message", state="done")
        j.key(cid, "1", "urc")
        assert await j.finish_call(cid, "answered", hangup_by="dialer")
        assert not [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))], statements
        assert j.writer.careful_groups == 0
        row = await j.get_call(cid)
        assert row["outcome"] == "answered" and [k["key"] for k in row["keys"]] == ["1"]
        assert [e["kind"] for e in j.events_of(cid)].count("state") == 4
    finally:
        j.close()
        conn.close()


def _put(conn, k: str) -> str:
    conn.execute("INSERT INTO scratch (k) VALUES (?)", (k,))
    return f"alone {k}"


def _put_together(conn, ops: list[tuple]) -> list[str]:
    keys = [k for (k,) in ops]
    if "bad" in keys:
        raise ValueError("run together: refused")
    conn.execute("INSERT INTO scratch (k) VALUES " + ", ".join(["(?)"] * len(keys)), keys)  # noqa: S608
    return [f"together {k}" for k in keys]


async def test_operations_run_together_on_postgresql_and_one_by_one_when_that_fails(pg_schema):
    """DbWriter.submit(batch=…): consecutive operations with distinct keys run as one (one
    savepoint, their own results); a repeated key starts another run; when the run fails,
    each operation runs alone and only the one that fails alone fails."""
    import threading

    conn = open_db(pg_schema)
    conn.execute("CREATE TABLE scratch (k TEXT PRIMARY KEY)")
    w = DbWriter(pg_schema)
    try:
        gate = threading.Event()

        async def group(keys: list[str]) -> list:
            gate.clear()
            held = w.submit(lambda c: gate.wait(10))      # the next ones queue behind it: one group
            futs = [w.submit(_put, k, batch=(_put_together, k)) for k in keys]
            gate.set()
            held.result(10)
            return [f.exception(10) or f.result(10) for f in futs]

        got = await group(["a", "b", "a2", "b"])
        assert got[:3] == ["together a", "together b", "together a2"]
        assert isinstance(got[3], Exception)        # "b" again: a run of its own, failing alone
        got = await group(["e", "bad", "a"])        # the run refuses: one by one ("a" exists already)
        assert got[0] == "alone e" and got[1] == "alone bad" and isinstance(got[2], Exception)
        assert sorted(r[0] for r in conn.execute("SELECT k FROM scratch")) == ["a", "a2", "b", "bad", "e"]
    finally:
        w.close()
        conn.close()


def _put_statement(k: str) -> W.Statement | None:
    if k.startswith("alone"):
        return None             # not a statement this time: run by its function
    if k == "undecided":
        return W.Statement("INSERT INTO scratch (k) VALUES (?)", (k,), _undecided)
    return W.Statement("INSERT INTO scratch (k) VALUES (?) RETURNING k", (k,), lambda n, rows: f"together {rows[0][0]}")


def _undecided(rowcount: int, rows: list) -> str:
    raise W.Undecided


async def test_statements_go_together_on_postgresql_and_one_by_one_when_one_fails(pg_schema):
    """DbWriter.submit(statement=…): consecutive operations that are one statement each are
    sent in one round trip, each with its own value; an operation with none ends the run;
    when one of them fails, or a value is undecided, they are all rolled back and run alone
    by their functions, and only the one that fails alone fails."""
    import threading

    conn = open_db(pg_schema)
    conn.execute("CREATE TABLE scratch (k TEXT PRIMARY KEY)")
    w = DbWriter(pg_schema)
    try:
        gate = threading.Event()

        async def group(keys: list[str]) -> tuple[list, int]:
            gate.clear()
            held = w.submit(lambda c: gate.wait(10))      # the next ones queue behind it: one group
            futs = [w.submit(_put, k, statement=_put_statement) for k in keys]
            before = w._conn.round_trips
            gate.set()
            held.result(10)
            return [f.exception(10) or f.result(10) for f in futs], w._conn.round_trips - before

        await group(["alone0"])     # (PgConnection looks once whether the table has an id column)
        got, trips = await group([f"k{i}" for i in range(20)] + ["alone", "x", "y"])
        assert got == [f"together k{i}" for i in range(20)] + ["alone alone", "together x", "together y"]
        assert trips == 4           # 20 statements, the one alone, 2 statements, the COMMIT
        got, _ = await group(["e", "k3", "f"])          # k3 exists: all three alone, k3 fails alone
        assert got[0] == "alone e" and isinstance(got[1], Exception) and got[2] == "alone f"
        got, _ = await group(["g", "undecided", "h"])   # undecided: alone, quietly, each its own value
        assert got == ["alone g", "alone undecided", "alone h"]
        assert len(conn.execute("SELECT k FROM scratch").fetchall()) == 29
    finally:
        w.close()
        conn.close()


async def test_a_calls_steps_are_sent_together_with_the_values_they_have_alone(db_target):
    """The call steps the writer sends together on PostgreSQL (the marks, an event, a timed
    close, the contact's next status, the arming's rules read) give each the value and the
    rows they give run one by one, as on SQLite; a close or a settle that finds nothing to
    change gives False and a mark of a call that does not exist fails alone, as on SQLite."""
    from modem_dialer.store import Campaigns
    from modem_dialer.store.boxes import Claim

    conn = open_db(db_target)
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    store.import_contacts(cid, [(1, "+33612340001", {}), (2, "+33612340002", {})])
    contacts = {c.number: c.id for c in store.next_due(cid, utc_now(), limit=10)}
    j = CallJournal(conn)
    try:
        ids = [await j.start_call(n, "m0", campaign_id=cid, contact_id=k, claim=Claim(k, n, "b"))
               for n, k in contacts.items()]
        pg = j.writer.pg
        before = j.writer._conn.round_trips if pg else 0

        def settle(contact_id: int, call_id: int):
            return j.settle_contact(contact_id, "b", status="answered", next_attempt_at=None,
                                    last_outcome="answered", last_call_id=call_id, attempts=1, lazy=True)
        futs = []
        for call_id, contact_id in zip(ids, contacts.values(), strict=True):
            futs += [j.mark_dialed(call_id), j.event(call_id, "state", state="ringing"), j.mark_answered(call_id),
                     j.finish_call_nowait(call_id, "answered", duration_s=1.5), settle(contact_id, call_id)]
        facts = await j.dial_facts("+33612340001", since=utc_now() - timedelta(days=1),
                                   contact_id=contacts["+33612340001"])
        await j.flush()
        values = [f.result(5) for f in futs]
        assert values[0] is None and isinstance(values[1], int) and values[2:5] == [None, True, True]
        assert values[5] is None and values[6] > values[1] and values[7:10] == [None, True, True]
        # PostgreSQL: through the writer, after the steps queued before it (sent with them);
        # SQLite: at once on the caller's connection (committed rows: the call still open)
        assert facts.open_call is not pg and len(facts.attempts) == 1
        assert facts.contact_status == ("answered" if pg else "in_progress")
        if pg:      # 10 steps and a read: one round trip with the group's BEGIN, one for its COMMIT
            assert j.writer._conn.round_trips - before <= 3
        # nothing to change: False; no such call: KeyError, that step alone
        again = [j.finish_call_nowait(ids[0], "busy", duration_s=0.0), settle(contacts["+33612340001"], ids[0]),
                 j.mark_dialed(ids[-1] + 99), j.event(ids[0], "note", n=1)]
        await j.flush()
        assert again[0].result(5) is False and again[1].result(5) is False and again[3].result(5) > values[6]
        with pytest.raises(KeyError):
            again[2].result(5)
        for call_id in ids:
            assert [e["data"].get("state") for e in j.events_of(call_id)
                    if e["kind"] == "state"] == ["created", "dialing", "ringing", "answered", "ended"]
            call = conn.execute("SELECT outcome, duration_s, started_at, answered_at FROM calls WHERE id = ?",
                                (call_id,)).fetchone()
            assert call[0] == "answered" and call[1] == 1.5 and call[2] and call[3]
        assert {r[0] for r in conn.execute("SELECT status FROM contacts")} == {"answered"}
    finally:
        j.close()
        conn.close()
