"""Build fake sysfs trees with the layout of a real kernel, for discovery tests.

Layout reproduced (all links relative, so a tree works from any checkout):
  devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.3/          USB device: idVendor, idProduct, serial...
  devices/.../1-1.3/1-1.3:1.2/bInterfaceNumber             interface (hex, "02")
  devices/.../1-1.3:1.2/ttyUSB2/tty/ttyUSB2/               usb-serial port + its tty class device
  devices/.../1-1.3:1.2/tty/ttyACM0/                       cdc-acm tty class device
  devices/.../1-1.3:1.4/sound/card1/{id,number}            UAC card
  bus/usb/devices/{1-1.3,1-1.3:1.2} -> ../../../devices/...
  class/tty/ttyUSB2 -> ../../devices/.../ttyUSB2/tty/ttyUSB2 ; its device -> the port dir
  class/sound/card1 -> ../../devices/.../sound/card1 ; card1/device -> the interface dir
"""

from __future__ import annotations

import os
import random
from pathlib import Path

PCI = "devices/pci0000:00/0000:00:14.0"
# USB host controllers as the kernel places them, each dir with its bus ("subsystem" link):
#   x86 xHCI on PCI; Raspberry Pi 4 (VL805 xHCI on PCIe behind the SoC's platform PCIe host,
#   udev ID_PATH platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3); Raspberry Pi 3 (dwc_otg
#   platform device, ID_PATH platform-3f980000.usb-usb-0:1.3).
HOSTS: dict[str, list[tuple[str, str | None]]] = {
    "x86": [("devices/pci0000:00", None), ("0000:00:14.0", "pci")],
    "rpi4": [("devices/platform", None), ("scb", "platform"), ("fd500000.pcie", "platform"),
             ("pci0000:00", None), ("0000:00:00.0", "pci"), ("0000:01:00.0", "pci")],
    "rpi3": [("devices/platform", None), ("soc", "platform"), ("3f980000.usb", "platform")],
}


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def _files(d: Path, **attrs: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in attrs.items():
        (d / k).write_text(v + "\n")


class FakeSysfs:
    def __init__(self, root: Path, host: str = "x86", subsystem_links: bool = True) -> None:
        """``host``: where the USB controller sits (HOSTS). ``subsystem_links``: give each
        device dir its ``subsystem`` link as the kernel does (off: the older trees' layout)."""
        self.root = root
        self.subsystem_links = subsystem_links
        for d in ("bus/usb/devices", "bus/pci/devices", "bus/platform/devices", "class/tty", "class/sound"):
            (root / d).mkdir(parents=True, exist_ok=True)
        here = root
        for name, bus in HOSTS[host]:
            here = here / name
            here.mkdir(parents=True, exist_ok=True)
            if bus is not None:
                self._subsystem(here, bus)
        self.host = here
        if host == "x86":
            _files(here, vendor="0x8086", device="0xa36d")
        self._device("usb1", "1d6b", "0002", product="xHCI Host Controller")

    def _subsystem(self, d: Path, bus: str) -> None:
        if self.subsystem_links and not (d / "subsystem").exists():
            _link(d / "subsystem", self.root / "bus" / bus)

    def _dir(self, usb_path: str) -> Path:
        if usb_path.startswith("usb"):
            return self.host / usb_path
        bus, ports = usb_path.split("-", 1)
        parent = f"usb{bus}" if "." not in ports else usb_path.rsplit(".", 1)[0]
        return self._dir(parent) / usb_path

    def _device(self, usb_path: str, vid: str, pid: str, **attrs: str) -> Path:
        d = self._dir(usb_path)
        if not d.parent.exists() or not (d.parent / "idVendor").exists():
            if not usb_path.startswith("usb"):
                self.hub(d.parent.name)
        # authorized: what recovery writes 0 then 1 to, to power-cycle the port
        _files(d, idVendor=vid, idProduct=pid, authorized="1", **attrs)
        self._subsystem(d, "usb")
        _link(self.root / "bus/usb/devices" / usb_path, d)
        return d

    def hub(self, usb_path: str) -> Path:
        return self._device(usb_path, "05e3", "0610", product="USB2.1 Hub")

    def device(self, usb_path: str, vid: str, pid: str, interfaces: list[int], **attrs: str) -> Path:
        d = self._device(usb_path, vid, pid, **attrs)
        for n in interfaces:
            intf = d / f"{usb_path}:1.{n}"
            _files(intf, bInterfaceNumber=f"{n:02x}", bInterfaceClass="ff")
            self._subsystem(intf, "usb")
            _link(self.root / "bus/usb/devices" / intf.name, intf)
        return d

    def tty_usb(self, usb_path: str, interface: int, n: int) -> None:
        port = self._dir(usb_path) / f"{usb_path}:1.{interface}" / f"ttyUSB{n}"
        _files(port, port_number="0")
        cls = port / "tty" / f"ttyUSB{n}"
        _files(cls, dev=f"188:{n}")
        _link(cls / "device", port)
        _link(self.root / "class/tty" / f"ttyUSB{n}", cls)

    def tty_acm(self, usb_path: str, interface: int, n: int) -> None:
        intf = self._dir(usb_path) / f"{usb_path}:1.{interface}"
        cls = intf / "tty" / f"ttyACM{n}"
        _files(cls, dev=f"166:{n}")
        _link(cls / "device", intf)
        _link(self.root / "class/tty" / f"ttyACM{n}", cls)

    def card(self, usb_path: str | None, interface: int, index: int, card_id: str) -> None:
        """A sound card under a USB interface, or (usb_path None) the board's HDA card."""
        if usb_path is None:
            parent = self.root / "devices/pci0000:00/0000:00:1f.3"
            _files(parent, vendor="0x8086")
        else:
            parent = self._dir(usb_path) / f"{usb_path}:1.{interface}"
            _files(parent, bInterfaceNumber=f"{interface:02x}", bInterfaceClass="01")
        card = parent / "sound" / f"card{index}"
        _files(card, id=card_id, number=str(index))
        _link(card / "device", parent)
        _link(self.root / "class/sound" / f"card{index}", card)


# --- the modems, with the interface maps of shared/reference/modems.md §1.1 -----------------

def ec25(fs: FakeSysfs, path: str, first_tty: int, card: tuple[int, str] | None, serial: str = "") -> None:
    """Quectel EC25: ttys on if00-03, QMI on if04, UAC on if05/06 when enabled."""
    ifs = [0, 1, 2, 3, 4] + ([5, 6] if card else [])
    extra = {"serial": serial} if serial else {}
    fs.device(path, "2c7c", "0125", ifs, manufacturer="Quectel", product="EC25-AF", **extra)
    for i in range(4):
        fs.tty_usb(path, i, first_tty + i)
    if card:
        fs.card(path, 5, card[0], card[1])


def sim7600(fs: FakeSysfs, path: str, first_tty: int) -> None:
    fs.device(path, "1e0e", "9001", [0, 1, 2, 3, 4, 5], manufacturer="SimTech, Incorporated",
              product="SimTech, Incorporated", serial="0123456789ABCDEF")
    for i in range(5):
        fs.tty_usb(path, i, first_tty + i)


def e1550(fs: FakeSysfs, path: str, first_tty: int) -> None:
    fs.device(path, "12d1", "1001", [0, 1, 2, 3, 4], manufacturer="HUAWEI Technology", product="HUAWEI Mobile")
    for i in range(3):
        fs.tty_usb(path, i, first_tty + i)


HUB_PORTS = [f"1-1.{p}" for p in range(1, 9)]


def hub_of_ec25(root: Path, order: list[int] | None = None, seed: int | None = None) -> FakeSysfs:
    """8 EC25 with UAC behind hub 1-1, enumerated in ``order`` (indices into HUB_PORTS).

    Enumeration order decides ttyUSB and card numbers and the ALSA default ids (Android,
    Android_1, ...), exactly what a replug shuffles. Card 0 is the board's own HDA card.
    """
    if order is None:
        order = list(range(8))
        if seed is not None:
            random.Random(seed).shuffle(order)
    fs = FakeSysfs(root)
    fs.card(None, 0, 0, "PCH")
    for k, port in enumerate(order):
        ec25(fs, HUB_PORTS[port], 4 * k, (k + 1, "Android" if k == 0 else f"Android_{k}"))
    return fs
