"""The call path keeps no fixed sleeps (issue 10): the hang-up waits for the modem to play
what it was sent (and no longer), the call ends on the end URC, the next number is dialed
as soon as the line is free, and a stalled event loop opens no hole in a call's audio."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import modem_config
from timing import cpu_wait, waited_for_cpu

from modem_dialer.audio.serial_pcm import SerialPcm
from modem_dialer.call.line import PLAYOUT_MARGIN, open_line
from modem_dialer.call.message import message_script
from modem_dialer.call.session import place_call
from modem_dialer.modems.driver import ModemDriver
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.modem import SimModem

NUMBER = "+33612345678"


def cpu_wait_at_sim_stamps(monkeypatch, sim: SimModem) -> dict[tuple[str, int], dict[int, int]]:
    """The process's CPU-wait snapshots (tests/timing.py) taken right where the simulator
    stamps call ``i``: ("dialed", i) just before ``dialed_at`` (ATD read), ("ended", i) just
    after ``ended_at`` (end URC written). Taken outside the stamps, so that the wait counted
    between two of them is never more than the wait that really fell between them."""
    snaps: dict[tuple[str, int], dict[int, int]] = {}
    dial, end = sim._dial, sim.end_call

    def dialed(number: str) -> list[str]:
        before, n = cpu_wait(), len(sim.calls)
        out = dial(number)
        if len(sim.calls) > n:
            snaps["dialed", n] = before
        return out

    def ended(call, *args, **kw) -> None:
        end(call, *args, **kw)
        snaps.setdefault(("ended", sim.calls.index(call)), cpu_wait())

    monkeypatch.setattr(sim, "_dial", dialed)
    monkeypatch.setattr(sim, "end_call", ended)
    return snaps


class Writes:
    """Each frame the line's audio writer sent: (time, prompt or silence), on the writer
    thread's own clock, i.e. when the frame went into the modem's port (a pseudo-terminal
    passes it on at once), and the CPU-wait snapshot when a prompt's last frame went."""

    def __init__(self, monkeypatch, pcm: SerialPcm) -> None:
        self.frames: list[tuple[float, bool]] = []
        self.last_prompt_frame: dict[int, int] = {}
        sent = pcm._sent

        def recording(taken, at: float, played_until: float) -> None:
            self.frames.append((at, taken.prompt))
            if taken.finished:
                self.last_prompt_frame = cpu_wait()
            sent(taken, at, played_until)
        monkeypatch.setattr(pcm, "_sent", recording)

    def heard_until(self) -> float:
        """When a modem fed these frames has played the last prompt one: each frame plays for
        20 ms from when it came, after what the modem still held (the simulator's DSP model,
        sim/audio_port.py, on the writer's stamps instead of its reader thread's, which come
        late when this process waits for a CPU or the GIL)."""
        played = end = 0.0
        for at, prompt in self.frames:
            played = max(played, at) + 0.020
            if prompt:
                end = played
        return end


def tone(ms: int) -> np.ndarray:
    t = np.arange(ms * 8) / 8000
    return (np.sin(2 * np.pi * 440 * t) * 6000 + 3000).astype(np.int16)


