"""Incoming calls at the driver level: every family's dialect from the simulator over real ptys."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FAMILIES, modem_config

from modem_dialer.modems import incoming
from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.driver import LineBusy
from modem_dialer.modems.events import Answered, Ended, HangupBy, IncomingCall, KeyPressed
from modem_dialer.modems.incoming import parse_clip

CALLER = "+33612345678"


async def next_of(q: asyncio.Queue, kind, timeout: float = 5.0):
    while True:
        ev = await asyncio.wait_for(q.get(), timeout)
        if isinstance(ev, kind):
            return ev


def test_parse_clip_shapes():
    assert parse_clip('+CLIP: "+1234567890",145,,,,0') == ("+1234567890", False)
    assert parse_clip('+CLIP: "0612345678",129') == ("0612345678", False)
    assert parse_clip('+CLIP: "33612345678",145,"",,"",0') == ("+33612345678", False)
    assert parse_clip('+CLIP: "",128,,,,1') == (None, True)          # withheld
    assert parse_clip('+CLIP: "",128,,,,2')[0] is None                # unavailable
    assert parse_clip('+CLIP: "Acme;rm -rf",145,,,,0') == (None, False)   # garbage never passes
    assert parse_clip("+CLIP: garbled") == (None, False)


@pytest.mark.parametrize("family", FAMILIES)
async def test_incoming_call_answered_keys_and_caller_hangup(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    driver = await open_driver(modem_config(bank, dtmf="urc"))
    q, remove = driver.event_queue()
    try:
        sim.incoming_call(CALLER, keys=[(0.2, "9")], hangup_after=0.6)
        ev = await next_of(q, IncomingCall)
        assert ev.number == CALLER and not ev.withheld and not ev.during_dial
        assert driver.incoming_active
        await driver.answer()
        await next_of(q, Answered)
        assert sim.call is not None and sim.call.state == "active"
        if family not in ("huawei", "generic"):   # E1550: keys in-band only; generic: no key URC
            assert (await next_of(q, KeyPressed)).key == "9"
        end = await next_of(q, Ended, timeout=8.0)
        assert end.by in (HangupBy.CALLEE, HangupBy.NETWORK)
        assert not driver.incoming_active
    finally:
        remove()
        await driver.close()


@pytest.mark.parametrize("family", FAMILIES)
async def test_incoming_call_rejected_and_withheld(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    driver = await open_driver(modem_config(bank))
    q, remove = driver.event_queue()
    try:
        sim.incoming_call(None)              # +CLIP with no number: withheld
        ev = await next_of(q, IncomingCall)
        assert ev.number is None and ev.withheld
        await driver.reject()
        end = await next_of(q, Ended)
        assert end.by == HangupBy.DIALER
        assert sim.calls[-1].state == "ended" and sim.calls[-1].ended_by == "dialer"
        # the line dials again normally afterwards
        assert not driver.incoming_active
    finally:
        remove()
        await driver.close()


@pytest.mark.parametrize("family", ["quectel", "simcom", "huawei", "generic"])
async def test_caller_gives_up_before_answer(make_bank, family, monkeypatch):
    bank = await make_bank(family)
    sim = bank.modems[0]
    # the simulated caller rings every 0.3 s (not 1 s) and the driver gives a ringing up 0.6 s
    # after the last ring (twice the cadence, as 1.5 s was to 1 s): the same give-up, sooner
    monkeypatch.setattr(sim, "RING_INTERVAL", 0.3)
    monkeypatch.setattr(incoming, "RING_GONE_AFTER", 0.6)
    driver = await open_driver(modem_config(bank))
    q, remove = driver.event_queue()
    try:
        sim.incoming_call(CALLER, ring_for=0.5)
        await next_of(q, IncomingCall)
        await next_of(q, Ended, timeout=6.0)
        assert not driver.incoming_active
    finally:
        remove()
        await driver.close()


@pytest.mark.parametrize("family", ["quectel", "simcom"])
async def test_dial_while_it_rings_is_line_busy(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    driver = await open_driver(modem_config(bank))
    q, remove = driver.event_queue()
    try:
        sim.incoming_call(CALLER)
        await next_of(q, IncomingCall)
        with pytest.raises(LineBusy):
            await driver.dial("+33699999999")
        assert not any(c.startswith("ATD") for c in sim.commands)
    finally:
        remove()
        await driver.close()
