"""The call path keeps no fixed sleeps (issue 10): the hang-up waits for the modem to play
what it was sent (and no longer), the call ends on the end URC, the next number is dialed
as soon as the line is free, and a stalled event loop opens no hole in a call's audio."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import modem_config

from modem_dialer.call.line import open_line
from modem_dialer.call.message import message_script
from modem_dialer.call.session import place_call
from modem_dialer.modems.driver import ModemDriver
from modem_dialer.sim.callee import Callee, Scenario

NUMBER = "+33612345678"


def tone(ms: int) -> np.ndarray:
    t = np.arange(ms * 8) / 8000
    return (np.sin(2 * np.pi * 440 * t) * 6000 + 3000).astype(np.int16)


@pytest.mark.parametrize("family", ["huawei", "quectel", "simcom"])
async def test_hangup_after_the_message_has_played_and_not_later(make_bank, journal, family):
    # The simulator plays downlink at 8 kHz: a hang-up when the last frame was *sent* would
    # cut the frames still buffered; the old fixed 0.3 s guard kept the line 300 ms too long.
    bank = await make_bank(family, Scenario(Callee(answer_after=0.1)))
    sim = bank.modems[0]
    line = await open_line(modem_config(bank))
    margin = line.playout_margin
    for _ in range(3):
        r = await place_call(line, NUMBER, message_script(tone(500)), journal)
        assert r.outcome == "answered" and r.row["hangup_by"] == "dialer"
        call = sim.calls[-1]
        assert sim.audio.per_call_cut_ms[-1] == 0, "the callee did not hear the end of the message"
        audio_end = sim.audio.per_call_audio_end[-1]
        assert audio_end is not None and call.ended_at is not None
        idle = call.ended_at - audio_end
        # the margin, plus a few ms of AT round trip; with 2 CPUs shared, allow 40 ms of load
        assert 0 <= idle <= margin + 0.040, f"line held {idle * 1000:.0f} ms after the message ended"
    await line.close()


@pytest.mark.parametrize("family", ["huawei", "quectel", "simcom", "sim800"])
async def test_the_call_ends_on_the_end_urc_not_after_a_sleep(make_bank, journal, family):
    bank = await make_bank(family, Scenario(Callee(answer_after=0.05)))
    line = await open_line(modem_config(bank))
    driver = line.driver
    driver.hangup_end_timeout = 5.0  # were the end URC ignored, hangup() would take this long
    # time hangup() itself (not place_call, whose result also waits for the journal's commit)
    hangup, returned = driver.hangup, []

    async def timed_hangup() -> None:
        await hangup()
        returned.append(time.monotonic())

    driver.hangup = timed_hangup  # type: ignore[method-assign]
    r = await place_call(line, NUMBER, message_script(tone(100)), journal)
    call = bank.modems[0].calls[-1]
    assert r.outcome == "answered" and call.ended_by == "dialer" and returned
    # the old fixed sleep was 200 ms and the fallback is 5 s: 100 ms leaves room for a loaded CI
    late = returned[-1] - call.ended_at
    assert late < 0.1, f"hangup() returned {late * 1000:.0f} ms after the end URC"
    await line.close()


async def test_generic_hangup_ends_on_the_final_result(make_bank, journal):
    # a generic modem announces nothing: AT+CHUP's OK is the end
    bank = await make_bank("generic", Scenario(Callee(answer_after=0.05)))
    line = await open_line(modem_config(bank))
    assert type(line.driver).end_urc_after_hangup is False and ModemDriver.end_urc_after_hangup is True
    r = await place_call(line, NUMBER, message_script(tone(100)), journal)
    returned = time.monotonic()
    call = bank.modems[0].calls[-1]
    assert r.outcome == "answered" and returned - call.ended_at < 0.05
    await line.close()


@pytest.mark.parametrize("gap", [0.0, 0.4])
async def test_next_number_is_dialed_as_soon_as_the_line_is_free(make_bank, journal, gap):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    line = await open_line(modem_config(bank, dial_gap=gap))
    for _ in range(2):
        await place_call(line, NUMBER, message_script(tone(60)), journal)
    first, second = sim.calls
    assert first.ended_at is not None
    between = second.dialed_at - first.ended_at
    assert gap <= between <= gap + 0.05, f"{between * 1000:.0f} ms between the end and the next ATD"
    await line.close()


async def test_a_stalled_loop_opens_no_hole_in_the_call_audio(make_bank, journal):
    # A slow commit on the loop (here: 300 ms of blocking sleep in the script) must not stop
    # the frames: the simulator reads the downlink in its own thread and sees no gap > 60 ms.
    bank = await make_bank("huawei", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    line = await open_line(modem_config(bank))

    async def script(call):
        fut = call.line.audio.play(tone(1000))
        time.sleep(0.3)  # noqa: ASYNC251 -- the stall under test
        await fut
    r = await place_call(line, NUMBER, script, journal)
    assert r.outcome == "answered"
    times = np.array([t for t, _ in sim.audio.arrivals])
    assert len(times) > 40
    assert np.diff(times).max() < 0.060, f"max gap {np.diff(times).max() * 1000:.0f} ms"
    assert sim.audio.per_call_cut_ms[-1] == 0
    await line.close()
