"""What an incoming SMS means (issue 13): a STOP, an acknowledgement, or a reply kept.

Every message is journaled first (``sms_in``; parts of a long one wait in
``sms_in_parts`` until their siblings come, across restarts). Then, for a complete text
from a real number:

1. a STOP keyword of any configured language (alerting/sms_config.py): the number goes on the
   suppression list *first* (a campaign checks it before every ATD), then a confirmation
   SMS in that language is sent (queued in ``sms`` like any other: a failure is recorded,
   the suppression stands);
2. an acknowledgement of an alert that texted this number: "ACK" (or another ack word),
   "ACK 42" / "42" / "#42" (alert id), or the alert's ack key ("1"). Only an alert that
   sent an SMS to this very number can be acknowledged by it: anyone may text the modem;
3. anything else is kept as a reply (``GET /v1/sms/inbox``, ``modem-dialer sms-inbox``).

Garbled PDUs, unknown encodings and messages without a number are journaled as they came
(``kind`` "bad" or "reply") and nothing else happens. Every journaled message, once its
meaning is settled, is also an ``sms.received`` webhook event (modem_dialer/webhooks.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

from .. import webhooks
from ..errors import UserError
from ..modems.events import Event, SmsReceived
from ..modems.sms_pdu import Deliver
from ..numbers import parse_number
from ..store import Alerts, Compliance, Connection, IncomingPart, SmsInbox
from .escalation import AlertRunner
from .lines import LentLine, LineLender
from .sms_config import SmsConfig, normalise
from .texting import Texter

log = logging.getLogger("modem_dialer.sms")

SWEEP_INTERVAL = 60.0        # s between two looks for long messages whose parts stopped coming


class SmsReplies:
    def __init__(self, conn: Connection, bank: LineLender, texter: Texter, runner: AlertRunner,
                 cfg: SmsConfig, *, region: str = "FR") -> None:
        self.conn = conn
        self.inbox = SmsInbox(conn)
        self.compliance = Compliance(conn)
        self.alerts = Alerts(conn)
        self.texter = texter
        self.runner = runner
        self.cfg = cfg
        self.region = region
        self._tasks: set[asyncio.Task] = set()
        bank.on_line_opened.append(self._line_opened)

    def _line_opened(self, slot: LentLine) -> None:
        if slot.line is not None:
            slot.line.driver.add_listener(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, SmsReceived):
            message_id = self.store(ev)
            if message_id is not None:
                self._spawn(self.handle(message_id))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- journal ---------------------------------------------------------------------------
    def _number(self, raw: str | None) -> str | None:
        """E.164 when it is a phone number; an alphanumeric sender ("MyBank") stays as it is."""
        if not raw:
            return None
        if raw.startswith("+") or raw.isdigit():
            try:
                return parse_number(raw, self.region)
            except UserError:
                return raw
        return raw

    def store(self, ev: SmsReceived) -> int | None:
        """Journal ``ev`` (synchronously: the SIM copy is deleted once this returns).
        -> the message id when a whole message is now stored, None for a part still waiting."""
        d = ev.deliver
        if not isinstance(d, Deliver):
            log.warning("%s: unreadable SMS PDU journaled (%s)", ev.modem, ev.error, extra={"modem": ev.modem})
            self._received(self.inbox.add_message(ev.modem, None, None, "garbled", pdu=ev.pdu, error=ev.error,
                                                  kind="bad"))
            return None
        sender = self._number(d.sender.number)
        ud = d.ud
        if ud.encoding == "unknown" or ud.text is None:
            log.warning("%s: SMS from %s in an unknown encoding (DCS %#04x) journaled", ev.modem, sender, d.dcs,
                        extra={"modem": ev.modem})
            self._received(self.inbox.add_message(ev.modem, sender, None, "unknown", sent_at=d.timestamp, pdu=ev.pdu,
                                                  error=f"unknown data coding scheme {d.dcs:#04x}", kind="bad"))
            return None
        c = ud.concat
        if c is not None and c.total > 1 and sender is not None:
            if not 1 <= c.seq <= c.total:
                self._received(self.inbox.add_message(ev.modem, sender, ud.text, ud.encoding, sent_at=d.timestamp,
                                                      pdu=ev.pdu, error=f"part {c.seq} of {c.total}: no such part",
                                                      kind="bad"))
                return None
            return self.inbox.add_part(IncomingPart(ev.modem, sender, c.reference, c.ref_bits, c.total, c.seq,
                                                    ud.text, ud.encoding, ev.pdu, d.timestamp))
        return self.inbox.add_message(ev.modem, sender, ud.text, ud.encoding, sent_at=d.timestamp, pdu=ev.pdu)

    # ---- meaning ----------------------------------------------------------------------------
    async def handle(self, message_id: int) -> None:
        try:
            await self._handle(message_id)
        except Exception:   # one message must not stop the others; it stays journaled
            log.exception("sms_in %s: handling failed", message_id)
        self._received(message_id)

    def _received(self, message_id: int) -> None:
        """``sms.received`` webhook for a journaled message, with what it meant (kind, action)."""
        msg = self.inbox.get(message_id)
        if msg is not None:
            webhooks.emit("sms.received", msg.as_dict())

    async def _handle(self, message_id: int) -> None:
        msg = self.inbox.get(message_id)
        if msg is None:
            return
        if msg.sender is None or msg.text is None or not msg.sender.startswith("+"):
            self.inbox.set_outcome(message_id, "reply", "kept (no number to act on)")
            return
        if not msg.complete:
            self.inbox.set_outcome(message_id, "reply", "kept (incomplete)")
            return
        word = normalise(msg.text)
        languages = self.cfg.all_languages()
        stop_langs = [name for name, lang in languages.items() if word in lang.stop]
        if stop_langs:
            await self._stop(message_id, msg.sender, word, stop_langs)
            return
        alert_id = self._alert_for(msg.sender, word)
        if alert_id is not None:
            by = f"sms {msg.sender}"
            if self.runner.acknowledge(alert_id, by, via="sms"):
                self.inbox.set_outcome(message_id, "ack", f"acknowledged alert {alert_id}", alert_id)
            else:
                self.inbox.set_outcome(message_id, "ack", f"alert {alert_id} was no longer open", alert_id)
            return
        self.inbox.set_outcome(message_id, "reply", "kept")

    async def _stop(self, message_id: int, number: str, word: str, langs: list[str]) -> None:
        # the suppression first: it must hold even if the confirmation cannot be sent
        added = self.compliance.suppress(number, reason=f"SMS keyword {word}", source="sms")
        self.compliance.revoke_consent(number, via="sms")
        log.info("%s opted out by SMS (%s)%s", number, word, "" if added else ": already suppressed")
        self.inbox.set_outcome(message_id, "stop", "suppressed")
        lang = self.cfg.default_language if self.cfg.default_language in langs else langs[0]
        confirm = self.cfg.all_languages()[lang].confirm
        if not confirm:
            return
        # not rate limited: the confirmation of an opt-out is owed whatever was sent before
        sms_id = self.texter.queue(number, confirm)
        status = await self.texter.deliver(sms_id)
        self.inbox.set_outcome(message_id, "stop", f"suppressed; confirmation sms {sms_id} {status}")

    _ID = re.compile(r"^(?:([A-Z]+) ?)?#?(\d{1,9})$")

    def _alert_for(self, number: str, word: str) -> int | None:
        """The alert this reply acknowledges, among those that texted ``number``; None if none."""
        texted = self.inbox.alerts_texted_to(number)
        if not texted:
            return None
        ack_words = {w for lang in self.cfg.all_languages().values() for w in lang.ack}
        if word in ack_words:
            return texted[0]
        m = self._ID.match(word)
        if m and (m.group(1) is None or m.group(1) in ack_words) and int(m.group(2)) in texted:
            return int(m.group(2))
        for alert_id in texted:               # the key the call asks for ("press 1") works by SMS too
            a = self.alerts.get_alert(alert_id)
            key = a["state"].get("plan", {}).get("ack_key") if a else None
            if key and word == normalise(str(key)):
                return alert_id
        return None

    # ---- parts that never came --------------------------------------------------------------
    async def sweep_forever(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(min(SWEEP_INTERVAL, self.cfg.parts_timeout / 4))

    async def sweep(self) -> list[int]:
        ids = self.inbox.expire_parts(timedelta(seconds=self.cfg.parts_timeout))
        for message_id in ids:
            log.warning("sms_in %s stored incomplete: parts missing after %g s", message_id, self.cfg.parts_timeout)
            await self.handle(message_id)
        return ids

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
