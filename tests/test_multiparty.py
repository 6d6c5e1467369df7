"""Two calls on one modem, driven through the driver's typed operations (modems/multiparty.py)
against every family's simulated dialect over real ptys: hold, a second call, AT+CLCC listed
as CallInfo, explicit call transfer, release one call, and the held callee hanging up.

The session's call must only ever see its own Ringing/Answered/Ended: the second call's URCs
(which most families send with no hint of "second" but an index) are SecondCall events."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import FAMILIES, modem_config

from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.driver import DriverError
from modem_dialer.modems.events import (
    Answered,
    CallHeld,
    CallRetrieved,
    Ended,
    HangupBy,
    SecondCall,
    Transferred,
)
from modem_dialer.modems.info import CallState
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sim_bank import SimSpec

NUMBER = "+15551234567"
ADVISOR = "+15557654321"

# every family, and the Quectel that reports call states by ^DSCI or only by AT+CLCC polling
SPECS = [*FAMILIES, "quectel:ep06", "quectel:ep06-nodsci"]


def spec(name: str) -> SimSpec:
    family, _, variant = name.partition(":")
    return SimSpec(family, variant=variant or None)


class Events:
    """Everything the driver emits, and a wait for the first event that matches."""

    def __init__(self, driver) -> None:
        self.all: list = []
        self._new = asyncio.Event()
        self.remove = driver.add_listener(self._put)

    def _put(self, ev) -> None:
        self.all.append(ev)
        self._new.set()

    async def wait(self, match, timeout: float = 8.0):
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.all:
                if match(ev):
                    return ev
            self._new.clear()
            await asyncio.wait_for(self._new.wait(), max(0.01, deadline - time.monotonic()))

    def of(self, kind) -> list:
        return [e for e in self.all if isinstance(e, kind)]


async def second_call_dialed(make_bank, name: str, callee: Callee, advisor: Callee, **cfg):
    """The callee answered and is on hold; the advisor's call is dialed."""
    sim, d, ev = await answered_call(make_bank, name, Scenario(callee, {ADVISOR: advisor}), **cfg)
    await d.hold()
    await d.dial_second(ADVISOR)
    return sim, d, ev


def second(state: str):
    return lambda ev: isinstance(ev, SecondCall) and ev.state == state


async def answered_call(make_bank, name: str, scenario: Scenario, **cfg):
    bank = await make_bank([spec(name)], scenario)
    d = await open_driver(modem_config(bank, **cfg))
    ev = Events(d)
    await d.dial(NUMBER)
    await ev.wait(lambda e: isinstance(e, Answered))
    await d.audio_on()
    return bank.modems[0], d, ev


@pytest.mark.parametrize("name", SPECS)
async def test_hold_second_call_and_transfer(make_bank, name):
    scenario = Scenario(Callee(answer_after=0.1), {ADVISOR: Callee(ring_after=0.1, answer_after=0.2)})
    sim, d, ev = await answered_call(make_bank, name, scenario, ect="on")
    await d.hold()
    assert ev.of(CallHeld) and d.holding
    await d.dial_second(ADVISOR)
    await ev.wait(second("answered"))           # from the family's URCs (or its CLCC poll)
    calls = await d.list_calls()
    assert sorted(c.state for c in calls) == [CallState.ACTIVE, CallState.HELD]
    held = next(c for c in calls if c.state is CallState.HELD)
    assert held.index == d.call.call_id and not held.incoming and held.voice
    await d.transfer()
    assert sim.transfers == [(NUMBER, ADVISOR)]
    t = ev.of(Transferred)[0]
    assert t.number == ADVISOR and t.call_id == held.index and t.to_call_id != held.index
    # the two calls' end URCs (which the modem writes right after the OK of AT+CHLD=4) are read
    # before the answer to a later command: after this round trip they have all been handled,
    # and they were not the session's end
    await d.list_calls()
    assert not ev.of(Ended) and d.call_up is False
    started = time.monotonic()
    await d.hangup()                            # the session leaves: recorded at once, by the dialer
    assert time.monotonic() - started < 0.5
    (end,) = ev.of(Ended)
    assert end.by == HangupBy.DIALER and end.cause == 16
    states = [e.state for e in ev.of(SecondCall)]
    assert states[0] == "dialing" and states[-1] == "ended"
    await d.close()