@pytest.mark.parametrize("family", ["huawei", "quectel", "simcom"])
async def test_hangup_after_the_message_has_played_and_not_later(make_bank, journal, family, monkeypatch):
    # The modem plays downlink at 8 kHz: a hang-up when the last frame was *sent* would cut
    # the frames still buffered; the old fixed 0.3 s guard kept the line 300 ms too long.
    # When the modem has played the message is computed from when the writer thread sent
    # each frame (Writes), not from when the simulator's reader thread, in this process too,
    # got round to reading it: on a loaded machine that came late and showed cuts no modem
    # would have made.
    bank = await make_bank(family, Scenario(Callee(answer_after=0.1)))
    sim = bank.modems[0]
    ends = cpu_wait_at_sim_stamps(monkeypatch, sim)
    line = await open_line(modem_config(bank))
    assert isinstance(line.audio, SerialPcm)
    writes = Writes(monkeypatch, line.audio)
    margin = line.playout_margin
    assert margin == PLAYOUT_MARGIN[family] == 0.005     # serial PCM over USB: docs/audio.md
    for i in range(3):
        writes.frames.clear()
        r = await place_call(line, NUMBER, message_script(tone(500)), journal)
        assert r.outcome == "answered" and r.row["hangup_by"] == "dialer"
        call = sim.calls[-1]
        assert call.ended_at is not None and sum(p for _, p in writes.frames) == 25
        idle = call.ended_at - writes.heard_until()     # both in this process, monotonic
        assert idle >= 0, f"hung up {-idle * 1000:.0f} ms before the callee heard the end of the message"
        # the margin, plus a few ms of AT round trip (and 40 ms of slack), not counting what
        # the machine kept this process off the CPU meanwhile (tests/timing.py)
        waited = waited_for_cpu(writes.last_prompt_frame, ends["ended", i])
        assert idle - waited <= margin + 0.040, (f"line held {idle * 1000:.0f} ms after the message ended "
                                                 f"({waited * 1000:.0f} ms of it waiting for a CPU)")
    await line.close()


async def test_the_hangup_is_timed_by_the_lines_precise_timer(make_bank, journal, monkeypatch):
    # asyncio's own timers fire up to 1 ms late (epoll's timeout in whole milliseconds, rounded
    # up), on every call's path: the hang-up waits on the line's timerfd instead, armed for
    # the model's end of the message plus the margin, and the hang-up is not sent before it
    bank = await make_bank("huawei", Scenario(Callee(answer_after=0.05)))
    line = await open_line(modem_config(bank))
    assert line.audio is not None
    timer = line.precise_timer()
    armed: list[float] = []
    call_at = timer.call_at

    def spy(when: float, fn) -> None:  # type: ignore[no-untyped-def]
        armed.append(when)
        call_at(when, fn)
    monkeypatch.setattr(timer, "call_at", spy)
    hangup, sent = line.driver.hangup, []

    async def timed_hangup() -> None:
        sent.append(time.monotonic())
        await hangup()
    line.driver.hangup = timed_hangup  # type: ignore[method-assign]
    r = await place_call(line, NUMBER, message_script(tone(100)), journal)
    assert r.outcome == "answered" and r.row["hangup_by"] == "dialer"
    due = line.audio.prompt_played_until + line.playout_margin
    assert armed == [due]
    assert sent and sent[0] >= due
    await line.close()


@pytest.mark.parametrize("family", ["huawei", "quectel", "simcom", "sim800"])
async def test_the_call_ends_on_the_end_urc_not_after_a_sleep(make_bank, journal, family, monkeypatch):
    bank = await make_bank(family, Scenario(Callee(answer_after=0.05)))
    line = await open_line(modem_config(bank))
    driver = line.driver
    driver.hangup_end_timeout = 5.0  # were the end URC ignored, hangup() would take this long
    # time hangup() itself (not place_call, whose result also waits for the journal's commit)
    hangup, returned = driver.hangup, []

    async def timed_hangup() -> None:
        await hangup()
        returned.append((cpu_wait(), time.monotonic()))

    driver.hangup = timed_hangup  # type: ignore[method-assign]
    ends = cpu_wait_at_sim_stamps(monkeypatch, bank.modems[0])
    r = await place_call(line, NUMBER, message_script(tone(100)), journal)
    call = bank.modems[0].calls[-1]
    assert r.outcome == "answered" and call.ended_by == "dialer" and returned
    # the old fixed sleep was 200 ms and the fallback is 5 s: 100 ms, not counting what the
    # machine kept this process off the CPU meanwhile (tests/timing.py)
    load, at = returned[-1]
    late, waited = at - call.ended_at, waited_for_cpu(ends["ended", 0], load)
    assert late - waited < 0.1, (f"hangup() returned {late * 1000:.0f} ms after the end URC "
                                 f"({waited * 1000:.0f} ms of it waiting for a CPU)")
    await line.close()


