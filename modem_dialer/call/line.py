"""A line: one modem made ready for calls — its driver, identity and open audio path.

The audio path stays open for the line's whole life, so the first frame of a message leaves
within one frame of the answer instead of after a port open. Silence is sent only while a
call is answered (``AudioPath.keep_fed``): between calls nobody hears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..audio.path import AudioPath
from ..modems.detect import open_driver
from ..modems.driver import ModemDriver
from ..modems.info import Identity
from ..modems.options import ModemConfig
from ..precise_timer import PreciseTimer

log = logging.getLogger("modem_dialer.call")

# Per family, for PCM over a serial port: seconds a modem may still play downlink audio
# beyond the dialer's playout model, waited after the last prompt frame has played before
# hanging up. The model already counts each frame's whole 20 ms of play from when it was
# written (stamped after the write, after what the tty still held, TIOCOUTQ), so for the
# families that take PCM over a USB serial port and end a call with a URC after the release
# (Huawei, SIMCom, Quectel) a whole DSP frame is not added again: 5 ms covers the transfer to
# the modem and its read of the port, which the model cannot see; the phase of the modem's
# own 20 ms DSP clock still plays while ATH reaches the modem and it signals the release.
# Modems we know nothing of (and SIM800, whose audio is analogue) keep one DSP frame, and so
# does every sound card (UAC_PLAYOUT_MARGIN): there the model rests on the DAC time the host
# API reports, which plugins give loosely or not at all. Unverified on hardware [?]
# (modems.md §5 gives no figure): a setting per modem (audio.playout_margin); docs/audio.md
# "How long the modem still plays".
PLAYOUT_MARGIN = {"huawei": 0.005, "simcom": 0.005, "quectel": 0.005, "sim800": 0.02, "generic": 0.02}
UAC_PLAYOUT_MARGIN = 0.02
DEFAULT_PLAYOUT_MARGIN = 0.02


class Line:
    def __init__(self, cfg: ModemConfig, driver: ModemDriver, identity: Identity,
                 audio: AudioPath | None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.driver = driver
        self.identity = identity
        self.audio = audio
        if audio is not None:
            audio.keep_fed = False      # silence is sent while a call is answered (call/session.py)
        self.busy = False
        self.free_at = 0.0   # monotonic time the last call on this line ended
        self._timer: PreciseTimer | None = None

    def precise_timer(self) -> PreciseTimer:
        """The line's timer for the hang-up after a message (made on first use, on the loop):
        a ``timerfd``, which the loop's own timers (epoll's whole milliseconds, rounded up)
        would fire up to 1 ms late on every call (precise_timer.py)."""
        if self._timer is None:
            self._timer = PreciseTimer()
        return self._timer

    @property
    def playout_margin(self) -> float:
        a = self.cfg.audio
        if a is not None and a.playout_margin is not None:
            return a.playout_margin
        if a is not None and a.kind == "uac":
            return UAC_PLAYOUT_MARGIN
        return PLAYOUT_MARGIN.get(self.driver.family, DEFAULT_PLAYOUT_MARGIN)

    async def ready_to_dial(self) -> None:
        """Returns when the modem may dial again: at once, unless its ``dial_gap`` since the
        end of the last call has not passed yet."""
        wait = self.free_at + self.cfg.dial_gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    @property
    def inband_dtmf(self) -> bool:
        mode = self.cfg.dtmf
        return self.audio is not None and (mode in ("inband", "both") or (mode == "auto" and not self.driver.reports_dtmf))

    @property
    def urc_dtmf(self) -> bool:
        return self.cfg.dtmf in ("urc", "both") or (self.cfg.dtmf == "auto" and self.driver.reports_dtmf)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self.audio is not None:
            with contextlib.suppress(Exception):
                await self.audio.close()
        await self.driver.close()


def make_audio_path(cfg: ModemConfig) -> AudioPath | None:
    if cfg.audio is None:
        return None
    if cfg.audio.kind == "serial":
        from ..audio.serial_pcm import SerialPcm

        return SerialPcm(cfg.audio.port or "", cfg.audio.baudrate, name=f"{cfg.name}-audio",
                         lead_frames=cfg.audio.lead_frames)
    from ..audio.uac import UacAudio

    return UacAudio(cfg.audio.device or "", capture_device=cfg.audio.capture_device, name=f"{cfg.name}-audio")


async def open_line(cfg: ModemConfig) -> Line:
    """Open, init and identify a modem and start its audio path. Raises ATError/UserError."""
    driver = await open_driver(cfg)
    try:
        identity = await driver.identity()
        audio = make_audio_path(cfg)
        if audio is not None:
            await audio.start()
        return Line(cfg, driver, identity, audio)
    except BaseException:
        await driver.close()
        raise


async def open_lines(cfgs: list[ModemConfig]) -> tuple[list[Line], dict[str, str]]:
    """Open every modem concurrently; returns the lines that opened and the errors by name."""
    results = await asyncio.gather(*(open_line(c) for c in cfgs), return_exceptions=True)
    lines, errors = [], {}
    for cfg, r in zip(cfgs, results, strict=True):
        if isinstance(r, BaseException):
            if not isinstance(r, Exception):
                raise r
            errors[cfg.name] = str(r)
        else:
            lines.append(r)
    return lines, errors
