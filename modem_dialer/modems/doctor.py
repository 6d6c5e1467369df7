"""``modem-dialer doctor``: check the whole box and say, for each problem, how to fix it.

Every check gives ``name``, ``status`` (ok | warn | fail), ``message`` and ``fix``. A *fail*
is something that stops calls (a silent modem, a PIN-locked SIM, an unwritable journal);
a *warn* is a risk or an unknown (ModemManager running but leaving our ports alone, weak
signal, a clock we cannot check). Everything the checks read from the system - /proc,
sysfs, the libraries, the clock - comes through :class:`DoctorEnv`, so tests inject
problems without touching the machine.
"""

from __future__ import annotations

import asyncio
import ctypes.util
import grp
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..at.errors import ATError, CommandTimeout, PortOpenError
from ..store.db import server_problem, write_lock_error
from ..store.pg import is_postgres, redact
from .driver import DriverError
from .events import Registration
from .options import ModemConfig

Status = Literal["ok", "warn", "fail"]
TWO_THREE_G_ONLY = ("huawei", "sim800")   # no LTE radio: need 2G/3G voice (modems.md §5.6)


@dataclass
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None
    modem: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def audio_device_present(device: str, sysfs_root: str = "/sys") -> bool | None:
    """Is the ALSA/PortAudio device there? None when it cannot be told.

    ``hw:CARD=<id>`` (what discovery writes) and ``hw:<n>`` are looked up among the card
    ids in sysfs, which needs no audio library; other names are asked of PortAudio.
    """
    cards = Path(sysfs_root) / "class" / "sound"
    if m := re.match(r"^(?:plug)?hw:CARD=([^,]+)", device):
        ids = set()
        for card in cards.glob("card*"):
            try:
                ids.add((card / "id").read_text().strip())
            except OSError:
                continue
        return m.group(1) in ids
    if m := re.match(r"^(?:plug)?hw:([0-9]+)", device):
        return (cards / f"card{m.group(1)}").exists()
    try:
        import sounddevice

        sounddevice.query_devices(device)
        return True
    except (ValueError, ImportError):
        return False
    except OSError:            # PortAudio library missing: reported by its own check
        return None


@dataclass
class DoctorEnv:
    proc_root: str = "/proc"
    sysfs_root: str = "/sys"
    find_library: Callable[[str], str | None] = ctypes.util.find_library
    which: Callable[[str], str | None] = shutil.which
    timedatectl: str | None = "timedatectl"          # None: do not ask systemd
    timesync_flag: str = "/run/systemd/timesync/synchronized"
    min_signal_dbm: int = -105
    lte_only: bool = False          # the network has no 2G/3G voice (3G shut down)
    audio_device_exists: Callable[[str], bool | None] | None = None
    probe_timeout: float | None = None               # overall per modem (default probe_timeout + 10)


def worst(checks: list[Check]) -> Status:
    return "fail" if any(c.status == "fail" for c in checks) else "warn" if any(
        c.status == "warn" for c in checks) else "ok"


def exit_code(checks: list[Check]) -> int:
    """0 when nothing needed for calls failed (warnings allowed), else 1."""
    return 1 if worst(checks) == "fail" else 0


# --- system -----------------------------------------------------------------------------

def _pids_named(proc_root: str, comm: str) -> list[int]:
    out: list[int] = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return out
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            if Path(proc_root, pid, "comm").read_text().strip() == comm:
                out.append(int(pid))
        except OSError:
            continue
    return out


def _holds(proc_root: str, pid: int, port: str) -> bool:
    target = os.path.realpath(port)
    fd_dir = os.path.join(proc_root, str(pid), "fd")
    try:
        return any(os.path.realpath(os.path.join(fd_dir, fd)) == target for fd in os.listdir(fd_dir))
    except OSError:
        return False


_MM_FIX = ("install the rules of `modem-dialer udev` (they set ID_MM_DEVICE_IGNORE) and replug, or stop it: "
           "sudo systemctl disable --now ModemManager")


