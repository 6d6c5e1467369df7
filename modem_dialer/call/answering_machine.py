"""Answering machines during a flow: AMD and the beep detector on the callee's audio.

``replay``: the flow plays normally; on a MACHINE verdict it is stopped, we wait for the
voicemail beep (or the end of the greeting: a pause after it, or ``max_wait_s``) and play
the flow's voicemail prompt once, so the recording holds the whole message
(rules_and_signals.md B.2.5). ``skip``: hang up on a machine, outcome ``machine`` — in the
US/UK a human wrongly judged a machine is an abandoned call (B.2.3), hence the preset
warning. A key press proves a human: the verdict is ignored from then on. So is app_amd's
INITIALSILENCE: our prompt starts at once, and a silent listener is not a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import numpy as np

from ..audio.amd import AmdResult, AnsweringMachineDetector, Verdict
from ..audio.beep import BeepDetector
from .session import ActiveCall

if TYPE_CHECKING:
    from .flow_runner import FlowRun

END_OF_GREETING_MS = 1200     # a pause this long after the machine's voice: it is recording
VOICE_LEVEL = 256              # mean |sample| (app_amd's silence threshold)


class MachineWatch:
    def __init__(self, call: ActiveCall, mode: str) -> None:
        self.call, self.mode = call, mode
        self.amd = AnsweringMachineDetector()
        self.beeps = BeepDetector()
        loop = asyncio.get_running_loop()
        self._machine: asyncio.Future[AmdResult] = loop.create_future()
        self._end: asyncio.Future[str] | None = None      # armed after the verdict
        self.quiet_ms = 0
        self.voice_seen = False
        self.result: AmdResult | None = None
        call.capture_listeners.append(self._feed)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.call.capture_listeners.remove(self._feed)

    def _feed(self, frame: np.ndarray) -> None:
        if self.result is None:
            r = self.amd.feed(frame)
            if r is not None:
                self.result = r
                # Our prompt starts at once, and people listen without saying "hello": silence
                # alone is no proof of a machine here (it would cut off silent humans).
                ignored = r.verdict is Verdict.MACHINE and (bool(self.call.keys) or r.reason.startswith("INITIALSILENCE"))
                self.call.event("amd", verdict=r.verdict.value, reason=r.reason, at_ms=r.at_ms, ignored=ignored)
                self.call.vars["amd"] = r.verdict.value
                if r.verdict is Verdict.MACHINE and not ignored and not self._machine.done():
                    self._machine.set_result(r)
        beep = self.beeps.feed(frame)
        if float(np.abs(frame.astype(np.int32)).mean()) >= VOICE_LEVEL:
            self.quiet_ms, self.voice_seen = 0, True
        else:
            self.quiet_ms += 20
        if self._end is not None and not self._end.done():
            if beep is not None:
                self.call.event("beep", hz=round(beep.freq_hz), ms=beep.duration_ms)
                self._end.set_result("beep")
            elif self.voice_seen and self.quiet_ms >= END_OF_GREETING_MS:
                self._end.set_result("silence")

    async def machine(self) -> AmdResult:
        """Resolves on a MACHINE verdict (never for HUMAN/NOTSURE)."""
        return await self._machine

    async def handle(self, verdict: AmdResult, run: FlowRun) -> None:
        call = self.call
        call.vars["machine"] = True
        if call.line.audio is not None:
            call.line.audio.stop_playback()
        if self.mode == "skip":
            call.event("machine", action="hang_up", reason=verdict.reason)
            # place_call records this outcome when it closes the row after the real hang-up
            call.vars["outcome"] = "machine"
            call.vars["cause_text"] = verdict.reason
            return
        started = time.monotonic()
        self._end = asyncio.get_running_loop().create_future()
        if self.voice_seen and self.quiet_ms >= END_OF_GREETING_MS:
            self._end.set_result("silence")
        try:
            why = await asyncio.wait_for(asyncio.shield(self._end), run.flow.doc.machine.max_wait_s)
        except asyncio.TimeoutError:
            why = "timeout"
        call.event("machine", action="voicemail", waited_s=round(time.monotonic() - started, 2), after=why)
        vm = run.flow.doc.machine.voicemail
        items = vm.items() if vm is not None else []
        samples = await run.prompts.render(items, run.values)
        await call.play(samples, name="voicemail")
