"""Find the USB modems of the box in sysfs: ports, sound card, physical path, identity.

How a modem's parts are matched (see docs/box.md):
- the USB *device* is ``<sysfs>/bus/usb/devices/<path>`` with ``idVendor``/``idProduct``;
- its ttys are found per interface dir ``<path>:<cfg>.<if>``: usb-serial ports appear as
  ``<intf>/ttyUSBn``, cdc-acm ones as ``<intf>/tty/ttyACMn``;
- a sound card belongs to the modem whose USB device is the first ancestor (with an
  ``idVendor`` file) of ``class/sound/cardN/device``. Card names are never compared: in a
  bank of identical modems they are all "Android", "Android_1", ... in plug order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .udev import alsa_card_id, alsa_device, at_link, audio_link
from .usb_ids import StorageMode, UsbModel, lookup, storage_mode

if TYPE_CHECKING:
    from rich.table import Table

_TTY = re.compile(r"^tty(USB|ACM)[0-9]+$")
_CARD = re.compile(r"^card([0-9]+)$")
_PCI_ADDR = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$")


@dataclass(frozen=True)
class TtyPort:
    interface: int
    name: str                       # ttyUSB2

    @property
    def dev(self) -> str:
        return f"/dev/{self.name}"


@dataclass(frozen=True)
class AudioFound:
    kind: Literal["serial", "uac"]
    interface: int | None = None    # serial: the PCM tty's interface
    tty: str | None = None          # serial: /dev/ttyUSBn as of now
    card_index: int | None = None   # uac: cardN as of now
    card_id: str | None = None      # uac: the card's current id (Android, gsm_1_1_3, ...)

    @property
    def alsa_device(self) -> str | None:
        return alsa_device(self.card_id) if self.card_id else None


@dataclass
class FoundModem:
    usb_path: str                   # kernel name of the USB device: 1-1.3
    id_path: str | None             # udev-style: pci-0000:00:14.0-usb-0:1.3
    vid: str
    pid: str
    known: bool
    family: str                     # "unknown" when not in usb_ids
    model: str
    manufacturer: str
    product: str
    serial: str
    ttys: list[TtyPort]
    roles: dict[int, str]           # interface number -> role
    at_if: int | None
    at_tty: str | None              # /dev/ttyUSBn as of now
    audio: AudioFound | None
    problems: list[str] = field(default_factory=list)
    imei: str | None = None
    iccid: str | None = None
    identity_error: str | None = None
    storage_mode: bool = False      # a modem still in CD-ROM / mass-storage mode (usb_ids.STORAGE_MODE)

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return usb_path_key(self.usb_path)


def usb_path_key(usb_path: str) -> tuple[Any, ...]:
    """Physical order: bus, then port numbers as integers (1-1.10 after 1-1.9)."""
    m = re.match(r"^([0-9]+)-([0-9.]+)$", usb_path)
    if not m:
        return (1 << 30, (), usb_path)
    return (int(m.group(1)), tuple(int(x) for x in m.group(2).split(".")), usb_path)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace").strip()
    except OSError:
        return ""


def _usb_ancestor(p: Path, root: Path) -> Path | None:
    """First directory at or above ``p`` (a resolved sysfs path) that is a USB device."""
    for d in (p, *p.parents):
        if d == root or d == d.parent:
            return None
        if (d / "idVendor").is_file():
            return d
    return None


def _subsystem(d: Path, guess: bool) -> str | None:
    """The bus of a sysfs device dir: its ``subsystem`` link (none: a bus root such as
    ``pci0000:00``), or with ``guess`` (trees without the links) what its name and place say."""
    link = d / "subsystem"
    if link.is_symlink():
        return link.resolve().name
    if not guess or re.fullmatch(r"pci[0-9a-f]{4}:[0-9a-f]{2}", d.name):
        return None
    if (d / "idVendor").is_file() or re.fullmatch(r"usb[0-9]+", d.name) or (d / "bInterfaceNumber").is_file():
        return "usb"
    if _PCI_ADDR.match(d.name):
        return "pci"
    if "platform" in d.parts[:-1] and d.name != "platform" and d.parent.name != "devices":
        return "platform"
    return None


def _top_of_run(d: Path, subsystem: str, stop: Path, guess: bool) -> Path:
    """udev's skip_subsystem: the topmost ancestor in the unbroken run of ``subsystem``."""
    while d.parent != stop and d.parent != d.parent.parent and _subsystem(d.parent, guess) == subsystem:
        d = d.parent
    return d


