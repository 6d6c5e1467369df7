"""`modem-dialer discover` and `modem-dialer udev` as a user runs them, on fake sysfs trees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from helpers import invoke_cli
from sysfs_builder import FakeSysfs, ec25, hub_of_ec25, sim7600

from modem_dialer.cli.box import replace_modems_section
from modem_dialer.config import load_config
from modem_dialer.modems.udev import check_rules


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command in-process (tests/helpers.py), answered as subprocess.run would."""
    rc, out, err = invoke_cli(*args, cwd=cwd)
    return subprocess.CompletedProcess(list(args), rc, out, err)


def test_discover_table_json_and_config_for_a_hub(tmp_path: Path) -> None:
    root = hub_of_ec25(tmp_path / "sys", seed=4).root
    res = cli("discover", "--sysfs", str(root), "--json", "--no-probe")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == [f"gsm{i}" for i in range(8)]
    assert [r["usb_path"] for r in rows] == [f"1-1.{i}" for i in range(1, 9)]
    assert all(r["audio"]["kind"] == "uac" and r["at_link"] == f"/dev/gsm/{r['usb_path']}-at" for r in rows)

    table = cli("discover", "--sysfs", str(root), "--no-probe")
    assert table.returncode == 0 and "8 modem(s), 0 unknown" in table.stdout and "1-1.8" in table.stdout

    cfg = tmp_path / "config.yaml"
    res = cli("discover", "--sysfs", str(root), "--no-probe", "--write-config", str(cfg))
    assert res.returncode == 0, res.stderr
    loaded = load_config(str(cfg)).config
    assert [m.port for m in loaded.modems] == [f"/dev/gsm/1-1.{i}-at" for i in range(1, 9)]
    assert loaded.modems[0].audio is not None and loaded.modems[0].audio.device == "hw:CARD=gsm_1_1_1,DEV=0"


def test_write_config_keeps_the_other_sections_and_a_backup(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path / "sys")
    sim7600(fs, "1-2", 0)
    cfg = tmp_path / "config.yaml"
    old = ("# my box\ndatabase: calls.db   # keep me\nmodems:\n  - name: old\n    port: /dev/ttyUSB9\n"
           "\n  # a comment inside the list\n  - name: old2\n    port: /dev/ttyUSB8\ndefault_region: BE\n")
    cfg.write_text(old)
    res = cli("discover", "--sysfs", str(fs.root), "--no-probe", "--current-names", "--write-config", str(cfg))
    assert res.returncode == 0, res.stderr
    text = cfg.read_text()
    assert text.startswith("# my box\ndatabase: calls.db   # keep me\n") and text.endswith("default_region: BE\n")
    loaded = load_config(str(cfg)).config
    assert (loaded.database, loaded.default_region) == ("calls.db", "BE")
    assert [(m.name, m.port) for m in loaded.modems] == [("gsm0", "/dev/ttyUSB2")]
    assert (tmp_path / "config.yaml.bak").read_text() == old


def test_replace_modems_section_appends_when_absent() -> None:
    out = replace_modems_section("database: x.db", "modems:\n  - name: a\n    port: /dev/x\n")
    assert yaml.safe_load(out) == {"database": "x.db", "modems": [{"name": "a", "port": "/dev/x"}]}


def test_discover_probe_failure_is_reported_not_fatal(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    ec25(fs, "9-9", 90, None)          # /dev/ttyUSB92 does not exist on the test machine
    res = cli("discover", "--sysfs", str(tmp_path), "--json", "--timeout", "2")
    assert res.returncode == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["imei"] is None and "/dev/ttyUSB92" in row["identity_error"]


def test_no_modems_says_so_and_exits_1_unknown_listed(tmp_path: Path) -> None:
    empty = cli("discover", "--sysfs", str(tmp_path / "nothing"), "--no-probe")
    assert empty.returncode == 1 and "no known modems found" in empty.stderr
    fs = FakeSysfs(tmp_path / "sys")
    fs.device("1-1.2", "1a86", "7523", [0], product="USB Serial")
    fs.tty_usb("1-1.2", 0, 4)
    res = cli("discover", "--sysfs", str(fs.root), "--no-probe")
    assert res.returncode == 1
    assert "unknown: ttys if00=ttyUSB4" in res.stdout and "1 unknown USB serial device" in res.stderr
    rows = json.loads(cli("discover", "--sysfs", str(fs.root), "--no-probe", "--json").stdout)
    assert [(r["known"], r["family"], r["name"]) for r in rows] == [(False, "unknown", None)]
    cfg = tmp_path / "c.yaml"
    assert cli("discover", "--sysfs", str(fs.root), "--no-probe", "--write-config", str(cfg)).returncode == 1
    assert not cfg.exists()
    rules = cli("udev", "--sysfs", str(fs.root))
    assert rules.returncode == 1 and "no known modems found" in rules.stderr


def test_udev_prints_or_writes_checked_rules_stable_across_replug(tmp_path: Path) -> None:
    a = cli("udev", "--sysfs", str(hub_of_ec25(tmp_path / "a", seed=1).root))
    out = tmp_path / "90-modem-dialer.rules"
    b = cli("udev", "--sysfs", str(hub_of_ec25(tmp_path / "b", seed=2).root), "--output", str(out))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert out.read_text() == a.stdout and b.stdout == ""
    assert check_rules(a.stdout) == [] and a.stdout.count('ATTR{id}="gsm_1_1_') == 8
    assert "udevadm control --reload" in b.stderr
    bad = cli("udev", "--sysfs", str(tmp_path / "a"), "--group", "Bad Group")
    assert bad.returncode == 1 and "not a valid group name" in bad.stderr


def test_a_stick_in_mass_storage_mode_is_shown_with_the_fix(tmp_path: Path) -> None:
    """Issue 11 item 19, as the user sees it: listed, and the exit-1 line says why."""
    fs = FakeSysfs(tmp_path / "sys")
    fs.device("1-1.2", "12d1", "1446", [0, 1], product="HUAWEI Mobile")
    res = cli("discover", "--sysfs", str(fs.root), "--no-probe")
    assert res.returncode == 1
    assert "1-1.2" in res.stdout and "usb_modeswitch" in res.stdout
    assert "1 modem in mass-storage mode" in res.stderr and "Traceback" not in res.stderr
