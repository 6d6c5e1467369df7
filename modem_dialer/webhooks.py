"""Event webhooks: every event is written to the outbox first, then POSTed by a worker.

``webhooks.emit(event, data)`` (module level) is the one function other code calls, from
any layer (calls, flows, campaigns, alerts; the SMS side for ``sms.received`` /
``sms.delivered``). It is a no-op until a process calls :func:`configure` (``serve`` and
``campaign run`` do, with the database and the ``webhooks:`` targets). It writes one
``webhook_outbox`` row per interested target in one transaction and returns; nothing is
sent from the caller's path. The worker (run by ``serve``) POSTs due rows, marks them
delivered on a 2xx, and otherwise retries with exponential backoff (``BACKOFF_*``) until
``GIVE_UP_AFTER`` has passed since the event: a target down for an hour gets its events
when it comes back, and a restart loses none (the rows are in SQLite).

Each POST carries ``X-Modem-Dialer-Signature: t=<unix time>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(secret, ``"<t>.<raw body>"``), as Stripe does; docs/api.md shows how to verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .store import DB_ERRORS, Connection, from_ts, to_ts, utc_now
from .store.twoway import Outbox, OutboxItem
from .waits import wait_set
from .webhook_targets import EVENTS, WebhookTarget

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("modem_dialer.webhooks")

SIGNATURE_HEADER = "X-Modem-Dialer-Signature"
BACKOFF_FIRST = 2.0          # s before the first retry, doubled each time …
BACKOFF_MAX = 300.0          # … up to this
GIVE_UP_AFTER = timedelta(days=3)   # then the row is marked failed (kept, visible)
POST_TIMEOUT = 10.0
IDLE_POLL = 5.0              # s between looks at the outbox when nothing is due and nothing new


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, tolerance: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does (docs/api.md): recompute the HMAC, compare in constant time, and
    refuse an old timestamp (replay)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), f"t={ts},v1={parts.get('v1', '')}")


def backoff(attempts: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * (2 ** max(0, attempts - 1)))


class Webhooks:
    def __init__(self, conn: Connection, targets: list[WebhookTarget]) -> None:
        self.outbox = Outbox(conn)
        self.targets = targets
        self._kick = asyncio.Event()
        self.delivered = 0

    def emit(self, event: str, data: dict[str, Any]) -> list[int]:
        """Queue ``event`` for every target that wants it (persisted before this returns)."""
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        urls = [t.url for t in self.targets if t.wants(event)]
        if not urls:
            return []
        body = json.dumps({"event": event, "at": to_ts(utc_now()), "data": data}, ensure_ascii=False,
                          separators=(",", ":"), default=str)
        try:
            ids = self.outbox.add(event, body, urls)
        except DB_ERRORS as exc:
            log.error("webhook event %s not queued: %s", event, exc)
            return []
        self._kick.set()
        return ids

    def _target(self, url: str) -> WebhookTarget | None:
        return next((t for t in self.targets if t.url == url), None)

    async def run(self) -> None:
        """The delivery worker (a service worker: runs until cancelled)."""
        # imported here, not with the module: every process that can emit an event imports
        # this module (`call`, `campaign run`), only `serve` delivers, and aiohttp's client
        # costs ~0.3 s of CPU at import (two TLS contexts loaded with the system's CAs)
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT)) as session:
            while True:
                self._kick.clear()
                now = utc_now()
                for item in self.outbox.due(now):
                    await self._deliver(session, item)
                nxt = self.outbox.next_due_at()
                wait = IDLE_POLL if nxt is None else max(0.0, (from_ts(nxt) - utc_now()).total_seconds())
                # not wait_for(): on Python < 3.12 a cancel that lands as the event is set is
                # lost, and the service's stop waits for this worker forever (seen in the tests)
                await wait_set(self._kick, min(wait, IDLE_POLL))

    async def _deliver(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        target = self._target(item.url)
        body = item.payload.encode()
        headers = {"Content-Type": "application/json", "User-Agent": "modem-dialer-webhooks",
                   "X-Modem-Dialer-Event": item.event, "X-Modem-Dialer-Delivery": str(item.id)}
        import aiohttp  # loaded by run() already

        key = target.key() if target is not None else None
        if key:
            headers[SIGNATURE_HEADER] = sign(key, int(time.time()), body)
        try:
            async with session.post(item.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    self.outbox.delivered(item.id)
                    self.delivered += 1
                    return
                error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        created = from_ts(item.created_at)
        if utc_now() - created > GIVE_UP_AFTER:
            log.error("webhook %s to %s given up after %d tries: %s", item.id, item.url, item.attempts + 1, error)
            self.outbox.failed(item.id, error, None)
            return
        nxt: datetime = utc_now() + timedelta(seconds=backoff(item.attempts + 1))
        log.warning("webhook %s to %s failed (%s); retry at %s", item.id, item.url, error, to_ts(nxt))
        self.outbox.failed(item.id, error, nxt)


_current: Webhooks | None = None


def configure(conn: Connection | None, targets: list[WebhookTarget]) -> Webhooks | None:
    """Make :func:`emit` write to this database for these targets (None/[]: emit does nothing)."""
    global _current
    _current = Webhooks(conn, targets) if conn is not None and targets else None
    return _current


def configured() -> bool:
    """Whether :func:`emit` writes anything: a caller on a hot path (every call's end) builds
    the event's data only then."""
    return _current is not None


def emit(event: str, data: dict[str, Any]) -> None:
    """Queue a webhook event (see the module docstring). Never raises into the caller's path."""
    hooks = _current
    if hooks is None:
        return
    try:
        hooks.emit(event, data)
    except Exception:       # a webhook problem must never break a call or an alert
        log.exception("webhook event %s not queued", event)
