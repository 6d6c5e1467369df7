"""``modem-dialer modems`` and ``modem-dialer sim``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import yaml

from ..errors import UserError
from . import load, main, run_command


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
@click.pass_context
@run_command
def modems(ctx: click.Context, as_json: bool) -> None:
    """Probe every configured modem: identity, SIM, registration, signal.

    Exit 0 when every modem is ready, 1 otherwise.
    """
    from ..modems.probe import probe_all

    cfg = load(ctx).config
    if not cfg.modems:
        raise UserError("no modems in the config (add a 'modems:' list, or run 'modem-dialer discover')")
    results = asyncio.run(probe_all(cfg.modems))
    rows = [r.as_dict() for r in results]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("name", "family", "model", "imei", "operator", "reg", "signal", "sim", "ready", "problem")
        for r in rows:
            table.add_row(r["name"], r["family"], r["model"] or "-", r["imei"] or "-", r["operator"] or "-",
                          f"{r['registration']}{' ' + r['tech'] if r['tech'] else ''}",
                          f"{r['signal_dbm']} dBm" if r["signal_dbm"] is not None else "-", r["sim"],
                          "[green]yes[/]" if r["ready"] else "[red]no[/]", r["error"] or "")
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    sys.exit(0 if all(r["ready"] for r in rows) else 1)


@main.command()
@click.option("--modems", "count", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--family", default="quectel", show_default=True,
              help="quectel | simcom | sim800 | huawei | generic, or a comma list to mix")
@click.option("--scenario", type=click.Path(dir_okay=False), help="YAML file of scripted callees")
@click.option("--write-config", type=click.Path(dir_okay=False), help="also write a matching config here")
@click.option("--control", type=click.Path(dir_okay=False), help="Unix socket for sim-ctl (incoming calls …)")
@run_command
def sim(count: int, family: str, scenario: str | None, write_config: str | None, control: str | None) -> None:
    """Run a bank of simulated modems on pseudo-terminals until Ctrl-C."""
    from ..sim.bank import SimBank
    from ..sim.callee import Scenario
    from ..sim.dialects import DIALECTS

    for f in family.split(","):
        if f not in DIALECTS:
            raise UserError(f"--family: unknown family {f!r} (one of {', '.join(DIALECTS)})")
    sc = None
    if scenario:
        try:
            sc = Scenario.load(scenario)
        except OSError as exc:
            raise UserError(f"{scenario}: cannot read scenario file: {exc.strerror}") from None
        except (ValueError, TypeError, KeyError, yaml.YAMLError) as exc:
            raise UserError(f"{scenario}: bad scenario file: {exc}") from None

    async def serve() -> None:
        bank = await SimBank.of(count, family, sc).start()
        data = yaml.safe_load(bank.config_yaml())
        for m in data["modems"]:
            if "audio" in m:
                m["dtmf"] = "both"      # scripted callees may press keys as URCs or as in-band tones
        text = yaml.safe_dump(data, sort_keys=False)
        if write_config:
            Path(write_config).write_text(text)
            click.echo(f"config written to {write_config}")
        for m in bank.modems:
            audio = f"  audio {m.audio.path}" if m.audio else ""
            click.echo(f"{m.name}: {m.dialect.family:8} AT {m.path}{audio}")
        click.echo("\n# matching config:\n" + text, nl=False)
        ctl = None
        if control:
            from ..sim.control import ControlServer

            ctl = await ControlServer(bank, control).start()
            click.echo(f"control socket: {control}")
        sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            if ctl is not None:
                await ctl.close()
            await bank.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass




@main.command("sim-ctl")
@click.argument("socket_path", type=click.Path(dir_okay=False))
@click.argument("command", type=click.Choice(["call", "calls"]))
@click.option("--from", "caller", help="call: the caller's number (omit: withheld)")
@click.option("--modem", help="call: which simulated SIM rings (default: the first)")
@click.option("--keys", help="call: keys the caller presses, as SECONDS:KEY,… after the answer")
@click.option("--hangup-after", type=float, help="call: seconds after the answer when the caller hangs up")
@click.option("--ring-for", type=float, default=30.0, show_default=True, help="call: seconds before giving up")
@run_command
def sim_ctl(socket_path: str, command: str, caller: str | None, modem: str | None, keys: str | None,
            hangup_after: float | None, ring_for: float) -> None:
    """Tell a running `sim --control SOCKET` to do something (e.g. someone calls a SIM)."""
    import json

    from ..sim.control import send

    req: dict = {"cmd": command}
    if command == "call":
        parsed = []
        for part in (keys or "").split(","):
            if not part.strip():
                continue
            at, _, key = part.partition(":")
            try:
                parsed.append([float(at), key.strip()])
            except ValueError:
                raise UserError(f"--keys: {part!r} is not SECONDS:KEY") from None
        req.update({"from": caller, "modem": modem, "keys": parsed, "hangup_after": hangup_after,
                    "ring_for": ring_for})
    try:
        reply = asyncio.run(send(socket_path, req))
    except (OSError, asyncio.TimeoutError) as exc:
        raise UserError(f"{socket_path}: no simulator answers ({exc})") from None
    click.echo(json.dumps(reply))
    if not reply.get("ok"):
        sys.exit(1)