def check_modemmanager(env: DoctorEnv, modems: list[ModemConfig]) -> Check:
    pids = _pids_named(env.proc_root, "ModemManager")
    if not pids:
        return Check("ModemManager", "ok", "not running")
    held = [f"{m.name} ({m.port})" for m in modems for pid in pids if _holds(env.proc_root, pid, m.port)]
    who = ", ".join(f"ModemManager[{p}]" for p in pids)
    if held:
        return Check("ModemManager", "fail", f"{who} is running and holds {', '.join(held)}", _MM_FIX)
    return Check("ModemManager", "warn", f"{who} is running; it grabs modems it is not told to ignore", _MM_FIX)


def check_libraries(env: DoctorEnv, modems: list[ModemConfig]) -> list[Check]:
    uac = [m.name for m in modems if m.audio is not None and m.audio.kind == "uac"]
    out = []
    lib = env.find_library("portaudio")
    if lib:
        out.append(Check("libportaudio2", "ok", f"PortAudio found ({lib})"))
    else:
        need = f"needed by the UAC audio of {', '.join(uac)}" if uac else "needed for modems with a USB sound card"
        out.append(Check("libportaudio2", "fail" if uac else "warn", f"PortAudio library missing ({need})",
                         "sudo apt-get install libportaudio2"))
    exe = env.which("espeak-ng")
    out.append(Check("espeak-ng", "ok", f"found ({exe})") if exe else
               Check("espeak-ng", "warn", "espeak-ng missing: spoken prompts (--say, TTS in flows) cannot be made",
                     "sudo apt-get install espeak-ng"))
    return out


async def check_clock(env: DoctorEnv) -> Check:
    fix = ("calling windows and the legal hours depend on the clock: enable NTP, e.g. "
           "sudo timedatectl set-ntp true (systemd-timesyncd) or install chrony")
    exe = env.which(env.timedatectl) if env.timedatectl else None
    if exe:
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, "show", "-p", "NTPSynchronized", "--value",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), 3)
            value = out.decode().strip()
            if proc.returncode == 0 and value in ("yes", "no"):
                return (Check("clock", "ok", "synchronised (timedatectl)") if value == "yes" else
                        Check("clock", "warn", "not synchronised (timedatectl NTPSynchronized=no)", fix))
        except (OSError, asyncio.TimeoutError):
            pass              # no systemd here (container): fall back to the flag file
    flag = Path(env.timesync_flag)
    if flag.exists():
        return Check("clock", "ok", f"synchronised ({flag} exists)")
    if flag.parent.is_dir():
        return Check("clock", "warn", f"not synchronised ({flag} missing)", fix)
    return Check("clock", "warn", "unknown: neither timedatectl nor systemd-timesyncd could tell", fix)


def check_database(target: Path | str) -> Check:
    if is_postgres(target):
        name = redact(str(target))
        problem = server_problem(str(target))
        if problem is not None:
            return Check("database", "fail", f"{name}: {problem}",
                         "start PostgreSQL or fix 'database:' (host, port, user, database name; docs/schema.md)")
        return Check("database", "ok", f"{name} is reachable and writable")
    path = Path(target)
    parent = path.parent
    fix = f"make {parent} writable for this user, or set 'database:' in the config to a writable path"
    if not parent.is_dir():
        return Check("database", "fail", f"{path}: directory {parent} does not exist or is not a directory", fix)
    try:    # the journal needs to create its -wal and -shm files next to it
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("database", "fail", f"{path}: cannot create files in {parent} ({exc.strerror})", fix)
    if not path.exists():
        return Check("database", "ok", f"{path} will be created")
    err = write_lock_error(path)
    if err is not None:
        return Check("database", "fail", f"{path}: not writable ({err})", fix)
    return Check("database", "ok", f"{path} is writable")


# --- one modem --------------------------------------------------------------------------

def _group_of(port: str) -> str:
    try:
        return grp.getgrgid(os.stat(port).st_gid).gr_name
    except (OSError, KeyError):
        return "dialer"


