"""`db migrate` and `db copy` through the command line, on a real SQLite file and the test's
PostgreSQL cluster."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from conftest import run_cli
from store_steps import claim_contact, settle_contact

from modem_dialer.store import Alerts, Campaigns, Compliance, Journal, open_db
from modem_dialer.store.migrations import LATEST, STEPS, migrate

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=timezone.utc)


def write_config(tmp_path, database: str) -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f'database: "{database}"\n')
    return str(cfg)


def fill(conn) -> None:
    """A little of everything, with ids that point at each other both ways."""
    cs, j, comp = Campaigns(conn, clock=lambda: T0), Journal(conn, clock=lambda: T0), Compliance(conn)
    cid = cs.create_campaign("spring", config={"purpose": "informational"})
    cs.import_contacts(cid, [(i + 2, f"+336123{i:05d}", {"name": f"n{i}", "é": "ü"}) for i in range(1200)])
    for contact in cs.next_due(cid, T0, limit=30):
        claim_contact(conn, contact.id, lambda: T0)
        call = j.start_call(contact.number, "gsm0", "356938035643809", campaign_id=cid, contact_id=contact.id)
        j.mark_dialed(call)
        j.mark_answered(call)
        j.key(call, "1", "urc")
        j.answer(call, "q1", 4, contact_id=contact.id)
        j.finish_call(call, "answered", hangup_by="callee", duration_s=12.5)
        settle_contact(conn, contact.id, "answered", last_outcome="answered", last_call_id=call, count_attempt=True,
                       clock=lambda: T0)
    comp.suppress("+33699999999", "opt_out", "sms")
    comp.add_consent("+33612345678", "calls", "web", T0, "proof-1")
    alert_id, _ = Alerts(conn).raise_alert("disk:web1", "oncall", "Disk full")
    Alerts(conn).add_sms("+33612345678", "Disk full", alert_id=alert_id)


def dump(conn, table: str) -> list[tuple]:
    rows = conn.execute(f"SELECT * FROM {table}").fetchall()   # noqa: S608 - our table names
    return sorted((tuple(r) for r in rows), key=repr)


TABLES = ["campaigns", "contacts", "calls", "call_events", "keys", "answers", "suppression", "consent",
          "alerts", "sms"]


async def test_db_migrate_on_sqlite_brings_an_old_file_up_to_date(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level="IMMEDIATE")
    migrate(old, STEPS[:1])
    old.close()
    cfg = write_config(tmp_path, str(path))
    code, out, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 0, err
    assert f"schema version {LATEST} (migrated from 1" in out and str(path) in out
    code, out, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 0 and f"schema version {LATEST} (up to date)" in out, (out, err)


async def test_db_migrate_on_postgresql(tmp_path, pg):
    dsn = pg.new_schema()
    cfg = write_config(tmp_path, dsn)
    code, out, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 0, err
    assert f"schema version {LATEST} (migrated from 0" in out
    code, out, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 0 and f"schema version {LATEST} (up to date)" in out, (out, err)


async def test_db_migrate_unreachable_server_is_one_line(tmp_path):
    cfg = write_config(tmp_path, f"postgresql://nobody@/x?host={tmp_path}&port=1")
    code, _, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 1 and err.startswith("modem-dialer: database postgresql://") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


async def test_db_copy_moves_every_row_with_its_id(tmp_path, pg):
    path = tmp_path / "journal.db"
    src = open_db(path)
    fill(src)
    dsn = pg.new_schema()
    cfg = write_config(tmp_path, str(path))
    code, out, err = await run_cli("--config", cfg, "db", "copy", "--to", dsn, "--batch", "100")
    assert code == 0, err
    assert "contacts: 1200 row(s)" in out and "copied" in out
    dst = open_db(dsn)
    for table in TABLES:
        assert dump(dst, table) == dump(src, table), table
    # the next ids continue after the copied ones; the foreign keys are back
    cs = Campaigns(dst)
    assert cs.create_campaign("summer") == 2
    assert Journal(dst).start_call("+33612345678", "gsm0") == 31
    with pytest.raises(sqlite3.IntegrityError), dst:
        dst.execute("INSERT INTO call_events (call_id, at, kind) VALUES (999999, 'x', 'state')")
    with pytest.raises(sqlite3.IntegrityError):   # the consent trigger came with the schema
        with dst:
            dst.execute("UPDATE consent SET number = '+33600000000'")

    # a second copy into the same database is refused, in one line, and changes nothing
    before = dump(dst, "calls")
    code, out, err = await run_cli("--config", cfg, "db", "copy", "--to", dsn)
    assert code == 1 and "not empty (table campaigns has rows)" in err, (out, err)
    assert len(err.strip().splitlines()) == 1 and dump(dst, "calls") == before
    dst.close()
    src.close()


async def test_db_copy_refuses_bad_sources_and_targets(tmp_path, pg):
    cfg = write_config(tmp_path, str(tmp_path / "j.db"))
    code, _, err = await run_cli("--config", cfg, "db", "copy", "--to", str(tmp_path / "other.db"))
    assert code == 1 and "not a PostgreSQL URL" in err
    code, _, err = await run_cli("--config", cfg, "db", "copy", "--to", pg.new_schema(),
                                 "--from", str(tmp_path / "missing.db"))
    assert code == 1 and "missing.db: no such SQLite file" in err
    cfg_pg = write_config(tmp_path, pg.new_schema())
    code, _, err = await run_cli("--config", cfg_pg, "db", "copy", "--to", pg.new_schema())
    assert code == 1 and "pass --from PATH" in err


async def test_a_bad_database_url_is_one_line_naming_the_key(tmp_path):
    cfg = write_config(tmp_path, "postgresql://dialer@dbhost/dialer?bogus=1")
    code, _, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 1 and "config.yaml:1: database: not a valid PostgreSQL URL" in err and "bogus" in err
    assert len(err.strip().splitlines()) == 1


async def test_a_bad_database_url_does_not_show_its_password(tmp_path):
    cfg = write_config(tmp_path, "postgresql://dialer:s3cr3t-pw@dbhost/dialer?bogus=1")
    code, _, err = await run_cli("--config", cfg, "db", "migrate")
    assert code == 1 and "config.yaml:1: database: not a valid PostgreSQL URL" in err, err
    assert "s3cr3t-pw" not in err and "dialer:***@dbhost" in err, err
