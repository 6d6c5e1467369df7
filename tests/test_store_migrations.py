"""Versioned schema: fresh DB, an old DB brought up to date, a newer DB refused."""

from __future__ import annotations

import concurrent.futures
import sqlite3

import pytest

from modem_dialer.errors import UserError
from modem_dialer.store import open_db
from modem_dialer.store.migrations import LATEST, STEPS, Step, migrate, split_sql, to_postgres, user_version

TABLES = {"campaigns", "contacts", "calls", "call_events", "keys", "answers", "refusals", "suppression",
          "consent", "modem_state", "alerts", "sms"}


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def raw(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level="IMMEDIATE")


def test_fresh_db_has_latest_schema(tmp_path):
    conn = open_db(tmp_path / "d.db")
    assert user_version(conn) == LATEST
    assert TABLES <= tables(conn)


def _v2_add_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE calls ADD COLUMN recording TEXT")
    conn.execute("UPDATE calls SET recording = 'none'")


def test_v1_db_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "d.db"
    conn = raw(path)
    assert migrate(conn, STEPS[:1]) == 1
    with conn:
        conn.execute("INSERT INTO calls (number, modem, created_at) VALUES ('+33612345678', 'm0', 'now')")
    steps = (*STEPS[:1], Step(2, "recording column", _v2_add_column),
             Step(3, "index", "CREATE INDEX calls_recording ON calls(recording);"))
    assert migrate(conn, steps) == 3
    assert conn.execute("SELECT number, recording FROM calls").fetchall() == [("+33612345678", "none")]
    assert "calls_recording" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert migrate(conn, steps) == 3  # idempotent


def test_real_steps_bring_a_v1_db_to_latest(tmp_path):
    path = tmp_path / "d.db"
    conn = raw(path)
    migrate(conn, STEPS[:1])
    conn.close()
    assert user_version(open_db(path)) == LATEST


