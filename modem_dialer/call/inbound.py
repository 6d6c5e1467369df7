"""Incoming calls: answer with an IVR flow or reject, on whichever line rings.

An :class:`InboundDesk` listens to every line's driver. When someone calls, it asks the
line's owner (the service's bank, or ``campaign run``'s pool) to *claim* the line at once:
a claimed line counts as busy, so campaigns and alerts route around it until the call
ends. A line that cannot be claimed (an outgoing call is being set up on it) is left to
ring: the family's next ring asks again once the line is free, and the ATD that the ring
made fail is not counted as an attempt (modems.driver.LineBusy).

Every incoming call is recorded (``inbound_calls``), answered ones also as a ``calls``
row with direction 'in' (their keys, answers and opt-out journaled like any call), and
linked to the campaign contact this SIM called from that number, if any (a callback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..at.errors import ATError
from ..modems.events import Event, IncomingCall
from ..store import DB_ERRORS, Connection
from ..store.call_journal import CallJournal
from ..store.twoway import CallbackLink, Inbound
from .inbound_config import InboundSettings
from .line import Line
from .session import CallResult, Script, _Call, _Inbox, drive
from .settings import LoadedCallConfig

log = logging.getLogger("modem_dialer.call")

# A claimed line: call it to give the line back.
Release = Callable[[], None]
# The line owner's claim: a release function when the line was free, None when it is in use.
Claim = Callable[[Line], Awaitable[Release | None]]
# Something that wants to hear about finished inbound calls (webhooks).
Notify = Callable[[str, dict[str, Any]], None]
# How often a ringing call on a line in use asks again for the line (s).
CLAIM_RETRY = 0.2
# How long stopping the dialer waits for incoming calls still in progress before cutting them
# (a caller in the inbound flow is not dropped because the campaign list ran out).
CLOSE_DRAIN_S = 30.0

DEFAULT_FLOW = """\
# The built-in inbound flow (config inbound.flow replaces it).
name: inbound
start: hello
fields: [organisation, opt_out_key]
opt_out: {{key: "{key}", say: "You will not be called again. Goodbye."}}
machine: {{mode: "off"}}
nodes:
  hello:
    type: menu
    say: "Hello, you called {{organisation}}. Press {{opt_out_key}} to stop our calls. Press 1 to speak to an advisor."
    choices: {{1: connect}}
    values: {{1: advisor}}
    answer: inbound_choice
    timeout: 6
    retries: 1
    on_fail: bye
  connect:
    type: transfer
    strategy: bridge
    {group}
    timeout: 20
    fallback: closed
  closed: {{type: hangup, say: "Our advisors are not available now. Please call again during opening hours. Goodbye."}}
  bye: {{type: hangup, say: "Thank you. Goodbye."}}
"""


def default_flow_file(cache_dir: Path, settings: InboundSettings) -> Path:
    """The built-in flow as a file (the flow engine reads files), per opt-out key and group."""
    key = settings.opt_out_key or "9"
    group = f"group: {settings.advisor_group}" if settings.advisor_group else ""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"inbound-default-{'star' if key == '*' else 'hash' if key == '#' else key}-" \
                       f"{settings.advisor_group or 'any'}.yaml"
    text = DEFAULT_FLOW.format(key=key, group=group)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def check_inbound_flows(loaded: LoadedCallConfig, names: list[str]) -> None:
    """At start-up: every modem's inbound flow loads (UserError naming the file otherwise),
    so a typo is found now, not when a customer calls back."""
    seen: set[str] = set()
    for name in names:
        settings = loaded.config.inbound.for_modem(name)
        if settings.action == "answer" and settings.flow and settings.flow not in seen:
            # imported here: the flow models cost a start without inbound flows ~35 ms of CPU
            from .flow import load_flow

            seen.add(settings.flow)
            load_flow(loaded.resolve(settings.flow))


class _Incoming(_Call):
    """An incoming call's life: answer instead of dial, then the same script/hang-up/journal path."""

    async def _run(self, q: _Inbox) -> None:
        try:
            await self.driver.answer()
        except ATError as exc:
            # the caller hung up as we picked up, or the modem refused ATA
            self.journal.event(self.call_id, "error", where="answer", error=str(exc))
            self.note = str(exc)
            return self._finish(force_outcome="failed")
        await self._answered(q)


async def take_call(line: Line, number: str, script: Script, journal: CallJournal, call_id: int) -> CallResult:
    """Answer the incoming call ringing on ``line`` and run ``script``; its calls row is ``call_id``."""
    return await drive(_Incoming(line, number, call_id, journal, script, ring_timeout=0.0))


ScriptFactory = Callable[[Line, InboundSettings, str, CallbackLink], Awaitable[Script]]


