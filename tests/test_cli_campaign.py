"""`campaign import` checks what `campaign run` checks (issue 11 item 15), and `report`
shows the survey's counts per answer (item 23). In process, through click's runner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modem_dialer.cli import main
from modem_dialer.store import Campaigns, Journal, open_db


@pytest.fixture
def box(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text(
        "database: calls.db\ndefault_region: FR\nmodems:\n  - {name: gsm0, port: /dev/null}\n")
    (tmp_path / "contacts.csv").write_text("number,name\n0612345678,Ann\n")
    (tmp_path / "notes.wav").write_text("not a wav at all\n")
    return tmp_path


def cli(box: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(box / "config.yaml"), *args])


def campaign(box: Path, extra: str) -> str:
    p = box / "camp.yaml"
    p.write_text(f"name: spring\ncontacts: contacts.csv\npurpose: survey\n{extra}")
    return str(p)


@pytest.mark.parametrize("extra, culprit", [
    ("message: notes.wav\n", "notes.wav"),
    ("say: hi\nmodems: [gsm9]\n", "gsm9"),
])
def test_import_refuses_what_run_refuses(box: Path, extra: str, culprit: str) -> None:
    path = campaign(box, extra)
    for cmd in (["campaign", "import", path], ["campaign", "run", path]):
        r = cli(box, *cmd)
        assert isinstance(r.exception, SystemExit) and r.exit_code == 1, (cmd, r.output)
        assert culprit in r.stderr and len(r.stderr.strip().splitlines()) == 1, (cmd, r.stderr)
    # nothing was imported by the refused import
    conn = open_db(box / "calls.db")
    assert Campaigns(conn).get_campaign("spring") is None


def test_import_accepts_a_good_file(box: Path) -> None:
    r = cli(box, "campaign", "import", campaign(box, "say: hello\nmodems: [gsm0]\n"))
    assert r.exit_code == 0, r.output
    assert "1 new" in r.stdout


# ---- item 23: per-question counts in every report format ---------------------------------

@pytest.fixture
def surveyed(box: Path) -> Path:
    """A campaign whose calls stored answers to two questions (as the flow runner does)."""
    conn = open_db(box / "calls.db")
    store = Campaigns(conn)
    cid = store.create_campaign("spring")
    journal = Journal(conn)
    answers = [{"rating": "5", "again": "yes"}, {"rating": "5", "again": "no"}, {"rating": "3"}]
    for i, given in enumerate(answers):
        call_id = journal.start_call(f"+3361234567{i}", "gsm0", campaign_id=cid)
        for name, value in given.items():
            journal.answer(call_id, name, value)
        journal.finish_call(call_id, "answered")
    conn.close()
    return box


EXPECTED = {"again": {"no": 1, "yes": 1}, "rating": {"3": 1, "5": 2}}


def test_report_json_has_answers_per_question(surveyed: Path) -> None:
    r = cli(surveyed, "report", "spring", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["answers"] == EXPECTED


def test_report_table_has_answers_per_question(surveyed: Path) -> None:
    r = cli(surveyed, "report", "spring")
    assert r.exit_code == 0, r.output
    assert "rating" in r.stdout and "5: 2" in r.stdout and "3: 1" in r.stdout
    assert "again" in r.stdout and "yes: 1" in r.stdout and "no: 1" in r.stdout


def test_report_csv_answers(surveyed: Path) -> None:
    r = cli(surveyed, "report", "spring", "--format", "csv", "--answers")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["question", "answer", "count"]
    assert sorted(rows[1:]) == [["again", "no", "1"], ["again", "yes", "1"], ["rating", "3", "1"],
                                ["rating", "5", "2"]]
