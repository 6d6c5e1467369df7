"""``modem-dialer sms-inbox``: incoming SMS from the journal (``sim-ctl sms``: cli/simctl.py)."""

from __future__ import annotations

import json

import click

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
