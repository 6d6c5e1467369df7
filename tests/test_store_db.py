"""open_db: the pragmas that make the journal durable and shareable, and one-line errors."""

from __future__ import annotations

import sqlite3

import pytest

from modem_dialer.errors import UserError
from modem_dialer.store import open_db
from modem_dialer.store.migrations import LATEST


def test_pragmas_and_rows(tmp_path):
    path = tmp_path / "d.db"
    conn = open_db(path, busy_timeout_ms=1234)
    assert path.exists()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    row = conn.execute("SELECT 1 AS one").fetchone()
    assert isinstance(row, sqlite3.Row) and row["one"] == 1


def test_foreign_keys_enforced(tmp_path):
    conn = open_db(tmp_path / "d.db")
    with pytest.raises(sqlite3.IntegrityError), conn:
        conn.execute("INSERT INTO call_events (call_id, at, kind) VALUES (999, 'x', 'state')")


def test_missing_directory_names_the_file(tmp_path):
    path = tmp_path / "nope" / "d.db"
    with pytest.raises(UserError, match=r"nope/d\.db"):
        open_db(path)


def test_unwritable_location_names_the_file():
    # /proc refuses new files even to root, unlike a chmod'ed directory
    with pytest.raises(UserError, match=r"/proc/modem-dialer-test\.db"):
        open_db("/proc/modem-dialer-test.db")


def test_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not an SQLite file at all, just some text " * 40)
    with pytest.raises(UserError, match=r"notes\.db"):
        open_db(path)


def _racing(monkeypatch, times: int) -> dict[str, int]:
    """The switch to WAL answered SQLITE_BUSY at once ``times`` times: what SQLite does, with
    no busy handler called, while other processes open the same new file (three boxes'
    serves started together: one in ~30 such starts failed, "database is locked")."""
    from modem_dialer.store import db

    left = {"busy": times}

    class Racing(sqlite3.Connection):
        def execute(self, sql, *args):            # type: ignore[override]
            if sql.startswith("PRAGMA journal_mode") and left["busy"]:
                left["busy"] -= 1
                exc = sqlite3.OperationalError("database is locked")
                exc.sqlite_errorcode = sqlite3.SQLITE_BUSY      # type: ignore[attr-defined]
                raise exc
            return super().execute(sql, *args)
    real = sqlite3.connect
    monkeypatch.setattr(db.sqlite3, "connect", lambda *a, **kw: real(*a, **{"factory": Racing, **kw}))
    return left


def test_a_new_file_opened_by_several_processes_at_once(tmp_path, monkeypatch):
    left = _racing(monkeypatch, 3)
    conn = open_db(tmp_path / "t.db")            # tried again within the busy timeout
    assert left["busy"] == 0 and conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # busy past the busy timeout: the one-line error naming the file, as before
    _racing(monkeypatch, 10**6)
    with pytest.raises(UserError, match=r"t2\.db: cannot use it \(database is locked\)"):
        open_db(tmp_path / "t2.db", busy_timeout_ms=50)


def test_writer_and_reader_processes_share_the_file(tmp_path):
    # A second connection (the CLI's) sees committed rows while the writer keeps its own open.
    a = open_db(tmp_path / "d.db")
    b = open_db(tmp_path / "d.db")
    with a:
        a.execute("INSERT INTO modem_state (name, status) VALUES ('m0', 'ready')")
    assert b.execute("SELECT status FROM modem_state WHERE name = 'm0'").fetchone()[0] == "ready"


# ---- PostgreSQL ------------------------------------------------------------------------------

def test_pg_rows_keys_and_placeholders(pg):
    conn = open_db(pg.new_schema())
    row = conn.execute("SELECT ?2 AS two, ?1 AS one, '50% ?' AS lit", (1, 2)).fetchone()
    assert row["one"] == 1 and row[0] == 2 and row["lit"] == "50% ?" and dict(row) == {"two": 2, "one": 1, "lit": "50% ?"}
    with pytest.raises(sqlite3.IntegrityError), conn:     # foreign keys, as sqlite3's error class
        conn.execute("INSERT INTO call_events (call_id, at, kind) VALUES (999, 'x', 'state')")
    with conn:
        a = conn.execute("INSERT INTO modem_state (name, status) VALUES ('m0', 'ready')")
        b = conn.execute("INSERT INTO calls (number, modem, created_at) VALUES ('+33612345678', 'm0', 'x')")
    assert a.lastrowid is None and b.lastrowid == 1      # RETURNING id only where there is an id
    # a failed block is rolled back whole, a nested block alone
    with pytest.raises(ZeroDivisionError), conn:
        conn.execute("UPDATE modem_state SET status = 'gone'")
        raise ZeroDivisionError
    with conn:
        conn.execute("UPDATE modem_state SET reason = 'kept'")
        with pytest.raises(sqlite3.IntegrityError), conn:
            conn.execute("INSERT INTO modem_state (name, status) VALUES ('m0', 'dup')")
    assert tuple(conn.execute("SELECT status, reason FROM modem_state").fetchone()) == ("ready", "kept")
    conn.close()


def test_pg_unreachable_is_one_line_without_the_password(tmp_path):
    with pytest.raises(UserError) as info:
        open_db(f"postgresql://dialer:s3cret@/dialer?host={tmp_path}&port=1")
    msg = str(info.value)
    assert msg.startswith("database postgresql://dialer:***@/dialer") and "s3cret" not in msg
    assert "\n" not in msg
