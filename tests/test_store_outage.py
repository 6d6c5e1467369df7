"""PostgreSQL going away under the journal writer: writes wait (nothing lost), the listeners
hear it, everything queued commits once when the server is back, and a COMMIT whose answer
was lost is not applied twice. The real test cluster is stopped (``pg_ctl stop -m fast``)."""

from __future__ import annotations

import asyncio

import pytest
from conftest import wait_until
from helpers import kill_while_server_away

from modem_dialer.store import open_db
from modem_dialer.store import writer as W
from modem_dialer.store.call_journal import CallJournal
from modem_dialer.store.pg import DatabaseUnreachable


@pytest.fixture
def fast_reconnect(monkeypatch):
    monkeypatch.setattr(W, "RECONNECT_EVERY_S", 0.1)


async def test_writes_wait_for_the_server_and_commit_once_it_is_back(pg, fast_reconnect):
    dsn = pg.new_schema()
    conn = open_db(dsn)
    j = CallJournal(conn)
    faults = []
    j.writer.add_fault_listener(faults.append)
    try:
        cid = await j.start_call("+33612345678", "gsm0")
        await asyncio.to_thread(pg.stop, "fast")
        try:
            j.mark_answered(cid)
            key = j.key(cid, "1", "urc")
            done = j.finish_call_nowait(cid, "answered", hangup_by="callee")
            await wait_until(lambda: len(faults) == 1, timeout=20)
            assert faults[0].kind == "unreachable" and not faults[0].resolved
            assert "server unreachable" in str(faults[0]) and not done.done()
            with pytest.raises(DatabaseUnreachable):      # a reader fails now, in one line
                conn.execute("SELECT 1")
            await asyncio.sleep(1.0)                      # still down: nothing is dropped meanwhile
            assert not done.done() and j.writer.pending == 3
        finally:
            await asyncio.to_thread(pg.start)
        assert await asyncio.wait_for(asyncio.wrap_future(done), 20) is True
        assert key.result(1) > 0
        await wait_until(lambda: len(faults) == 2, timeout=5)
        assert faults[1].kind == "unreachable" and faults[1].resolved
        # the reader's connection is replaced at its next statement
        row = conn.execute("SELECT outcome, answered_at FROM calls WHERE id = ?", (cid,)).fetchone()
        assert row["outcome"] == "answered" and row["answered_at"] is not None
        assert conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 1
        assert [e["data"].get("state") for e in j.events_of(cid)] == ["created", "answered", "ended"]
    finally:
        j.close()
        conn.close()


async def test_a_commit_whose_answer_was_lost_is_not_applied_twice(pg, fast_reconnect):
    dsn = pg.new_schema()
    conn = open_db(dsn)
    j = CallJournal(conn)
    try:
        cid = await j.start_call("+33612345678", "gsm0")
        wconn = j.writer._conn
        real = wconn._run_now
        lost = []

        def commit_then_drop(stmt: str) -> None:
            real(stmt)                       # the server committed...
            if stmt.endswith("COMMIT") and not lost:
                lost.append(stmt)            # ...and the answer never arrived
                wconn._pg.close()
                raise DatabaseUnreachable("server closed the connection unexpectedly")

        wconn._run_now = commit_then_drop
        assert await j.finish_call(cid, "busy") is True
        assert lost, "the COMMIT was not intercepted"
        j.key(cid, "2", "urc")
        await j.flush()
        # the group was found committed (txid_status), not run again: one end event, one key
        ends = [e for e in j.events_of(cid) if e["data"].get("state") == "ended"]
        assert len(ends) == 1 and conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 1
    finally:
        j.close()
        conn.close()


CHILD = """
import asyncio, sys
from modem_dialer.store import open_db
from modem_dialer.store import writer
from modem_dialer.store.call_journal import CallJournal
writer.RECONNECT_EVERY_S = 0.1

async def main():
    j = CallJournal(open_db(sys.argv[1]), spool=sys.argv[2])
    cid = await j.start_call("+33612345678", "gsm0")
    print(cid, flush=True)
    await asyncio.to_thread(sys.stdin.readline)     # the test has stopped the server
    j.mark_answered(cid)
    j.key(cid, "5", "urc")
    j.answer(cid, "satisfaction", 4)
    j.finish_call_nowait(cid, "answered", hangup_by="callee", duration_s=3.5)
    await asyncio.sleep(3600)                       # killed here
asyncio.run(main())
"""


async def test_a_box_killed_while_the_server_is_away_keeps_its_calls_in_the_spool(pg, tmp_path):
    import sys

    from modem_dialer.store.spool import Spool

    dsn, spool = pg.new_schema(), tmp_path / "spool.db"
    open_db(dsn).close()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, dsn, str(spool),
                                                 stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    async def started() -> int:
        return int(await asyncio.wait_for(child.stdout.readline(), 30))

    async def spooled() -> None:
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        await wait_until(lambda: spool.exists() and len(Spool(spool).records()) == 4, timeout=20)

    cid = await kill_while_server_away(pg, child, started, spooled)
    assert spool.stat().st_mode & 0o777 == 0o600
    # the next start commits the spooled steps first (before any recovery closes open calls)
    conn = open_db(dsn)
    j = CallJournal(conn, spool=spool)
    try:
        call = await j.get_call(cid)
        assert call["outcome"] == "answered" and call["answered_at"] and call["duration_s"] == 3.5
        assert [k["key"] for k in call["keys"]] == ["5"] and j.answers_of(cid)[0]["value"] == "4"
        assert len(Spool(spool).records()) == 0 and j.read.recover_interrupted() == []
    finally:
        j.close()
        conn.close()


async def test_spooled_steps_already_committed_are_not_replayed(pg, tmp_path):
    from datetime import datetime, timezone

    from modem_dialer.store.spool import Spool, encode

    dsn, path = pg.new_schema(), tmp_path / "spool.db"
    conn = open_db(dsn)
    j = CallJournal(conn)
    cid = await j.start_call("+33612345678", "gsm0")
    j.close()
    # the last run's group reached the server, then the box died before emptying its spool
    spool = Spool(path)
    spool.add([encode("key", datetime.now(timezone.utc), (cid, "7", "urc"), {})])
    with conn:
        conn.execute("INSERT INTO keys (call_id, key, source, at) VALUES (?, '7', 'urc', 'x')", (cid,))
        spool.note_commit(conn.execute("SELECT txid_current()").fetchone()[0])
    spool.close()
    j = CallJournal(conn, spool=path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 1
        assert Spool(path).records() == []
    finally:
        j.close()
        conn.close()
