"""The README's main job: `modem-dialer demo` runs the whole path on simulated modems."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import invoke_cli


@pytest.mark.slow
def test_demo_calls_everyone_and_journals_it(tmp_path, monkeypatch):
    from modem_dialer.cli import demo

    # the same six behaviours at half their pace: the rings, the busy and rejecting ends and
    # the keys come twice as soon (the demo's pace is for a person watching, not for a test)
    # and the message plays in real time: a short one (1.9 s, not the demo's 5 s) that still
    # outlasts the keys (pressed 0.5 s and 0.75 s after the answer) and the 1 s hang-up
    monkeypatch.setattr(demo, "DEMO_MESSAGE", "Press 1, or 9.")
    monkeypatch.setattr(demo, "DEMO_CALLEES", {
        n: (what, {k: [(t / 2, key) for t, key in v] if k == "keys" else v / 2 if isinstance(v, float) else v
                   for k, v in kw.items()})
        for n, (what, kw) in demo.DEMO_CALLEES.items()})
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
