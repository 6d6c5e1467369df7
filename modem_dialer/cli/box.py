"""The box: ``discover``, ``udev``, ``setup-modem``, ``doctor`` (see docs/box.md)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from ..errors import UserError
from . import load, main, run_command


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _found(sysfs: str, probe: bool, timeout: float):
    import asyncio

    from ..modems.discovery import discover, probe_all

    found = discover(sysfs)
    if probe:
        known = [m for m in found if m.known]
        probed = iter(asyncio.run(probe_all(known, timeout)))
        found = [next(probed) if m.known else m for m in found]
    return found


def replace_modems_section(text: str, section: str) -> str:
    """``text`` (a config file) with its top-level ``modems:`` block replaced by ``section``.

    Works on the text, not through a YAML round trip, so the user's comments and layout
    elsewhere survive. The block runs from ``modems:`` at column 0 to the next line at
    column 0 that is not a comment, a blank or a list item.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"modems\s*:", line)), None)
    if start is None:
        return text + ("" if not text or text.endswith("\n") else "\n") + "\n" + section
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#-"):
        end += 1
    return "".join(lines[:start]) + section + "".join(lines[end:])


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option("--write-config", type=click.Path(dir_okay=False), metavar="FILE",
              help="write the modems: section into FILE (other sections are kept; FILE.bak keeps the old one)")
@click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT", help="sysfs root (tests use fake trees)")
@click.option("--current-names", is_flag=True,
              help="write today's /dev/ttyUSBn and card ids instead of the stable udev names")
@click.option("--no-probe", is_flag=True, help="do not ask the AT ports for IMEI and ICCID")
@click.option("--timeout", type=click.FloatRange(0, 120, min_open=True), default=5.0, show_default=True,
              help="seconds per modem for the AT probe")
@run_command
def discover(as_json: bool, write_config: str | None, sysfs: str, current_names: bool, no_probe: bool,
             timeout: float) -> None:
    """Find the USB modems: ports, sound card, USB path, IMEI/ICCID.

    Exit 0 when at least one known modem is found, 1 otherwise.
    """
    from ..modems.discovery import config_section, render_table, to_json

    found = _found(sysfs, not no_probe, timeout)
    known = [m for m in found if m.known]
    if as_json:
        click.echo(json.dumps(to_json(found), indent=2))
    elif found:
        _console().print(render_table(found))
    if not known:
        storage = sum(m.storage_mode for m in found)
        others = len(found) - storage
        listed = [f"{others} unknown USB serial device(s)"] if others else []
        if storage:
            listed.append(f"{storage} modem{'s' if storage > 1 else ''} in mass-storage mode (switch it first: "
                          "see the notes)")
        where = " listed above" if not as_json else ""
        unknown = f" ({'; '.join(listed)}{where})" if listed else ""
        click.echo(f"modem-dialer: no known modems found under {sysfs}/bus/usb/devices{unknown}", err=True)
        sys.exit(1)
    if write_config:
        section = config_section(found, stable=not current_names)
        path = Path(write_config)
        if path.exists():
            old = path.read_text()
            path.with_name(path.name + ".bak").write_text(old)
            path.write_text(replace_modems_section(old, section))
        else:
            path.write_text(section)
        click.echo(f"modems section ({len(known)} modem(s)) written to {path}", err=as_json)
        if not current_names:
            click.echo("the stable /dev/gsm/... names need the rules of `modem-dialer udev` (docs/box.md)",
                       err=as_json)


@main.command()
@click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT", help="sysfs root (tests use fake trees)")
@click.option("--output", type=click.Path(dir_okay=False), metavar="FILE", help="write the rules here (default stdout)")
@click.option("--group", default="dialer", show_default=True, help="group that may open the ports and cards")
@run_command
def udev(sysfs: str, output: str | None, group: str) -> None:
    """Print (or write) udev rules giving each modem found stable names by USB port."""
    from ..modems.discovery import discover
    from ..modems.udev import check_rules, generate_rules

    found = discover(sysfs)
    if not any(m.known for m in found):
        raise UserError(f"no known modems found under {sysfs}/bus/usb/devices (the generic "
                        "udev/90-modem-dialer.rules works without discovery)")
    text = generate_rules(found, group=group)
    problems = check_rules(text)
    if problems:      # a generator bug must never reach /etc/udev
        raise UserError("generated rules fail the syntax check: " + "; ".join(problems))
    if output:
        Path(output).write_text(text)
        click.echo(f"{sum(m.known for m in found)} modem(s): rules written to {output}; install with "
                   f"sudo cp {output} /etc/udev/rules.d/ && sudo udevadm control --reload && sudo udevadm trigger",
                   err=True)
    else:
        click.echo(text, nl=False)


def _show_plan(plan) -> None:
    click.echo(f"{plan.name} ({plan.port}, {plan.family}):")
    if not plan.settings:
        click.echo(f"  nothing to set up for family {plan.family}")
    for s in plan.settings:
        now = s.current if s.current is not None else "unknown"
        if s.change:
            click.echo(f"  change {s.label}: {now} -> {s.wanted}   ({s.command})")
            click.echo(f"         why: {s.why}")
        else:
            click.echo(f"  keep   {s.label}: {now}" + (f"   ({s.note})" if s.note else ""))
    if plan.needs_reboot:
        click.echo("  then   reboot the modem (AT+CFUN=1,1): the new settings take effect only after it")
    for p in plan.problems:
        click.echo(f"  problem: {p}")


