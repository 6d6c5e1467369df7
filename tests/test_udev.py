"""udev rules generated from fake sysfs trees: content, our syntax check, udevadm verify."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sysfs_builder import FakeSysfs, e1550, hub_of_ec25, sim7600

from modem_dialer.errors import UserError
from modem_dialer.modems.discovery import discover
from modem_dialer.modems.udev import alsa_card_id, check_rules, generate_rules

REPO = Path(__file__).resolve().parents[1]


def _udevadm_verify(path: Path) -> subprocess.CompletedProcess[str] | None:
    """Run `udevadm verify` (systemd >= 253); None when this udevadm cannot."""
    exe = shutil.which("udevadm")
    if exe is None:
        return None
    probe = subprocess.run([exe, "verify", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:          # "Unknown command verb verify." on systemd 252
        return None
    return subprocess.run([exe, "verify", str(path)], capture_output=True, text=True)


def _udev_parse(rules_dir: Path) -> list[str] | None:
    """Messages of the real udev rules parser (systemd 252 has no `verify`) about files in
    ``rules_dir``: `udevadm test` in a private mount namespace where the directory is bound
    over /etc/udev/rules.d. None when udevadm or unshare cannot run here."""
    exe, unshare = shutil.which("udevadm"), shutil.which("unshare")
    if exe is None or unshare is None or not Path("/sys/class/mem/null").exists():
        return None
    script = f'mount --bind "{rules_dir}" /etc/udev/rules.d && exec {exe} test /sys/class/mem/null'
    res = subprocess.run([unshare, "-m", "sh", "-c", script], capture_output=True, text=True)
    out = res.stdout + res.stderr
    if "Reading rules file: /etc/udev/rules.d/" not in out:
        return None                    # no permission for the namespace or the mount
    # "Unknown group 'dialer'": the group is made on the real box (docs/box.md), not here
    return [line for line in out.splitlines()
            if line.startswith("/etc/udev/rules.d/") and "Unknown group" not in line]


def _mixed_box(root: Path) -> list:
    fs = FakeSysfs(root)
    sim7600(fs, "1-2", 0)
    e1550(fs, "1-3", 5)
    fs.device("1-4", "1a86", "7523", [0])        # unknown: gets no rule
    fs.tty_usb("1-4", 0, 8)
    return discover(root)


def test_rules_for_a_mixed_box(tmp_path: Path) -> None:
    text = generate_rules(_mixed_box(tmp_path))
    assert check_rules(text) == []
    assert 'KERNEL=="1-2", ENV{ID_MM_DEVICE_IGNORE}="1"' in text
    assert 'KERNELS=="1-2", ENV{ID_USB_INTERFACE_NUM}=="02", SYMLINK+="gsm/1-2-at"' in text
    assert 'KERNELS=="1-2", ENV{ID_USB_INTERFACE_NUM}=="04", SYMLINK+="gsm/1-2-audio"' in text
    assert 'KERNELS=="1-3", ENV{ID_USB_INTERFACE_NUM}=="01", SYMLINK+="gsm/1-3-audio"' in text
    assert 'GROUP="dialer", MODE="0660"' in text
    assert "1-4" not in text                     # unknown device: no rule
    assert "ATTR{id}" not in text                # no UAC card here


def test_hub_rules_rename_cards_and_survive_replug(tmp_path: Path) -> None:
    before = generate_rules(discover(hub_of_ec25(tmp_path / "a", seed=11).root))
    after = generate_rules(discover(hub_of_ec25(tmp_path / "b", seed=12).root))
    assert before == after
    assert check_rules(before) == []
    cards = re.findall(r'KERNELS=="(1-1\.\d)", ATTR\{id\}="(\w+)"', before)
    assert cards == [(f"1-1.{i}", f"gsm_1_1_{i}") for i in range(1, 9)]
    assert len(re.findall(r'SYMLINK\+="gsm/1-1\.\d-at"', before)) == 8
    assert "-audio" not in before                # UAC: the card is the audio path


def test_card_ids_fit_the_kernel_rules() -> None:
    assert alsa_card_id("1-1.3") == "gsm_1_1_3"
    deep = alsa_card_id("3-1.4.2.4.1.3")
    assert re.fullmatch(r"[A-Za-z0-9_-]{3,15}", deep) and deep == alsa_card_id("3-1.4.2.4.1.3")
    assert deep != alsa_card_id("3-1.4.2.4.1.4")
    with pytest.raises(UserError, match="not a USB port path"):
        alsa_card_id('1-1"; RUN+="/bin/sh')


@pytest.mark.parametrize(("line", "problem"), [
    ('SUBSYSTEM=="tty", SYMLINK+="gsm/x', "unbalanced quotes"),
    ('SUBSYSTEM=="tty" SYMLINK+="x"', "missing ','"),
    ('SUBSYSTEMX=="tty", SYMLINK+="x"', "unknown key SUBSYSTEMX"),
    ('KERNELS="1-1.3", SYMLINK+="x"', "KERNELS is a match key"),
    ('SUBSYSTEM=="tty", GROUP=="dialer"', "GROUP is an assignment"),
    ('SUBSYSTEM=="tty", ENV="1"', "ENV needs {attribute}"),
    ('SUBSYSTEM=="tty", MODE="rw"', "MODE must be octal"),
    ('SUBSYSTEM=="sound", ATTR{id}="gsm.1.1.3"', "ALSA card id"),
    ('SUBSYSTEM=="tty", KERNELS=="1-1.3"', "no assignment"),
    ('ACTION=="remove", GOTO="nowhere"', "missing LABEL 'nowhere'"),
])
def test_check_rules_catches(line: str, problem: str) -> None:
    problems = check_rules("# comment\n\n" + line + "\n")
    assert problems and problems[0].startswith("line 3: ") and problem in problems[0]


def test_check_rules_accepts_continuations_and_substitutions() -> None:
    text = ('SUBSYSTEM=="tty", ATTRS{idVendor}=="2c7c", \\\n'
            '  ENV{ID_USB_INTERFACE_NUM}=="02", SYMLINK+="gsm/%b-at"\n')
    assert check_rules(text) == []


def test_shipped_example_file_is_valid() -> None:
    text = (REPO / "udev" / "90-modem-dialer.rules").read_text()
    assert check_rules(text) == []
    assert "ID_MM_DEVICE_IGNORE" in text and 'GROUP="dialer"' in text


@pytest.mark.parametrize("which", ["generated", "example"])
def test_udevadm_verify(tmp_path: Path, which: str) -> None:
    if which == "generated":
        path = tmp_path / "90-modem-dialer.rules"
        path.write_text(generate_rules([*discover(hub_of_ec25(tmp_path / "s", seed=3).root),
                                        *_mixed_box(tmp_path / "m")]))
    else:
        path = REPO / "udev" / "90-modem-dialer.rules"
    res = _udevadm_verify(path)
    if res is None:
        pytest.skip("udevadm verify not available (needs systemd >= 253)")
    assert res.returncode == 0, res.stdout + res.stderr


def test_real_udev_parser_accepts_generated_and_example_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "90-modem-dialer.rules").write_text((REPO / "udev" / "90-modem-dialer.rules").read_text())
    (rules / "91-generated.rules").write_text(
        generate_rules([*discover(hub_of_ec25(tmp_path / "s", seed=3).root), *_mixed_box(tmp_path / "m")]))
    (rules / "92-broken.rules").write_text('SUBSYSTEM=="tty", FOO=="x", SYMLINK+="bad"\n')
    messages = _udev_parse(rules)
    if messages is None:
        pytest.skip("cannot run udevadm test in a private mount namespace here")
    # the deliberately broken file proves the parser ran and reports; ours are silent
    assert any("92-broken.rules:1" in m and "FOO" in m for m in messages), messages
    assert [m for m in messages if "92-broken" not in m] == []
