"""``modem-dialer alert`` (raise, status, list, resolve) and ``modem-dialer sms``.

Both talk to the running service over its HTTP API on localhost; when no service runs
they do the job themselves with the modems (the serial ports belong to one process).

Exit codes of ``alert --wait`` (for Nagios/Icinga/Zabbix): 0 acknowledged, 3 not
acknowledged (escalation exhausted, resolved before anyone acknowledged, or --timeout
reached), 1 error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from . import load, main, open_database, run_command

EXIT_ACKED, EXIT_ERROR, EXIT_NOT_ACKED = 0, 1, 3


def _client(loaded):
    from ..service.client import Client

    return Client.from_config(loaded.config)


def _check_by(by: str) -> None:
    """Who acknowledges or resolves: it is journaled and shown, so printable and short."""
    if not by.strip() or len(by) > 100 or any(ord(ch) < 32 for ch in by):
        raise UserError("--by: a name of 1 to 100 printable characters")


def _ask(client, method: str, path: str, body: dict | None = None, *, not_found: str | None = None) -> Any:
    """One request to the running service; its refusal is the command's one-line error."""
    from ..service.client import ServiceError

    try:
        return client.request(method, path, body)
    except ServiceError as exc:
        raise UserError(not_found if not_found is not None and exc.status == 404 else str(exc)) from None


def _verdict(alert: dict) -> int:
    return EXIT_ACKED if alert.get("acknowledged_at") else EXIT_NOT_ACKED


def _finished(alert: dict) -> bool:
    return alert["status"] != "open" or bool(alert.get("result"))


@main.group(invoke_without_command=True)
@click.option("--to", "to", multiple=True, help="number, person or group from config.yaml (repeatable: escalation order)")
@click.option("--say", help="text of the alert (spoken, and sent by SMS)")
@click.option("--message", type=click.Path(dir_okay=False), help="WAV file to play instead of --say")
@click.option("--policy", help="escalation policy from config.yaml (default: alerting.default_policy)")
@click.option("--ack-key", help="key that acknowledges (default: the policy's, usually 1)")
@click.option("--dedup-key", help="alerts with the same key while one is open are one alert")
@click.option("--via", type=click.Choice(["call", "sms", "call+sms"]), help="how to reach the --to entries")
@click.option("--wait", is_flag=True, help="block until acknowledged or escalation is over; exit 0/3")
@click.option("--timeout", type=click.FloatRange(min=0), default=0, help="with --wait: give up after N seconds (exit 3)")
@click.option("--local", is_flag=True, help="do not look for a running service; use the modems directly")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@run_command
def alert(ctx: click.Context, to: tuple[str, ...], say: str | None, message: str | None, policy: str | None,
          ack_key: str | None, dedup_key: str | None, via: str | None, wait: bool, timeout: float, local: bool,
          as_json: bool) -> None:
    """Raise an alert: phone people until someone presses the key.

    \b
    modem-dialer alert --to oncall --say "Disk full on db1" --wait
    modem-dialer alert status ID | alert list | alert resolve ID
    """
    import asyncio
    if ctx.invoked_subcommand is not None:
        return
    if not to and not policy and not (say or message):
        click.echo(ctx.get_help())
        return
    if (say is None) == (message is None):
        raise UserError("give exactly one of --say TEXT or --message WAV")
    loaded = load(ctx)
    # a file given by path (from here) goes as its absolute path; else it is a prompt's name
    # in the service's prompt folders (alerting.prompt_dirs), which the service checks
    audio = str(Path(message).resolve()) if message and Path(message).exists() else message
    body = {"to": list(to) or None, "text": say, "audio": audio,
            "policy": policy, "dedup_key": dedup_key, "ack_key": ack_key, "via": via}
    client = _client(loaded)
    if not local and client.running():
        code = _via_service(client, {k: v for k, v in body.items() if v is not None}, wait, timeout, as_json)
    else:
        code = asyncio.run(_local_alert(loaded, body, timeout, as_json))
    sys.exit(code)


def _via_service(client, body: dict, wait: bool, timeout: float, as_json: bool) -> int:
    from ..service.client import ServiceError

    r = _ask(client, "POST", "/v1/alerts", body)
    if not wait:
        click.echo(json.dumps(r) if as_json else
                   f"alert {r['id']} {'raised' if r['created'] else 'already open (deduplicated)'}")
        return EXIT_ACKED
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while True:
        try:
            a = client.request("GET", f"/v1/alerts/{r['id']}")
        except (ServiceError, OSError) as exc:
            raise UserError(f"lost the service while waiting for alert {r['id']}: {exc}") from None
        if _finished(a) or (deadline and time.monotonic() > deadline):
            _print_alert(a, as_json)
            return _verdict(a)
        time.sleep(0.5)


