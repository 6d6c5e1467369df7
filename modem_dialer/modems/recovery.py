"""Bring a lost or hung modem back: re-find it by IMEI, reset it, power-cycle its USB port,
and quarantine it when nothing helps.

A modem that vanishes comes back (after a replug, a hub reset, its own reboot) under new
tty names - and without the udev rules, in another order. Its IMEI does not change, so
:class:`Supervisor` probes the AT ports it can find (discovery in sysfs, or a list given by
the caller) until one answers ``AT+CGSN`` with that IMEI, and returns the modem's config
with the new port and audio path. A modem that is still there but silent is reset with
``AT+CFUN=1,1`` (a hung firmware often still reads), then power-cycled by de- and
re-authorizing its USB device (``<sysfs>/bus/usb/devices/<usb_path>/authorized``, writable
by root or through a udev rule). After ``max_failures`` troubled recoveries without a
successful call in between (:meth:`Supervisor.note_success`) the modem is quarantined
until :meth:`Supervisor.release`.

Each step goes to the ``report`` callback as a :class:`RecoveryStep` whose ``status``
(recovering | ready | failed | quarantined) is meant for ``store.set_modem_state``; this
layer does not import the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..at.channel import ATChannel
from ..at.errors import ATError, CommandTimeout
from .discovery import discover
from .driver import wake
from .identity import imei_from
from .options import AudioConfig, ModemConfig
from .udev import alsa_device

log = logging.getLogger("modem_dialer.recovery")

RESET = "AT+CFUN=1,1"
_STABLE = re.compile(r"/gsm/([0-9]+-[0-9.]+)-at$")


@dataclass(frozen=True)
class Candidate:
    """An AT port that may be the lost modem, with the audio path that goes with it."""

    port: str
    audio: AudioConfig | None = None
    usb_path: str | None = None


@dataclass(frozen=True)
class RecoveryStep:
    modem: str
    step: str          # check | answers | lost | searching | found | reset | power_cycle | failed | quarantined
    detail: str
    status: str        # recovering | ready | failed | quarantined (for store.set_modem_state)
    imei: str | None = None
    port: str | None = None


def candidates_from_sysfs(sysfs_root: str | Path = "/sys") -> list[Candidate]:
    """Every known modem's AT port as of now, with its current audio tty or sound card."""
    out = []
    for m in discover(sysfs_root):
        if not m.known or m.at_tty is None:
            continue
        audio = None
        if m.audio is not None and m.audio.kind == "serial" and m.audio.tty:
            audio = AudioConfig(kind="serial", port=m.audio.tty)
        elif m.audio is not None and m.audio.kind == "uac" and m.audio.card_id:
            audio = AudioConfig(kind="uac", device=alsa_device(m.audio.card_id))
        out.append(Candidate(m.at_tty, audio, m.usb_path))
    return out


def usb_path_of(port: str, sysfs_root: str | Path = "/sys") -> str | None:
    """The USB device (``1-1.3``) a tty belongs to: from a /dev/gsm name or through sysfs."""
    if m := _STABLE.search(port):
        return m.group(1)
    name = os.path.basename(os.path.realpath(port))
    node = Path(sysfs_root) / "class" / "tty" / name
    if not node.exists():
        return None
    for d in (node.resolve(), *node.resolve().parents):
        if (d / "idVendor").is_file():
            return d.name
    return None


async def ask_imei(port: str, baudrate: int = 115200, timeout: float = 3.0) -> tuple[str | None, str]:
    """``(imei, state)``: state is ``answers``, ``silent`` or ``unavailable: <why>``."""
    try:
        ch = await ATChannel.open(port, baudrate, name=f"recover:{port}")
    except ATError as exc:
        return None, f"unavailable: {exc}"
    try:
        await wake(ch, timeout)
        resp = await ch.command("AT+CGSN", timeout=timeout)
        return imei_from(resp.lines), "answers"
    except CommandTimeout:
        return None, "silent"
    except ATError as exc:
        return None, f"unavailable: {exc}"
    finally:
        await ch.close()


async def find_by_imei(imei: str, candidates: Iterable[Candidate], *, baudrate: int = 115200,
                       timeout: float = 3.0, exclude: Iterable[str] = ()) -> Candidate | None:
    """The candidate whose AT port answers with ``imei`` (all probed at once), or None.

    Ports held by running lines are opened exclusively by them, so they are skipped
    without disturbing the call in progress; ``exclude`` skips more.
    """
    skip = {os.path.realpath(p) for p in exclude}
    todo = [c for c in candidates if os.path.realpath(c.port) not in skip]
    answers = await asyncio.gather(*(ask_imei(c.port, baudrate, timeout) for c in todo))
    for c, (got, _) in zip(todo, answers, strict=True):
        if got == imei:
            return c
    return None


