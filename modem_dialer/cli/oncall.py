"""``modem-dialer oncall [SCHEDULE] [--at TIME]``: who is on call (alerting.schedules)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from ..errors import UserError
from . import load, main, run_command


def _at(text: str | None, tz) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--at: {text!r} is not a time like '2026-03-29 09:30' or '2026-03-29T07:30Z'") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=tz)   # a bare time is the schedule's local time


@main.command()
@click.argument("schedule", required=False)
@click.option("--at", "at", help="instead of now: a time (ISO 8601; without offset: the schedule's local time)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@run_command
def oncall(ctx: click.Context, schedule: str | None, at: str | None, as_json: bool) -> None:
    """Who is on call now (or --at TIME) in SCHEDULE, or in every schedule."""
    from ..alerting.schedules import on_call

    al = load(ctx).config.alerting
    if not al.schedules:
        raise UserError("no schedules in the config (alerting.schedules)")
    if schedule is not None and schedule not in al.schedules:
        raise UserError(f"unknown schedule {schedule!r} (have: {', '.join(al.schedules)})")
    names = [schedule] if schedule else list(al.schedules)
    found = [on_call(name, al.schedules[name], _at(at, al.schedules[name].tz)) for name in names]
    if as_json:
        out = [{"schedule": oc.schedule, "who": oc.who, "number": al.people[oc.who], "override": oc.override,
                "since": oc.since.isoformat(), "until": oc.until.isoformat(),
                "timezone": al.schedules[oc.schedule].timezone} for oc in found]
        click.echo(json.dumps(out if schedule is None else out[0]))
        return
    fmt = "%a %Y-%m-%d %H:%M %Z"
    for oc in found:
        click.echo(f"{oc.schedule}: {oc.who} ({al.people[oc.who]}){' [override]' if oc.override else ''}"
                   f" since {oc.since.strftime(fmt)} until {oc.until.strftime(fmt)}")
