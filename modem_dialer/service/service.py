"""The resident service: owns the modem bank, runs alerts and campaigns, serves the API.

Start-up order matters for "a restart loses nothing": the box's dialer lock is taken first
(one dialing process per box: recovery would close another runner's live calls), then the
box registers (campaign/box.py: the calls its last run left open are closed as
interrupted, its contacts released), the bank opens, queued alerts, SMS and campaigns
resume, and only then does the API accept new work. The box's heartbeat then renews its
lease and takes over the work of boxes that stopped renewing theirs (docs/scale-out.md).

Campaigns (service/campaigns.py) lease a line per call with ``Priority.CAMPAIGN``, so
alerts always get the next free line first. ``service.add_worker(name, factory)`` runs
``await factory(service)`` as a task for the service's life.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from .. import webhooks
from ..alerting.escalation import AlertRunner
from ..alerting.sms_replies import SmsReplies
from ..alerting.texting import Texter
from ..call.inbound import InboundDesk, check_inbound_flows
from ..campaign.box import BoxKeeper
from ..config import LoadedConfig
from ..errors import UserError
from ..modems.recovery import RecoveryStep, Supervisor
from ..signals import on_signals
from ..store import Connection, open_db, set_modem_state
from ..store.boxes import set_this_box
from ..store.call_journal import CallJournal
from ..store.lock import DialerLock
from .bank import Bank, ModemSlot
from .campaigns import CampaignRunner
from .notify import Notifier

log = logging.getLogger("modem_dialer.service")

Worker = Callable[["Service"], Coroutine[Any, Any, None]]

# a stop while PostgreSQL is away waits this long for it (not database_lock_limit): what the
# calls wrote is in the box's spool, replayed by the next start (docs/scale-out.md)
UNREACHABLE_STOP_WAIT_S = 5.0
# a worker still running this long after the stop's cancel has swallowed it: cancelled again
# (a worker's own cleanup after a cancel takes milliseconds; this is margin for a loaded box)
WORKER_CANCEL_WAIT_S = 5.0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def log_tasks() -> None:
    """Log where every asyncio task of the running loop waits (SIGUSR2 on ``serve``): the
    chain of awaits down to the innermost (``Task.print_stack`` shows only the outermost)."""
    for task in asyncio.all_tasks():
        where = []
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                where.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        log.warning("task %s waits in:\n%s", task.get_name(), "\n".join(where) or "  (not started)")


class Service:
    def __init__(self, loaded: LoadedConfig, *, http: bool = True, host: str | None = None,
                 port: int | None = None, min_ring_timeout: float | None = None,
                 run_campaigns: bool | None = None) -> None:
        cfg = loaded.config
        self.loaded = loaded
        self.http = http
        self.host = host or cfg.alerting.api.listen
        self.port = cfg.alerting.api.port if port is None else port
        if http and not _is_loopback(self.host) and not cfg.alerting.api.bearer():
            # refusing beats a warning: without a token anyone who reaches the port can
            # make the modems call any number
            raise UserError(f"alerting.api.listen: {self.host} is not a loopback address and no token is "
                            "set; set alerting.api.token, token_file or token_env first")
        set_this_box(cfg.box)       # recorded in every call and modem row this process writes
        self.conn = open_db(loaded.database_path)
        conn = self.conn

        def journal_step(step: RecoveryStep) -> None:
            set_modem_state(conn, step.modem, step.status, reason=f"{step.step}: {step.detail}", imei=step.imei)
        self.bank = Bank(list(cfg.modems), self.conn, health_interval=cfg.alerting.health_interval,
                         supervisor=Supervisor(report=journal_step))
        self.texter = Texter(self.conn, self.bank, cfg.alerting.rate_limit,
                             delivery_reports=cfg.alerting.delivery_reports)
        # the one journal writer thread of the service: alerts and campaigns queue to it
        self.journal = CallJournal(self.conn, lock_limit_s=cfg.database_lock_limit.total_seconds(),
                                   spool=loaded.spool_path)
        if self.journal.reads_off_loop:
            self.bank.record_soon = self._record_soon
        self.runner = AlertRunner(loaded, self.conn, self.bank, self.texter, min_ring_timeout=min_ring_timeout,
                                  journal=self.journal)
        # incoming SMS: journal, STOP keywords, acknowledgements by reply (alerting/sms_replies.py)
        self.replies = SmsReplies(self.conn, self.bank, self.texter, self.runner, cfg.sms,
                                  region=cfg.default_region)
        self.campaigns = CampaignRunner(self, min_ring_timeout=min_ring_timeout)
        # event webhooks: a persistent outbox, delivered by a worker (modem_dialer/webhooks.py)
        self.webhooks = webhooks.configure(self.conn, list(cfg.webhooks))
        self.runner.emit = webhooks.emit
        # incoming calls on any bank line: answered with the inbound flow or rejected; the
        # line is held (busy for campaigns and alerts) while the call lasts
        self.inbound = InboundDesk(loaded, self.conn, self.bank.claim_line, self.journal, notify=webhooks.emit)
        self.bank.on_line_opened.append(self._attach_inbound)
        # `serve` resumes its campaigns; `alert` without a service (http=False) is a one-shot
        # job that must not pick them up
        self.run_campaigns = http if run_campaigns is None else run_campaigns
        self.lock = DialerLock(loaded.database_path, cfg.box)
        # this box among the others on the database: lease, heartbeat, take-over (docs/scale-out.md)
        self.keeper = BoxKeeper(self.conn, self.journal, cfg.box, cfg.box_lease, on_lost=self._lost)
        self.keeper.on_fence.append(self.campaigns.fence)
        self._stop_requested = asyncio.Event()
        self.campaign_grace: float | None = None      # None: campaigns.STOP_GRACE
        self._runner_web: web.AppRunner | None = None
        self._workers: dict[str, Worker] = {}
        self._worker_tasks: list[asyncio.Task] = []
        self.stopped = asyncio.Event()

    def _attach_inbound(self, slot: ModemSlot) -> None:
        if slot.line is not None:
            self.inbound.attach(slot.line)

    def add_worker(self, name: str, factory: Worker) -> None:
        """Run ``factory(service)`` while the service runs (the campaign runner's hook)."""
        self._workers[name] = factory
        if self._runner_web is not None or not self.http:
            self._spawn_worker(name, factory)

    def _spawn_worker(self, name: str, factory: Worker) -> None:
        task = asyncio.get_running_loop().create_task(factory(self), name=f"worker-{name}")
        self._worker_tasks.append(task)

    async def start(self) -> None:
        self.lock.acquire()     # UserError when `campaign run` or another service of this box dials on it
        try:
            await self._start()
        except BaseException:
            await self.keeper.close()
            self.lock.release()
            raise

    async def _start(self) -> None:
        check_inbound_flows(self.loaded, list(self.bank.slots))    # a bad inbound flow file: refuse to start
        # this box's calls left open by its last run closed, its contacts released; the
        # heartbeat starts at once (opening the bank takes longer than a short lease)
        self.keeper.register()
        self.keeper.start()
        await self.bank.start()
        ready = [s.name for s in self.bank.slots.values() if s.ready(need_audio=False)]
        log.info("bank open: %d of %d modem(s) ready %s", len(ready), len(self.bank.slots), ready)
        self.runner.resume()
        self.texter.resume()
        self._worker_tasks.append(asyncio.get_running_loop().create_task(self.replies.sweep_forever(),
                                                                         name="sms-parts"))
        if self.run_campaigns:
            self.campaigns.resume()
        if self.http and self.webhooks is not None:
            hooks = self.webhooks
            self._workers.setdefault("webhooks", lambda svc: hooks.run())
        if self.http:
            from .api import make_app


            self._runner_web = web.AppRunner(make_app(self), access_log=None)
            await self._runner_web.setup()
            site = web.TCPSite(self._runner_web, self.host, self.port)
            await site.start()
            sockets = getattr(site._server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]
            log.info("API listening on http://%s:%d", self.host, self.port)
        for name, factory in self._workers.items():
            self._spawn_worker(name, factory)
        # ready: from now on the heartbeat also joins other boxes' campaigns and adopts the
        # alerts of lost boxes
        self.keeper.on_tick += [self.campaigns.tick, self.runner.adopt]
        if self.run_campaigns:
            # ready before a campaign comes: its lines' first rules reads (PostgreSQL) find the
            # reader's connection open
            self.journal.prepare_reads()
            self._worker_tasks.append(asyncio.get_running_loop().create_task(self.campaigns.watch_forever(),
                                                                             name="campaign-join"))

    def _record_soon(self, write: Callable[[Connection], None]) -> None:
        """The bank's state of a line (PostgreSQL), through the journal writer, lazily."""
        def saved(f: concurrent.futures.Future) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("modem state not saved: %s", f.exception())
        self.journal.submit(write, lazy=True).add_done_callback(saved)

    def _lost(self) -> None:
        """Another box declared this one lost and took its work over: stop dialing now."""
        self._stop_requested.set()

    async def stop(self) -> None:
        if self.keeper.lost:
            self.campaign_grace = 0.0       # its contacts are another box's now: hang up
        if self.campaign_grace is None:
            await self.campaigns.stop()
        else:
            await self.campaigns.stop(self.campaign_grace)
        await self._end_workers()
        if self._runner_web is not None:
            await self._runner_web.cleanup()
            self._runner_web = None
        await self.inbound.close()
        await self.runner.close()
        await self.replies.close()
        await self.texter.close()
        await self.bank.close()
        await self.keeper.close()
        give_up: float | None = None
        if self.journal.writer.unreachable is not None:
            # PostgreSQL away: the steps of the calls are in the local spool (committed at the
            # next start); the rest (heartbeat, leave) is not worth holding SIGTERM for the
            # whole database_lock_limit
            give_up = min(UNREACHABLE_STOP_WAIT_S, self.journal.writer.lock_limit_s)
            log.warning("database unreachable: waiting at most %g s for it before stopping", give_up)
        await self.journal.aclose(give_up)
        if self.webhooks is not None:
            webhooks.configure(None, [])
        self.conn.close()
        self.lock.release()
        self.stopped.set()

    async def _end_workers(self) -> None:
        """Cancel the workers and wait for them. One still running WORKER_CANCEL_WAIT_S after its
        cancel swallowed it (Python < 3.12's wait_for does when the cancel lands as what it waits
        for completes, modem_dialer/waits.py): said, and cancelled again, rather than the stop
        waiting for it forever (``serve`` not exiting on SIGTERM: systemd's kill, after 90 s)."""
        pending = set(self._worker_tasks)
        for t in pending:
            t.cancel()
        while pending:
            _, pending = await asyncio.wait(pending, timeout=WORKER_CANCEL_WAIT_S)
            for t in pending:
                log.warning("%s still running %g s after its cancel (swallowed?): cancelled again",
                            t.get_name(), WORKER_CANCEL_WAIT_S)
                t.cancel()
        for t in self._worker_tasks:
            exc = None if t.cancelled() else t.exception()
            if isinstance(exc, Exception):     # a worker that died before the stop: say so
                log.error("%s failed: %s", t.get_name(), exc, exc_info=exc)

    async def run_forever(self) -> None:
        """``serve``: start, run until SIGTERM/SIGINT, stop cleanly (calls hung up and journaled)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        on_signals(loop, (signal.SIGTERM, signal.SIGINT), stop.set)   # gone with the loop
        # an operator aid (docs/exit-codes.md): SIGUSR2 logs where every asyncio task waits
        # (SIGUSR1, set up by the serve command, dumps the threads' stacks even if the loop is stuck)
        on_signals(loop, (signal.SIGUSR2,), log_tasks)
        loop.create_task(self._stop_requested.wait()).add_done_callback(lambda _: stop.set())
        await self.start()
        notifier = Notifier()
        notifier.send(f"READY=1\nSTATUS=serving on {self.host}:{self.port}")
        watchdog = loop.create_task(notifier.watchdog(), name="sd-watchdog")
        try:
            await stop.wait()
            log.info("stopping")
            notifier.send("STOPPING=1")
        finally:
            watchdog.cancel()
            await self.stop()
        if self.keeper.lost:
            # exit 1: systemd (Restart=on-failure) starts it again, and it registers afresh
            raise UserError(f"box {self.keeper.box!r}: declared lost by another box (no heartbeat for "
                            f"{self.keeper.lease.total_seconds():g} s); its work was taken over; stopped")