@main.command(name="setup-modem")
@click.argument("name")
@click.option("--yes", is_flag=True, help="apply without asking")
@click.option("--volte", is_flag=True, help="Quectel: enable VoLTE (needed on 4G-only networks)")
@click.option("--uac", is_flag=True, help="Quectel: enable the USB sound card (UAC)")
@click.option("--no-reboot", is_flag=True, help="do not send AT+CFUN=1,1 (reboot later yourself)")
@click.pass_context
@run_command
def setup_modem(ctx: click.Context, name: str, yes: bool, volte: bool, uac: bool, no_reboot: bool) -> None:
    """Read NAME's stored settings, show what its family needs changed and why, apply on confirmation.

    Exit 0 when the modem is set up (or nothing needed changing), 1 when declined or on a problem.
    """
    from ..modems.setup import apply_plan, open_for_setup, read_plan

    cfg = load(ctx).config.modem(name)

    async def plan_it():
        ch, family = await open_for_setup(cfg)
        try:
            return await read_plan(ch, cfg, family, volte=volte, uac=uac)
        finally:
            await ch.close()

    async def apply_it(plan):
        ch, _ = await open_for_setup(cfg)
        try:
            return await apply_plan(ch, cfg, plan, reboot=not no_reboot)
        finally:
            await ch.close()

    plan = _at(plan_it())
    _show_plan(plan)
    if not plan.changes:
        click.echo(f"{name}: nothing to change")
        sys.exit(1 if plan.problems else 0)
    if not yes and not click.confirm(f"Apply these {len(plan.changes)} change(s) to {name}?", default=False):
        click.echo(f"{name}: nothing changed")
        sys.exit(1)
    done = _at(apply_it(plan))
    for s in done.changes:
        click.echo(f"{name}: {s.label}: {s.current} -> {s.after} (read back)")
    if done.rebooted:
        click.echo(f"{name}: rebooting (AT+CFUN=1,1); it comes back in about 15 s, possibly on new ports: "
                   "run `modem-dialer discover` then")
    elif done.needs_reboot:
        click.echo(f"{name}: reboot the modem for the changes to take effect")
    if any(s.key == "uac" for s in done.changes):
        # the new sound card needs both: its place in the config, and the udev rule that
        # renames it to its stable gsm_<usb path> id (without it the config's card id is wrong)
        click.echo(f"{name}: once it is back with its sound card:\n"
                   "  1. modem-dialer discover --write-config config.yaml   (the card goes into the config)\n"
                   "  2. modem-dialer udev --output 90-modem-dialer.rules && sudo cp 90-modem-dialer.rules "
                   "/etc/udev/rules.d/ && sudo udevadm control --reload && sudo udevadm trigger\n"
                   "  3. replug the modem (or reboot) so the card gets its stable id (cat /proc/asound/cards)")
    sys.exit(1 if done.problems else 0)


def _at(coro):
    """Run ``coro``; an AT-level failure (port missing, busy, silent) becomes one line."""
    import asyncio

    from ..at.errors import ATError

    try:
        return asyncio.run(coro)
    except ATError as exc:
        raise UserError(str(exc)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON")
@click.option("--min-signal", type=click.IntRange(-113, -51), default=-105, show_default=True, metavar="DBM",
              help="warn below this signal strength")
@click.option("--lte-only", is_flag=True, help="the network has no 2G/3G voice: 2G/3G-only modems and 4G without "
              "VoLTE fail")
@click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT", help="sysfs root (sound cards)")
@click.pass_context
@run_command
def doctor(ctx: click.Context, as_json: bool, min_signal: int, lte_only: bool, sysfs: str) -> None:
    """Check the whole box and explain each problem with its fix.

    Exit 0 when everything needed for calls is fine (warnings allowed), 1 otherwise.
    """
    import asyncio

    from ..modems.doctor import Check, DoctorEnv, exit_code, run_doctor

    config, database, first = None, None, []
    try:
        loaded = load(ctx)
        config, database = loaded.config, loaded.database_path
    except UserError as exc:   # still check the rest of the box
        first.append(Check("config", "fail", str(exc), "fix the config file named above, or pass --config PATH"))
    env = DoctorEnv(sysfs_root=sysfs, min_signal_dbm=min_signal, lte_only=lte_only)
    checks = first + asyncio.run(run_doctor(config.modems if config else None, database, env))
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        from rich.markup import escape

        marks = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        con = _console()
        for c in checks:
            con.print(f"{marks[c.status]} {escape(c.name)}: {escape(c.message)}", highlight=False)
            if c.fix and c.status != "ok":
                con.print(f"       fix: {c.fix}", markup=False, highlight=False)
        fails = sum(c.status == "fail" for c in checks)
        warns = sum(c.status == "warn" for c in checks)
        con.print(f"{fails} problem(s), {warns} warning(s)" + ("" if fails else ": ready for calls"),
                  markup=False, highlight=False)
    sys.exit(exit_code(checks))