def _id_path(dev: Path) -> str | None:
    """udev's ID_PATH (the path_id builtin) for a USB device dir: walk up the parents and
    prepend one element per bus, skipping runs of the same bus: ``usb-0:<ports>`` for the
    USB device, ``pci-<address>`` for the first PCI device met (a bridge above it is in the
    same run), ``platform-<name>`` for a platform device (the Raspberry Pi 4's PCIe host
    ``fd500000.pcie``, the Pi 3's ``3f980000.usb``), ``acpi-<name>`` for ACPI."""
    if "-" not in dev.name:
        return None
    stop = next((p for p in dev.parents if p.name == "devices"), None)
    if stop is None:
        return None
    guess = not (dev / "subsystem").is_symlink()
    parts: list[str] = []
    d = dev
    while d != stop and d != d.parent:
        bus = _subsystem(d, guess)
        if bus == "usb" and not parts:
            port = d.name.split("-", 1)[1] if "-" in d.name else None
            if port is None:
                return None
            parts.insert(0, f"usb-0:{port}")
            d = _top_of_run(d, "usb", stop, guess)
        elif bus in ("pci", "platform", "acpi"):
            parts.insert(0, f"{bus}-{d.name}")
            d = _top_of_run(d, bus, stop, guess)
        d = d.parent
    if len(parts) < 2:       # no host controller found: not a USB device we can place
        return None
    return "-".join(parts)


def _ttys(dev: Path) -> list[TtyPort]:
    out: list[TtyPort] = []
    for intf in sorted(dev.glob(f"{dev.name}:*")):
        if not intf.is_dir():
            continue
        raw = _read(intf / "bInterfaceNumber")
        try:
            num = int(raw, 16) if raw else int(intf.name.rsplit(".", 1)[1])
        except ValueError:
            continue
        names = [c.name for c in intf.iterdir() if _TTY.match(c.name)]       # usb-serial
        if (intf / "tty").is_dir():
            names += [c.name for c in (intf / "tty").iterdir() if _TTY.match(c.name)]  # cdc-acm
        out.extend(TtyPort(num, n) for n in sorted(set(names)))
    return sorted(out, key=lambda t: (t.interface, t.name))


@dataclass(frozen=True)
class _Card:
    index: int
    id: str


def _sound_cards(root: Path) -> dict[Path, list[_Card]]:
    """USB device dir -> the sound cards under it. Cards not on USB are dropped."""
    out: dict[Path, list[_Card]] = {}
    base = root / "class" / "sound"
    if not base.is_dir():
        return out
    rroot = root.resolve()
    for card in base.iterdir():
        m = _CARD.match(card.name)
        if not m or not (card / "device").exists():
            continue
        owner = _usb_ancestor((card / "device").resolve(), rroot)
        if owner is not None:
            out.setdefault(owner, []).append(_Card(int(m.group(1)), _read(card / "id")))
    return out


def _by_interface(ttys: Sequence[TtyPort], num: int | None) -> str | None:
    for t in ttys:
        if t.interface == num:
            return t.dev
    return None


def _build(dev: Path, model: UsbModel | None, vid: str, pid: str, ttys: list[TtyPort], id_path: str | None,
           cards: list[_Card]) -> FoundModem:
    problems: list[str] = []
    audio: AudioFound | None = None
    if model is not None:
        at_tty = _by_interface(ttys, model.at_if)
        if at_tty is None:
            problems.append(f"interface {model.at_if:02x} (AT) has no tty: serial driver not bound?")
        if model.uac and cards:
            card = min(cards, key=lambda c: c.index)
            audio = AudioFound("uac", card_index=card.index, card_id=card.id)
            if len(cards) > 1:
                problems.append(f"{len(cards)} sound cards under one modem; using card{card.index}")
        elif model.audio_if is not None:
            pcm = _by_interface(ttys, model.audio_if)
            audio = AudioFound("serial", interface=model.audio_if, tty=pcm)
            if pcm is None:
                problems.append(f"interface {model.audio_if:02x} (audio) has no tty")
    else:
        at_tty = None
    return FoundModem(
        usb_path=dev.name, id_path=id_path, vid=vid, pid=pid, known=model is not None,
        family=model.family if model else "unknown",
        model=model.model if model else "unknown device",
        manufacturer=_read(dev / "manufacturer"), product=_read(dev / "product"), serial=_read(dev / "serial"),
        ttys=ttys, roles=model.role_map() if model else {},
        at_if=model.at_if if model else None, at_tty=at_tty, audio=audio, problems=problems,
    )


