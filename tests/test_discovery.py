"""Discovery on fake sysfs trees with real kernel layouts (tests/sysfs_builder.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from sysfs_builder import HUB_PORTS, FakeSysfs, e1550, ec25, hub_of_ec25, sim7600

from modem_dialer.config import Config
from modem_dialer.modems.discovery import config_section, discover, render_table, to_json, usb_path_key
from modem_dialer.modems.udev import generate_rules
from modem_dialer.modems.usb_ids import MODELS, UsbModel, make_table

FIXTURE = Path(__file__).parent / "sysfs" / "ec25-uac"


def _config(text: str) -> Config:
    """The written section must validate against the real config schema."""
    return Config.model_validate(yaml.safe_load(text))


def test_committed_ec25_with_uac_tree() -> None:
    [m] = discover(FIXTURE)
    assert (m.usb_path, m.vid, m.pid, m.family, m.known) == ("1-1.3", "2c7c", "0125", "quectel", True)
    assert m.id_path == "pci-0000:00:14.0-usb-0:1.3"
    assert m.at_tty == "/dev/ttyUSB2"
    assert [(t.interface, t.name) for t in m.ttys] == [(0, "ttyUSB0"), (1, "ttyUSB1"), (2, "ttyUSB2"), (3, "ttyUSB3")]
    assert m.roles[2] == "at" and m.roles[0] == "diag"
    # card1 is the modem's (same USB device); card0 is the board's HDA card and is ignored.
    assert m.audio is not None and (m.audio.kind, m.audio.card_index, m.audio.card_id) == ("uac", 1, "Android")
    assert m.audio.alsa_device == "hw:CARD=Android,DEV=0"
    assert m.manufacturer == "Quectel" and m.problems == []


def test_ec25_without_uac_uses_the_pcm_tty(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    ec25(fs, "1-4", 0, None)
    [m] = discover(tmp_path)
    assert m.id_path == "pci-0000:00:14.0-usb-0:4"
    assert m.audio is not None and (m.audio.kind, m.audio.interface, m.audio.tty) == ("serial", 1, "/dev/ttyUSB1")
    cfg = _config(config_section([m]))
    assert cfg.modems[0].audio is not None and cfg.modems[0].audio.port == "/dev/gsm/1-4-audio"


def test_sim7600(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    sim7600(fs, "1-2", 3)          # another device took ttyUSB0-2 first
    [m] = discover(tmp_path)
    assert (m.family, m.at_tty, m.serial) == ("simcom", "/dev/ttyUSB5", "0123456789ABCDEF")
    assert m.audio is not None and (m.audio.kind, m.audio.interface, m.audio.tty) == ("serial", 4, "/dev/ttyUSB7")
    [entry] = _config(config_section([m])).modems
    assert (entry.name, entry.port, entry.family) == ("gsm0", "/dev/gsm/1-2-at", "simcom")
    assert entry.audio is not None and (entry.audio.kind, entry.audio.port) == ("serial", "/dev/gsm/1-2-audio")


def test_huawei_e1550(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    e1550(fs, "1-1.2", 0)
    [m] = discover(tmp_path)
    assert (m.family, m.model, m.at_tty) == ("huawei", "Huawei E1550 (and generic)", "/dev/ttyUSB2")
    assert m.audio is not None and (m.audio.kind, m.audio.tty) == ("serial", "/dev/ttyUSB1")
    # The not-yet-switched storage interfaces 03/04 have no tty and are not a problem.
    assert m.problems == []


def test_hub_of_8_names_by_physical_port_and_cards_by_usb_ancestor(tmp_path: Path) -> None:
    order = [5, 2, 7, 0, 3, 6, 1, 4]   # plug order: port index of the k-th enumerated modem
    hub_of_ec25(tmp_path, order)
    found = discover(tmp_path)
    assert [m.usb_path for m in found] == HUB_PORTS
    for k, port in enumerate(order):
        m = found[port]
        # the k-th modem to enumerate got ttyUSB4k.. and card k+1 with ALSA's k-th default id
        assert m.at_tty == f"/dev/ttyUSB{4 * k + 2}"
        assert m.audio is not None and m.audio.card_index == k + 1
        assert m.audio.card_id == ("Android" if k == 0 else f"Android_{k}")
    cfg = _config(config_section(found))
    assert [(e.name, e.port) for e in cfg.modems] == [(f"gsm{i}", f"/dev/gsm/1-1.{i + 1}-at") for i in range(8)]
    assert [e.audio.device for e in cfg.modems if e.audio] == [f"hw:CARD=gsm_1_1_{i + 1},DEV=0" for i in range(8)]


def test_replug_renumbering_gives_identical_config(tmp_path: Path) -> None:
    before = discover(hub_of_ec25(tmp_path / "boot1", seed=1).root)
    after = discover(hub_of_ec25(tmp_path / "boot2", seed=2).root)
    # the replug really did move things around...
    assert [m.at_tty for m in before] != [m.at_tty for m in after]
    assert [m.audio.card_index for m in before if m.audio] != [m.audio.card_index for m in after if m.audio]
    # ...and the written config does not change
    assert config_section(before) == config_section(after)
    # while the "as of now" config follows the current numbering
    assert config_section(before, stable=False) != config_section(after, stable=False)


def test_unknown_devices_are_listed_not_guessed(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    ec25(fs, "1-1.1", 0, None)
    fs.device("1-1.2", "1a86", "7523", [0], product="USB Serial")    # CH340 bridge (a SIM800 board?)
    fs.tty_usb("1-1.2", 0, 4)
    fs.device("1-1.3", "1546", "01a8", [0, 1], product="u-blox GNSS")  # cdc-acm layout
    fs.tty_acm("1-1.3", 0, 0)
    fs.device("1-1.4", "046d", "c52b", [0, 1, 2], product="Receiver")  # no tty: not a modem
    found = discover(tmp_path)
    assert [(m.usb_path, m.known, m.family) for m in found] == [
        ("1-1.1", True, "quectel"), ("1-1.2", False, "unknown"), ("1-1.3", False, "unknown")]
    unknown = found[1]
    assert unknown.at_tty is None and unknown.audio is None and unknown.roles == {}
    assert [(t.interface, t.dev) for t in found[2].ttys] == [(0, "/dev/ttyACM0")]
    cfg_text = config_section(found)
    assert [e.port for e in _config(cfg_text).modems] == ["/dev/gsm/1-1.1-at"]
    assert "unknown device 1a86:7523 at USB 1-1.2" in cfg_text
    table = _render(found)
    assert "unknown: ttys if00=ttyUSB4" in table and "2 unknown" in table


def test_extended_table_and_acm_layout(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.device("2-3", "1546", "01a8", [0, 1, 2], product="LTE")
    fs.tty_acm("2-3", 0, 0)
    fs.tty_acm("2-3", 2, 1)
    table = make_table([*MODELS, UsbModel("1546", "01a8", "generic", "example ACM modem", 2)])
    [m] = discover(tmp_path, table)
    assert (m.known, m.at_tty, m.audio) == (True, "/dev/ttyACM1", None)
    [entry] = _config(config_section([m])).modems
    assert entry.audio is None and entry.family == "generic"


def test_missing_at_tty_is_a_problem_and_skipped_in_config(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.device("1-5", "2c7c", "0121", [0, 1, 2, 3, 4])   # option driver not bound: no ttys
    [m] = discover(tmp_path)
    assert m.known and m.at_tty is None
    assert any("interface 02 (AT) has no tty" in p for p in m.problems)
    assert _config(config_section([m])).modems == []


def test_empty_and_missing_trees(tmp_path: Path) -> None:
    assert discover(tmp_path / "nothing") == []
    FakeSysfs(tmp_path / "bare")               # root hub only
    assert discover(tmp_path / "bare") == []
    assert _config(config_section([])).modems == []


def test_json_output(tmp_path: Path) -> None:
    hub_of_ec25(tmp_path, seed=5)
    doc = to_json(discover(tmp_path))
    json.dumps(doc)                            # serialisable as is
    assert [d["name"] for d in doc] == [f"gsm{i}" for i in range(8)]
    assert doc[2]["at_link"] == "/dev/gsm/1-1.3-at"
    assert doc[2]["roles"]["02"] == "at" and doc[2]["audio"]["kind"] == "uac"
    assert doc[2]["id_path"] == "pci-0000:00:14.0-usb-0:1.3"


def test_usb_path_order_is_numeric() -> None:
    paths = ["1-1.10", "2-1", "1-1.9", "1-1.2.3", "1-1.2"]
    assert sorted(paths, key=usb_path_key) == ["1-1.2", "1-1.2.3", "1-1.9", "1-1.10", "2-1"]


@pytest.mark.parametrize("vid_pid", [(m.vid, m.pid) for m in MODELS])
def test_every_table_entry_is_discovered(tmp_path: Path, vid_pid: tuple[str, str]) -> None:
    model = make_table(MODELS)[vid_pid]
    fs = FakeSysfs(tmp_path)
    fs.device("3-2", *vid_pid, list(range(6)))
    for i in range(5):
        fs.tty_usb("3-2", i, 10 + i)
    [m] = discover(tmp_path)
    assert (m.family, m.at_tty) == (model.family, f"/dev/ttyUSB{10 + model.at_if}")


def _render(found: list) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(width=200, record=True, file=sink)
        console.print(render_table(found))
        return console.export_text()


def test_huawei_in_mass_storage_mode_is_listed_with_what_to_do(tmp_path: Path) -> None:
    """Issue 11 item 19: a stick still in CD-ROM mode (12d1:1446) has no tty but is a modem."""
    fs = FakeSysfs(tmp_path)
    ec25(fs, "1-1.1", 0, None)
    fs.device("1-1.2", "12d1", "1446", [0, 1], manufacturer="HUAWEI Technology", product="HUAWEI Mobile")
    fs.device("1-1.3", "12d1", "1c0b", [0], product="HUAWEI Mobile")          # E173s, CD-ROM mode
    fs.device("1-1.4", "046d", "c52b", [0, 1, 2], product="Receiver")          # still skipped
    found = discover(tmp_path)
    assert [(m.usb_path, m.known) for m in found] == [("1-1.1", True), ("1-1.2", False), ("1-1.3", False)]
    stick = found[1]
    assert stick.storage_mode and stick.ttys == [] and stick.family == "huawei"
    advice = " ".join(stick.problems)
    assert "mass-storage" in advice and "usb_modeswitch -v 0x12d1 -p 0x1446 -J" in advice
    assert "AT^U2DIAG=0" in advice and "setup-modem" in advice
    table = _render(found)
    assert "1-1.2" in table and "usb_modeswitch" in table
    doc = {d["usb_path"]: d for d in to_json(found)}
    assert doc["1-1.2"]["storage_mode"] is True and doc["1-1.2"]["problems"] == stick.problems
    text = config_section(found)
    assert "12d1:1446 at USB 1-1.2 in mass-storage mode" in text
    assert [e.port for e in _config(text).modems] == ["/dev/gsm/1-1.1-at"]


@pytest.mark.parametrize(("host", "expected"), [
    ("x86", "pci-0000:00:14.0-usb-0:1.3"),
    ("rpi4", "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3"),
    ("rpi3", "platform-3f980000.usb-usb-0:1.3"),
])
def test_id_path_as_udev_path_id_builds_it(tmp_path: Path, host: str, expected: str) -> None:
    """Issue 11 item 21: udev's path_id walks every parent (usb, pci, platform …), skipping
    runs of the same bus; the Pi 4's PCIe host is a platform device above the PCI bridge."""
    fs = FakeSysfs(tmp_path, host=host)
    ec25(fs, "1-1.3", 0, None)
    [m] = discover(tmp_path)
    assert m.id_path == expected
    assert f"({expected})" in generate_rules([m])


def test_id_path_without_subsystem_links_still_found(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path, host="rpi4", subsystem_links=False)
    ec25(fs, "1-2", 0, None)
    [m] = discover(tmp_path)
    assert m.id_path == "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:2"
