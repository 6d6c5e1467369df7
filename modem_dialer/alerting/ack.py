"""The one acknowledgement record, whatever the source: a key in the call, an SMS reply, the
HTTP API, or ``alert ack`` while the service is stopped.

Every source goes through :func:`record_ack`, so each writes the same things: the alert row
(``acknowledged``, who, when), its state (``result``, ``acknowledged_via``, the
``ack_deadline`` of the policy's ``ack_timeout``, an ``ack_log`` entry) and the
``alert.acknowledged`` webhook event. What only a running service can do (stop the
escalation, arm the re-notification) stays in the runner; the service also arms the
deadline of an acknowledgement made while it was stopped when it starts (``resume``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..store import Alerts, to_ts, utc_now

log = logging.getLogger("modem_dialer.service")   # the name operators filter on (docs/api.md), kept

Emit = Callable[[str, dict[str, Any]], Any]


def alert_event(alerts: Alerts, alert_id: int, **extra: Any) -> dict[str, Any] | None:
    """The webhook payload of an alert event (None if the alert is gone)."""
    a = alerts.get_alert(alert_id)
    if a is None:
        return None
    return {"alert_id": alert_id, "status": a["status"], "policy": a["policy"], "text": a["text"],
            "dedup_key": a["dedup_key"], **extra}


def record_ack(alerts: Alerts, alert_id: int, by: str, via: str, emit: Emit | None) -> dict[str, Any] | None:
    """Acknowledge ``alert_id`` if it is open; its new state, or None if it was not open."""
    if not alerts.acknowledge(alert_id, by):
        return None
    a = alerts.get_alert(alert_id)
    if a is None:
        return None
    st = a["state"]
    st["result"] = "acknowledged"
    st["acknowledged_via"] = via
    timeout = (st.get("plan") or {}).get("ack_timeout")
    if timeout:
        st["ack_deadline"] = to_ts(utc_now() + timedelta(seconds=float(timeout)))
    # the call/SMS history stays attempts only; acknowledgements and re-notifications have their own log
    st.setdefault("ack_log", []).append({"at": to_ts(utc_now()), "action": "acknowledged", "by": by, "via": via,
                                         **({"renotify_at": st["ack_deadline"]} if timeout else {})})
    alerts.set_state(alert_id, st)
    log.info("alert %s acknowledged by %s via %s", alert_id, by, via, extra={"alert": alert_id})
    if emit is not None:
        payload = alert_event(alerts, alert_id, by=by, via=via)
        if payload is not None:
            emit("alert.acknowledged", payload)
    return st