def _driver_problem(m: ModemConfig, exc: DriverError) -> Check:
    text = str(exc)
    low = text.lower()
    if "no voice firmware" in low:
        fix = ("this stick cannot make calls (it can still send SMS): use a modem with voice firmware "
               "(Huawei E1550/E173 voice builds, Quectel EC25, SIM7600)")
        return Check(f"{m.name}: voice", "fail", text, fix, m.name)
    if "pin required" in low:
        return Check(f"{m.name}: SIM", "fail", f"{m.port}: SIM is PIN locked and no 'pin' is configured",
                     f"add `pin: \"NNNN\"` to modem {m.name} in the config (or remove the PIN in a phone)", m.name)
    if "pin rejected" in low:
        return Check(f"{m.name}: SIM", "fail", text,
                     f"check 'pin' of modem {m.name}: the SIM locks after 3 wrong PINs (then it needs its PUK)", m.name)
    if "puk" in low:
        return Check(f"{m.name}: SIM", "fail", text, "unlock the SIM with its PUK in a phone", m.name)
    return Check(f"{m.name}: SIM", "fail", text, "power the modem off, insert a working SIM, power it on", m.name)


def _network(m: ModemConfig, family: str, health, env: DoctorEnv) -> Check:
    name = f"{m.name}: network"
    reg = health.registration
    volte_fix = (f"if the operator has no 2G/3G voice any more: `modem-dialer setup-modem {m.name} --volte` "
                 "(Quectel) and a SIM whose plan includes VoLTE")
    if not reg.registered:
        if reg is Registration.DENIED:
            fix = "registration denied: the SIM is barred or has no voice subscription; ask the operator"
        elif family in TWO_THREE_G_ONLY:
            fix = ("this modem has no 4G radio: where 2G/3G is shut down it never registers; use a 4G modem "
                   "with VoLTE (e.g. Quectel EC25 with `setup-modem --volte`). Else check antenna and coverage")
        else:
            fix = "check the antenna and coverage; a SIM without a voice plan may also stay unregistered"
        return Check(name, "fail", f"{m.port}: not registered ({reg.value})", fix, m.name)
    where = f"registered ({reg.value}{', ' + health.tech if health.tech else ''})" + (
        f" on {health.operator}" if health.operator else "")
    if family in TWO_THREE_G_ONLY and env.lte_only:
        return Check(name, "fail", f"{where}, but this modem is 2G/3G only and the network is 4G only",
                     "use a 4G modem with VoLTE", m.name)
    if health.tech == "4G" and health.volte is False:
        msg = f"{where} without VoLTE: calls fall back to 2G/3G (CSFB)"
        return Check(name, "fail" if env.lte_only else "warn", msg, volte_fix, m.name)
    volte = {True: ", VoLTE on", False: ", VoLTE off", None: ""}[health.volte]
    return Check(name, "ok", where + volte, None, m.name)


def _signal(m: ModemConfig, health, env: DoctorEnv) -> Check:
    name = f"{m.name}: signal"
    fix = ("move the antenna or use external antennas; modems side by side in a hub shade each other; "
           "calls on a weak signal drop and keys get lost")
    if health.signal_dbm is None:
        return Check(name, "warn", "signal strength unknown (AT+CSQ 99)", fix, m.name)
    if health.signal_dbm < env.min_signal_dbm:
        return Check(name, "warn", f"weak signal: {health.signal_dbm} dBm (< {env.min_signal_dbm} dBm)", fix, m.name)
    return Check(name, "ok", f"{health.signal_dbm} dBm", None, m.name)


def _audio(m: ModemConfig, env: DoctorEnv) -> Check:
    name = f"{m.name}: audio"
    a = m.audio
    if a is None:
        return Check(name, "warn", "no audio path configured: this modem can send SMS but not play messages",
                     "run `modem-dialer discover --write-config` or add an 'audio:' entry", m.name)
    if a.kind == "serial":
        port = a.port or ""
        if not os.path.exists(port):
            return Check(name, "fail", f"audio port {port} missing",
                         "check the modem's audio interface with `modem-dialer discover`", m.name)
        if not os.access(port, os.R_OK | os.W_OK):
            return Check(name, "fail", f"{port}: permission denied",
                         f"add the user to group {_group_of(port)}: sudo usermod -aG {_group_of(port)} $USER", m.name)
        return Check(name, "ok", f"serial PCM on {port}", None, m.name)
    device = a.device or ""
    present = (env.audio_device_exists or (lambda d: audio_device_present(d, env.sysfs_root)))(device)
    if present is None:
        return Check(name, "warn", f"cannot tell whether sound card {device} exists", None, m.name)
    if not present:
        return Check(name, "fail", f"UAC sound card {device} not found",
                     f"enable it: `modem-dialer setup-modem {m.name} --uac` (reboots the modem); with the udev "
                     "rules installed, replug so the card gets its gsm_ id; `cat /proc/asound/cards` lists cards",
                     m.name)
    return Check(name, "ok", f"sound card {device}", None, m.name)


