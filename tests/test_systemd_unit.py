"""The systemd unit: hardened (systemd-analyze's offline score) and coherent with the service."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "modem-dialer.service"


def _unit() -> dict[str, list[str]]:
    """key → values (systemd allows repeated keys), both sections merged."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_exposure_score_is_under_3() -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) < 3.0, r.stdout


def test_unit_settings_match_the_service() -> None:
    from modem_dialer.service.campaigns import STOP_GRACE

    u = _unit()
    configparser.ConfigParser(strict=False)   # the file parses as an ini file at all
    assert u["Type"] == ["notify"] and "WatchdogSec" in u
    assert float(u["TimeoutStopSec"][0]) > STOP_GRACE + 5
    assert "network-online.target" in " ".join(u["After"])
    assert u["UMask"] == ["0077"] and u["CapabilityBoundingSet"] == [""]
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-alsa rw"} <= set(u.get("DeviceAllow", []))
    assert "box udev" not in UNIT.read_text()
