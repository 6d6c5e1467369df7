"""Helpers shared by the flow tests (no tests here): write a flow, run it on the sim bank."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import modem_config

from modem_dialer.call.flow import StaticLineProvider, flow_script, load_flow
from modem_dialer.call.line import open_line
from modem_dialer.call.session import place_call
from modem_dialer.store import open_db
from modem_dialer.store.call_journal import CallJournal

NUMBER = "+33612345678"
ADVISOR = "+33699000001"
ADVISOR2 = "+33699000002"


def write_flow(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


class Rig:
    """Open lines on a started sim bank, a journal in tmp_path, and a way to run a flow."""

    def __init__(self, bank, tmp_path: Path) -> None:
        self.bank, self.tmp = bank, tmp_path
        self.conn = open_db(tmp_path / "j.db")
        self.journal = CallJournal(self.conn)
        self.lines = []

    async def open(self):
        self.lines = [await open_line(modem_config(self.bank, i)) for i in range(len(self.bank.modems))]
        return self

    async def run(self, flow_text: str, fields: dict | None = None, number: str = NUMBER,
                  campaign_id: int | None = None, **kw):
        flow = load_flow(write_flow(self.tmp, flow_text), list(fields) if fields else None)
        kw.setdefault("lines", StaticLineProvider(self.lines))
        kw.setdefault("recordings_dir", self.tmp / "rec")
        kw.setdefault("advisor_min_ring", 0.0)
        script = flow_script(flow, fields or {}, **kw)
        return await place_call(self.lines[0], number, script, self.journal, campaign_id=campaign_id)

    def events(self, call_id: int, kind: str | None = None) -> list[dict]:
        return [e["data"] for e in self.journal.events_of(call_id) if kind is None or e["kind"] == kind]

    def answers(self, call_id: int) -> dict[str, str]:
        return {a["name"]: a["value"] for a in self.journal.answers_of(call_id)}

    async def close(self) -> None:
        for line in self.lines:
            await line.close()
        await self.journal.aclose()
        self.conn.close()