async def check_modem(m: ModemConfig, env: DoctorEnv) -> list[Check]:
    from .detect import open_driver

    out: list[Check] = []
    port = f"{m.name}: port"
    if not os.path.exists(m.port):
        return [Check(port, "fail", f"{m.port} missing",
                      "is the modem plugged in and the hub powered? `modem-dialer discover` shows where the "
                      "modems are; /dev/gsm/... names need the rules of `modem-dialer udev`", m.name)]
    if not os.access(m.port, os.R_OK | os.W_OK):
        g = _group_of(m.port)
        return [Check(port, "fail", f"{m.port}: permission denied",
                      f"sudo usermod -aG {g} $USER, then log out and in (the udev rules give group 'dialer')",
                      m.name)]
    mm = [p for p in _pids_named(env.proc_root, "ModemManager") if _holds(env.proc_root, p, m.port)]
    if mm:
        out.append(Check(port, "fail", f"{m.port} is held by " + ", ".join(f"ModemManager[{p}]" for p in mm),
                         _MM_FIX, m.name))
    limit = env.probe_timeout or (m.probe_timeout + 10)
    driver = None
    try:
        driver = await asyncio.wait_for(open_driver(m), limit)
        health = await asyncio.wait_for(driver.health(), limit)
    except PortOpenError as exc:
        fix = ("stop the program holding it (a second modem-dialer, minicom, ModemManager)"
               if "busy" in str(exc) else "see the message")
        return [*out, Check(port, "fail", str(exc), fix, m.name)]
    except CommandTimeout as exc:
        return [*out, Check(f"{m.name}: answers", "fail", f"silent: {exc}",
                            "check it is the AT interface (`modem-dialer discover`), then replug or power-cycle "
                            "the modem", m.name)]
    except DriverError as exc:
        return [*out, _driver_problem(m, exc)]
    except ATError as exc:
        return [*out, Check(f"{m.name}: answers", "fail", str(exc), "replug the modem", m.name)]
    except asyncio.TimeoutError:
        return [*out, Check(f"{m.name}: answers", "fail", f"{m.port}: probe did not finish within {limit:g} s",
                            "replug or power-cycle the modem", m.name)]
    finally:
        if driver is not None:
            await driver.close()
    if not out:
        out.append(Check(port, "ok", f"{m.port} answers ({driver.family})", None, m.name))
    if health.sim != "ready":
        out.append(Check(f"{m.name}: SIM", "fail", f"SIM {health.sim.replace('_', ' ')}",
                         "insert a working SIM (modem powered off)", m.name))
    out.append(_network(m, driver.family, health, env))
    out.append(_signal(m, health, env))
    out.append(_audio(m, env))
    return out


async def run_doctor(configured: list[ModemConfig] | None, database: Path | str | None,
                     env: DoctorEnv | None = None) -> list[Check]:
    """Every check, system first, then each configured modem (probed concurrently).

    ``configured``: the config file's ``modems:`` entries; None when there is no usable config
    (only the box is checked then). The doctor reads nothing else of the config file.
    """
    env = env or DoctorEnv()
    modems = list(configured) if configured is not None else []
    checks = [check_modemmanager(env, modems), *check_libraries(env, modems), await check_clock(env)]
    if database is not None:
        checks.append(check_database(database))
    if configured is not None and not modems:
        checks.append(Check("modems", "fail", "no modems in the config",
                            "run `modem-dialer discover --write-config config.yaml`"))
    for found in await asyncio.gather(*(check_modem(m, env) for m in modems)):
        checks.extend(found)
    return checks