async def test_generic_hangup_ends_on_the_final_result(make_bank, journal, monkeypatch):
    # a generic modem announces nothing: AT+CHUP's OK is the end
    bank = await make_bank("generic", Scenario(Callee(answer_after=0.05)))
    ends = cpu_wait_at_sim_stamps(monkeypatch, bank.modems[0])
    line = await open_line(modem_config(bank))
    assert type(line.driver).end_urc_after_hangup is False and ModemDriver.end_urc_after_hangup is True
    r = await place_call(line, NUMBER, message_script(tone(100)), journal)
    load, returned = cpu_wait(), time.monotonic()
    call = bank.modems[0].calls[-1]
    assert r.outcome == "answered" and call.ended_at is not None
    # 50 ms, not counting what the machine kept this process off the CPU (tests/timing.py)
    late, waited = returned - call.ended_at, waited_for_cpu(ends["ended", 0], load)
    assert late - waited < 0.05, (f"the call's result came {late * 1000:.0f} ms after the hang-up "
                                  f"({waited * 1000:.0f} ms of it waiting for a CPU)")
    await line.close()


@pytest.mark.parametrize("gap", [0.0, 0.4])
async def test_next_number_is_dialed_as_soon_as_the_line_is_free(make_bank, journal, gap, monkeypatch):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    stamps = cpu_wait_at_sim_stamps(monkeypatch, sim)
    line = await open_line(modem_config(bank, dial_gap=gap))
    for _ in range(2):
        await place_call(line, NUMBER, message_script(tone(60)), journal)
    first, second = sim.calls
    assert first.ended_at is not None
    # Both stamps are the simulator's (end URC written, next ATD read), on one thread. What
    # the machine's other processes took of the CPU in between is not the dialer's delay:
    # it is subtracted (tests/timing.py); a sleep or a poll before dialing is not.
    between = second.dialed_at - first.ended_at
    load = waited_for_cpu(stamps["ended", 0], stamps["dialed", 1])
    print(f"next ATD {between * 1000:.1f} ms after the end URC, {load * 1000:.1f} ms of it waiting for a CPU")
    assert gap <= between, f"{between * 1000:.0f} ms between the end and the next ATD: the gap was not kept"
    assert between - load <= gap + 0.05, (f"{between * 1000:.0f} ms between the end and the next ATD "
                                          f"({load * 1000:.0f} ms of it waiting for a CPU)")
    await line.close()


async def test_a_stalled_loop_opens_no_hole_in_the_call_audio(make_bank, journal, monkeypatch):
    # A slow commit on the loop (here: 300 ms of blocking sleep in the script) must not stop
    # the frames: the writer thread goes on sending one every 20 ms, by its own stamps
    # (the simulator's reader, a thread of this process too, stamps when it gets a CPU and
    # the GIL: on a loaded machine its gaps are the machine's, not the writer's).
    bank = await make_bank("huawei", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    line = await open_line(modem_config(bank))
    assert isinstance(line.audio, SerialPcm)
    writes = Writes(monkeypatch, line.audio)
    stall: list[float] = []

    async def script(call):
        fut = call.line.audio.play(tone(1000))
        stall.append(time.monotonic())
        time.sleep(0.3)  # noqa: ASYNC251 -- the stall under test
        stall.append(time.monotonic())
        await fut
    r = await place_call(line, NUMBER, script, journal)
    assert r.outcome == "answered"
    blocked, unblocked = stall
    times = np.array([t for t, _ in writes.frames if blocked <= t <= unblocked])
    assert times[0] < blocked + 0.02 and times[-1] > unblocked - 0.02, "no frames during the stall"
    assert np.diff(times).max() < 0.060, f"max gap {np.diff(times).max() * 1000:.0f} ms"
    assert sum(p for _, p in writes.frames) == 50                      # the whole second of message
    call = sim.calls[-1]
    assert call.ended_at is not None and call.ended_at >= writes.heard_until()   # and all of it heard
    await line.close()