def test_failed_step_leaves_previous_version(tmp_path):
    conn = raw(tmp_path / "d.db")
    migrate(conn, STEPS[:1])
    bad = (*STEPS[:1], Step(2, "half done", "CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, bad)
    assert user_version(conn) == 1
    assert "half" not in tables(conn)


def test_newer_db_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = raw(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(UserError, match=r"future\.db.*newer"):
        open_db(path)


def test_split_sql_keeps_trigger_bodies():
    parts = split_sql("CREATE TABLE t (x);\nCREATE TRIGGER g BEFORE DELETE ON t BEGIN SELECT 1; SELECT 2; END;\n"
                      "INSERT INTO t VALUES ('a;b');")
    assert len(parts) == 3
    assert parts[1].count("SELECT") == 2
    assert parts[2].endswith("('a;b');")


def test_step2_db_gets_the_sms_then_the_twoway_step(tmp_path):
    # a database made before issue 13 (step 2) gets main's SMS step 3 and the console step 4 and the two-way step 5;
    # a fresh one has every table of both
    assert [s.version for s in STEPS] == list(range(1, LATEST + 1)) and LATEST >= 5
    assert "SMS" in STEPS[2].description and "console" in STEPS[3].description and "two-way" in STEPS[4].description
    path = tmp_path / "d.db"
    conn = raw(path)
    assert migrate(conn, STEPS[:2]) == 2
    with conn:
        conn.execute("INSERT INTO calls (number, modem, created_at) VALUES ('+33612345678', 'm0', 'now')")
    assert not {"sms_in", "inbound_calls"} & tables(conn)
    conn.close()
    conn = open_db(path)
    assert user_version(conn) == LATEST
    new = {"sms_in", "sms_in_parts", "inbound_calls", "webhook_outbox"}
    assert new <= tables(conn)
    assert [tuple(r) for r in conn.execute("SELECT number, direction FROM calls")] == [("+33612345678", "out")]
    fresh = open_db(tmp_path / "fresh.db")
    assert TABLES | new <= tables(fresh)
    # a database already at main's step 3 (SMS) gets steps 4 and 5, keeping its messages
    path3 = tmp_path / "d3.db"
    conn3 = raw(path3)
    migrate(conn3, STEPS[:3])
    with conn3:
        conn3.execute("INSERT INTO sms_in (modem, encoding, received_at, kind) VALUES ('m0', 'gsm7', 'now', 'reply')")
    conn3.close()
    conn3 = open_db(path3)
    assert user_version(conn3) == LATEST and conn3.execute("SELECT COUNT(*) FROM sms_in").fetchone()[0] == 1


# ---- PostgreSQL: the same steps, derived DDL ------------------------------------------------

def pg_tables(conn) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}


def test_to_postgres_types_forward_keys_and_refusals():
    ddl = to_postgres("CREATE TABLE a (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id) ON DELETE SET NULL,\n"
                      "    x REAL, t TEXT NOT NULL);\nCREATE TABLE b (id INTEGER PRIMARY KEY);\n"
                      "ALTER TABLE b ADD COLUMN n INTEGER NOT NULL DEFAULT 0;")
    assert "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in ddl and "x DOUBLE PRECISION" in ddl
    assert 't TEXT COLLATE "C" NOT NULL' in ddl and "n BIGINT NOT NULL DEFAULT 0" in ddl
    # b does not exist yet when a is created: the key is added at the end
    assert "REFERENCES b(id)" not in ddl.split(";")[0]
    assert ddl.rstrip().endswith("ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b(id) ON DELETE SET NULL;")
    # a table rebuilt the SQLite way (new table, copy, drop, rename) passes as written
    rebuilt = to_postgres("CREATE TABLE t2 (k TEXT PRIMARY KEY);\nINSERT INTO t2 (k) SELECT k FROM t;\n"
                          "DROP TABLE t;\nALTER TABLE t2 RENAME TO t;")
    assert rebuilt.endswith("INSERT INTO t2 (k) SELECT k FROM t;\nDROP TABLE t;\nALTER TABLE t2 RENAME TO t;")
    with pytest.raises(ValueError, match="postgres="):
        to_postgres("CREATE TRIGGER g BEFORE DELETE ON t BEGIN SELECT 1; END;")
    with pytest.raises(ValueError, match="postgres="):
        to_postgres("ALTER TABLE t DROP COLUMN k;")
    with pytest.raises(ValueError, match="postgres="):
        Step(9, "a function", lambda c: None).for_postgres()


def test_pg_fresh_db_has_latest_schema_once_with_two_processes_racing(pg):
    dsn = pg.new_schema()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:      # two connections, like two boxes starting
        conns = list(ex.map(open_db, [dsn, dsn]))
    assert all(user_version(c) == LATEST for c in conns)
    assert TABLES | {"sms_in", "inbound_calls", "webhook_outbox", "schema_version"} <= pg_tables(conns[0])
    versions = [r[0] for r in conns[0].execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, LATEST + 1))        # each step ran exactly once
    for c in conns:
        c.close()


def test_pg_old_db_is_migrated_and_a_failed_step_leaves_it_as_it_was(pg):
    dsn = pg.new_schema()
    conn = open_db(dsn, migrate=False)
    assert migrate(conn, STEPS[:2]) == 2
    with conn:
        conn.execute("INSERT INTO calls (number, modem, created_at) VALUES ('+33612345678', 'm0', 'now')")
    bad = (*STEPS[:2], Step(3, "half done", "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);"))
    with pytest.raises(sqlite3.ProgrammingError, match="no_such_table"):
        migrate(conn, bad)
    assert user_version(conn) == 2 and "half" not in pg_tables(conn)
    assert migrate(conn) == LATEST
    assert [tuple(r) for r in conn.execute("SELECT number, direction FROM calls")] == [("+33612345678", "out")]
    conn.close()


def test_pg_newer_db_is_refused(pg):
    dsn = pg.new_schema()
    conn = open_db(dsn)
    with conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 1,))
    conn.close()
    with pytest.raises(UserError, match=r"postgresql://.*newer"):
        open_db(dsn)
