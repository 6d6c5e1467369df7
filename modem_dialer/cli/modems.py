"""``modem-dialer modems`` and ``modem-dialer sim``."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from ..errors import UserError
from . import load, main, run_command


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
@click.pass_context
@run_command
def modems(ctx: click.Context, as_json: bool) -> None:
    """Probe every configured modem: identity, SIM, registration, signal. When other boxes
    share the database (docs/scale-out.md), their modems follow, as those boxes last
    recorded them (with the age of that record).

    Exit 0 when every modem of this box is ready, 1 otherwise.
    """
    import asyncio

    from ..modems.probe import probe_all
    from ..store.boxes import this_box

    loaded = load(ctx)
    cfg = loaded.config
    if not cfg.modems:
        raise UserError("no modems in the config (add a 'modems:' list, or run 'modem-dialer discover')")
    results = asyncio.run(probe_all(cfg.modems))
    me = this_box()
    rows = [{"box": me, "remote": False, **r.as_dict()} for r in results]
    remote = _other_boxes(loaded, me)
    if as_json:
        click.echo(json.dumps(rows + remote, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("box", "name", "family", "model", "imei", "operator", "reg", "signal", "sim", "ready", "problem")
        for r in rows:
            table.add_row(r["box"], r["name"], r["family"], r["model"] or "-", r["imei"] or "-", r["operator"] or "-",
                          f"{r['registration']}{' ' + r['tech'] if r['tech'] else ''}",
                          f"{r['signal_dbm']} dBm" if r["signal_dbm"] is not None else "-", r["sim"],
                          "[green]yes[/]" if r["ready"] else "[red]no[/]", r["error"] or "")
        for r in remote:
            age = "never seen" if r["age_s"] is None else f"seen {r['age_s']:.0f} s ago"
            box = "" if r["box_status"] == "up" else f", box {r['box_status'] or 'never started'}"
            table.add_row(r["box"], r["name"], "-", "-", r["imei"] or "-", "-", "-", "-", "-",
                          "[green]yes[/]" if r["ready"] else "[red]no[/]",
                          f"{r['status']}{': ' + r['reason'] if r['reason'] else ''} ({age}{box})")
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    sys.exit(0 if all(r["ready"] for r in rows) else 1)


def _other_boxes(loaded, me: str) -> list[dict]:
    """Other boxes' modems from the shared database (none when there is no database yet:
    listing modems does not create one)."""
    from ..store import open_db, other_boxes_modems
    from ..store.pg import is_postgres

    db = loaded.database_path
    if not is_postgres(db) and not Path(db).exists():
        return []
    conn = open_db(loaded.database_path)
    try:
        return [{**m, "remote": True, "ready": m["status"] == "ready" and m["box_status"] == "up"}
                for m in other_boxes_modems(conn, me)]
    finally:
        conn.close()


@main.command()
@click.option("--modems", "count", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--family", default="quectel", show_default=True,
              help="quectel | simcom | sim800 | huawei | generic, or a comma list to mix")
@click.option("--scenario", type=click.Path(dir_okay=False), help="YAML file of scripted callees")
@click.option("--write-config", type=click.Path(dir_okay=False), help="also write a matching config here")
@click.option("--control", type=click.Path(dir_okay=False),
              help="listen on this Unix socket for commands (modem-dialer sim-ctl PATH call|sms|…)")
@run_command
def sim(count: int, family: str, scenario: str | None, write_config: str | None, control: str | None) -> None:
    """Run a bank of simulated modems on pseudo-terminals until Ctrl-C."""
    import asyncio

    import yaml

    from ..signals import on_signals
    from ..sim.callee import Scenario
    from ..sim.dialects import DIALECTS
    from ..sim.sim_bank import SimBank

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
        try:
            bank = await SimBank.of(count, family, sc).start()
        except ValueError as exc:
            raise UserError(f"{scenario}: bad scenario file: {exc}") from None
        ctl = None
        if control:
            from ..sim.control import ControlServer

            ctl = await ControlServer(bank, control).start()
        data = yaml.safe_load(bank.config_yaml())
        for m in data["modems"]:
            if "audio" in m:
                m["dtmf"] = "both"      # scripted callees may press keys as URCs or as in-band tones
        text = yaml.safe_dump(data, sort_keys=False)
        # Ctrl-C stops the simulator: hooked here rather than left to asyncio.run, which only
        # handles SIGINT when Python installed its handler at start-up — not in a process started
        # with SIGINT ignored (`modem-dialer sim &` in a script, a test run in the background):
        # `kill -INT` was then dropped. Hooked before the modems are printed, which say it is ready.
        stop = asyncio.Event()
        on_signals(asyncio.get_running_loop(), [signal.SIGINT], stop.set)   # gone with the loop
        if write_config:
            Path(write_config).write_text(text)
            click.echo(f"config written to {write_config}")
        for m in bank.modems:
            audio = f"  audio {m.audio.path}" if m.audio else ""
            click.echo(f"{m.name}: {m.dialect.family:8} AT {m.path}{audio}")
        click.echo("\n# matching config:\n" + text, nl=False)
        if ctl:
            click.echo(f"control socket: {control}")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            if ctl is not None:
                await ctl.close()
            await bank.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
