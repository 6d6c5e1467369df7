"""``modem-dialer sms-inbox``: incoming SMS from the journal; ``sim-ctl``: drive a running sim."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from ..errors import UserError
from . import load, main, run_command


@main.command("sms-inbox")
@click.option("--kind", type=click.Choice(["stop", "ack", "reply", "bad"]),
              help="only this kind (default: every message)")
@click.option("--from", "sender", metavar="NUMBER", help="only from this number")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_context
@run_command
def sms_inbox(ctx: click.Context, kind: str | None, sender: str | None, limit: int, as_json: bool) -> None:
    """Incoming SMS, newest first: replies, STOP opt-outs, alert acknowledgements, unreadable ones."""
    from ..numbers import parse_number
    from ..store import SmsInbox, open_db

    loaded = load(ctx)
    if sender is not None:
        sender = parse_number(sender, loaded.config.default_region)
    conn = open_db(loaded.database_path)
    try:
        messages = SmsInbox(conn).messages(kind=kind, sender=sender, limit=limit)
    finally:
        conn.close()
    if as_json:
        for m in messages:
            click.echo(json.dumps(m.as_dict(), ensure_ascii=False))
        return
    if not messages:
        click.echo("no incoming SMS")
        return
    for m in messages:
        text = m.text if m.text is not None else f"({m.error})"
        flag = "" if m.complete else " [incomplete]"
        click.echo(f"#{m.id} {m.received_at} {m.sender or '(no number)'} via {m.modem} [{m.kind}] "
                   f"{m.action or ''}{flag}\n    {text!r}")


@main.group("sim-ctl")
@click.argument("socket", type=click.Path(dir_okay=False))
@click.pass_context
def sim_ctl(ctx: click.Context, socket: str) -> None:
    """Drive a running simulator (``modem-dialer sim --control SOCKET``)."""
    ctx.obj["sim_socket"] = socket


def _send(ctx: click.Context, request: dict) -> None:
    from ..sim.control import send

    path = ctx.obj["sim_socket"]
    try:
        reply = asyncio.run(send(path, request))
    except (OSError, asyncio.TimeoutError) as exc:
        raise UserError(f"{path}: no simulator control socket there ({exc})") from None
    click.echo(json.dumps(reply, ensure_ascii=False))
    sys.exit(0 if reply.get("ok") else 1)


@sim_ctl.command("sms")
@click.option("--from", "sender", default="", help="sender number (empty: hidden)")
@click.option("--text", default="", help="message text")
@click.option("--modem", help="which simulated SIM receives it (default: the first)")
@click.option("--encoding", type=click.Choice(["gsm7", "ucs2", "8bit"]), help="default: gsm7 when it fits")
@click.option("--ref-bits", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="concatenation reference size of a long text")
@click.option("--pdu", help="send these hex octets as they are (a garbled PDU)")
@click.option("--dcs", type=click.IntRange(0, 255), help="force the data coding scheme octet (e.g. 140: unknown)")
@click.pass_context
@run_command
def sim_ctl_sms(ctx: click.Context, sender: str, text: str, modem: str | None, encoding: str | None,
                ref_bits: str, pdu: str | None, dcs: int | None) -> None:
    """An SMS arrives on a simulated SIM now."""
    req: dict = {"cmd": "sms", "from": sender, "text": text, "ref_bits": int(ref_bits)}
    for k, v in (("modem", modem), ("encoding", encoding), ("pdu", pdu), ("dcs", dcs)):
        if v is not None:
            req[k] = v
    _send(ctx, req)


@sim_ctl.command("report")
@click.option("--modem", help="which simulated SIM (default: the first)")
@click.option("--status", type=click.IntRange(0, 255), default=0, show_default=True, help="TP-ST: 0 delivered, 64+ failed")
@click.pass_context
@run_command
def sim_ctl_report(ctx: click.Context, modem: str | None, status: int) -> None:
    """A delivery report for the last SMS the SIM sent."""
    req: dict = {"cmd": "report", "status": status}
    if modem:
        req["modem"] = modem
    _send(ctx, req)
