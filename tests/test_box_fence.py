"""A box that cannot renew its lease fences itself (campaign/box.py, docs/scale-out.md): it
hangs up its calls and starts none before its lease runs out, so another box taking its
contacts over never finds its calls still up; it resumes once a heartbeat goes through.

The heartbeat is really blocked: another process holds the SQLite file's write lock (as a
stuck disk or an operator's ``sqlite3`` shell would), so the box's journal writer cannot
commit it. ``campaign run`` is a real process; the SIMs are simulated in this one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import yaml
from helpers import contacts, setup, start_cli
from helpers import wait_until as wait_for

from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import from_ts

NUMS = ["+33612888001", "+33612888002"]


async def test_a_box_whose_heartbeat_is_blocked_hangs_up_before_its_lease_runs_out(make_bank, tmp_path):
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=2)
    # a 20 s message: the calls are up when the heartbeat stops going through
    cfg, camp = setup(tmp_path, bank, NUMS, message_s=20.0)
    data = yaml.safe_load(cfg.read_text())
    data.update({"box": "fence1", "box_lease": "2s"})
    cfg.write_text(yaml.safe_dump(data))
    db = tmp_path / "dialer.db"

    def up() -> list:
        return [c for m in bank.modems for c in m.calls if c.direction == "out" and c.state == "active"]

    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    lock = None
    try:
        await wait_for(lambda: len(up()) == 2, timeout=30)
        # another process takes the write lock: no heartbeat, nothing else written, from now
        lock = sqlite3.connect(db, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")
        lease_until = from_ts(lock.execute("SELECT lease_until FROM boxes WHERE name = 'fence1'").fetchone()[0])
        assert len(up()) == 2 and datetime.now(UTC) < lease_until
        # the box hangs both calls up itself, before the lease it last wrote runs out
        await wait_for(lambda: not up(), timeout=10)
        hung_up_at = datetime.now(UTC)
        assert hung_up_at < lease_until, (hung_up_at, lease_until)
        ended = [c for m in bank.modems for c in m.calls if c.direction == "out"]
        assert [c.ended_by for c in ended] == ["dialer", "dialer"]
        lock.execute("ROLLBACK")          # the disk is back
        lock.close()
        lock = None
        out, err = await proc.communicate()
    finally:
        if lock is not None:
            lock.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "fenced: its lease not renewed" in text and "calls resume" in text, text
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    calls = [dict(r) for r in conn.execute("SELECT number, outcome, hangup_by, cause_text FROM calls ORDER BY id")]
    # the cut calls say why; their contacts went through the retry rules like any other
    assert all(c["cause_text"].startswith("box fence1 fenced: its lease not renewed") for c in calls[:2]), calls
    assert {c["hangup_by"] for c in calls[:2]} == {"dialer"}
    assert all(r["status"] in ("answered", "exhausted") for r in contacts(conn).values())
    assert conn.execute("SELECT status FROM boxes WHERE name = 'fence1'").fetchone()[0] == "stopped"
    conn.close()