def _storage(dev: Path, storage: StorageMode, ttys: list[TtyPort], id_path: str | None) -> FoundModem:
    """A known modem in mass-storage mode: listed with what to do, never configured."""
    advice = [
        f"in mass-storage (CD-ROM) mode: no AT port until it is switched. Install usb-modeswitch "
        f"(its udev rules switch it at plug-in) or run `sudo usb_modeswitch -v 0x{storage.vid} "
        f"-p 0x{storage.pid} -J`, then run discover again",
        "once it shows as a modem, `modem-dialer setup-modem NAME` writes AT^U2DIAG=0 so it starts "
        "as a modem (no CD-ROM) from then on",
    ]
    return FoundModem(
        usb_path=dev.name, id_path=id_path, vid=storage.vid, pid=storage.pid, known=False, family=storage.family,
        model=f"{storage.model} (mass-storage mode)", manufacturer=_read(dev / "manufacturer"),
        product=_read(dev / "product"), serial=_read(dev / "serial"), ttys=ttys, roles={}, at_if=None,
        at_tty=None, audio=None, problems=advice, storage_mode=True,
    )


def discover(sysfs_root: str | Path = "/sys",
             table: Mapping[tuple[str, str], UsbModel] | None = None) -> list[FoundModem]:
    """Known modems and unknown tty-bearing USB devices, in physical port order.

    Unknown devices (not in ``table``, default ``usb_ids.USB_IDS``) are listed with
    ``known=False`` and no roles: never guessed.
    """
    root = Path(sysfs_root)
    devices = root / "bus" / "usb" / "devices"
    if not devices.is_dir():
        return []
    cards = _sound_cards(root)
    found: list[FoundModem] = []
    for entry in devices.iterdir():
        if ":" in entry.name:             # interfaces, not devices
            continue
        dev = entry.resolve()
        vid, pid = _read(dev / "idVendor").lower(), _read(dev / "idProduct").lower()
        if not vid or not pid:
            continue
        model = lookup(vid, pid, table)
        ttys = _ttys(dev)
        if model is None and (storage := storage_mode(vid, pid)) is not None:
            found.append(_storage(dev, storage, ttys, _id_path(dev)))
            continue
        if model is None and not ttys:    # hubs, keyboards, root hubs
            continue
        found.append(_build(dev, model, vid, pid, ttys, _id_path(dev), cards.get(dev, [])))
    return sorted(found, key=lambda m: m.sort_key)


# --- identity over AT -----------------------------------------------------------------

async def _ask(found: FoundModem, cmd_timeout: float) -> FoundModem:
    # the AT layer is only needed when probing; identity is read by the drivers' own code
    # (modems/identity.py) with the family driver's ICCID commands: the E1550 answers
    # AT+CCID with COMMAND NOT SUPPORT and needs AT+CRSM (issue 11 item 20)
    from ..at.channel import ATChannel
    from .detect import DRIVERS
    from .identity import read_iccid, read_imei

    assert found.at_tty is not None
    ch = await ATChannel.open(found.at_tty, baudrate=115200, name=f"discover:{found.usb_path}")
    try:
        imei = await read_imei(ch, timeout=cmd_timeout)
        driver = DRIVERS.get(found.family)
        iccid = await read_iccid(ch, driver.iccid_commands if driver else ("AT+CCID",), timeout=cmd_timeout)
    finally:
        await ch.close()
    return replace(found, imei=imei, iccid=iccid, identity_error=None)


async def probe_identity(found: FoundModem, timeout: float = 5.0) -> FoundModem:
    """A copy of ``found`` with IMEI and ICCID read from its AT port.

    Never raises for a modem problem: a port that cannot be opened (held by ModemManager,
    permissions), a timeout or an AT error is recorded in ``identity_error``.
    """
    if not found.known or found.at_tty is None:
        return replace(found, identity_error="no AT port")
    try:
        return await asyncio.wait_for(_ask(found, min(2.0, timeout)), timeout)
    except asyncio.TimeoutError:
        return replace(found, identity_error=f"{found.at_tty}: no answer within {timeout:g} s")
    except Exception as e:  # ATError, OSError, serial.SerialException: reported, not raised
        return replace(found, identity_error=f"{found.at_tty}: {type(e).__name__}: {e}")


async def probe_all(found: Sequence[FoundModem], timeout: float = 5.0) -> list[FoundModem]:
    """Probe every modem at once (each on its own port)."""
    return list(await asyncio.gather(*(probe_identity(m, timeout) for m in found)))


# --- output ----------------------------------------------------------------------------

def named(found: Iterable[FoundModem]) -> list[tuple[str, FoundModem]]:
    """Config names gsm0, gsm1, ... for the known modems, in physical port order."""
    known = sorted((m for m in found if m.known), key=lambda m: m.sort_key)
    return [(f"gsm{i}", m) for i, m in enumerate(known)]


def _audio_text(a: AudioFound | None) -> str:
    if a is None:
        return "-"
    if a.kind == "uac":
        return f"uac card{a.card_index} ({a.card_id})"
    return f"serial {a.tty or 'missing'} (if{a.interface:02x})"