def _quiet_bank() -> None:
    """Without the service, the bank's per-modem warnings would repeat the one-line error
    this command prints; keep them for -v."""
    import logging

    from . import logger_level_for_command

    if logging.getLogger().level >= logging.WARNING:
        logger_level_for_command("modem_dialer.service", logging.ERROR)


async def _local_alert(loaded, body: dict, timeout: float, as_json: bool) -> int:
    import asyncio

    from ..service.api import alert_view
    from ..service.service import Service

    _quiet_bank()
    svc = Service(loaded, http=False)
    await svc.start()
    try:
        if not any(s.ready() for s in svc.bank.slots.values()):
            errors = "; ".join(f"{s.name}: {s.error or 'not ready'}" for s in svc.bank.slots.values())
            raise UserError(f"no service running and no modem ready ({errors or 'no modems in the config'})")
        alert_id, _created = await svc.runner.submit(to=body["to"], say=body["text"], audio=body["audio"],
                                               policy=body["policy"], dedup_key=body["dedup_key"],
                                               ack_key=body["ack_key"], via=body["via"], source="cli")
        done = svc.runner.done_events.setdefault(alert_id, asyncio.Event())
        if alert_id in svc.runner.tasks:
            try:
                await asyncio.wait_for(done.wait(), timeout if timeout > 0 else None)
            except asyncio.TimeoutError:
                pass
        a = alert_view(svc.conn, alert_id)
    finally:
        await svc.stop()
    assert a is not None
    _print_alert(a, as_json)
    return _verdict(a)


def _print_alert(a: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(a, indent=2, default=str))
        return
    who = f" by {a['acknowledged_by']} at {a['acknowledged_at']}" if a.get("acknowledged_at") else ""
    click.echo(f"alert {a['id']}: {a['status']}{who} ({a.get('result') or 'in progress'}) — {a['text']}")
    for e in a.get("errors", []):
        click.echo(f"  {e['at']} error {e['what']}: {e['error']}")
    for h in a.get("history", []):
        click.echo(f"  {h['at']} step {h['step'] + 1} {h['via']} {h['who']} {h['number']}: {h['outcome']}")


@alert.command("status")
@click.argument("alert_id", type=click.IntRange(1, 2**63 - 1))   # a SQLite rowid
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@run_command
def alert_status(ctx: click.Context, alert_id: int, as_json: bool) -> None:
    """Show one alert: status, who acknowledged, every call and SMS. Exit 0 acknowledged, 3 not (yet)."""
    from ..service.api import alert_view

    client = _client(load(ctx))
    if client.running():
        # through the service: its database is private to it (UMask=0077 in the unit)
        a = _ask(client, "GET", f"/v1/alerts/{alert_id}", not_found=f"no alert {alert_id} in the journal")
    else:
        a = alert_view(open_database(ctx), alert_id)
    if a is None:
        raise UserError(f"no alert {alert_id} in the journal")
    _print_alert(a, as_json)
    sys.exit(_verdict(a))


