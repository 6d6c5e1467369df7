"""Transfer to a human advisor: ``bridge`` through a second line, or ``ect`` on the same modem.

bridge: another free line (from a :class:`LineProvider`) calls the advisor; the callee hears
hold music; the advisor hears an optional whisper and accepts with a key; then every 20 ms
frame captured on one line is queued for playback on the other, both ways, until either
side hangs up, which ends both.

ect: the modem puts the callee on hold, dials the advisor, and joins the two (explicit call
transfer), which frees the modem (modems.md §6). The AT commands and the bookkeeping of the
two calls are the driver's (modems/multiparty.py): here only its typed operations (hold,
dial_second, list_calls, transfer, release, retrieve) and the calls it lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..at.errors import ATError
from ..audio.path import AudioPathError
from ..errors import UserError
from ..modems.info import CallInfo, CallState
from ..numbers import parse_number
from .advisors import Advisor, AdvisorsConfig
from .flow_model import PromptItem, TransferNode
from .flow_prompts import fill
from .line import Line
from .session import ActiveCall, CallEnded, place_call

if TYPE_CHECKING:
    from ..modems.driver import ModemDriver
    from .flow_runner import FlowRun

MAX_LAG_FRAMES = 8          # relay queue bound: beyond 160 ms of backlog, frames are dropped
WHISPER_ANSWER_S = 8.0      # time the advisor has to press the accept key after the whisper
CLCC_POLL_S = 0.2           # how often the two calls of an ECT transfer are listed


class LineProvider(Protocol):
    """Where a bridge gets its second line: the campaign's pool, or a fixed set of lines."""

    async def acquire(self, exclude: Line) -> Line | None: ...

    def release(self, line: Line) -> None: ...


class StaticLineProvider:
    """Free lines from a fixed list (``flow try``, tests, ``call --flow``)."""

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines
        self._taken: set[int] = set()

    async def acquire(self, exclude: Line) -> Line | None:
        for line in self.lines:
            if line is not exclude and not line.busy and id(line) not in self._taken and line.audio is not None:
                self._taken.add(id(line))
                return line
        return None

    def release(self, line: Line) -> None:
        self._taken.discard(id(line))


_cursors: dict[tuple[str, ...], int] = {}


def pick_advisors(cfg: AdvisorsConfig, group: str | None, region: str, limit: int,
                  now=None) -> list[tuple[Advisor, str]]:
    """Available advisors of ``group`` in the order to try, numbers in E.164.
    Round robin moves the starting point by one on every transfer (per process)."""
    members = cfg.members(group)
    now = now or cfg.now()
    if cfg.order_of(group) == "round_robin" and members:
        key = tuple(m.number for m in members)
        start = _cursors.get(key, 0) % len(members)
        _cursors[key] = start + 1
        members = members[start:] + members[:start]
    out = []
    for m in members:
        if not m.available(now):
            continue
        out.append((m, parse_number(m.number, region)))   # InvalidNumber is a UserError
    return out[:limit]


def hold_music(seconds: float = 4.0) -> np.ndarray:
    """A soft arpeggio (no file needed), about -26 dBFS."""
    notes = [392.0, 493.9, 587.3, 493.9]          # G4 B4 D5 B4
    per = int(8000 * seconds / len(notes))
    t = np.arange(per) / 8000
    env = np.minimum(1, t / 0.05) * np.exp(-2.5 * t)
    x = np.concatenate([env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) for f in notes])
    return np.round(x / np.abs(x).max() * 32767 * 10 ** (-20 / 20)).astype(np.int16)


class Relay:
    """A capture listener that queues each frame for playback on another line."""

    def __init__(self, dst: Line) -> None:
        self.dst = dst
        self.pending = 0
        self.frames = 0
        self.dropped = 0

    def _sent(self, _fut: asyncio.Future) -> None:
        self.pending -= 1

    def __call__(self, frame: np.ndarray) -> None:
        audio = self.dst.audio
        if audio is None or self.pending >= MAX_LAG_FRAMES:
            self.dropped += 1
            return
        try:
            fut = audio.play(frame.copy())
        except (AudioPathError, RuntimeError):
            self.dropped += 1
            return
        self.pending += 1
        self.frames += 1
        fut.add_done_callback(self._sent)


async def _loop_hold(call: ActiveCall, samples: np.ndarray) -> None:
    while True:
        await call.play(samples, name="hold")


