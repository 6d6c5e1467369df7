"""``modem-dialer sim-ctl SOCKET …``: drive a running ``sim --control SOCKET``.

One subcommand per entry of sim/control.py's ``COMMANDS``: incoming calls (``call``,
``calls``), incoming SMS and delivery reports (``sms``, ``report``, ``sms-log``).
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import UserError
from . import main, run_command


@main.group("sim-ctl")
@click.argument("socket", type=click.Path(dir_okay=False))
@click.pass_context
def sim_ctl(ctx: click.Context, socket: str) -> None:
    """Drive a running simulator (``modem-dialer sim --control SOCKET``): calls, SMS, reports."""
    ctx.obj["sim_socket"] = socket


def _send(ctx: click.Context, request: dict) -> None:
    import asyncio

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
@click.option("--dcs", type=int, help="force the data coding scheme octet (e.g. 140: unknown)")
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
@click.option("--status", type=int, default=0, show_default=True, help="TP-ST: 0 delivered, 64+ failed")
@click.pass_context
@run_command
def sim_ctl_report(ctx: click.Context, modem: str | None, status: int) -> None:
    """A delivery report for the last SMS the SIM sent."""
    req: dict = {"cmd": "report", "status": status}
    if modem:
        req["modem"] = modem
    _send(ctx, req)


@sim_ctl.command("call")
@click.option("--from", "caller", help="the caller's number (omit: withheld)")
@click.option("--modem", help="which simulated SIM rings (default: the first)")
@click.option("--keys", help="keys the caller presses, as SECONDS:KEY,… after the answer")
@click.option("--hangup-after", type=float, help="seconds after the answer when the caller hangs up")
@click.option("--ring-for", type=float, default=30.0, show_default=True, help="seconds before giving up")
@click.pass_context
@run_command
def sim_ctl_call(ctx: click.Context, caller: str | None, modem: str | None, keys: str | None,
                 hangup_after: float | None, ring_for: float) -> None:
    """Someone calls a simulated SIM now."""
    parsed = []
    for part in (keys or "").split(","):
        if not part.strip():
            continue
        at, _, key = part.partition(":")
        try:
            parsed.append([float(at), key.strip()])
        except ValueError:
            raise UserError(f"--keys: {part!r} is not SECONDS:KEY") from None
    _send(ctx, {"cmd": "call", "from": caller, "modem": modem, "keys": parsed, "hangup_after": hangup_after,
                "ring_for": ring_for})


@sim_ctl.command("calls")
@click.pass_context
@run_command
def sim_ctl_calls(ctx: click.Context) -> None:
    """What each simulated SIM has seen: calls in and out, keys sent, who hung up."""
    _send(ctx, {"cmd": "calls"})


@sim_ctl.command("sms-log")
@click.pass_context
@run_command
def sim_ctl_sms_log(ctx: click.Context) -> None:
    """What each simulated SIM has sent (hex PDUs) and received."""
    _send(ctx, {"cmd": "sms_log"})
