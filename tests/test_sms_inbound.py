"""Incoming SMS and delivery reports at the driver level: each family's dialect from the
simulator over a real pty, turned into typed events by modems/sms_inbound.py."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FAMILIES, modem_config
from helpers import wait_until as wait_for

from modem_dialer.modems import sms_inbound
from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.events import DeliveryReport, SmsReceived
from modem_dialer.modems.sms import send_sms
from modem_dialer.modems.sms_inbound import watch_sms
from modem_dialer.sim.sms import InboundSms

ALICE = "+33612345601"


async def collect(driver, kind, n: int, timeout: float = 5.0) -> list:
    q, remove = driver.event_queue()
    out: list = []
    try:
        while len(out) < n:
            ev = await asyncio.wait_for(q.get(), timeout)
            if isinstance(ev, kind):
                out.append(ev)
        return out
    finally:
        remove()


async def open_watched(bank):
    driver = await open_driver(modem_config(bank))
    watcher = watch_sms(driver)
    await watcher.setup()
    return driver, watcher


@pytest.mark.parametrize("family", FAMILIES)
async def test_each_family_delivers_a_long_ucs2_text_as_parts(make_bank, family):
    bank = await make_bank(family)
    sim = bank.modems[0]
    driver, watcher = await open_watched(bank)
    try:
        text = "Réponse 😀 " * 20                                 # UCS-2, several parts
        got = asyncio.ensure_future(collect(driver, SmsReceived, 4))
        await asyncio.sleep(0)
        parts = await sim.deliver_sms(InboundSms(from_=ALICE, text=text, ref_bits=16, reference=4242))
        assert parts == 4
        events = await got
        assert all(e.deliver is not None and e.deliver.sender.number == ALICE for e in events)
        assert "".join(e.deliver.text for e in sorted(events, key=lambda e: e.deliver.ud.concat.seq)) == text
        # stored families: read, journaled by the listener (the event), then deleted from the SIM
        await wait_for(lambda: sim.stored["SM"] == {})
        direct = family == "sim800"
        assert any(c.startswith("AT+CMGR=") for c in sim.commands) is not direct
        assert all(e.storage == (None if direct else "SM") for e in events)
    finally:
        watcher.close()
        await driver.close()


async def test_messages_left_on_the_sim_are_read_at_start_up(make_bank):
    bank = await make_bank("quectel")
    sim = bank.modems[0]
    sim.receive_pdu(InboundSms(from_=ALICE, text="sent while nobody listened").pdus()[0])   # mt=1: stored
    driver = await open_driver(modem_config(bank))
    watcher = watch_sms(driver)
    try:
        got = asyncio.ensure_future(collect(driver, SmsReceived, 1))
        await asyncio.sleep(0)
        await watcher.setup()
        (ev,) = await got
        assert ev.deliver.text == "sent while nobody listened"
        await wait_for(lambda: sim.stored["SM"] == {})
    finally:
        watcher.close()
        await driver.close()


async def test_garbled_pdu_is_an_event_with_the_error(make_bank):
    bank = await make_bank("simcom")
    driver, watcher = await open_watched(bank)
    try:
        got = asyncio.ensure_future(collect(driver, SmsReceived, 1))
        await asyncio.sleep(0)
        await bank.modems[0].deliver_sms(InboundSms(pdu="07913306091093F0040B9133"))
        (ev,) = await got
        assert ev.deliver is None and "ends early" in ev.error and ev.pdu == "07913306091093F0040B9133"
    finally:
        watcher.close()
        await driver.close()


@pytest.mark.parametrize(("family", "ds"), [("quectel", 1), ("quectel", 2), ("huawei", 2), ("simcom", 1)])
async def test_delivery_reports_direct_and_stored(make_bank, monkeypatch, family, ds):
    # Quectel with ds=2 is the EC25 quirk: "+CDSI: "SM",0" for a report kept in "SR"
    monkeypatch.setitem(sms_inbound.CNMI, family, f"AT+CNMI=2,1,0,{ds},0")
    bank = await make_bank(family)
    sim = bank.modems[0]
    sim.delivery_report_after = 0.05
    driver, watcher = await open_watched(bank)
    try:
        got = asyncio.ensure_future(collect(driver, DeliveryReport, 1))
        await asyncio.sleep(0)
        sent = await send_sms(driver, ALICE, "ping")
        (ev,) = await got
        assert (ev.reference, ev.status, ev.delivered, ev.recipient) == (sent.references[-1], 0, True, ALICE)
        if ds == 2:
            cmgr = [c for c in sim.commands if c.startswith(("AT+CPMS", "AT+CMGR"))]
            if family == "quectel":      # announced in SM, read there empty, found in SR
                assert cmgr[-4:] == ['AT+CPMS="SM"', "AT+CMGR=0", 'AT+CPMS="SR"', "AT+CMGR=0"], cmgr
            await wait_for(lambda: sim.stored["SR"] == {})
    finally:
        watcher.close()
        await driver.close()
