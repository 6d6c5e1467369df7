"""Texting (SMS out, alerting): a row in ``sms`` first (the queue), then a modem, then the result.

Delivery reports (+CDS, +CDSI) from every line are matched to the row by (modem, reference);
the same line set-up starts the incoming-SMS watcher (modems/sms_inbound.py).
Rate limit: alert calls plus SMS to one number within the window, counted from the
journal, so a restart does not reset it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from .. import webhooks
from ..at.errors import ATError
from ..errors import UserError
from ..modems.events import DeliveryReport, Event
from ..modems.sms import send_sms
from ..modems.sms_inbound import SmsWatcher, watch_sms
from ..store import Alerts, Connection, Journal, SmsInbox, utc_now
from .config import RateLimitConfig
from .inputs import check_text
from .lines import LentLine, LineLender, Priority

log = logging.getLogger("modem_dialer.service")   # the name operators filter on (docs/api.md), kept

LEASE_TIMEOUT = 60.0


class Texter:
    def __init__(self, conn: Connection, bank: LineLender, rate: RateLimitConfig, *,
                 delivery_reports: bool = True) -> None:
        self.conn = conn
        self.alerts = Alerts(conn)
        self.inbox = SmsInbox(conn)
        self.bank = bank
        self.rate = rate
        self.delivery_reports = delivery_reports
        self._tasks: set[asyncio.Task] = set()
        bank.on_line_opened.append(self._line_opened)

    def _line_opened(self, slot: LentLine) -> None:
        if slot.line is None:
            return
        driver, name = slot.line.driver, slot.name

        def on_event(ev: Event) -> None:
            if not isinstance(ev, DeliveryReport):
                return
            if ev.delivered:
                sms_id = self.alerts.sms_delivered(name, ev.reference)
                log.info("sms %s delivered (modem %s ref %s)", sms_id, name, ev.reference, extra={"modem": name})
                if sms_id is not None:
                    self._report_event(sms_id, ev.status)
            elif ev.failed:
                failed = self.inbox.sms_by_reference(name, ev.reference)
                if failed is not None:
                    self.alerts.sms_failed(failed, f"delivery report status {ev.status:#04x}")
                    self._report_event(failed, ev.status)
        driver.add_listener(on_event)
        # +CMTI/+CMT/+CDS/+CDSI → events; SmsReplies (alerting/sms_replies.py) handles the messages
        watcher = watch_sms(driver)
        task = asyncio.get_running_loop().create_task(self._enable(slot, watcher))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report_event(self, sms_id: int, status: int) -> None:
        """``sms.delivered`` webhook once a delivery report is journaled (``delivered`` false:
        the network reported a permanent failure)."""
        row = self.alerts.get_sms(sms_id)
        if row is None:
            return
        webhooks.emit("sms.delivered", {"sms_id": sms_id, "number": row["number"], "modem": row["modem"],
                                        "reference": row["reference"], "alert_id": row["alert_id"],
                                        "delivered": row["status"] == "delivered", "report_status": status,
                                        "delivered_at": row["delivered_at"], "error": row["error"]})

    async def _enable(self, slot: LentLine, watcher: SmsWatcher) -> None:
        try:
            await watcher.setup(delivery_reports=self.delivery_reports)
        except ATError as exc:
            log.warning("modem %s: SMS set-up failed: %s", slot.name, exc, extra={"modem": slot.name})

    def rate_limited(self, number: str) -> bool:
        since = utc_now() - timedelta(seconds=self.rate.window)
        calls = Journal(self.conn).alert_calls_since(number, since)
        texts = self.alerts.sms_count_since(number, since)
        return calls + texts >= self.rate.per_number

    def queue(self, number: str, text: str, *, alert_id: int | None = None) -> int:
        if not text.strip():
            raise UserError("SMS text is empty")
        check_text(text, "text")        # `sms` without the service too, not only the API
        return self.alerts.add_sms(number, text, alert_id=alert_id)

    async def send(self, number: str, text: str, *, alert_id: int | None = None,
                   wait: float | None = LEASE_TIMEOUT) -> tuple[int | None, str]:
        """Queue and send now, waiting ``wait`` s at most for a line (None: until one frees).
        -> (sms id, status: sent|failed|rate_limited)."""
        if self.rate_limited(number):
            log.warning("sms to %s skipped: rate limit", number)
            return None, "rate_limited"
        sms_id = self.queue(number, text, alert_id=alert_id)
        return sms_id, await self.deliver(sms_id, wait=wait)

    async def deliver(self, sms_id: int, *, wait: float | None = LEASE_TIMEOUT) -> str:
        row = self.alerts.get_sms(sms_id)
        assert row is not None
        try:
            async with self.bank.lease(Priority.SMS, need_audio=False, timeout=wait) as slot:
                assert slot.line is not None
                try:
                    sent = await send_sms(slot.line.driver, row["number"], row["text"],
                                          status_report=self.delivery_reports)
                except (ATError, UserError) as exc:
                    slot.sms_failed += 1
                    self.alerts.sms_failed(sms_id, str(exc), slot.name)
                    log.warning("sms %s to %s failed on %s: %s", sms_id, row["number"], slot.name, exc)
                    return "failed"
                slot.sms_sent += 1
                # a multi-part text is matched by its last part's reference
                self.alerts.sms_sent(sms_id, slot.name, sent.references[-1] if sent.references else None)
                log.info("sms %s to %s sent on %s (%d part(s), %s)", sms_id, row["number"], slot.name,
                         sent.parts, sent.encoding, extra={"modem": slot.name})
                return "sent"
        except asyncio.TimeoutError:
            self.alerts.sms_failed(sms_id, "no modem ready")
            return "failed"

    def resume(self) -> list[int]:
        """Queued SMS left by a stopped service (not those of alerts: their runner re-sends)."""
        ids = self.alerts.queued_sms_ids()
        for sms_id in ids:
            self.spawn(sms_id)
        return ids

    def spawn(self, sms_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(sms_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