@alert.command("list")
@click.option("--all", "show_all", is_flag=True, help="also ended alerts (default: live ones)")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@run_command
def alert_list(ctx: click.Context, show_all: bool, limit: int, as_json: bool) -> None:
    """List live alerts (or all with --all), newest first."""
    from ..store import Alerts

    client = _client(load(ctx))
    if client.running():
        # through the service: its database is private to it (UMask=0077 in the unit)
        rows = _ask(client, "GET", f"/v1/alerts?status={'all' if show_all else 'live'}&limit={min(limit, 1000)}")
    else:
        conn = open_database(ctx)
        rows = Alerts(conn).alert_rows(live_only=not show_all, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        ack = f" ack {r['acknowledged_by']}" if r["acknowledged_by"] else ""
        click.echo(f"{r['id']:>6} {r['status']:<12} {r['policy']:<12} {r['created_at']}{ack}  {r['text'][:60]}")
    if not rows:
        click.echo("no alerts")


@alert.command("ack")
@click.argument("alert_id", type=int)
@click.option("--by", "by", required=True, help="who acknowledges (journaled with the alert)")
@click.pass_context
@run_command
def alert_ack(ctx: click.Context, alert_id: int, by: str) -> None:
    """Acknowledge alert ALERT_ID: its escalation stops (through the service when it runs; the
    policy's ack_timeout then notifies again if it is not resolved in time)."""
    from ..store import Alerts

    _check_by(by)
    loaded = load(ctx)
    client = _client(loaded)
    if client.running():
        ok = _ask(client, "POST", f"/v1/alerts/{alert_id}/ack", {"by": by})["acknowledged"]
    else:
        # the service is stopped: the same record as every other acknowledgement, and the
        # webhook event queued in the outbox for the service to deliver when it starts
        from .. import webhooks
        from ..alerting.ack import record_ack

        conn = open_database(ctx)
        alerts = Alerts(conn)
        if alerts.get_alert(alert_id) is None:
            raise UserError(f"no alert {alert_id}")
        webhooks.configure(conn, loaded.config.webhooks)
        try:
            ok = record_ack(alerts, alert_id, by, "cli", webhooks.emit) is not None
        finally:
            webhooks.configure(None, [])
    click.echo(f"alert {alert_id}: {'acknowledged by ' + by if ok else 'was not open'}")


@alert.command("resolve")
@click.argument("alert_id", type=click.IntRange(1, 2**63 - 1), required=False)
@click.option("--key", "dedup_key", help="resolve the live alert with this dedup key instead of an id")
@click.option("--by", "by", default="cli", show_default=True, help="who resolves (journaled)")
@click.pass_context
@run_command
def alert_resolve(ctx: click.Context, alert_id: int | None, dedup_key: str | None, by: str) -> None:
    """Resolve an alert (by ID or --key): its escalation stops (through the service when it runs)."""
    from ..store import Alerts

    if (alert_id is None) == (dedup_key is None):
        raise UserError("give an alert ID or --key DEDUP_KEY")
    _check_by(by)
    loaded = load(ctx)
    client = _client(loaded)
    if client.running():
        if dedup_key is not None:
            r = _ask(client, "POST", "/v1/alerts/resolve", {"dedup_key": dedup_key})
            alert_id, ok = r["resolved"], r["resolved"] is not None
        else:
            ok = _ask(client, "POST", f"/v1/alerts/{alert_id}/resolve", {"by": by})["resolved"]
    else:
        conn = open_database(ctx)
        if dedup_key is not None:
            alert_id = Alerts(conn).live_id(dedup_key)
        ok = alert_id is not None and Alerts(conn).resolve(alert_id)
    click.echo(f"alert {alert_id if alert_id is not None else dedup_key}: {'resolved' if ok else 'was not live'}")


@main.command()
@click.argument("number")
@click.argument("text")
@click.option("--local", is_flag=True, help="do not look for a running service; use the modems directly")
@click.pass_context
@run_command
def sms(ctx: click.Context, number: str, text: str, local: bool) -> None:
    """Send TEXT to NUMBER by SMS (GSM 7-bit or UCS-2, long texts in several parts). Exit 0 sent, 1 not."""
    import asyncio

    from ..modems.sms import encode_sms
    from ..numbers import parse_number

    loaded = load(ctx)
    e164 = parse_number(number, loaded.config.default_region)
    encode_sms(e164, text)          # bad text fails here, before any modem is touched
    client = _client(loaded)
    if not local and client.running():
        from ..service.client import ServiceError

        try:
            r = client.request("POST", "/v1/sms", {"to": e164, "text": text})
            while True:
                row = client.request("GET", f"/v1/sms/{r['id']}")
                if row["status"] != "queued":
                    break
                time.sleep(0.3)
        except ServiceError as exc:
            raise UserError(str(exc)) from None
    else:
        row = asyncio.run(_local_sms(loaded, e164, text))
    ok = row["status"] in ("sent", "delivered")
    click.echo(f"sms {row['id']} to {row['number']}: {row['status']}"
               + (f" via {row['modem']}" if row.get("modem") else "") + (f" ({row['error']})" if row.get("error") else ""))
    sys.exit(0 if ok else 1)


async def _local_sms(loaded, number: str, text: str) -> dict:
    from ..service.service import Service

    _quiet_bank()
    svc = Service(loaded, http=False)
    await svc.start()
    try:
        if not any(s.ready(need_audio=False) for s in svc.bank.slots.values()):
            errors = "; ".join(f"{s.name}: {s.error or 'not ready'}" for s in svc.bank.slots.values())
            raise UserError(f"no service running and no modem ready ({errors or 'no modems in the config'})")
        sms_id = svc.texter.queue(number, text)
        await svc.texter.deliver(sms_id)
        row = svc.runner.alerts.get_sms(sms_id)
    finally:
        await svc.stop()
    assert row is not None
    return row
