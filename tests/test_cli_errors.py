"""Bad input at the command line: one line on stderr naming the culprit, never a traceback,
and exit codes that mean one thing each (docs/exit-codes.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modem_dialer.cli import EX_USAGE, main
from modem_dialer.store import Campaigns, open_db


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text("database: calls.db\ndefault_region: FR\n")
    conn = open_db(tmp_path / "calls.db")
    Campaigns(conn).create_campaign("spring")
    conn.close()
    return p


def cli(cfg: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(cfg), *args], input=input)


def one_line_error(r: Result, *names: str) -> str:
    """The run ended through sys.exit (no exception escaped) with one line naming ``names``."""
    assert isinstance(r.exception, SystemExit), f"escaped: {r.exc_info}"
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modem-dialer: "), r.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ---- issue 11 item 13: OSError / UnicodeError are one-line errors --------------------------

@pytest.mark.parametrize("args", [
    ("report", "spring", "-o", "{missing}/x.csv"),
    ("report", "spring", "--format", "json", "-o", "{missing}/x.json"),
    ("suppress", "export", "-o", "{missing}/x.csv"),
    ("consent", "export", "-o", "{missing}/x.csv"),
])
def test_output_in_a_missing_folder(cfg: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = str(tmp_path / "no" / "such" / "dir")
    r = cli(cfg, *(a.format(missing=missing) for a in args))
    line = one_line_error(r, missing)
    assert "No such file or directory" in line


def test_suppress_import_of_a_binary_file(cfg: Path, tmp_path: Path) -> None:
    binary = tmp_path / "list.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(cli(cfg, "suppress", "import", str(binary)), str(binary))
    assert "UnicodeDecodeError" not in line


def test_consent_import_of_a_binary_file(cfg: Path, tmp_path: Path) -> None:
    binary = tmp_path / "consent.csv"
    binary.write_bytes(b"number,scope,source,given_at\n" + bytes(range(128, 256)) * 4)
    one_line_error(cli(cfg, "consent", "import", str(binary)), str(binary))


def test_sim_write_config_in_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.yaml"
    r = CliRunner().invoke(main, ["sim", "--modems", "1", "--write-config", str(target)])
    one_line_error(r, str(target))


# ---- issue 11 item 14: usage errors have their own exit code ------------------------------

@pytest.mark.parametrize("args", [
    ("call", "--bogus"),
    ("no-such-command",),
    ("report",),                                     # missing argument
    ("report", "x", "--format", "xml"),              # bad choice
    ("--no-such-global",),
    ("campaign", "run"),                             # nested group, missing argument
])
def test_usage_errors_exit_64(tmp_path: Path, args: tuple[str, ...]) -> None:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == EX_USAGE == 64, (r.exit_code, r.output)
    assert "Usage:" in r.stderr or "Error:" in r.stderr


def test_help_and_version_still_exit_0() -> None:
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    assert CliRunner().invoke(main, ["campaign", "--help"]).exit_code == 0
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0


def test_exit_code_table_names_every_command() -> None:
    """docs/exit-codes.md lists every command (a new command must be added to it)."""
    import click

    doc = (Path(__file__).resolve().parent.parent / "docs" / "exit-codes.md").read_text()

    def names(group: click.Group, prefix: str = "") -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                if cmd.invoke_without_command:          # `alert` raises an alert itself
                    out.append(f"{prefix}{name}")
                out += names(cmd, f"{prefix}{name} ")
            else:
                out.append(f"{prefix}{name}")
        return out
    missing = [n for n in names(main) if f"`{n}`" not in doc]
    assert not missing, f"not in docs/exit-codes.md: {missing}"
    assert "| 64 |" in doc


# ---- issue 11 item 11: exports of personal data are private -------------------------------

@pytest.mark.parametrize("args", [
    ("report", "spring", "--format", "csv", "-o", "{out}"),
    ("report", "spring", "--format", "json", "-o", "{out}"),
    ("suppress", "export", "-o", "{out}"),
    ("consent", "export", "-o", "{out}"),
])
def test_exports_are_created_0600(cfg: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    import os
    import stat

    out = tmp_path / "export.csv"
    old = os.umask(0o022)
    try:
        r = cli(cfg, *(a.format(out=out) for a in args))
        assert r.exit_code == 0, r.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        out.chmod(0o644)                   # an existing file is tightened too: it is rewritten
        assert cli(cfg, *(a.format(out=out) for a in args)).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---- issue 11 item 17: closed sets and ranges, errors naming the value -------------------

@pytest.mark.parametrize("args, value", [
    (("flow", "check", "{flow}", "--preset", "xx"), "xx"),
    (("alert", "--to", "+33612345678", "--say", "x", "--wait", "--timeout", "-5"), "-5"),
    (("flow", "try", "{flow}", "--number", "0612345678", "--keys", "-3:1"), "-3:1"),
    (("flow", "try", "{flow}", "--number", "0612345678", "--hangup-after", "-1"), "-1"),
    (("doctor", "--min-signal", "50"), "50"),
    (("consent", "revoke", "0612345678", "--scope", "automated_cals"), "automated_cals"),
    (("discover", "--timeout", "0"), "0"),
])
def test_out_of_range_options_are_usage_errors(cfg: Path, tmp_path: Path, args: tuple[str, ...],
                                                value: str) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text("start: bye\nnodes:\n  bye: {type: hangup}\n")
    r = cli(cfg, *(a.format(flow=flow) for a in args))
    assert r.exit_code == EX_USAGE, (r.exit_code, r.output)
    assert value in r.stderr.split("Error:")[-1], r.stderr


def test_consent_import_scope_typo_is_a_bad_row(cfg: Path, tmp_path: Path) -> None:
    f = tmp_path / "consent.csv"
    f.write_text("number,scope,source,given_at\n0612345678,automated_cals,web,2026-01-01T10:00:00Z\n"
                 "0612345679,automated_calls,web,2026-01-01T10:00:00Z\n")
    r = cli(cfg, "consent", "import", str(f))
    assert "consent.csv:2:" in r.stderr and "'automated_cals'" in r.stderr, r.stderr
    assert "1 consent record(s) added, 1 bad row(s)" in r.stdout


def test_campaign_consent_scope_typo(tmp_path: Path) -> None:
    from modem_dialer.campaign.spec import load_campaign
    from modem_dialer.errors import UserError

    (tmp_path / "c.csv").write_text("number\n0612345678\n")
    camp = tmp_path / "camp.yaml"
    camp.write_text("name: x\ncontacts: c.csv\nsay: hi\npurpose: commercial\n"
                    "rules: {preset: fr, consent_scope: automated_cals}\n")
    with pytest.raises(UserError, match=r"camp.yaml:5: rules.consent_scope: .*'automated_cals'"):
        load_campaign(camp)


@pytest.mark.timeout(30)       # an accepted scenario would run the bank until Ctrl-C
@pytest.mark.parametrize("callee, named", [
    ("{answer_after: -2}", "answer_after"),
    ("{outcome: bussy}", "bussy"),
    ("{keys: [[1, 'x']]}", "'x'"),
    ("{hangup_after: -1}", "hangup_after"),
])
def test_sim_scenario_values_are_checked(tmp_path: Path, callee: str, named: str) -> None:
    sc = tmp_path / "scenario.yaml"
    sc.write_text(f"numbers:\n  '+33612345678': {callee}\n")
    r = CliRunner().invoke(main, ["sim", "--modems", "1", "--scenario", str(sc)])
    line = one_line_error(r, str(sc), named)
    assert "+33612345678" in line


def test_export_to_a_full_disk_names_the_file(cfg: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    one_line_error(cli(cfg, "consent", "export", "-o", "/dev/full"), "/dev/full", "No space left")


def test_alert_id_out_of_sqlite_range_is_a_usage_error(cfg: Path) -> None:
    r = cli(cfg, "alert", "status", "99999999999999999999")
    assert r.exit_code == EX_USAGE, r.output


@pytest.mark.parametrize("command", ["ack", "resolve"])
def test_who_acknowledges_or_resolves_is_a_printable_name(cfg: Path, command: str) -> None:
    # journaled and shown to operators: a control character would forge what they read
    r = cli(cfg, "alert", command, "1", "--by", "eve\x1b[2Jroot")
    assert r.exit_code == 1, r.output
    assert "--by: a name of 1 to 100 printable characters" in one_line_error(r)