class Supervisor:
    """Recovery for the lines of a pool: ``await supervisor.recover(cfg, imei)``."""

    def __init__(self, *, sysfs_root: str | Path = "/sys",
                 candidates: Callable[[], Iterable[Candidate]] | None = None,
                 report: Callable[[RecoveryStep], None] | None = None, max_failures: int = 3,
                 probe_timeout: float = 3.0, search_timeout: float = 30.0, reboot_wait: float = 25.0,
                 power_off_s: float = 2.0, poll_interval: float = 1.0) -> None:
        self.sysfs_root = Path(sysfs_root)
        self.candidates = candidates or (lambda: candidates_from_sysfs(self.sysfs_root))
        self.report = report
        self.max_failures = max_failures
        self.probe_timeout = probe_timeout
        self.search_timeout = search_timeout      # a vanished modem: how long to look for it
        self.reboot_wait = reboot_wait            # after a reset: a modem re-enumerates in ~15 s
        self.power_off_s = power_off_s
        self.poll_interval = poll_interval
        self.failures: dict[str, int] = {}
        self.quarantined: set[str] = set()
        self.usb_paths: dict[str, str] = {}

    # ---- bookkeeping -------------------------------------------------------------------
    def note_success(self, name: str) -> None:
        """The modem completed a call: its trouble count starts again."""
        self.failures.pop(name, None)

    def release(self, name: str) -> None:
        """An operator fixed the modem: take it out of quarantine."""
        self.quarantined.discard(name)
        self.failures.pop(name, None)

    def _step(self, cfg: ModemConfig, step: str, detail: str, status: str, imei: str | None,
              port: str | None = None) -> None:
        log.info("%s: %s: %s", cfg.name, step, detail)
        if self.report is not None:
            try:
                self.report(RecoveryStep(cfg.name, step, detail, status, imei, port or cfg.port))
            except Exception:   # a journal problem must not stop the recovery
                log.exception("%s: recovery report failed", cfg.name)

    # ---- recovery ----------------------------------------------------------------------
    async def recover(self, cfg: ModemConfig, imei: str | None, *, lost: bool = False,
                      usb_path: str | None = None, exclude: Iterable[str] = ()) -> ModemConfig | None:
        """The modem's config once it answers again (port and audio possibly new), else None.

        ``lost``: the port vanished (ModemLost/PortLost) - whatever answers, or not, under
        the old name now is another device, never reset. Otherwise a silent port is taken
        for a hung modem. The caller closes the line first: its port is opened exclusively here.
        """
        name = cfg.name
        if name in self.quarantined:
            self._step(cfg, "quarantined", "still quarantined; not touched", "quarantined", imei)
            return None
        usb_path = usb_path or self.usb_paths.get(name) or usb_path_of(cfg.port, self.sysfs_root)
        if usb_path:
            self.usb_paths[name] = usb_path
        exclude = list(exclude)

        state = "unavailable: no such port" if not lost else "unavailable: port lost"
        if os.path.exists(cfg.port) and not lost:
            got, state = await ask_imei(cfg.port, cfg.baudrate, self.probe_timeout)
            if state == "answers" and (imei is None or got == imei):
                self._step(cfg, "answers", f"{cfg.port} answers again", "ready", imei)
                return cfg
            if state == "answers":
                self._step(cfg, "check", f"{cfg.port} now answers with IMEI {got}: another modem", "recovering", imei)
        if state != "silent":
            self._step(cfg, "lost", f"{cfg.port}: {state.removeprefix('unavailable: ')}; looking for IMEI "
                       f"{imei or '?'} for {self.search_timeout:g} s", "recovering", imei)
            found = await self._search(cfg, imei, self.search_timeout, exclude)
            if found is not None:
                return found
            self._failed(cfg, imei, "not found again")
            return None

        # Silent. It may have re-enumerated and its old name gone to a device that does not
        # speak AT: one look elsewhere before resetting anything.
        if imei is not None:
            hit = await find_by_imei(imei, self.candidates(), baudrate=cfg.baudrate, timeout=self.probe_timeout,
                                     exclude=[*exclude, cfg.port])
            if hit is not None:
                return self._moved(cfg, imei, hit)
        # A hung firmware, then: count the trouble, reset, power-cycle.
        self.failures[name] = self.failures.get(name, 0) + 1
        self._step(cfg, "reset", f"{cfg.port} is silent: sending {RESET}", "recovering", imei)
        await self._send_reset(cfg)
        found = await self._search(cfg, imei, self.reboot_wait, exclude)
        if found is None:
            if await self._power_cycle(cfg, imei, usb_path):
                found = await self._search(cfg, imei, self.reboot_wait, exclude)
        if found is None:
            self._failed(cfg, imei, "still silent after reset and power cycle", counted=True)
            return None
        if self.failures.get(name, 0) >= self.max_failures:
            self._quarantine(cfg, imei, f"hung {self.failures[name]} times without a good call")
            return None
        return found

    async def _search(self, cfg: ModemConfig, imei: str | None, limit: float, exclude: list[str],
                      ) -> ModemConfig | None:
        deadline = time.monotonic() + limit
        while True:
            if imei is None:       # nothing to recognise it by: only its own port will do
                _, state = await ask_imei(cfg.port, cfg.baudrate, self.probe_timeout)
                if state == "answers":
                    self._step(cfg, "found", f"{cfg.port} answers again", "ready", imei)
                    return cfg
                if time.monotonic() + self.poll_interval > deadline:
                    return None
                await asyncio.sleep(self.poll_interval)
                continue
            cands = list(self.candidates())
            hit = await find_by_imei(imei, cands, baudrate=cfg.baudrate, timeout=self.probe_timeout,
                                     exclude=exclude)
            if hit is not None:
                return self._moved(cfg, imei, hit)
            if time.monotonic() + self.poll_interval > deadline:
                return None
            await asyncio.sleep(self.poll_interval)

    def _moved(self, cfg: ModemConfig, imei: str, hit: Candidate) -> ModemConfig:
        new = cfg.model_copy(update={"port": hit.port, "audio": hit.audio or cfg.audio})
        if hit.usb_path:
            self.usb_paths[cfg.name] = hit.usb_path
        moved = f"{cfg.port} -> {hit.port}" if hit.port != cfg.port else f"on {hit.port}"
        self._step(cfg, "found", f"IMEI {imei} {moved}", "ready", imei, hit.port)
        return new

    async def _send_reset(self, cfg: ModemConfig) -> None:
        try:
            ch = await ATChannel.connect(cfg, name=f"reset:{cfg.name}")
        except ATError as exc:
            self._step(cfg, "reset", f"cannot open {cfg.port}: {exc}", "recovering", None)
            return
        try:
            # a hung modem may still read: its OK is not expected
            await ch.command(RESET, timeout=min(1.0, self.probe_timeout))
        except ATError:
            pass
        finally:
            await ch.close()

    async def _power_cycle(self, cfg: ModemConfig, imei: str | None, usb_path: str | None) -> bool:
        if not usb_path:
            self._step(cfg, "power_cycle", "skipped: USB port of the modem unknown", "recovering", imei)
            return False
        auth = self.sysfs_root / "bus" / "usb" / "devices" / usb_path / "authorized"
        try:
            auth.write_text("0")
            self._step(cfg, "power_cycle", f"USB {usb_path} de-authorized ({auth})", "recovering", imei)
            await asyncio.sleep(self.power_off_s)
            auth.write_text("1")
        except OSError as exc:
            with contextlib.suppress(OSError):       # never leave the port switched off
                if auth.is_file() and auth.read_text().strip() == "0":
                    auth.write_text("1")
            self._step(cfg, "power_cycle", f"not permitted on USB {usb_path}: {exc.strerror or exc} "
                       "(needs root or a udev rule making 'authorized' writable)", "recovering", imei)
            return False
        self._step(cfg, "power_cycle", f"USB {usb_path} re-authorized", "recovering", imei)
        return True

    def _failed(self, cfg: ModemConfig, imei: str | None, why: str, counted: bool = False) -> None:
        if not counted:
            self.failures[cfg.name] = self.failures.get(cfg.name, 0) + 1
        n = self.failures[cfg.name]
        if n >= self.max_failures:
            self._quarantine(cfg, imei, f"{why} ({n} failed recoveries)")
            return None
        self._step(cfg, "failed", f"{why} (failure {n} of {self.max_failures})", "failed", imei)
        return None

    def _quarantine(self, cfg: ModemConfig, imei: str | None, why: str) -> None:
        self.quarantined.add(cfg.name)
        self._step(cfg, "quarantined", f"{why}; out of rotation until released", "quarantined", imei)
        return None
