"""``GET /metrics``: Prometheus text exposition format 0.0.4, built on request."""

from __future__ import annotations

from ..store import Alerts, Connection
from .bank import Bank


def _esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: object) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def render(bank: Bank, conn: Connection, queue_length: int) -> str:
    out: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    slots = list(bank.slots.values())
    family("modem_dialer_modem_ready", "gauge", "1 when the modem is open, registered and has a SIM ready")
    for s in slots:
        out.append(f"modem_dialer_modem_ready{_labels(modem=s.name)} {int(s.ready(need_audio=False))}")
    family("modem_dialer_modem_busy", "gauge", "1 while the modem is lent to a call or an SMS")
    for s in slots:
        out.append(f"modem_dialer_modem_busy{_labels(modem=s.name)} {int(s.leased)}")
    family("modem_dialer_modem_signal_dbm", "gauge", "received signal strength from AT+CSQ")
    for s in slots:
        if s.health is not None and s.health.signal_dbm is not None:
            out.append(f"modem_dialer_modem_signal_dbm{_labels(modem=s.name)} {s.health.signal_dbm}")
    family("modem_dialer_modem_registered", "gauge", "network registration (label status), 1 when home or roaming")
    for s in slots:
        status = s.health.registration.value if s.health else "unknown"
        ok = int(bool(s.health and s.health.registration.registered))
        out.append(f"modem_dialer_modem_registered{_labels(modem=s.name, status=status)} {ok}")
    family("modem_dialer_calls_total", "counter", "calls placed by this service, by outcome")
    for s in slots:
        for outcome, n in sorted(s.calls.items()):
            out.append(f"modem_dialer_calls_total{_labels(modem=s.name, outcome=outcome)} {n}")
    family("modem_dialer_sms_sent_total", "counter", "SMS accepted by the modem (+CMGS)")
    for s in slots:
        out.append(f"modem_dialer_sms_sent_total{_labels(modem=s.name)} {s.sms_sent}")
    family("modem_dialer_sms_failed_total", "counter", "SMS the modem refused")
    for s in slots:
        out.append(f"modem_dialer_sms_failed_total{_labels(modem=s.name)} {s.sms_failed}")

    family("modem_dialer_alerts", "gauge", "live alerts by policy and status")
    alerts = Alerts(conn)
    for policy, status, n in alerts.live_counts():
        out.append(f"modem_dialer_alerts{_labels(policy=policy, status=status)} {n}")
    family("modem_dialer_alert_queue_length", "gauge", "alerts whose escalation is running or waiting")
    out.append(f"modem_dialer_alert_queue_length {queue_length}")
    family("modem_dialer_line_waiters", "gauge", "jobs waiting for a free modem")
    out.append(f"modem_dialer_line_waiters {bank.waiting}")
    queued = alerts.count_queued_sms()
    family("modem_dialer_sms_queued", "gauge", "SMS not yet handed to a modem")
    out.append(f"modem_dialer_sms_queued {queued}")
    return "\n".join(out) + "\n"
