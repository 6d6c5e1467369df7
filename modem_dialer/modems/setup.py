"""One-time modem configuration (``modem-dialer setup-modem``): read, show, confirm, apply.

Some settings a family needs live in the modem's non-volatile memory (Quectel's USB
composition and IMS flag, the URC port; Huawei's ^CVOICE and ^U2DIAG). Rewriting them
silently would surprise whoever set them, so this module splits the work in two: ``read_plan``
asks the modem for every current value and says what it would change and why; the caller
shows that to the user, and only then ``apply_plan`` writes - after reading everything
again, so nothing is written that the user has not seen - and reads each value back.
Facts from shared/reference/modems.md §1.1, §3.1, §5.1, §5.6 (VoLTE) and §7.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..at.channel import ATChannel
from ..at.errors import ATCommandError, ATError, CommandTimeout, PortLost
from ..errors import UserError
from .detect import detect_family
from .driver import wake
from .options import ModemConfig

REBOOT = "AT+CFUN=1,1"


@dataclass
class Setting:
    key: str                      # uac | volte | urcport | cvhu | cvoice | u2diag
    label: str
    current: str | None           # as read back; None when the modem would not say
    wanted: str
    command: str | None           # what would be sent; None = nothing to do
    why: str
    reboot: bool = False          # takes effect only after AT+CFUN=1,1 / a replug
    note: str | None = None       # why nothing is done (not requested, unreadable …)
    after: str | None = None      # read back after apply_plan

    @property
    def change(self) -> bool:
        return self.command is not None


@dataclass
class SetupPlan:
    name: str
    port: str
    family: str
    settings: list[Setting] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # what setup cannot fix (no voice firmware)
    rebooted: bool = False

    @property
    def changes(self) -> list[Setting]:
        return [s for s in self.settings if s.change]

    @property
    def needs_reboot(self) -> bool:
        return any(s.reboot for s in self.changes)

    def as_dict(self) -> dict:
        return {"name": self.name, "port": self.port, "family": self.family, "problems": self.problems,
                "needs_reboot": self.needs_reboot, "rebooted": self.rebooted,
                "settings": [s.__dict__ | {"change": s.change} for s in self.settings]}


async def _ask(ch: ATChannel, command: str, prefix: str) -> str | None:
    """The value after ``prefix`` in the answer to ``command``; None on ERROR or no such line."""
    try:
        return (await ch.command(command, timeout=3)).first(prefix)
    except ATCommandError:
        return None


def _fields(value: str) -> list[str]:
    return [p.strip().strip('"') for p in value.split(",")]


# --- the settings, as data ------------------------------------------------------------------
# Each setting is one typed definition (the way zigpy-znp declares its commands): the query
# that reads it, how its answer is understood, and the command that would set the wanted
# value. A family is the list of its settings; read_plan and apply_plan are the same code for all.

@dataclass(frozen=True)
class Reading:
    current: str | None           # as shown to the user
    change: str | None            # the command that sets the wanted value; None = already so


@dataclass(frozen=True)
class SettingDef:
    key: str
    label: str
    wanted: str
    why: str
    query: str
    prefix: str
    parse: Callable[[str | None], Reading | None]   # the query's value → Reading; None = unreadable
    unreadable: str               # the note when it cannot be read (nothing is written blind)
    reboot: bool = False
    opt_in: str | None = None     # changed only when the user asks with this option
    # the query answering ERROR is a problem setup cannot fix (Huawei without voice firmware)
    refused: tuple[str, str] | None = None           # (problem, note)


def _usbcfg(value: str | None) -> Reading | None:
    parts = _fields(value) if value else []
    # "usbcfg",VID,PID then seven flags: DIAG, NMEA, AT, modem, net, ADB, UAC (UAC last)
    # every field goes back into an AT command: accept only the shapes the manual gives
    if (len(parts) != 10 or not all(p in ("0", "1") for p in parts[3:])
            or not all(re.fullmatch(r"0[xX][0-9A-Fa-f]{4}", p) for p in parts[1:3])):
        return None
    if parts[9] == "1":
        return Reading("on", None)
    # keep every other flag exactly as read back: only the UAC flag changes
    return Reading("off", 'AT+QCFG="usbcfg",' + ",".join([parts[1], parts[2], *parts[3:9], "1"]))


def _ims(value: str | None) -> Reading | None:
    parts = _fields(value) if value else []
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    if parts[1] != "1":
        return Reading("disabled", 'AT+QCFG="ims",1')
    active = len(parts) > 2 and parts[2] == "1"
    return Reading("enabled" + (", registered" if active else ", not registered"), None)


def _urcport(value: str | None) -> Reading | None:
    parts = _fields(value) if value else []
    if len(parts) < 2:
        return None
    current = parts[1].lower()
    return Reading(current, None if current == "usbat" else 'AT+QURCCFG="urcport","usbat"')


def _cvhu(value: str | None) -> Reading | None:
    if value is None or not value.strip().isdigit():
        return None
    current = value.strip()
    return Reading(current, None if current == "0" else "AT+CVHU=0")


def _cvoice(value: str | None) -> Reading | None:
    mode = _fields(value)[0] if value else ""
    return Reading(mode or None, None if mode == "0" else "AT^CVOICE=0")


def _u2diag(value: str | None) -> Reading | None:
    if value is None or not re.fullmatch(r"\s*\d+\s*", value):
        return None
    current = value.strip()
    return Reading(current, None if current == "0" else "AT^U2DIAG=0")


QUECTEL_URCPORT = SettingDef(
    "urcport", "URC port", "usbat",
    "call progress and key URCs must come out of the AT port modem-dialer listens to; "
    "the setting is saved, so a previous owner may have moved it",
    'AT+QURCCFG="urcport"', "+QURCCFG:", _urcport,
    'AT+QURCCFG="urcport" cannot be read; not written blind')
QUECTEL_UAC = SettingDef(
    "uac", "USB audio card (UAC flag of usbcfg)", "on",
    "the EC2x shows a USB sound card only with the last usbcfg flag set; takes effect after a reboot",
    'AT+QCFG="usbcfg"', "+QCFG:", _usbcfg,
    'AT+QCFG="usbcfg" cannot be read on this firmware (EG25-G A0.302 answers ERROR); not written blind',
    reboot=True, opt_in="--uac")
QUECTEL_VOLTE = SettingDef(
    "volte", "VoLTE (IMS)", "enabled",
    "on a 4G-only network calls need VoLTE; takes effect after a reboot, and the "
    "network and SIM must accept it",
    'AT+QCFG="ims"', "+QCFG:", _ims, 'AT+QCFG="ims" cannot be read; not written blind',
    reboot=True, opt_in="--volte")
SIMCOM_CVHU = SettingDef(
    "cvhu", "hang-up mode (CVHU)", "0",
    "with CVHU=1 the SIM7600 answers OK to ATH and the call goes on; "
    "modem-dialer also sends AT+CVHU=0 at every start",
    "AT+CVHU?", "+CVHU:", _cvhu, "AT+CVHU? cannot be read")
HUAWEI_CVOICE = SettingDef(
    "cvoice", "voice over USB (^CVOICE)", "0",
    "mode 0 sends call audio over the USB voice port (8 kHz, 16 bit, 20 ms)",
    "AT^CVOICE?", "^CVOICE:", _cvoice, "AT^CVOICE? cannot be read",
    refused=("no voice firmware (AT^CVOICE? answered ERROR); this stick can send SMS but cannot make calls",
             "no voice firmware"))
HUAWEI_U2DIAG = SettingDef(
    "u2diag", "USB composition (^U2DIAG)", "0",
    "0 = modem only: the stick no longer starts as a CD-ROM that needs usb_modeswitch; "
    "takes effect at the next start",
    "AT^U2DIAG?", "^U2DIAG:", _u2diag, "AT^U2DIAG? cannot be read on this firmware; not written blind",
    reboot=True)

# What setup-modem reads (in this order) and may change, per family.
FAMILY_SETTINGS: dict[str, tuple[SettingDef, ...]] = {
    "quectel": (QUECTEL_URCPORT, QUECTEL_UAC, QUECTEL_VOLTE),
    "simcom": (SIMCOM_CVHU,),
    "huawei": (HUAWEI_CVOICE, HUAWEI_U2DIAG),
}
SETTINGS: dict[str, SettingDef] = {d.key: d for defs in FAMILY_SETTINGS.values() for d in defs}
# An option asked for on a family that has no such setting: the one-line reason.
OPT_IN_ELSEWHERE = {"--volte": "--volte: no VoLTE switch known for family {family}",
                    "--uac": "--uac: only Quectel modems have a UAC switch"}


async def read_setting(ch: ATChannel, d: SettingDef, requested: bool, problems: list[str]) -> Setting:
    """Read one setting and say what would change (nothing is written here)."""
    s = Setting(d.key, d.label, None, d.wanted, None, d.why, reboot=d.reboot)
    if d.refused is not None:
        try:
            value = (await ch.command(d.query, timeout=3)).first(d.prefix)
        except ATCommandError:
            problems.append(f"{ch.port}: {d.refused[0]}")
            s.note = d.refused[1]
            return s
    else:
        value = await _ask(ch, d.query, d.prefix)
    reading = d.parse(value)
    if reading is None:
        s.note = d.unreadable
        return s
    s.current = reading.current
    if reading.change is not None and d.opt_in is not None and not requested:
        s.note = f"not requested ({d.opt_in})"
    else:
        s.command = reading.change
    return s


# --- plan, apply ------------------------------------------------------------------------------

async def open_for_setup(cfg: ModemConfig) -> tuple[ATChannel, str]:
    """The AT port, awake with echo off, and the modem's family (detected when ``auto``).

    No driver init on purpose: setup must work on a modem the driver refuses
    (PIN locked, no voice firmware).
    """
    ch = await ATChannel.connect(cfg, name=f"setup:{cfg.name}")
    try:
        await wake(ch, cfg.probe_timeout)
        await ch.command("ATE0")
        family = cfg.family if cfg.family != "auto" else await detect_family(ch)
        return ch, family
    except BaseException:
        await ch.close()
        raise


async def read_plan(ch: ATChannel, cfg: ModemConfig, family: str, *, volte: bool = False,
                    uac: bool = False) -> SetupPlan:
    """Read the current settings and decide what to change; writes nothing."""
    plan = SetupPlan(cfg.name, cfg.port, family)
    asked = {"--volte": volte, "--uac": uac}
    defs = FAMILY_SETTINGS.get(family, ())
    plan.settings = [await read_setting(ch, d, asked.get(d.opt_in or "", False), plan.problems) for d in defs]
    card = next((s for s in plan.settings if s.key == "uac"), None)
    if cfg.audio is not None and cfg.audio.kind == "uac" and card is not None and card.current == "off" and not uac:
        plan.problems.append(f"{cfg.name}: audio kind 'uac' in the config but the UAC flag is off "
                             "(run setup-modem with --uac)")
    for option, wanted in asked.items():
        if wanted and not any(d.opt_in == option for d in defs):
            plan.problems.append(f"{cfg.name}: " + OPT_IN_ELSEWHERE[option].format(family=family))
    return plan


async def apply_plan(ch: ATChannel, cfg: ModemConfig, confirmed: SetupPlan, *, reboot: bool = True) -> SetupPlan:
    """Write the changes of ``confirmed``, read each back, then reboot if one needs it.

    The settings are read again first: if the modem's state is no longer what the user
    confirmed (someone else changed it meanwhile), nothing is written.
    """
    fresh = await read_plan(ch, cfg, confirmed.family, volte=any(s.key == "volte" and s.change
                                                                  for s in confirmed.settings),
                            uac=any(s.key == "uac" and s.change for s in confirmed.settings))
    if [s.command for s in fresh.changes] != [s.command for s in confirmed.changes]:
        raise UserError(f"{cfg.name}: the modem's settings changed since they were shown; nothing written "
                        "(run setup-modem again)")
    done = replace(fresh, settings=list(fresh.settings))
    for s in done.changes:
        try:
            await ch.command(s.command or "", timeout=5)
        except ATCommandError as exc:
            raise UserError(f"{cfg.name}: {s.command} refused: {exc.final}") from None
        s.after = (await read_setting(ch, SETTINGS[s.key], True, [])).current
    if reboot and done.needs_reboot:
        try:
            await ch.command(REBOOT, timeout=3)
        except (CommandTimeout, PortLost):
            pass          # the module may drop off USB before its OK reaches us
        except ATError as exc:
            raise UserError(f"{cfg.name}: {REBOOT} refused: {exc}") from None
        done.rebooted = True
    return done
