"""Pick the driver for a modem: from the config's ``family``, or ``auto`` from AT+CGMI/AT+CGMM."""

from __future__ import annotations

from ..at.channel import ATChannel
from ..at.errors import ATCommandError
from .driver import ModemDriver, wake
from .generic import GenericDriver
from .huawei import HuaweiDriver
from .options import ModemConfig
from .quectel import QuectelDriver
from .sim800 import Sim800Driver
from .simcom import SimcomDriver

DRIVERS: dict[str, type[ModemDriver]] = {
    "quectel": QuectelDriver, "simcom": SimcomDriver, "sim800": Sim800Driver,
    "huawei": HuaweiDriver, "generic": GenericDriver,
}


def family_from(manufacturer: str | None, model: str | None) -> str:
    maker = (manufacturer or "").lower()
    mdl = (model or "").upper()
    if "quectel" in maker or mdl.startswith(("EC2", "EG2", "EC20", "EG9", "EM05")):
        return "quectel"
    if "simcom" in maker or "SIMCOM" in mdl or mdl.startswith("SIM"):
        return "sim800" if any(x in mdl for x in ("SIM800", "SIM900", "SIM808", "SIM868")) else "simcom"
    if "huawei" in maker:
        return "huawei"
    return "generic"


async def detect_family(ch: ATChannel) -> str:
    async def value(cmd: str) -> str | None:
        try:
            resp = await ch.command(cmd, timeout=3)
        except ATCommandError:
            return None
        return " ".join(resp.lines) or None

    return family_from(await value("AT+CGMI"), await value("AT+CGMM"))


async def open_driver(cfg: ModemConfig) -> ModemDriver:
    """Open the port, pick the family, run the init sequence; raises ATError subclasses."""
    ch = await ATChannel.connect(cfg, name=cfg.name)
    try:
        family: str = cfg.family   # "auto" is replaced by the detected family
        if family == "auto":
            # wake the modem first: echo may be on, and it may still be booting
            await wake(ch, cfg.probe_timeout)
            await ch.command("ATE0")
            family = await detect_family(ch)
        driver = DRIVERS[family](ch, cfg)
        await driver.init()
        return driver
    except BaseException:
        await ch.close()
        raise
