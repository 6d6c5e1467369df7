"""Erasure and retention from the command line (``modem-dialer erase``, ``db purge``): the
journal's rows *and* the voice recordings they name go; the suppression list keeps the
objection; files the journal names but the dialer did not write are never removed. Against
both backends, through the commands as a user runs them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import run_cli

from modem_dialer.store import Campaigns, Compliance, Journal, open_db, utc_now

ANN, BOB = "+33612345678", "+33612345679"


def write_config(tmp_path: Path, database: str) -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f'database: "{database}"\n')
    return str(cfg)


def recorded_call(j: Journal, number: str, rec_dir: Path, *, outcome: str | None = "answered",
                  name: str | None = None) -> tuple[int, Path]:
    """A call with a voice recording on disk, journaled as the flow's record node does."""
    call = j.start_call(number, "gsm0")
    j.mark_dialed(call)
    j.mark_answered(call)
    j.key(call, "1", "urc")
    path = rec_dir / (name or f"call{call}-message.wav")
    path.write_bytes(b"RIFF")
    j.event(call, "record", node="message", path=str(path), seconds=1.0)
    j.answer(call, "message", str(path))
    if outcome is not None:
        j.finish_call(call, outcome)
    return call, path


def scene(database: str, tmp_path: Path) -> tuple:
    """(connection, recordings folder, journal) on ``database``."""
    conn = open_db(database)
    rec = tmp_path / "recordings"
    rec.mkdir()
    return conn, rec, Journal(conn)


def count(conn, sql: str, *args) -> int:
    return int(conn.execute(sql, args).fetchone()[0])


async def test_erase_deletes_everything_about_a_number_and_its_recordings(db_target, tmp_path):
    conn, rec, j = scene(db_target, tmp_path)
    _, ann_file = recorded_call(j, ANN, rec)
    _, ann_file2 = recorded_call(j, ANN, rec, outcome="busy")
    _, bob_file = recorded_call(j, BOB, rec)
    cs = Campaigns(conn)
    cid = cs.create_campaign("c")
    cs.import_contacts(cid, [(2, ANN, {"name": "Ann"}), (3, BOB, {"name": "Bob"})])
    Compliance(conn).add_consent(ANN, "automated_calls", "web", utc_now(), "proof-1")
    cfg = write_config(tmp_path, db_target)

    code, out, err = await run_cli("--config", cfg, "erase", "06 12 34 56 78", "--yes")
    assert code == 0, err
    assert out.startswith(f"{ANN}: erased (") and "recordings 2" in out and "kept on the suppression list" in out
    assert not ann_file.exists() and not ann_file2.exists() and bob_file.exists()
    conn.close()
    conn = open_db(db_target)
    for table, col in [("calls", "number"), ("contacts", "number"), ("consent", "number")]:
        assert count(conn, f"SELECT COUNT(*) FROM {table} WHERE {col} = ?", ANN) == 0, table   # noqa: S608
    assert count(conn, "SELECT COUNT(*) FROM answers") == 1 and count(conn, "SELECT COUNT(*) FROM keys") == 1
    assert count(conn, "SELECT COUNT(*) FROM calls WHERE number = ?", BOB) == 1
    assert Compliance(conn).is_suppressed(ANN) and not Compliance(conn).is_suppressed(BOB)
    conn.close()


async def test_erase_asks_first_and_refuses_a_number_in_a_call(db_target, tmp_path):
    conn, rec, j = scene(db_target, tmp_path)
    _, ann_file = recorded_call(j, ANN, rec)
    recorded_call(j, BOB, rec, outcome=None)                         # BOB is being called right now
    conn.close()
    cfg = write_config(tmp_path, db_target)
    code, _, err = await run_cli("--config", cfg, "erase", ANN, stdin="n\n")
    assert code == 1 and "Aborted" in err
    code, _, err = await run_cli("--config", cfg, "erase", ANN, BOB, "--yes")
    assert code == 1 and err.strip() == f"modem-dialer: {BOB}: a call to this number is in progress; " \
                                        "erase it once the call has ended"
    conn = open_db(db_target)
    assert count(conn, "SELECT COUNT(*) FROM calls") == 2 and ann_file.exists()     # nothing erased
    assert not Compliance(conn).is_suppressed(ANN)
    conn.close()
    code, _, err = await run_cli("--config", cfg, "erase", "not a number", "--yes")
    assert code == 1 and err.count("\n") == 1 and "not a number" in err