@pytest.mark.parametrize("name", SPECS)
async def test_release_the_second_call_and_retrieve_the_first(make_bank, name):
    sim, d, ev = await second_call_dialed(make_bank, name, Callee(answer_after=0.1),
                                          Callee(ring_after=0.1, outcome="no_answer", end_after=30))
    await ev.wait(second("ringing"))
    (advisor,) = [c for c in await d.list_calls() if c.state is not CallState.HELD]
    assert advisor.state is CallState.ALERTING
    await d.release(advisor.index)
    assert f"AT+CHLD=1{advisor.index}" in sim.commands
    await ev.wait(second("ended"))
    await d.retrieve()
    assert ev.of(CallRetrieved) and not d.holding
    await d.list_calls()      # the released call's late URCs (read before this answer) leave the callee alone
    assert not ev.of(Ended) and d.call_up
    # then the callee hangs up (now, rather than at a time that had to leave room for all of the above)
    sim.end_call(sim.calls[0], 16, "callee")
    end = await ev.wait(lambda e: isinstance(e, Ended))
    assert end.by == HangupBy.CALLEE and sim.calls[0].ended_by == "callee"
    await d.close()


@pytest.mark.parametrize("name", SPECS)
async def test_held_callee_hanging_up_is_their_end_not_the_second_calls(make_bank, name):
    sim, d, ev = await second_call_dialed(make_bank, name, Callee(answer_after=0.1),
                                          Callee(ring_after=0.1, outcome="no_answer", end_after=30))
    await ev.wait(second("ringing"))
    sim.end_call(sim.calls[0], 16, "callee")      # the held callee hangs up while the advisor's phone rings

    async def poll() -> None:   # what call/transfer.py does: families that send no index need it
        while True:
            await asyncio.sleep(0.2)
            await d.list_calls()

    poller = asyncio.ensure_future(poll())
    try:
        end = await ev.wait(lambda e: isinstance(e, Ended))
    finally:
        poller.cancel()
    assert end.by == HangupBy.CALLEE and sim.calls[0].ended_by == "callee"
    assert not any(e.state == "ended" for e in ev.of(SecondCall))   # the advisor's call still rings
    assert [c.state for c in await d.list_calls()] == [CallState.ALERTING]
    await d.hangup()
    await d.close()


async def test_huawei_has_no_ect_unless_the_setting_says_on(make_bank, monkeypatch):
    sim, d, ev = await second_call_dialed(make_bank, "huawei", Callee(answer_after=0.1),
                                          Callee(ring_after=0.1, answer_after=0.2))
    # the hang-up below ends the second call; the held one sends no end URC, and the driver's
    # wait for it (hangup_end_timeout, 1 s) is not what this test is about
    monkeypatch.setattr(d, "hangup_end_timeout", 0.2)
    assert not d.ect_enabled
    await ev.wait(second("answered"))
    with pytest.raises(DriverError, match="explicit call transfer is off"):
        await d.transfer()
    assert "AT+CHLD=4" not in sim.commands
    await d.hangup()
    await d.close()


async def test_huawei_releases_a_second_call_only_once_it_rings(make_bank):
    # chan_dongle: AT+CHLD=1x before ^CONF can wedge the E1550 (modems.md §2)
    sim, d, ev = await second_call_dialed(make_bank, "huawei", Callee(answer_after=0.1),
                                          Callee(ring_after=0.6, outcome="no_answer", end_after=30), ect="on")
    assert d.ect_enabled
    (advisor,) = [c for c in await d.list_calls() if c.state is not CallState.HELD]
    assert advisor.state is CallState.DIALING
    await d.release(advisor.index)
    states = [e.state for e in ev.of(SecondCall)]
    assert states[:3] == ["dialing", "ringing", "ended"], states
    assert f"AT+CHLD=1{advisor.index}" in sim.commands
    await d.hangup()
    await d.close()
