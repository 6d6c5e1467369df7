"""Probe modems: open, init, identity and health, concurrently, never letting one bad modem
stop the report on the others."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..at.errors import ATError
from .detect import open_driver
from .info import Health, Identity
from .options import ModemConfig


@dataclass
class ProbeResult:
    name: str
    port: str
    family: str
    identity: Identity = field(default_factory=Identity)
    health: Health = field(default_factory=Health)
    error: str | None = None
    call_states: str | None = None   # the driver's call-state source (ccinfo, dsci, clcc_poll …)
    ect: bool | None = None          # explicit call transfer tried (family default, `ect` setting)

    @property
    def ready(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        if self.error:
            return self.error
        # Calls are journaled with the modem's IMEI and lines are found again by it after a
        # replug: a modem whose IMEI could not be read (every answer had the wrong shape) is
        # not ready, whatever its SIM and network say.
        if not self.identity.imei:
            return f"{self.port}: IMEI unreadable (AT+CGSN gave no 15-digit IMEI)"
        if self.health.sim != "ready":
            return f"{self.port}: SIM {self.health.sim.replace('_', ' ')}"
        if not self.health.registration.registered:
            return f"{self.port}: not registered ({self.health.registration.value})"
        return None

    def as_dict(self) -> dict:
        ident, health = self.identity, self.health
        return {
            "name": self.name, "port": self.port, "family": self.family,
            "manufacturer": ident.manufacturer, "model": ident.model, "firmware": ident.firmware,
            "imei": ident.imei, "iccid": ident.iccid, "imsi": ident.imsi,
            "operator": health.operator, "registration": health.registration.value, "tech": health.tech,
            "signal_dbm": health.signal_dbm, "sim": health.sim, "volte": health.volte,
            "call_states": self.call_states, "ect": self.ect, "ready": self.ready, "error": self.problem(),
        }


async def probe(cfg: ModemConfig, timeout: float | None = None) -> ProbeResult:
    result = ProbeResult(cfg.name, cfg.port, cfg.family)
    limit = timeout or (cfg.probe_timeout + 10)
    holder: list = []

    async def run() -> None:
        driver = await open_driver(cfg)
        holder.append(driver)
        result.family = driver.family
        result.call_states = driver.call_state_source
        result.ect = driver.ect_enabled
        result.identity = await driver.identity()
        result.health = await driver.health()

    try:
        await asyncio.wait_for(run(), limit)
    except ATError as exc:
        result.error = str(exc) if cfg.port in str(exc) else f"{cfg.port}: {exc}"
    except asyncio.TimeoutError:
        result.error = f"{cfg.port}: probe did not finish within {limit:g} s"
    finally:
        for driver in holder:
            await driver.close()
    return result


async def probe_all(modems: list[ModemConfig]) -> list[ProbeResult]:
    return list(await asyncio.gather(*(probe(m) for m in modems)))
