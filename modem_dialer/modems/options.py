"""The ``modems:`` section of config.yaml: one entry per modem (port, family, PIN, audio path).

This is all the modem layer reads of the config file (the AT layer reads only the serial
part, ``at.options.SerialOptions``); the upper layers' sections (alerting, campaigns, IVR
advisors) are assembled above, in ``config/``, and never loaded by a driver.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..at.options import SerialOptions
from ..yamlfile import Strict

FAMILIES = ("auto", "quectel", "simcom", "sim800", "huawei", "generic")
Family = Literal["auto", "quectel", "simcom", "sim800", "huawei", "generic"]

# A PIN goes into AT+CPIN="...": only 4 to 8 digits may ever reach the modem.
_PIN = re.compile(r"^[0-9]{4,8}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class AudioConfig(Strict):
    kind: Literal["serial", "uac"]
    port: str | None = None          # kind serial: the PCM tty
    device: str | None = None        # kind uac: a PortAudio device name, e.g. "hw:CARD=gsm_1_1_3,DEV=0"
    capture_device: str | None = None  # kind uac: when capture is another device (default: device)
    baudrate: int = 115200
    # Digital gain applied to the prompt before it is sent, in dB (0 = as normalised).
    tx_gain_db: float = 0.0
    # Seconds the modem (or card) may still hold beyond what the dialer's playout model
    # counts (frames written vs. time, the tty's queue): its own jitter buffer. The hang-up
    # waits this long after the last prompt frame has played. Default: the family's value
    # (call/line.py PLAYOUT_MARGIN, unverified [?], see docs/audio.md).
    playout_margin: float | None = Field(default=None, ge=0, le=2)
    # kind serial: 20 ms frames the dialer keeps written ahead in the modem (1 = none). More
    # rides out longer stalls of the dialer's host (a loaded or stolen CPU) without a hole
    # the callee hears, but a barge-in stops the prompt that much later. Default 2
    # (audio/serial_pcm.py LEAD_FRAMES); how much a modem's port accepts ahead is unverified
    # [?] (modems.md §5 gives no figure): docs/audio.md "Frames written ahead".
    lead_frames: int | None = Field(default=None, ge=1, le=25)

    @model_validator(mode="after")
    def _check_target(self) -> AudioConfig:
        if self.kind == "serial" and not self.port:
            raise ValueError("audio kind 'serial' needs 'port' (the modem's PCM tty)")
        if self.kind == "uac" and not self.device:
            raise ValueError("audio kind 'uac' needs 'device' (a PortAudio device name)")
        return self


class ModemConfig(SerialOptions):
    """One ``modems:`` entry; ``port`` and ``baudrate`` come from :class:`SerialOptions`."""

    name: str
    family: Family = "auto"
    pin: str | None = None
    audio: AudioConfig | None = None
    # Where keys come from: the family's DTMF URC, the in-band detector on captured
    # audio, or both (auto = URC where the family reports keys, in-band otherwise).
    dtmf: Literal["auto", "urc", "inband", "both"] = "auto"
    # SIM7600: seconds between the answer and AT+CPCMREG=1. ModemManager waits 0.1 s because
    # the module "needs to wait a bit" — unverified ([?] in modems.md §5.2), hence a setting.
    pcm_enable_delay: float = Field(default=0.1, ge=0, le=5)
    # Seconds to wait for the first answer of the modem before calling it silent.
    probe_timeout: float = Field(default=3.0, gt=0, le=60)
    # Seconds between the end of a call and the next ATD on this modem, for modems that
    # need a pause to settle. 0 = dial the next number as soon as the line is free.
    dial_gap: float = Field(default=0.0, ge=0, le=60)
    # Explicit call transfer (AT+CHLD=4) for `strategy: ect` transfers. auto = the family's
    # default: on, except Huawei, where chan_dongle documents AT+CHLD sequences wedging the
    # E1550 (modems.md §2). Confirmed on Quectel and SIM7600 only; SIM800 and generic
    # modems are unverified ([?]): set off where the network or module refuses it.
    ect: Literal["auto", "on", "off"] = "auto"
    # The audio routing a family sends before each dial, in the ATD's own command line
    # (``AT+QPCMV=0;+QPCMV=1,0;D<number>;``) rather than one command and answer each: two
    # round trips fewer between a line's calls. auto = the family's default: on for Quectel,
    # which asterisk-chan-quectel dials this way (modems.md §5.1 [C S2]); no other family
    # routes audio before the dial. off: a command each, for a firmware that refuses the line.
    dial_in_one_line: Literal["auto", "on", "off"] = "auto"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("modem name must be 1-32 letters, digits, '_', '.' or '-'")
        return v

    @field_validator("pin", mode="before")
    @classmethod
    def _pin(cls, v: object) -> object:
        if v is None:
            return v
        v = str(v)
        if not _PIN.match(v):
            raise ValueError("SIM PIN must be 4 to 8 digits")
        return v

    @field_validator("family", mode="before")
    @classmethod
    def _family(cls, v: object) -> object:
        if isinstance(v, str) and v not in FAMILIES:
            raise ValueError(f"unknown family, expected one of {', '.join(FAMILIES)}")
        return v
