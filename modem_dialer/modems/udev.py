"""udev rules that give each modem stable names by physical USB port.

A bank of identical modems renumbers its ``ttyUSBn`` and ALSA cards on every reboot or
replug; the USB port path (``1-1.3``: bus 1, hub port 1, port 3) does not. The rules key
every name on that path (``KERNELS=="1-1.3"``) plus the interface number, so
``/dev/gsm/1-1.3-at`` is always the AT port of the modem in that socket.

UAC sound cards cannot get a symlink that ALSA understands, so the card's id is renamed
instead (``ATTR{id}`` on the card device, the method of the ALSA wiki page "Changing card
IDs with udev"). The kernel (sound/core/init.c, ``card_id_store_attr``) accepts only
``[A-Za-z0-9_-]``, at most 15 characters, unique among cards, hence ``gsm_1_1_3``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from .discovery import FoundModem

RULES_FILE = "90-modem-dialer.rules"
_USB_PATH = re.compile(r"^[0-9]+-[0-9]+(\.[0-9]+)*$")
_CARD_ID_MAX = 15


def _checked(usb_path: str) -> str:
    # The path goes into rules text and file names: only the kernel's own form passes.
    if not _USB_PATH.match(usb_path):
        raise UserError(f"not a USB port path: {usb_path!r} (expected e.g. 1-1.3)")
    return usb_path


def at_link(usb_path: str) -> str:
    """The symlink under /dev for the AT port, e.g. ``gsm/1-1.3-at``."""
    return f"gsm/{_checked(usb_path)}-at"


def audio_link(usb_path: str) -> str:
    return f"gsm/{_checked(usb_path)}-audio"


def alsa_card_id(usb_path: str) -> str:
    """Stable ALSA card id for the UAC card under this port, e.g. ``gsm_1_1_3``.

    Deep hub chains would exceed the kernel's 15 characters; those get a hash of the path
    (still stable, still unique in practice).
    """
    cid = "gsm_" + _checked(usb_path).replace("-", "_").replace(".", "_")
    if len(cid) > _CARD_ID_MAX:
        cid = "gsm_" + hashlib.sha1(usb_path.encode()).hexdigest()[:10]
    return cid


def alsa_device(card_id: str) -> str:
    return f"hw:CARD={card_id},DEV=0"


def generate_rules(found: Iterable[FoundModem], group: str = "dialer") -> str:
    """The rules file for the known modems in ``found`` (unknown devices are skipped)."""
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", group):
        raise UserError(f"not a valid group name: {group!r}")
    out = [
        f"# {RULES_FILE}: written by `modem-dialer udev`. Stable names by physical USB port.",
        "# Install: cp to /etc/udev/rules.d/, then udevadm control --reload && udevadm trigger",
        "# (sound card ids are set on 'add': replug the modems or reboot for those).",
        "",
        'ACTION=="remove", GOTO="modem_dialer_end"',
        "",
    ]
    for m in sorted((m for m in found if m.known), key=lambda m: m.sort_key):
        p = _checked(m.usb_path)
        out.append(f"# {m.model} {m.vid}:{m.pid} at {p}" + (f" ({m.id_path})" if m.id_path else ""))
        # ModemManager reads ID_MM_DEVICE_IGNORE from the port or from its physical
        # device; set both so it leaves every interface of this modem alone.
        out.append(f'SUBSYSTEM=="usb", ENV{{DEVTYPE}}=="usb_device", KERNEL=="{p}", ENV{{ID_MM_DEVICE_IGNORE}}="1"')
        out.append(f'SUBSYSTEM=="tty", KERNELS=="{p}", ENV{{ID_MM_DEVICE_IGNORE}}="1", '
                   f'GROUP="{group}", MODE="0660"')
        # ENV{ID_USB_INTERFACE_NUM} comes from 60-serial.rules (usb_id); an ATTRS match on
        # bInterfaceNumber would not do: udev needs all parent keys on the same ancestor.
        out.append(f'SUBSYSTEM=="tty", KERNELS=="{p}", ENV{{ID_USB_INTERFACE_NUM}}=="{m.at_if:02x}", '
                   f'SYMLINK+="{at_link(p)}"')
        a = m.audio
        if a is not None and a.kind == "serial" and a.interface is not None:
            out.append(f'SUBSYSTEM=="tty", KERNELS=="{p}", ENV{{ID_USB_INTERFACE_NUM}}=="{a.interface:02x}", '
                       f'SYMLINK+="{audio_link(p)}"')
        if a is not None and a.kind == "uac":
            out.append(f'ACTION=="add", SUBSYSTEM=="sound", KERNEL=="card*", KERNELS=="{p}", '
                       f'ATTR{{id}}="{alsa_card_id(p)}"')
            out.append(f'SUBSYSTEM=="sound", KERNELS=="{p}", GROUP="{group}", MODE="0660"')
        out.append("")
    out.append('LABEL="modem_dialer_end"')
    return "\n".join(out) + "\n"


# --- our own syntax check (udevadm verify exists only from systemd 253 on) -----------------

_MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
               "ATTRS", "TAGS", "RESULT", "CONST", "TEST", "PROGRAM"}
_ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "LABEL", "GOTO", "RUN", "OPTIONS", "SECLABEL", "IMPORT"}
_EITHER = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG"}
_NEEDS_ATTR = {"ATTR", "ATTRS", "ENV", "SYSCTL", "SECLABEL", "CONST"}
_MAY_ATTR = {"IMPORT", "RUN", "TEST"}
_PAIR = re.compile(r'\s*([A-Z_]+)(?:\{([^{}"]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*')


def _check_rule(rule: str) -> tuple[list[str], list[tuple[str, str | None, str, str]]]:
    errors: list[str] = []
    pairs: list[tuple[str, str | None, str, str]] = []
    pos = 0
    while pos < len(rule):
        m = _PAIR.match(rule, pos)
        if not m:
            rest = rule[pos:].strip()
            why = "unbalanced quotes" if rest.count('"') % 2 else "expected KEY==\"value\" or KEY=\"value\""
            errors.append(f"{why} at {rest[:30]!r}")
            return errors, pairs
        key, attr, op, value = m.groups()
        pairs.append((key, attr, op, value))
        pos = m.end()
        if pos < len(rule):
            if rule[pos] != ",":
                errors.append(f"missing ',' after {key}")
                return errors, pairs
            pos += 1
    for key, attr, op, value in pairs:
        if key not in _MATCH_ONLY | _ASSIGN_ONLY | _EITHER:
            errors.append(f"unknown key {key}")
            continue
        if key in _NEEDS_ATTR and not attr:
            errors.append(f"{key} needs {{attribute}}")
        if attr and key not in _NEEDS_ATTR | _MAY_ATTR:
            errors.append(f"{key} takes no {{attribute}}")
        matching = op in ("==", "!=")
        if key in _MATCH_ONLY and not matching and key != "PROGRAM":
            errors.append(f"{key} is a match key, needs == or !=")
        if key in _ASSIGN_ONLY and matching:
            errors.append(f"{key} is an assignment, needs =, += or :=")
        if key == "MODE" and not re.fullmatch(r"0?[0-7]{3}", value):
            errors.append(f"MODE must be octal, got {value!r}")
        if key == "ATTR" and attr == "id" and not matching and not re.fullmatch(r"[A-Za-z0-9_-]{3,15}", value):
            errors.append(f"ALSA card id must be 3-15 of [A-Za-z0-9_-], got {value!r}")
    if pairs and all(op in ("==", "!=") for _, _, op, _ in pairs):
        errors.append("rule has no assignment")
    return errors, pairs


def check_rules(text: str) -> list[str]:
    """Problems in a udev rules text, one ``line N: ...`` string each; empty when fine."""
    problems: list[str] = []
    labels: set[str] = set()
    gotos: list[tuple[int, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start = i + 1
        rule = lines[i]
        while rule.endswith("\\") and i + 1 < len(lines):  # continuation lines
            i += 1
            rule = rule[:-1] + lines[i]
        i += 1
        if not rule.strip() or rule.lstrip().startswith("#"):
            continue
        errors, pairs = _check_rule(rule)
        problems.extend(f"line {start}: {e}" for e in errors)
        for key, _, _, value in pairs:
            if key == "LABEL":
                labels.add(value)
            elif key == "GOTO":
                gotos.append((start, value))
    problems.extend(f"line {n}: GOTO to missing LABEL {v!r}" for n, v in gotos if v not in labels)
    return problems