async def test_erase_removes_only_files_named_as_that_calls_recording(tmp_path):
    db = str(tmp_path / "store.db")
    conn, rec, j = scene(db, tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("not a recording")
    first, other = recorded_call(j, ANN, rec, name="call999-message.wav")   # another call's name
    second, _ = recorded_call(j, ANN, rec)
    third, _ = recorded_call(j, ANN, rec)
    link = rec / f"call{third}-linked.wav"
    link.symlink_to(precious)
    with conn:     # journal rows altered to name other files
        for call, path in [(second, precious), (third, link)]:
            conn.execute("UPDATE call_events SET data = ? WHERE call_id = ? AND kind = 'record'",
                         (json.dumps({"path": str(path)}), call))
    conn.close()
    code, out, err = await run_cli("--config", write_config(tmp_path, db), "erase", ANN, "--yes")
    assert code == 0, err
    assert f"{other}: not a recording of call {first}; left in place" in err
    assert f"{precious}: not a recording of call {second}; left in place" in err
    assert f"{link}: not a regular file; left in place" in err
    assert precious.read_text() == "not a recording" and link.is_symlink() and other.exists()
    assert "recordings 0" in out
    conn = open_db(db)
    assert count(conn, "SELECT COUNT(*) FROM calls") == 0          # the rows are erased all the same
    conn.close()


async def test_erase_stops_when_a_recording_cannot_be_removed(tmp_path):
    db = str(tmp_path / "store.db")
    conn, rec, j = scene(db, tmp_path)
    call, path = recorded_call(j, ANN, rec)
    blocker = tmp_path / "blocker"
    blocker.write_text("")          # a file where the recording's folder should be: ENOTDIR (even as root)
    with conn:
        conn.execute("UPDATE call_events SET data = ? WHERE call_id = ? AND kind = 'record'",
                     (json.dumps({"path": str(blocker / path.name)}), call))
    conn.close()
    code, out, err = await run_cli("--config", write_config(tmp_path, db), "erase", ANN, "--yes")
    assert code == 1 and out == ""
    assert f"{blocker / path.name}: cannot remove: Not a directory" in err
    assert f"{ANN}: not erased (a recording could not be removed); run again once fixed" in err
    conn = open_db(db)
    assert count(conn, "SELECT COUNT(*) FROM calls") == 1 and not Compliance(conn).is_suppressed(ANN)
    conn.close()


async def test_db_purge_purges_nothing_when_a_recording_cannot_be_removed(tmp_path):
    db = str(tmp_path / "store.db")
    conn, rec, _ = scene(db, tmp_path)
    call, path = recorded_call(Journal(conn, clock=lambda: utc_now() - timedelta(days=400)), ANN, rec)
    blocker = tmp_path / "blocker"
    blocker.write_text("")          # ENOTDIR, even as root
    with conn:
        conn.execute("UPDATE call_events SET data = ? WHERE call_id = ? AND kind = 'record'",
                     (json.dumps({"path": str(blocker / path.name)}), call))
    conn.close()
    code, out, err = await run_cli("--config", write_config(tmp_path, db), "db", "purge", "--older-than", "30",
                                   "--yes")
    assert code == 1 and out == ""
    assert f"db purge: {blocker / path.name}: cannot remove: Not a directory" in err
    assert "nothing purged: a recording could not be removed (above); run again once fixed" in err
    conn = open_db(db)
    assert count(conn, "SELECT COUNT(*) FROM calls") == 1      # the row still names the file for a rerun
    conn.close()


async def test_db_purge_deletes_old_records_and_their_recordings(db_target, tmp_path):
    conn, rec, _ = scene(db_target, tmp_path)
    old = utc_now() - timedelta(days=400)
    j_old = Journal(conn, clock=lambda: old)
    _, old_file = recorded_call(j_old, ANN, rec)
    _, open_file = recorded_call(j_old, BOB, rec, outcome=None)       # still open: never purged
    _, new_file = recorded_call(Journal(conn), ANN, rec)
    Compliance(conn, clock=lambda: old).suppress(BOB, "opt_out", "key")
    Compliance(conn).add_consent(ANN, "automated_calls", "web", old, "proof-1")
    conn.close()
    cfg = write_config(tmp_path, db_target)
    code, _, err = await run_cli("--config", cfg, "db", "purge", "--older-than", "0", "--yes")
    assert code == 64 and "--older-than" in err
    code, out, err = await run_cli("--config", cfg, "db", "purge", "--older-than", "365", "--yes")
    assert code == 0, err
    assert "calls 1" in out and "recordings 1" in out and "suppression and consent records kept" in out
    assert not old_file.exists() and open_file.exists() and new_file.exists()
    conn = open_db(db_target)
    assert count(conn, "SELECT COUNT(*) FROM calls") == 2
    assert Compliance(conn).is_suppressed(BOB) and count(conn, "SELECT COUNT(*) FROM consent") == 1
    conn.close()


@pytest.mark.parametrize("command", [["erase", ANN], ["db", "purge", "--older-than", "30"]])
async def test_without_yes_nothing_goes_unless_confirmed(command, tmp_path):
    db = str(tmp_path / "store.db")
    conn, rec, _ = scene(db, tmp_path)
    _, path = recorded_call(Journal(conn, clock=lambda: utc_now() - timedelta(days=60)), ANN, rec)
    conn.close()
    cfg = write_config(tmp_path, db)
    code, _, _ = await run_cli("--config", cfg, *command, stdin="n\n")
    assert code == 1 and path.exists()
    code, _, err = await run_cli("--config", cfg, *command, stdin="y\n")
    assert code == 0, err
    assert not path.exists()