def render_table(found: Sequence[FoundModem]) -> Table:
    # rich is imported here, for `discover` alone: `serve` imports this module through the
    # recovery supervisor and never draws a table (~30 ms of CPU at every start)
    from rich.table import Table

    names = {id(m): n for n, m in named(found)}
    t = Table(title=f"{sum(m.known for m in found)} modem(s), {sum(not m.known for m in found)} unknown")
    for col in ("name", "usb path", "id", "model", "AT", "audio", "IMEI", "ICCID", "notes"):
        t.add_column(col)
    for m in found:
        notes = "; ".join([*m.problems, *([m.identity_error] if m.identity_error else [])])
        if not m.known and not m.storage_mode:
            notes = "unknown: ttys " + ", ".join(f"if{p.interface:02x}={p.name}" for p in m.ttys)
        t.add_row(names.get(id(m), "-"), m.usb_path, f"{m.vid}:{m.pid}",
                  m.model if m.known or m.storage_mode else (m.product or "unknown"),
                  m.at_tty or "-", _audio_text(m.audio), m.imei or "-", m.iccid or "-", notes)
    return t


def to_json(found: Sequence[FoundModem]) -> list[dict[str, Any]]:
    names = {id(m): n for n, m in named(found)}
    out = []
    for m in found:
        a = m.audio
        out.append({
            "name": names.get(id(m)), "known": m.known, "usb_path": m.usb_path, "id_path": m.id_path,
            "vid": m.vid, "pid": m.pid, "family": m.family, "model": m.model,
            "manufacturer": m.manufacturer, "product": m.product, "serial": m.serial,
            "at_tty": m.at_tty, "at_link": f"/dev/{at_link(m.usb_path)}" if m.known else None,
            "audio": None if a is None else {
                "kind": a.kind, "interface": a.interface, "tty": a.tty, "card_index": a.card_index,
                "card_id": a.card_id, "alsa_device": a.alsa_device,
            },
            "ttys": [{"interface": p.interface, "tty": p.dev} for p in m.ttys],
            "roles": {f"{k:02x}": v for k, v in sorted(m.roles.items())},
            "imei": m.imei, "iccid": m.iccid, "identity_error": m.identity_error, "problems": m.problems,
            "storage_mode": m.storage_mode,
        })
    return out


def _q(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def config_section(found: Sequence[FoundModem], stable: bool = True) -> str:
    """The ``modems:`` section of config.yaml for the known modems.

    ``stable=True`` writes the udev names (``/dev/gsm/<usb-path>-at``, card id
    ``gsm_<path>``), which exist once the rules of ``modem-dialer udev`` are installed;
    ``stable=False`` writes today's ``/dev/ttyUSBn`` and card ids.
    """
    lines = ["# written by modem-dialer discover" +
             ("; stable names need the rules of `modem-dialer udev`" if stable else "; names as of now"),
             "modems:"]
    written = 0
    for name, m in named(found):
        port = f"/dev/{at_link(m.usb_path)}" if stable else m.at_tty
        ident = ", ".join(x for x in (f"IMEI {m.imei}" if m.imei else "", f"ICCID {m.iccid}" if m.iccid else "") if x)
        lines.append(f"  # {m.model} {m.vid}:{m.pid} at USB {m.usb_path}" + (f", {ident}" if ident else ""))
        if m.at_tty is None or port is None:  # no tty now: no udev link either
            lines.append(f"  # {name}: skipped, AT interface {m.at_if:02x} has no tty")
            continue
        lines += [f"  - name: {name}", f"    port: {_q(port)}", f"    family: {m.family}"]
        written += 1
        a = m.audio
        if a is not None and a.kind == "serial" and (stable or a.tty):
            lines += ["    audio:", "      kind: serial",
                      f"      port: {_q(f'/dev/{audio_link(m.usb_path)}' if stable else a.tty or '')}"]
        elif a is not None and a.kind == "uac":
            card = alsa_card_id(m.usb_path) if stable else a.card_id or ""
            lines += ["    audio:", "      kind: uac", f"      device: {_q(alsa_device(card))}"]
    for m in found:
        if m.storage_mode:
            lines.append(f"  # not configured: {m.model} {m.vid}:{m.pid} at USB {m.usb_path} in mass-storage mode"
                         " (see `modem-dialer discover` for how to switch it)")
        elif not m.known:
            lines.append(f"  # not configured: unknown device {m.vid}:{m.pid} at USB {m.usb_path}"
                         f" ({m.product or 'no product name'})")
    if not written:
        lines[1] = "modems: []"
    return "\n".join(lines) + "\n"