class InboundDesk:
    """Takes the incoming calls of a set of lines (see the module docstring)."""

    def __init__(self, loaded: LoadedCallConfig, conn: Connection, claim: Claim, journal: CallJournal, *,
                 script_factory: ScriptFactory | None = None, notify: Notify | None = None) -> None:
        self.loaded = loaded
        self.cfg = loaded.config.inbound
        self.conn = conn
        self.claim = claim
        self.journal = journal       # the process's journal writer: no commit on the loop
        self.store = Inbound(conn)
        self.script_factory = script_factory or self._flow_script
        self.notify = notify
        self.tasks: set[asyncio.Task] = set()
        self._removers: dict[int, Callable[[], None]] = {}
        self.handled: list[int] = []        # inbound_calls ids, in order (tests wait on it)
        self.changed = asyncio.Event()
        self._answering: set[asyncio.Task] = set()   # tasks whose call holds its line (drained at close)
        self._closing = False

    def attach(self, line: Line) -> None:
        key = id(line)
        if key in self._removers:
            return
        def listener(ev: Event) -> None:
            self._event(line, ev)
        self._removers[key] = line.driver.add_listener(listener)

    def detach(self, line: Line) -> None:
        rm = self._removers.pop(id(line), None)
        if rm is not None:
            rm()

    def _event(self, line: Line, ev: Event) -> None:
        if not isinstance(ev, IncomingCall):
            return
        if ev.during_dial:
            log.info("%s: a call from %s rang in while we dialed", line.name, ev.number or "a withheld number")
            return
        task = asyncio.get_running_loop().create_task(self._take(line, ev))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _take(self, line: Line, ev: IncomingCall) -> None:
        """Claim the line and handle the call; while the line is in use (a call being set up
        on it), ask again until it is free or the caller gives up."""
        while not self._closing:
            release = await self.claim(line)
            if release is not None:
                task = asyncio.current_task()
                if task is not None:
                    self._answering.add(task)
                await self._handle(line, ev, release)
                return
            c = line.driver.call
            if c is None or not c.incoming or c.ended:
                break
            await asyncio.sleep(CLAIM_RETRY)
        self._record(line, ev, "busy", CallbackLink(None, None, None), note="line in use until the caller gave up")

    async def _handle(self, line: Line, ev: IncomingCall, release: Release) -> None:
        number = ev.number
        iccid = line.identity.iccid
        link = CallbackLink(None, None, None)
        try:
            link = self.store.callback_link(number, iccid, line.name)
            settings = self.cfg.for_modem(line.name)
            if settings.action == "reject":
                await line.driver.reject()
                self._record(line, ev, "rejected", link)
                return
            script = await self.script_factory(line, settings, number or "", link)
            # committed through the writer (the same order as the call's own rows)
            call_id = await self.journal.writer.run(
                lambda c: Inbound(c).start_call(number or "", line.name, line.identity.imei, iccid))
            if ev.withheld or not number:
                self.journal.event(call_id, "caller_id", withheld=ev.withheld, number=None)
            if link.contact_id is not None:
                self.journal.event(call_id, "callback", campaign_id=link.campaign_id, contact_id=link.contact_id,
                                   our_call_id=link.call_id)
            result = await take_call(line, number or "", script, self.journal, call_id)
            action = "answered" if result.row["answered_at"] else "missed"
            self._record(line, ev, action, link, call_id=call_id)
            if self.notify is not None:
                self.notify("call.ended", {"call_id": call_id, "direction": "in", "number": number,
                                           "modem": line.name, "outcome": result.outcome,
                                           "keys": "".join(k.key for k in result.keys),
                                           "callback_of": link.contact_id})
        except asyncio.CancelledError:
            # the dialer stopped mid-call: still on record (the calls row is closed as
            # interrupted by the call layer)
            self._record(line, ev, "failed", link, note="interrupted: the dialer stopped")
            raise
        except Exception as exc:     # one bad incoming call must never take the line owner down
            log.exception("%s: incoming call failed", line.name)
            self._record(line, ev, "failed", link, note=str(exc)[:200])
        finally:
            release()

    def _record(self, line: Line, ev: IncomingCall, action: str, link: CallbackLink, *,
                call_id: int | None = None, note: str | None = None) -> None:
        try:
            rid = self.store.record(number=ev.number, withheld=ev.withheld, modem=line.name,
                                    iccid=line.identity.iccid, action=action, link=link, call_id=call_id, note=note)
        except DB_ERRORS as exc:
            log.error("%s: incoming call from %s not recorded: %s", line.name, ev.number, exc)
            return
        log.info("%s: incoming call from %s: %s", line.name, ev.number or "a withheld number", action)
        self.handled.append(rid)
        self.changed.set()

    async def _flow_script(self, line: Line, settings: InboundSettings, number: str,
                           link: CallbackLink) -> Script:
        from .flow import flow_script, load_flow

        cfg = self.loaded.config
        cache = self.loaded.resolve(cfg.cache_dir)
        path = self.loaded.resolve(settings.flow) if settings.flow else default_flow_file(cache, settings)
        flow = await asyncio.get_running_loop().run_in_executor(None, load_flow, path)
        fields = {"organisation": settings.organisation or "us", "opt_out_key": settings.opt_out_key or ""}
        return flow_script(flow, fields, opt_out_key=settings.opt_out_key, contact_id=link.contact_id,
                           campaign=None, advisors=cfg.advisors, region=cfg.default_region, voice=cfg.tts_voice,
                           cache_dir=cache, machine="off")

    async def close(self) -> None:
        for rm in list(self._removers.values()):
            rm()
        self._removers.clear()
        self._closing = True   # a caller still waiting for a line is not taken any more
        answering = [t for t in self._answering if not t.done()]
        if answering:          # calls in progress finish first (bounded), then are cut
            await asyncio.wait(answering, timeout=CLOSE_DRAIN_S)
        for t in list(self.tasks):
            t.cancel()
        for t in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
