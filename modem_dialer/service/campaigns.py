"""Campaigns inside the service: the same controller, with lines borrowed from the bank.

``submit(file)`` loads and checks the campaign file on the service host, imports (merges)
its contacts off the event loop, and starts a controller whose :class:`BankSource` takes
a line per call with ``Priority.CAMPAIGN``, so alerts always get the next free line.
The campaign's status in the database is the job queue: a campaign the service was
running stays ``running`` (or ``paused``) across a stop or a crash, and the next start
resumes it. Pause/resume go through the database as for ``campaign run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..call.session import MIN_RING_TIMEOUT
from ..campaign.controller import PAUSE_LOOK_S, Controller
from ..campaign.launcher import modem_configs, prepare, script_factory, set_runner
from ..campaign.report import summary
from ..campaign.spec import CampaignFile, load_campaign
from ..errors import UserError
from ..store import DB_ERRORS, Campaigns, open_db
from ..store.pg import is_postgres, listen_campaign_changes
from ..waits import wait_set
from .campaign_lines import BankLines, BankSource, SharedSlots

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("modem_dialer.service")

# a stopping service lets campaign calls in progress finish for this long, then hangs up
STOP_GRACE = 20.0
# How often a box looks for a campaign another box started (one small read: Campaigns.last_change),
# so that every box starts dialing it within this rather than within a heartbeat (a quarter lease)
JOIN_LOOK_S = 0.2
# ... while it hears the campaigns' changes (PostgreSQL, listen_campaign_changes): the look is
# only a safety net then, and each one is a round trip on the event loop, which stopped every
# line of the box (0.5 of the 9 round trips per call of 3 boxes × 32 lines). The campaigns'
# own look at their status (a pause from another box, Controller.pause_look_s) too: a change
# heard makes them read it at their next look
JOIN_LOOK_LISTENING_S = 2.0


class LogView:
    """The controller's events as structured service log lines."""

    def __init__(self, name: str) -> None:
        self.name = name

    def event(self, kind: str, text: str) -> None:
        if kind != "dial":
            log.info("campaign %s: %s", self.name, text, extra={"campaign": self.name, "event": kind})


class Running:
    def __init__(self, cid: int, name: str, ctrl: Controller, task: asyncio.Task) -> None:
        self.cid, self.name, self.ctrl, self.task = cid, name, ctrl, task


