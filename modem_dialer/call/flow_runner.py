"""Running a flow as a call script: node by node, with the opt-out key armed everywhere and
the answering-machine detector listening from the first captured frame.

``flow_script(flow, contact_fields, ...)`` returns the ``Script`` that ``place_call`` runs
once the callee answers. Every node entered, key, answer and transfer step is a journal
event; answers also go to the ``answers`` table (``Journal.answer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import webhooks
from ..audio.prompts import save_wav
from ..files import make_private, private_dir
from ..store import Compliance
from .advisors import AdvisorsConfig
from .answering_machine import MachineWatch
from .flow_model import (
    BranchNode,
    Flow,
    HangupNode,
    InputNode,
    MenuNode,
    OptoutNode,
    PlayNode,
    PromptItem,
    RecordNode,
    SetNode,
    SmsNode,
    TransferNode,
)
from .flow_prompts import PromptRenderer, fill, tone
from .session import ActiveCall, CallEnded, Script
from .transfer import LineProvider, run_transfer

log = logging.getLogger("modem_dialer.flow")

MAX_STEPS = 500          # a flow looping on itself (menu -> same menu) ends here
RECORD_SILENCE = 300     # mean |sample| under which a recorded frame is silence


class OptedOut(Exception):
    """The opt-out key was pressed (or an optout node was reached)."""

    def __init__(self, source: str, key: str | None = None) -> None:
        super().__init__(source)
        self.source, self.key = source, key


class FlowRun:
    """One flow on one answered call."""

    def __init__(self, flow: Flow, call: ActiveCall, values: dict[str, Any], opts: _Options,
                 prompts: PromptRenderer) -> None:
        self.flow, self.call, self.values, self.o, self.prompts = flow, call, values, opts, prompts
        self.pending_key: str | None = None        # a key that stopped a prompt: type-ahead
        self.optout_armed = opts.opt_out_key is not None
        self.compliance = opts.compliance or Compliance(call.journal.conn)
        self.opted_out = False
        self.steps = 0

    # ---- keys and prompts -------------------------------------------------------------
    def _key(self, key: str | None) -> str | None:
        if key is not None and key == self.o.opt_out_key and self.optout_armed:
            raise OptedOut("key", key)
        return key

    async def say(self, items: list[PromptItem], name: str, barge_in: bool) -> str | None:
        if not items:
            return None
        samples = await self.prompts.render(items, self.values)
        return self._key(await self.call.play(samples, name=name, barge_in=barge_in))

    async def next_key(self, timeout: float) -> str | None:
        if self.pending_key is not None:
            key, self.pending_key = self.pending_key, None
            return key
        return self._key(await self.call.get_key(timeout))

    def store(self, name: str, value: Any) -> None:
        self.values[name] = value
        self.call.vars.setdefault("answers", {})[name] = value
        self.call.journal.answer(self.call.call_id, name, value, contact_id=self.o.contact_id)
        self.call.event("answer", name=name, value=None if value is None else str(value))
        webhooks.emit("survey.answer", {"call_id": self.call.call_id, "number": self.call.number,
                                        "contact_id": self.o.contact_id, "campaign": self.o.campaign,
                                        "question": name, "answer": None if value is None else str(value)})

    # ---- the walk ---------------------------------------------------------------------
    async def walk(self) -> None:
        name: str | None = self.flow.doc.start
        while name is not None:
            self.steps += 1
            if self.steps > MAX_STEPS:
                self.call.event("error", where="flow", error=f"more than {MAX_STEPS} steps: stopping")
                return
            node = self.flow.node(name)
            self.call.event("node", name=name, type=node.type)
            handler = getattr(self, f"_{node.type}")
            name = await handler(name, node)

    async def _play(self, name: str, node: PlayNode) -> str | None:
        key = await self.say(node.items(), name, node.barge_in)
        if key is not None:
            self.pending_key = key
        return node.next

    async def _first_key(self, node: MenuNode | InputNode, name: str) -> str | None:
        """A key typed ahead, else one that interrupts the prompt, else one within the timeout."""
        key, self.pending_key = self.pending_key, None
        if key is None:
            key = await self.say(node.items(), name, node.barge_in)
        if key is None:
            key = await self.next_key(node.timeout)
        return key

    async def _menu(self, name: str, node: MenuNode) -> str | None:
        for attempt in range(node.retries + 1):
            key = await self._first_key(node, name)
            if key is None:
                self.call.event("menu", node=name, result="no_input", attempt=attempt + 1)
                if node.on_no_input:
                    return node.on_no_input
                if node.no_input is not None and attempt < node.retries:
                    await self.say(node.no_input.items(), f"{name}.no_input", False)
                continue
            if key in node.choices:
                self.call.event("menu", node=name, result="choice", key=key, attempt=attempt + 1)
                if node.answer:
                    self.store(node.answer, node.values.get(key, key))
                return node.choices[key]
            self.call.event("menu", node=name, result="invalid", key=key, attempt=attempt + 1)
            if node.on_invalid:
                return node.on_invalid
            if node.invalid is not None and attempt < node.retries:
                await self.say(node.invalid.items(), f"{name}.invalid", False)
        self.call.event("menu", node=name, result="failed")
        return node.on_fail

    async def _collect(self, node: InputNode, name: str) -> str | None:
        """Digits until max length, the end key, or a pause; None if nothing came."""
        key = await self._first_key(node, name)
        if key is None:
            return None
        digits = ""
        while key is not None:
            if key == node.end_key:
                break
            digits += key
            if len(digits) >= node.max_digits:
                break
            key = await self.next_key(node.inter_digit_timeout)
        return digits

    def _valid(self, node: InputNode, digits: str) -> str | None:
        """None if ``digits`` is acceptable, else why not."""
        if not digits.isdigit():
            return "not digits"
        if not node.min_digits <= len(digits) <= node.max_digits:
            return "length"
        if node.pattern and not re.fullmatch(node.pattern, digits):
            return "pattern"
        if node.range and not node.range[0] <= int(digits) <= node.range[1]:
            return "range"
        return None

    async def _input(self, name: str, node: InputNode) -> str | None:
        for attempt in range(node.retries + 1):
            digits = await self._collect(node, name)
            if digits is None:
                self.call.event("input", node=name, result="no_input", attempt=attempt + 1)
            else:
                why = self._valid(node, digits)
                if why is None:
                    self.call.event("input", node=name, result="ok", digits=digits, attempt=attempt + 1)
                    self.store(node.answer, digits)
                    return node.next
                self.call.event("input", node=name, result="invalid", reason=why, digits=digits,
                                attempt=attempt + 1)
            self.call.flush_keys()        # the rest of a wrong entry must not start the next one
            if node.invalid is not None and attempt < node.retries:
                await self.say(node.invalid.items(), f"{name}.invalid", False)
        self.call.event("input", node=name, result="failed")
        return node.on_fail

    async def _record(self, name: str, node: RecordNode) -> str | None:
        await self.say(node.items(), name, False)
        if node.beep:
            await self.call.play(tone(1000, 300), name="beep")
        self.call.flush_keys()
        frames: list[np.ndarray] = []
        heard = asyncio.Event()
        state = {"voice": False, "quiet": 0.0}
        done = asyncio.get_running_loop().create_future()

        def listen(frame: np.ndarray) -> None:
            frames.append(frame.copy())
            if float(np.abs(frame.astype(np.int32)).mean()) >= RECORD_SILENCE:
                state["voice"], state["quiet"] = True, 0.0
                heard.set()
            else:
                state["quiet"] += 0.02
            seconds = len(frames) * 0.02
            quiet_limit = node.silence_seconds if state["voice"] else max(node.silence_seconds, 5.0)
            if not done.done() and (seconds >= node.max_seconds or state["quiet"] >= quiet_limit):
                done.set_result("max" if seconds >= node.max_seconds else "silence")

        self.call.capture_listeners.append(listen)
        started = time.monotonic()
        try:
            key_task = asyncio.ensure_future(self.call.get_key(None))
            finished, _ = await asyncio.wait({done, key_task}, return_when=asyncio.FIRST_COMPLETED)
            if key_task in finished:
                self._key(key_task.result())
                why = "key"
            else:
                key_task.cancel()
                why = done.result()
        finally:
            with contextlib.suppress(ValueError):
                self.call.capture_listeners.remove(listen)
        audio = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        path = self.o.recordings_dir / f"call{self.call.call_id}-{name}.wav"
        private_dir(path.parent)                 # a person's voice: the dialer's user only
        await asyncio.to_thread(save_wav, path, audio)
        make_private(path)
        self.call.event("record", node=name, path=str(path), seconds=round(len(audio) / 8000, 2), ended_by=why,
                        voice=state["voice"], wall_s=round(time.monotonic() - started, 2))
        self.store(node.answer, str(path))
        return node.next

    async def _transfer(self, name: str, node: TransferNode) -> str | None:
        connected = await run_transfer(self, name, node)
        return None if connected else node.fallback

    async def _optout(self, name: str, node: OptoutNode) -> str | None:
        raise OptedOut("menu")

    async def _sms(self, name: str, node: SmsNode) -> str | None:
        text = fill(node.text, self.values)
        try:
            from ..modems.sms import send_sms

            sent = await send_sms(self.call.line.driver, self.call.number, text, status_report=False)
            self.call.event("sms", node=name, result="sent", parts=sent.parts, refs=sent.references,
                            chars=len(text))
        except Exception as exc:    # an SMS that fails must not end the call
            self.call.event("sms", node=name, result="failed", error=str(exc), chars=len(text))
        return node.next

    async def _set(self, name: str, node: SetNode) -> str | None:
        for k, v in node.set.items():
            value = fill(v, self.values)
            if node.answer:
                self.store(k, value)
            else:
                self.values[k] = value
                self.call.event("set", name=k, value=value)
        return node.next

    async def _branch(self, name: str, node: BranchNode) -> str | None:
        value = self.values.get(node.var)
        target = node.pick(value)
        self.call.event("branch", node=name, on=node.var, value=None if value is None else str(value), to=target)
        return target

    async def _hangup(self, name: str, node: HangupNode) -> str | None:
        await self.say(node.items(), name, False)
        return None

    # ---- opt-out ------------------------------------------------------------------------
    async def opt_out(self, source: str, key: str | None) -> None:
        """Suppression first, then the refusal, then at most a short confirmation (A.5.4)."""
        if self.opted_out:
            return
        self.opted_out = True
        self.optout_armed = False
        # queued before the refusal, in the journal writer's order (never a commit on the loop)
        self.call.journal.suppress(self.call.number, "opt_out_key" if source == "key" else "opt_out",
                                   f"flow:{self.flow.name}:call:{self.call.call_id}")
        self.call.journal.refusal(self.call.call_id, source)
        self.call.event("opt_out", source=source, key=key)
        webhooks.emit("opt_out", {"call_id": self.call.call_id, "number": self.call.number, "source": source,
                                  "key": key, "contact_id": self.o.contact_id, "campaign": self.o.campaign})
        self.call.vars["opted_out"] = True
        if self.call.line.audio:
            self.call.line.audio.stop_playback()
        doc = self.flow.doc.opt_out
        await self.call.play(await self.prompts.render([PromptItem(say=doc.say)], self.values), name="opt_out")

    async def watch_opt_out(self) -> OptedOut:
        """The opt-out key while a prompt plays without barge-in (the walk is not reading keys)."""
        seen = 0
        while True:
            keys = self.call.keys
            for k in keys[seen:]:
                if self.optout_armed and k.key == self.o.opt_out_key:
                    return OptedOut("key", k.key)
            seen = len(keys)
            await asyncio.sleep(0.02)


@dataclass
class _Options:
    """What flow_script was given, shared by the run, its transfers and its recordings."""

    opt_out_key: str | None
    machine: str
    contact_id: int | None
    campaign: str
    advisors: AdvisorsConfig
    region: str
    lines: LineProvider | None
    compliance: Compliance | None      # None: one on the journal's connection, made at the first call
    recordings_dir: Path
    advisor_min_ring: float


async def _cancel(task: asyncio.Future) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, CallEnded, Exception):
        await task


def flow_script(flow: Flow, contact_fields: Mapping[str, Any] | None = None, *, opt_out_key: str | None = None,
                machine: str | None = None, contact_id: int | None = None, campaign: str | None = None,
                advisors: AdvisorsConfig | None = None, region: str = "FR", lines: LineProvider | None = None,
                voice: str | None = None, cache_dir: str | Path | None = None,
                recordings_dir: str | Path | None = None, compliance: Compliance | None = None,
                advisor_min_ring: float = 0.0) -> Script:
    """The call script that runs ``flow`` for one contact.

    ``opt_out_key`` (else the flow's ``opt_out.key``) works at any point; ``machine``
    (off/replay/skip, else the flow's ``machine.mode``); ``advisors`` and ``lines`` (other
    free lines, for bridge transfers) are needed by transfer nodes; ``compliance``
    defaults to one on the journal's connection.
    """
    fields = {str(k): v for k, v in (contact_fields or {}).items()}
    known = {**fields, "campaign": campaign or flow.name}
    prompts = PromptRenderer(flow, voice or flow.doc.voice or "en", cache_dir)
    opts = _Options(
        opt_out_key=opt_out_key or flow.doc.opt_out.key, machine=machine or flow.doc.machine.mode,
        contact_id=contact_id, campaign=campaign or flow.name, advisors=advisors or AdvisorsConfig(),
        region=region, lines=lines, compliance=compliance,
        recordings_dir=Path(recordings_dir) if recordings_dir else flow.base / "recordings",
        advisor_min_ring=advisor_min_ring,
    )
    groups = [n.items() for n in flow.doc.nodes.values()]
    groups += [[PromptItem(say=flow.doc.opt_out.say)]]
    if flow.doc.machine.voicemail is not None:
        groups.append(flow.doc.machine.voicemail.items())
    # Render what depends only on the contact now, in a thread when a loop runs (TTS blocks).
    try:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future | None = loop.run_in_executor(None, prompts.prerender, groups, known)
    except RuntimeError:
        prompts.prerender(groups, known)
        ready = None

    async def run(call: ActiveCall) -> None:
        if ready is not None:
            with contextlib.suppress(Exception):       # a failing prompt is reported where it is played
                await ready
        if opts.compliance is None:
            opts.compliance = Compliance(call.journal.conn)
        values = {**known, "number": call.number}
        fr = FlowRun(flow, call, values, opts, prompts)
        call.event("flow", name=flow.name, path=str(flow.path), opt_out_key=opts.opt_out_key, machine=opts.machine)
        watch = MachineWatch(call, opts.machine) if opts.machine != "off" else None
        walk = asyncio.ensure_future(fr.walk())
        optw = asyncio.ensure_future(fr.watch_opt_out()) if opts.opt_out_key else None
        verdict = asyncio.ensure_future(watch.machine()) if watch else None
        waiting = {t for t in (walk, optw, verdict) if t is not None}
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if walk in done:
                exc = walk.exception()
                if isinstance(exc, OptedOut):
                    await fr.opt_out(exc.source, exc.key)
                elif exc is not None:
                    raise exc
            elif optw is not None and optw in done:
                await _cancel(walk)
                out = optw.result()
                await fr.opt_out(out.source, out.key)
            elif watch is not None and verdict is not None and verdict in done:
                await _cancel(walk)
                await watch.handle(verdict.result(), fr)
        finally:
            for t in waiting:
                await _cancel(t)
            if watch is not None:
                watch.close()
    return run