async def bridge(run: FlowRun, node_name: str, node: TransferNode, advisor: Advisor, number: str) -> str:
    """'connected' (talk happened, call over), 'no_answer', 'declined', 'no_line'."""
    call = run.call
    lines = run.o.lines
    other = await lines.acquire(call.line) if lines is not None else None
    if other is None:
        call.event("transfer", step="no_line", strategy="bridge", advisor=advisor.name)
        return "no_line"
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[bool] = loop.create_future()
    hang_up = asyncio.Event()          # the callee side is done: the advisor's leg ends
    adv_calls: list[ActiveCall] = []
    relays: dict[str, Relay] = {}
    started = time.monotonic()
    talk: dict = {}
    whisper = None
    if node.whisper:
        whisper = await run.prompts.render([PromptItem(say=node.whisper)], run.values)

    async def advisor_leg(adv: ActiveCall) -> None:
        adv.event("transfer", step="advisor_leg", for_call=call.call_id, number=call.number)
        if whisper is not None:
            key = await adv.play(whisper, name="whisper", barge_in=True)
            if key is None:
                key = await adv.get_key(WHISPER_ANSWER_S)
            if key != node.accept_key:
                accepted.set_result(False)
                return
        adv_calls.append(adv)
        accepted.set_result(True)
        await hang_up.wait()

    def talk_over(by: str) -> None:
        if "ended" in talk:
            return
        talk["ended"] = by
        talk_s = round(time.monotonic() - talk["at"], 2)
        call.event("transfer", step="ended", by=by, talk_s=talk_s,
                   relayed_to_advisor=relays["to_advisor"].frames, relayed_to_callee=relays["to_callee"].frames,
                   dropped=relays["to_advisor"].dropped + relays["to_callee"].dropped)
        call.event("transfer_result", advisor=advisor.name, number=number, strategy="bridge",
                   wait_s=talk["wait_s"], talk_s=talk_s, result="connected", ended_by=by)

    call.event("transfer", step="dial", strategy="bridge", advisor=advisor.name, number=number, line=other.name)
    leg = asyncio.ensure_future(place_call(
        other, number, advisor_leg, call.journal, ring_timeout=node.timeout,
        min_ring_timeout=min(node.timeout, run.o.advisor_min_ring), campaign_id=None))
    hold = None
    try:
        if node.hold:
            await run.say([PromptItem(say=node.hold)], f"{node_name}.hold", False)
        hold = asyncio.ensure_future(_loop_hold(call, hold_music()))
        racing: set[asyncio.Future[Any]] = {leg, accepted, hold}
        done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if hold in done:
            hold.result()                           # CallEnded / opt-out key: the callee is gone
        hold.cancel()
        with contextlib.suppress(asyncio.CancelledError, CallEnded):
            await hold
        # a cancelled ActiveCall.play leaves its prompt queued (its future is cancelled, so
        # play() does not stop it): stop the hold music ourselves
        if call.line.audio is not None:
            call.line.audio.stop_playback()
        if not accepted.done() or not accepted.result():
            # the leg ended unanswered (busy, no answer, failed) or the advisor declined
            declined = accepted.done()
            result = await leg
            why = "declined" if declined else result.outcome
            call.event("transfer", step="not_connected", advisor=advisor.name, result=why,
                       wait_s=round(time.monotonic() - started, 2), advisor_call=result.call_id)
            return "declined" if declined else "no_answer"
        # both ways: what one line captures is played on the other, frame by frame
        relays["to_advisor"] = Relay(other)
        relays["to_callee"] = Relay(call.line)
        call.capture_listeners.append(relays["to_advisor"])
        adv_calls[0].capture_listeners.append(relays["to_callee"])
        run.optout_armed = False                    # a person is on the line now
        talk["at"] = time.monotonic()
        talk["wait_s"] = round(talk["at"] - started, 2)
        call.event("transfer", step="connected", strategy="bridge", advisor=advisor.name, number=number,
                   wait_s=talk["wait_s"], advisor_call=adv_calls[0].call_id)
        run.store("transfer", advisor.name)
        ended = asyncio.ensure_future(call.ended.wait())
        try:
            done, _ = await asyncio.wait({leg, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        talk_over("advisor" if leg in done else "callee")
        return "connected"
    finally:
        if hold is not None and not hold.done():
            hold.cancel()
        if "at" in talk:
            talk_over("callee")                     # cancelled: the callee's call ended
        if "to_advisor" in relays:
            with contextlib.suppress(ValueError):
                call.capture_listeners.remove(relays["to_advisor"])
        hang_up.set()
        if not leg.done() and not accepted.done():
            leg.cancel()                            # still ringing: place_call hangs up and records
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(leg), 10)
        if lines is not None:
            lines.release(other)


async def _release(driver: ModemDriver, calls: list[CallInfo]) -> None:
    """Release the advisor's call(s), leaving the held callee as they are; each one leaves
    ``calls`` once done (a cancelled release is tried again by the caller's ``finally``)."""
    while calls:
        with contextlib.suppress(ATError):
            await driver.release(calls[0].index)
        calls.pop(0)


async def ect(run: FlowRun, node_name: str, node: TransferNode, advisor: Advisor, number: str) -> str:
    """'connected' (transferred, modem free), 'no_answer', 'unsupported'."""
    call = run.call
    driver = call.line.driver
    started = time.monotonic()
    if not driver.ect_enabled:
        call.event("transfer", step="unsupported", strategy="ect",
                   error=f"explicit call transfer is off for {driver.name} (family {driver.family}, ect setting)")
        return "unsupported"
    held = False
    left = False                          # the callee hung up while on hold (journaled once)
    theirs: list[CallInfo] = []           # the advisor's call as AT+CLCC last listed it
    try:
        try:
            await driver.hold()
        except ATError as exc:
            call.event("transfer", step="unsupported", strategy="ect", error=str(exc))
            return "unsupported"
        held = True
        call.event("transfer", step="dial", strategy="ect", advisor=advisor.name, number=number, line=call.line.name)
        try:
            await driver.dial_second(number)          # re-checked at the AT boundary
        except ATError as exc:
            call.event("transfer", step="not_connected", advisor=advisor.name, result="dial_failed", error=str(exc))
            return "no_answer"
        deadline = time.monotonic() + node.timeout
        seen_advisor = False
        while True:
            await asyncio.sleep(CLCC_POLL_S)
            calls = await driver.list_calls()
            mine = [c for c in calls if c.state is CallState.HELD]      # held: the callee
            theirs = [c for c in calls if c.state not in (CallState.HELD, CallState.ENDED)]
            if not mine:
                call.event("transfer", step="callee_left", strategy="ect")
                left, held = True, False
                await _release(driver, theirs)
                raise CallEnded("callee hung up while on hold")
            if theirs:
                seen_advisor = True
            if theirs and theirs[0].state is CallState.ACTIVE:
                break
            if (seen_advisor and not theirs) or time.monotonic() > deadline:
                await _release(driver, theirs)
                call.event("transfer", step="not_connected", advisor=advisor.name, result="no_answer",
                           wait_s=round(time.monotonic() - started, 2))
                return "no_answer"
        wait = round(time.monotonic() - started, 2)
        call.event("transfer", step="advisor_answered", advisor=advisor.name, wait_s=wait)
        if node.whisper and call.line.audio is not None:
            samples = await run.prompts.render([PromptItem(say=fill(node.whisper, run.values))], run.values)
            with contextlib.suppress(AudioPathError):
                await call.line.audio.play(samples)
        try:
            await driver.transfer()
        except ATError as exc:
            call.event("transfer", step="not_connected", advisor=advisor.name, result="ect_refused", error=str(exc))
            await _release(driver, theirs)     # the advisor's call by its index, then the callee back
            return "unsupported"
        theirs, held = [], False
        call.event("transfer", step="connected", strategy="ect", advisor=advisor.name, number=number, wait_s=wait)
        call.event("transfer_result", advisor=advisor.name, number=number, strategy="ect", wait_s=wait,
                   talk_s=None, result="transferred", ended_by=None)
        run.store("transfer", advisor.name)
        return "connected"
    except asyncio.CancelledError:
        if held and not left and not driver.call_up:
            # the session stops the flow when the held callee's call ends (their Ended)
            call.event("transfer", step="callee_left", strategy="ect")
            held = False
        raise
    finally:
        await _release(driver, theirs)             # cancelled while the advisor's call was up
        if held and driver.holding:                # back to the callee
            with contextlib.suppress(ATError):
                await driver.retrieve()


async def run_transfer(run: FlowRun, node_name: str, node: TransferNode) -> bool:
    """Try the node's strategies and advisors; True when the callee was connected."""
    call = run.call
    call.event("transfer", step="start", node=node_name, strategies=node.strategies, group=node.group)
    try:
        advisors = pick_advisors(run.o.advisors, node.group, run.o.region, node.max_advisors)
    except UserError as exc:
        call.event("transfer", step="failed", reason=str(exc))
        advisors = []
    if not advisors:
        call.event("transfer", step="no_advisor", group=node.group)
    for strategy in node.strategies:
        for advisor, number in advisors:
            if strategy == "bridge":
                result = await bridge(run, node_name, node, advisor, number)
            else:
                result = await ect(run, node_name, node, advisor, number)
            if result == "connected":
                return True
            if result in ("unsupported", "no_line"):
                break                                # next strategy
    call.event("transfer_result", result="no_advisor", group=node.group)
    run.store("transfer", "no_advisor")
    return False
