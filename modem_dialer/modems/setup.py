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
from dataclasses import dataclass, field, replace

from ..at.channel import ATChannel
from ..at.errors import ATCommandError, ATError, CommandTimeout, PortLost
from ..config import ModemConfig
from ..errors import UserError
from .detect import detect_family
from .driver import wake

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


# --- Quectel ------------------------------------------------------------------------------

async def _quectel_uac(ch: ATChannel, requested: bool) -> Setting:
    s = Setting("uac", "USB audio card (UAC flag of usbcfg)", None, "on", None,
                "the EC2x shows a USB sound card only with the last usbcfg flag set; "
                "takes effect after a reboot", reboot=True)
    value = await _ask(ch, 'AT+QCFG="usbcfg"', "+QCFG:")
    parts = _fields(value) if value else []
    # "usbcfg",VID,PID then seven flags: DIAG, NMEA, AT, modem, net, ADB, UAC (UAC last)
    # every field goes back into an AT command: accept only the shapes the manual gives
    if (len(parts) != 10 or not all(p in ("0", "1") for p in parts[3:])
            or not all(re.fullmatch(r"0[xX][0-9A-Fa-f]{4}", p) for p in parts[1:3])):
        s.note = ('AT+QCFG="usbcfg" cannot be read on this firmware (EG25-G A0.302 answers ERROR); '
                  "not written blind")
        return s
    s.current = "on" if parts[9] == "1" else "off"
    if not requested:
        s.note = "not requested (--uac)" if s.current == "off" else None
    elif s.current == "off":
        # keep every other flag exactly as read back: only the UAC flag changes
        s.command = 'AT+QCFG="usbcfg",' + ",".join([parts[1], parts[2], *parts[3:9], "1"])
    return s


async def _quectel_volte(ch: ATChannel, requested: bool) -> Setting:
    s = Setting("volte", "VoLTE (IMS)", None, "enabled", None,
                "on a 4G-only network calls need VoLTE; takes effect after a reboot, and the "
                "network and SIM must accept it", reboot=True)
    value = await _ask(ch, 'AT+QCFG="ims"', "+QCFG:")
    parts = _fields(value) if value else []
    if len(parts) < 2 or not parts[1].isdigit():
        s.note = 'AT+QCFG="ims" cannot be read; not written blind'
        return s
    enabled = parts[1] == "1"
    active = len(parts) > 2 and parts[2] == "1"
    s.current = "enabled" + (", registered" if active else ", not registered") if enabled else "disabled"
    if not enabled:
        if requested:
            s.command = 'AT+QCFG="ims",1'
        else:
            s.note = "not requested (--volte)"
    return s


async def _quectel_urcport(ch: ATChannel) -> Setting:
    s = Setting("urcport", "URC port", None, "usbat", None,
                "call progress and key URCs must come out of the AT port modem-dialer listens to; "
                "the setting is saved, so a previous owner may have moved it")
    value = await _ask(ch, 'AT+QURCCFG="urcport"', "+QURCCFG:")
    parts = _fields(value) if value else []
    if len(parts) < 2:
        s.note = 'AT+QURCCFG="urcport" cannot be read; not written blind'
        return s
    s.current = parts[1].lower()
    if s.current != "usbat":
        s.command = 'AT+QURCCFG="urcport","usbat"'
    return s


# --- SIMCom, Huawei -------------------------------------------------------------------------

async def _simcom_cvhu(ch: ATChannel) -> Setting:
    s = Setting("cvhu", "hang-up mode (CVHU)", None, "0", None,
                "with CVHU=1 the SIM7600 answers OK to ATH and the call goes on; "
                "modem-dialer also sends AT+CVHU=0 at every start")
    value = await _ask(ch, "AT+CVHU?", "+CVHU:")
    if value is None or not value.strip().isdigit():
        s.note = "AT+CVHU? cannot be read"
        return s
    s.current = value.strip()
    if s.current != "0":
        s.command = "AT+CVHU=0"
    return s


