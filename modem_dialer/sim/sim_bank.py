"""A bank of simulated modems, and the config that points the dialer at it."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from .callee import InboundCall, Scenario
from .dialects import make_dialect
from .modem import SimModem, with_luhn
from .sms import InboundSms


@dataclass
class SimSpec:
    family: str = "quectel"
    name: str | None = None
    pin: str | None = None
    noise: bool = False
    voice: bool = True        # Huawei: voice firmware present
    variant: str | None = None  # a model variant of the family's dialect (quectel: ep06, ep06-nodsci; huawei: mu609)


class SimBank:
    def __init__(self, specs: list[SimSpec], scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.modems: list[SimModem] = []
        for i, spec in enumerate(specs):
            kw: dict = {"voice": spec.voice} if spec.family == "huawei" else {}
            if spec.variant is not None:
                kw["variant"] = spec.variant
            dialect = make_dialect(spec.family, seed=i, **kw)
            self.modems.append(SimModem(
                dialect, spec.name or f"gsm{i}", scenario=self.scenario, pin=spec.pin, noise=spec.noise,
                imei=with_luhn(f"8676980412{i:04d}"), iccid=f"893301234567{i:08d}", imsi=f"2080112345{i:05d}",
            ))

    @classmethod
    def of(cls, n: int, family: str = "quectel", scenario: Scenario | None = None, **kw) -> SimBank:
        families = family.split(",")
        return cls([SimSpec(families[i % len(families)], **kw) for i in range(n)], scenario)

    async def start(self) -> SimBank:
        import asyncio

        for m in self.modems:
            await m.start()
        loop = asyncio.get_running_loop()
        for call in self.scenario.inbound_calls:
            self.modem_for(call.modem)        # a wrong modem name fails now, not later
            loop.call_later(call.at, self.start_inbound, call)
        for sms in self.scenario.inbound_sms:
            self.modem_for(sms.modem)
            loop.call_later(sms.at, self.send_sms, sms)
        return self

    def modem_for(self, name: str | None) -> SimModem:
        if name is None:
            return self.modems[0]
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"no simulated modem {name!r} (have: {', '.join(m.name for m in self.modems)})") from None

    def start_inbound(self, call: InboundCall) -> SimModem:
        """Place ``call`` now (scenario timer or control command)."""
        modem = self.modem_for(call.modem)
        modem.incoming_call(call.from_, keys=call.keys, hangup_after=call.hangup_after, ring_for=call.ring_for,
                            inband=call.inband)
        return modem

    def send_sms(self, sms: InboundSms) -> SimModem:
        """Deliver ``sms`` now (scenario timer or control command)."""
        modem = self.modem_for(sms.modem)
        modem._spawn(modem.deliver_sms(sms))
        return modem

    async def stop(self) -> None:
        for m in self.modems:
            await m.stop()

    async def __aenter__(self) -> SimBank:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def __getitem__(self, name: str) -> SimModem:
        for m in self.modems:
            if m.name == name:
                return m
        raise KeyError(name)

    def modems_config(self, family_auto: bool = False) -> list[dict]:
        out = []
        for m in self.modems:
            entry: dict = {"name": m.name, "port": m.path,
                           "family": "auto" if family_auto else m.dialect.family}
            if m.pin:
                entry["pin"] = m.pin
            if m.audio:
                entry["audio"] = {"kind": "serial", "port": m.audio.path}
            out.append(entry)
        return out

    def config_yaml(self, database: str = "modem-dialer.db", **extra) -> str:
        return yaml.safe_dump({"database": database, "default_region": "FR", **extra,
                               "modems": self.modems_config()}, sort_keys=False)