class CampaignRunner:
    def __init__(self, svc: Service, *, min_ring_timeout: float | None = None, poll: float = 1.0) -> None:
        self.svc = svc
        self.loaded = svc.loaded
        self.conn = svc.conn
        self.store = Campaigns(svc.conn)
        self.shared = SharedSlots(svc.conn, svc.loaded.config.limits)
        self.min_ring_timeout = MIN_RING_TIMEOUT if min_ring_timeout is None else min_ring_timeout
        self.poll = poll              # tests shorten it
        self.running: dict[str, Running] = {}
        self._starting: set[str] = set()
        self._not_joined: set[tuple[str, str]] = set()
        self.fenced: str | None = None
        self.stopping = False
        self._joining: set[asyncio.Task] = set()       # campaigns being joined (join())
        self._listening = threading.Event()             # the campaigns' changes are heard (watch_forever)

    # ---- submit / resume ------------------------------------------------------------
    def _load(self, file: str | Path) -> CampaignFile:
        cf = load_campaign(self.loaded.resolve(str(file)))
        modem_configs(self.loaded, cf)          # its modems must be in this service's bank
        return cf

    async def submit(self, file: str) -> tuple[dict[str, Any], bool]:
        """Check, import and start the campaign of FILE; (view, started). UserError on bad input."""
        # off the event loop: the file and those it names are read and checked here
        cf = await asyncio.to_thread(self._load, file)
        name = cf.spec.name
        if name in self.running or name in self._starting:
            return await self.view(name), False
        self._starting.add(name)
        try:
            # the import (a million rows) and the message synthesis stay off the event loop
            script_for = await asyncio.to_thread(script_factory, self.loaded, cf, BankLines(self.svc.bank))
            cid = await asyncio.to_thread(_prepare, self.svc, cf)
            c = self.store.get_campaign_by_id(cid)
            if c is not None and c["status"] not in ("paused", "running"):
                self.store.update_campaign(cid, status="running")
            self._start(cid, cf, script_for)
        finally:
            self._starting.discard(name)
        log.info("campaign %s submitted (%s)", name, cf.path, extra={"campaign": name})
        return await self.view(name), True

    def resume(self) -> list[str]:
        """At start-up: the campaigns this service was running (or had paused) go on."""
        names = []
        for c in self.store.list_campaigns():
            if c["status"] not in ("running", "paused") or c["config"].get("runner") != "service":
                continue
            try:
                cf = self._load(c["file"])
                script_for = script_factory(self.loaded, cf, BankLines(self.svc.bank))
            except UserError as exc:
                log.error("campaign %s not resumed: %s", c["name"], exc, extra={"campaign": c["name"]})
                continue
            self._start(c["id"], cf, script_for)
            names.append(c["name"])
        if names:
            log.info("resuming %d campaign(s): %s", len(names), names)
        return names

    def fence(self, reason: str | None) -> None:
        """The box fenced itself (campaign/box.py): every campaign hangs up and holds; None: resume."""
        self.fenced = reason
        for r in list(self.running.values()):
            r.ctrl.fence(reason)

    def tick(self) -> None:
        """On the box's heartbeat: contacts released by a lost box are settled; a campaign
        another box runs in the service is joined (one campaign over the whole bank)."""
        for r in list(self.running.values()):
            r.ctrl.settle_released()
        self.join()

    async def watch_forever(self) -> None:
        """Join a campaign another box started within JOIN_LOOK_S (the heartbeat's tick also
        does); on PostgreSQL at once, when the change is notified (store/pg.py
        listen_campaign_changes; the look stays, every JOIN_LOOK_LISTENING_S while the notices
        are heard, should one be missed, and every JOIN_LOOK_S while they are not)."""
        seen: tuple[int, str | None] | None = None
        changed = asyncio.Event()
        listening = self._listening
        stop_listening = None
        if is_postgres(self.loaded.database_path):
            loop = asyncio.get_running_loop()

            def notified() -> None:
                with contextlib.suppress(RuntimeError):     # the loop is closed: nobody to tell
                    loop.call_soon_threadsafe(changed.set)
            stop_listening = await asyncio.to_thread(listen_campaign_changes, str(self.loaded.database_path),
                                                     notified, listening=listening)
        try:
            while True:
                # wait_set, not wait_for: the stop's cancel must end this loop even when a change
                # is heard in the same instant (modem_dialer/waits.py)
                heard = await wait_set(changed, JOIN_LOOK_LISTENING_S if listening.is_set() else JOIN_LOOK_S)
                changed.clear()
                for r in list(self.running.values()):
                    self._looks(r.ctrl)
                    if heard:
                        r.ctrl.status_changed()
                try:
                    now = self.store.last_change()
                    if now != seen:
                        self.join()
                        seen = now
                except DB_ERRORS as exc:        # the heartbeat says what is wrong with the database
                    log.debug("looking for campaigns to join: %s", exc)
        finally:
            if stop_listening is not None:
                stop_listening()

    def join(self) -> None:
        """Start here the service campaigns running on other boxes and not yet on this one
        (each in a task: its file is loaded and its message prepared off the event loop)."""
        if self.stopping:
            return
        for c in self.store.list_campaigns():
            name = c["name"]
            if (c["status"] != "running" or c["config"].get("runner") != "service" or name in self.running
                    or name in self._starting):
                continue
            key = (name, c["updated_at"])
            if key in self._not_joined:
                continue
            self._starting.add(name)
            task = asyncio.get_running_loop().create_task(self._join(c, key), name=f"join-{name}")
            self._joining.add(task)
            task.add_done_callback(self._joining.discard)

    async def _join(self, c: dict[str, Any], key: tuple[str, str]) -> None:
        name = c["name"]
        try:
            try:
                cf = await asyncio.to_thread(self._load, c["file"])
                script_for = await asyncio.to_thread(script_factory, self.loaded, cf, BankLines(self.svc.bank))
            except UserError as exc:
                # said once per change of the campaign: e.g. its file is not on this box
                self._not_joined.add(key)
                log.error("campaign %s: not joined on this box: %s", name, exc, extra={"campaign": name})
                return
            if self.stopping or name in self.running:
                return
            log.info("campaign %s: joined (run by another box)", name, extra={"campaign": name})
            self._start(c["id"], cf, script_for)
        finally:
            self._starting.discard(name)

    def _start(self, cid: int, cf: CampaignFile, script_for: Any) -> None:
        name = cf.spec.name
        source = BankSource(self.svc.bank, self.shared, cf.spec.modems)
        ctrl = Controller(self.conn, cid, cf.spec, source, self.loaded.config.limits, script_for,
                          view=LogView(name), min_ring_timeout=self.min_ring_timeout, poll=self.poll,
                          journal=self.svc.journal)
        ctrl.stopped_status = "running"     # a service stop is not the operator's: resume at the next start
        self._looks(ctrl)
        if self.fenced is not None:
            ctrl.fence(self.fenced)
        _, settled = ctrl.recover(close_open_calls=False)
        if settled:
            log.info("campaign %s: %d contact(s) settled from the last run", name, settled, extra={"campaign": name})
        task = asyncio.get_running_loop().create_task(self._run(name, ctrl), name=f"campaign-{name}")
        self.running[name] = Running(cid, name, ctrl, task)

    def _looks(self, ctrl: Controller) -> None:
        """How often a campaign reads its status: seldom while its changes are heard."""
        ctrl.pause_look_s = JOIN_LOOK_LISTENING_S if self._listening.is_set() else PAUSE_LOOK_S

    async def _run(self, name: str, ctrl: Controller) -> None:
        try:
            result = await ctrl.run()
            log.info("campaign %s: %s", name, result, extra={"campaign": name, "result": result})
        except asyncio.CancelledError:
            raise
        except Exception:   # one campaign's bug must not take the service down
            log.exception("campaign %s failed", name, extra={"campaign": name})
        finally:
            self.running.pop(name, None)

    # ---- stop ------------------------------------------------------------------------
    async def stop(self, grace: float = STOP_GRACE) -> None:
        """No new campaign calls; calls in progress finish (up to ``grace`` s, then hung up)."""
        self.stopping = True        # nothing joined meanwhile
        if self._joining:
            await asyncio.gather(*list(self._joining), return_exceptions=True)
        runs = list(self.running.values())
        for r in runs:
            r.ctrl.request_stop()
        tasks = [r.task for r in runs]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for r in runs:
                if r.task in pending:
                    r.ctrl.request_stop()          # the second request hangs up
            await asyncio.gather(*tasks, return_exceptions=True)
        self.shared.close()

    # ---- views -----------------------------------------------------------------------
    async def view(self, name: str) -> dict[str, Any]:
        c = self.store.get_campaign(name)
        if c is None:
            raise KeyError(name)
        r = self.running.get(name)
        # a running campaign's counts are its controller's (in memory), once it has read them
        # (none yet: just started, or no contacts). The rest of the summary, and a stopped
        # campaign's count of every contact (~1.5 s at 10M contacts), are read in a worker
        # thread on a connection of its own: the loop (calls, alerts, the API) never waits on it
        counted = {k: v for k, v in r.ctrl.snapshot()["statuses"].items() if v > 0} if r is not None else {}
        s = await asyncio.to_thread(_summary, self.loaded.database_path, c["id"], counted or None)
        return {"id": c["id"], "name": name, "status": c["status"], "running": r is not None,
                "file": c["file"], "contacts": s["contacts"], "statuses": s["statuses"], "calls": s["calls"],
                "outcomes": s["outcomes"], "answer_rate": s["answer_rate"],
                "modems": [m.as_dict() for m in r.ctrl.source.slots] if r else [],
                "url": f"/v1/campaigns/{name}"}


def _summary(database: Path | str, cid: int, counted: dict[str, int] | None) -> dict[str, Any]:
    """In a worker thread, with its own connection (sqlite3 connections stay in their thread)."""
    conn = open_db(database, migrate=False)
    try:
        return summary(conn, cid, counted)
    finally:
        conn.close()


def _prepare(svc: Service, cf: CampaignFile) -> int:
    """In a worker thread, with its own connection (sqlite3 connections stay in their thread)."""
    conn = open_db(svc.loaded.database_path)
    try:
        cid, _ = prepare(svc.loaded, cf, conn, echo=lambda t: log.info("campaign %s: %s", cf.spec.name, t),
                         echo_err=lambda t: log.warning("campaign %s: %s", cf.spec.name, t))
        set_runner(conn, cid, "service")
        return cid
    finally:
        conn.close()
