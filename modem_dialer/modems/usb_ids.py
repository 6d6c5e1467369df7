"""Known USB modems: VID:PID -> family, AT interface, audio interface.

Facts from shared/reference/modems.md §1.1 (ModemManager port-type rules, chan_quectel and
chan_dongle discovery tables). To support a new modem add one ``UsbModel`` to ``MODELS``;
discovery, the config writer and the udev rules all read this table and nothing else.
Interface numbers are ``bInterfaceNumber`` (sysfs prints them in hex, ``02``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class UsbModel:
    vid: str                       # 4 lower-case hex digits, as in sysfs idVendor
    pid: str
    family: str                    # a config.Family value: quectel, simcom, huawei, ...
    model: str                     # human note, shown in tables and config comments
    at_if: int                     # interface whose tty answers AT commands
    audio_if: int | None = None    # interface whose tty carries raw 8 kHz PCM (kind "serial")
    # The modem can expose a USB Audio Class card instead (Quectel with the UAC flag of
    # AT+QCFG="usbcfg"); when discovery finds a card under the same USB device it wins.
    uac: bool = False
    roles: Mapping[int, str] = field(default_factory=dict)  # other interfaces, for display
    # (the ICCID commands are the family driver's: ModemDriver.iccid_commands)

    @property
    def key(self) -> tuple[str, str]:
        return (self.vid, self.pid)

    def role_map(self) -> dict[int, str]:
        """Interface number -> role, the AT and audio interfaces included."""
        out = dict(self.roles)
        out[self.at_if] = "at"
        if self.audio_if is not None:
            out[self.audio_if] = "audio" if not self.uac else "nmea/pcm"
        return out


_QUECTEL_ROLES = {0: "diag", 1: "nmea/pcm", 3: "modem", 4: "net"}
_SIMCOM_ROLES = {0: "diag", 1: "nmea", 3: "modem", 5: "net"}

MODELS: tuple[UsbModel, ...] = (
    # Quectel: AT on if02, raw PCM on the NMEA tty if01 after AT+QPCMV=1,0, or a UAC card
    # after AT+QCFG="usbcfg",...,1 and a reboot (modems.md §1.1).
    UsbModel("2c7c", "0125", "quectel", "Quectel EC25/EG25-G", 2, 1, True, _QUECTEL_ROLES),
    UsbModel("2c7c", "0121", "quectel", "Quectel EC21", 2, 1, True, _QUECTEL_ROLES),
    # Old EC20 R2.0 enumerates with Qualcomm's VID; same layout assumed [I].
    UsbModel("05c6", "9215", "quectel", "Quectel EC20 R2.0 (Qualcomm id)", 2, 1, True, _QUECTEL_ROLES),
    # SIMCom SIM7600/SIM7500: audio is a serial port on if04, not UAC.
    UsbModel("1e0e", "9001", "simcom", "SIMCom SIM7600/SIM7500", 2, 4, False, _SIMCOM_ROLES),
    # Huawei voice sticks (chan_dongle table: data if, voice if).
    UsbModel("12d1", "1001", "huawei", "Huawei E1550 (and generic)", 2, 1),
    UsbModel("12d1", "140c", "huawei", "Huawei E17xx", 3, 2),
    UsbModel("12d1", "14ac", "huawei", "Huawei E153Du-1", 4, 3),
    UsbModel("12d1", "1436", "huawei", "Huawei E1750/E173", 4, 3),
    UsbModel("12d1", "1506", "huawei", "Huawei E171 fw 21.x", 3, 2),
)


@dataclass(frozen=True)
class StorageMode:
    """A modem still showing its CD-ROM / mass-storage face: no tty until it is switched."""

    vid: str
    pid: str
    family: str
    model: str


# modems.md §1.1: the E1550 first appears as a CD-ROM 12d1:1446 (then 12d1:1001 or 140c), E173
# variants too, the "E173s" as 1c0b (then 1c05). 1f01 (E353/E3131) and 14fe (E352/E173u) are
# usb_modeswitch's own entries for other Huawei sticks [?].
STORAGE_MODE: Mapping[tuple[str, str], StorageMode] = MappingProxyType({
    (s.vid, s.pid): s for s in (
        StorageMode("12d1", "1446", "huawei", "Huawei E1550/E1750/E173"),
        StorageMode("12d1", "1c0b", "huawei", "Huawei E173s"),
        StorageMode("12d1", "1f01", "huawei", "Huawei E353/E3131"),
        StorageMode("12d1", "14fe", "huawei", "Huawei E352/E173u"),
    )})


def storage_mode(vid: str, pid: str) -> StorageMode | None:
    return STORAGE_MODE.get((vid.lower(), pid.lower()))


def make_table(models: Iterable[UsbModel]) -> Mapping[tuple[str, str], UsbModel]:
    """Index models by (vid, pid); a later entry replaces an earlier one."""
    return MappingProxyType({m.key: m for m in models})


USB_IDS: Mapping[tuple[str, str], UsbModel] = make_table(MODELS)


def lookup(vid: str, pid: str, table: Mapping[tuple[str, str], UsbModel] | None = None) -> UsbModel | None:
    return (USB_IDS if table is None else table).get((vid.lower(), pid.lower()))
