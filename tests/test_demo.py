"""The README's main job: `modem-dialer demo` runs the whole path on simulated modems."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import invoke_cli


@pytest.mark.slow
def test_demo_calls_everyone_and_journals_it(tmp_path, monkeypatch):
    from modem_dialer.cli import demo

    # the message plays in real time: the shortest that still outlasts the callees' keys
    # (pressed 1 s and 1.5 s after the answer) rather than the demo's 5 s
    monkeypatch.setattr(demo, "DEMO_MESSAGE", "Press 1, or 9 to stop.")    # 2.4 s
    rc, out, err = invoke_cli("demo", "--dir", str(tmp_path))
    assert rc == 0, err
    rows = sqlite3.connect(tmp_path / "demo.db").execute(
        "SELECT number, outcome FROM calls ORDER BY number").fetchall()
    assert rows == [("+33612345601", "answered"), ("+33612345602", "busy"), ("+33612345603", "no_answer"),
                    ("+33612345604", "answered"), ("+33612345605", "rejected"), ("+33612345606", "answered")]
    keys = sqlite3.connect(tmp_path / "demo.db").execute(
        "SELECT c.number, k.key FROM keys k JOIN calls c ON c.id = k.call_id ORDER BY c.number").fetchall()
    assert keys == [("+33612345601", "1"), ("+33612345606", "9")]
    assert "Journal" in out