async def _huawei_cvoice(ch: ATChannel, plan: SetupPlan) -> Setting:
    s = Setting("cvoice", "voice over USB (^CVOICE)", None, "0", None,
                "mode 0 sends call audio over the USB voice port (8 kHz, 16 bit, 20 ms)")
    try:
        value = (await ch.command("AT^CVOICE?", timeout=3)).first("^CVOICE:")
    except ATCommandError:
        plan.problems.append(f"{ch.port}: no voice firmware (AT^CVOICE? answered ERROR); this stick "
                             "can send SMS but cannot make calls")
        s.note = "no voice firmware"
        return s
    mode = _fields(value)[0] if value else ""
    s.current = mode or None
    if mode != "0":
        s.command = "AT^CVOICE=0"
    return s


async def _huawei_u2diag(ch: ATChannel) -> Setting:
    s = Setting("u2diag", "USB composition (^U2DIAG)", None, "0", None,
                "0 = modem only: the stick no longer starts as a CD-ROM that needs usb_modeswitch; "
                "takes effect at the next start", reboot=True)
    value = await _ask(ch, "AT^U2DIAG?", "^U2DIAG:")
    if value is None or not re.fullmatch(r"\s*\d+\s*", value):
        s.note = "AT^U2DIAG? cannot be read on this firmware; not written blind"
        return s
    s.current = value.strip()
    if s.current != "0":
        s.command = "AT^U2DIAG=0"
    return s


# --- plan, apply ------------------------------------------------------------------------------

async def open_for_setup(cfg: ModemConfig) -> tuple[ATChannel, str]:
    """The AT port, awake with echo off, and the modem's family (detected when ``auto``).

    No driver init on purpose: setup must work on a modem the driver refuses
    (PIN locked, no voice firmware).
    """
    ch = await ATChannel.open(cfg.port, cfg.baudrate, name=f"setup:{cfg.name}")
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
    if family == "quectel":
        plan.settings = [await _quectel_urcport(ch), await _quectel_uac(ch, uac), await _quectel_volte(ch, volte)]
        if cfg.audio is not None and cfg.audio.kind == "uac" and plan.settings[1].current == "off" and not uac:
            plan.problems.append(f"{cfg.name}: audio kind 'uac' in the config but the UAC flag is off "
                                 "(run setup-modem with --uac)")
    elif family == "simcom":
        plan.settings = [await _simcom_cvhu(ch)]
    elif family == "huawei":
        plan.settings = [await _huawei_cvoice(ch, plan), await _huawei_u2diag(ch)]
    if volte and family != "quectel":
        plan.problems.append(f"{cfg.name}: --volte: no VoLTE switch known for family {family}")
    if uac and family != "quectel":
        plan.problems.append(f"{cfg.name}: --uac: only Quectel modems have a UAC switch")
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
    readers = {"uac": lambda: _quectel_uac(ch, True), "volte": lambda: _quectel_volte(ch, True),
               "urcport": lambda: _quectel_urcport(ch), "cvhu": lambda: _simcom_cvhu(ch),
               "cvoice": lambda: _huawei_cvoice(ch, SetupPlan("", "", "")), "u2diag": lambda: _huawei_u2diag(ch)}
    for s in done.changes:
        try:
            await ch.command(s.command or "", timeout=5)
        except ATCommandError as exc:
            raise UserError(f"{cfg.name}: {s.command} refused: {exc.final}") from None
        s.after = (await readers[s.key]()).current
    if reboot and done.needs_reboot:
        try:
            await ch.command(REBOOT, timeout=3)
        except (CommandTimeout, PortLost):
            pass          # the module may drop off USB before its OK reaches us
        except ATError as exc:
            raise UserError(f"{cfg.name}: {REBOOT} refused: {exc}") from None
        done.rebooted = True
    return done
