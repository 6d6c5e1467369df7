"""Config errors: one line naming file, line and key; exit 1 without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import invoke_cli

from modem_dialer.config import load_config
from modem_dialer.errors import UserError

GOOD = """database: x.db
default_region: FR
modems:
  - name: gsm0
    port: /dev/gsm/gsm0-at
    family: quectel
    audio: {kind: serial, port: /dev/gsm/gsm0-audio}
"""


def write(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_good_config_and_relative_database(tmp_path):
    cfg = load_config(str(write(tmp_path, GOOD)))
    assert cfg.config.modems[0].audio.port == "/dev/gsm/gsm0-audio"
    assert cfg.database_path == tmp_path / "x.db"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("family: quectel", "family: nokia"), ":6: modems[0].family: unknown family"),
    (GOOD + "  - name: gsm0\n    port: /dev/x\n", "duplicate modem name 'gsm0'"),
    (GOOD.replace("    port: /dev/gsm/gsm0-at\n", ""), ":4: modems[0].port: required key is missing"),
    (GOOD.replace("database", "databse"), ":1: databse: unknown key"),
    (GOOD.replace("FR", "XX"), ":2: default_region: not a known ISO 3166 region code"),
    (GOOD + "    pin: 12ab\n", "modems[0].pin: SIM PIN must be 4 to 8 digits"),
    (GOOD.replace("port: /dev/gsm/gsm0-audio", "device: x"), "audio kind 'serial' needs 'port'"),
    ("modems: [\n", "invalid YAML"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(str(path))
    msg = str(info.value)
    assert str(path) in msg and expected in msg and "\n" not in msg


def test_cli_reports_config_error_without_traceback(tmp_path):
    # a real process: the installed entry point's exit code and stderr, not click's runner
    path = write(tmp_path, GOOD.replace("family: quectel", "family: nokia"))
    r = subprocess.run([sys.executable, "-m", "modem_dialer.cli", "--config", str(path), "modems"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "unknown family" in r.stderr and str(path) in r.stderr


def test_missing_config_file(tmp_path):
    rc, _out, err = invoke_cli("--config", str(tmp_path / "nope.yaml"), "modems")
    assert rc == 1 and "nope.yaml: config file not found" in err


def test_the_annotated_example_config_is_valid():
    from pathlib import Path

    cfg = load_config(str(Path(__file__).resolve().parent.parent / "config.yaml"))
    assert [m.family for m in cfg.config.modems] == ["auto", "quectel", "huawei"]
