"""``modem-dialer flow check FILE`` and ``flow try FILE --number N`` (simulated bank, in-process)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..campaign.terms import PRESETS
from ..errors import UserError
from ..modems.keys import DTMF_KEYS
from . import main, run_command

if TYPE_CHECKING:
    import asyncio

SIM_ADVISOR = "+33199000001"      # the advisor's number on the simulated bank
MAX_KEY_AT = 3600.0               # scripted times: within an hour of the answer


@main.group()
def flow() -> None:
    """IVR flows: check a flow file, try it on the simulated bank."""


def _fields(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise UserError(f"--field {p!r}: expected NAME=VALUE")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


@flow.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--fields", help="comma-separated contact fields the flow may use (checks placeholders)")
@click.option("--preset", type=click.Choice(PRESETS), help="jurisdiction preset whose warnings to show")
@run_command
def check(file: str, fields: str | None, preset: str | None) -> None:
    """Check FILE: syntax, nodes, exits, reachability, prompt files, placeholders."""
    from ..call.flow import flow_warnings, load_flow

    known = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    fl = load_flow(file, known)
    for w in flow_warnings(fl, preset=preset):
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{file}: ok ({len(fl.doc.nodes)} nodes, start {fl.doc.start})")


def _parse_keys(ctx: click.Context | None, param: click.Parameter | None,
                spec: str | None) -> list[tuple[float, str]]:
    """``"1.5:1,3:1234#"`` -> keys at 1.5 s, then 1 2 3 4 # from 3 s, 0.3 s apart."""
    out: list[tuple[float, str]] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        at, _, keys = part.partition(":")
        try:
            t = float(at)
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected SECONDS:KEYS, e.g. 2.5:1") from None
        if not 0 <= t <= MAX_KEY_AT or not keys:
            raise click.BadParameter(f"{part!r}: SECONDS after the answer, 0 to {MAX_KEY_AT:g}, then keys")
        for i, k in enumerate(keys):
            if k not in DTMF_KEYS:
                raise click.BadParameter(f"{part!r}: {k!r} is not a phone key")
            out.append((t + 0.3 * i, k))
    return out


@flow.command("try")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--number", required=True, help="the callee's number (simulated)")
@click.option("--keys", "keys", callback=_parse_keys,
              help="scripted keys: SECONDS:KEYS[,…] after answer, e.g. 1.5:1,3:1234#")
@click.option("--field", "field_pairs", multiple=True, help="contact field NAME=VALUE (repeatable)")
@click.option("--interactive", "-i", is_flag=True, help="you are the callee: type keys, q to hang up")
@click.option("--greeting", type=click.Choice(["human", "machine"]), help="what the callee says on answer")
@click.option("--advisor", type=click.Choice(["answers", "no-answer", "busy"]), default="answers",
              show_default=True, help="how the simulated advisor behaves on a transfer")
@click.option("--hangup-after", type=click.FloatRange(0, MAX_KEY_AT), help="the callee hangs up after this many seconds")
@click.option("--opt-out-key", type=click.Choice(sorted(DTMF_KEYS)), help="opt-out key (else the flow's)")
@click.option("--json", "as_json", is_flag=True, help="print the journal of the call as JSON")
@click.pass_context
@run_command
def try_(ctx: click.Context, file: str, number: str, keys: list[tuple[float, str]], field_pairs: tuple[str, ...],
         interactive: bool, greeting: str | None, advisor: str, hangup_after: float | None,
         opt_out_key: str | None, as_json: bool) -> None:
    """Run FILE on a simulated two-modem bank, this process playing the callee."""
    import asyncio

    from ..call.flow import load_flow
    from ..numbers import parse_number

    fields = _fields(field_pairs)
    fl = load_flow(file, list(fields) if fields else None)
    e164 = parse_number(number, "FR")
    result = asyncio.run(_try(fl, e164, fields, keys, interactive, greeting, advisor, hangup_after, opt_out_key))
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        for ev in result["events"]:
            data = " ".join(f"{k}={v}" for k, v in ev["data"].items())
            click.echo(f"{ev['at'][11:23]} {ev['kind']:<8} {data}")
        answers = ", ".join(f"{a['name']}={a['value']}" for a in result["answers"]) or "-"
        click.echo(f"outcome {result['call']['outcome']}, answers: {answers}")


async def _try(fl, number, fields, keys, interactive, greeting, advisor, hangup_after, opt_out_key) -> dict:
    import asyncio
    import tempfile

    from ..call.advisors import Advisor, AdvisorsConfig
    from ..call.flow import StaticLineProvider, flow_script
    from ..call.line import open_line
    from ..call.session import place_call
    from ..modems.options import ModemConfig
    from ..sim.callee import Callee, Scenario
    from ..sim.sim_bank import SimBank
    from ..store import open_db
    from ..store.call_journal import CallJournal

    callee = Callee(answer_after=0.5, keys=keys, greeting=greeting, hangup_after=hangup_after)
    adv = {"answers": Callee(answer_after=1.0, keys=[(0.3, "1")]),
           "no-answer": Callee(outcome="no_answer", end_after=60),
           "busy": Callee(outcome="busy", end_after=1.0)}[advisor]
    bank = SimBank.of(2, "quectel", Scenario(callee, {SIM_ADVISOR: adv}))
    await bank.start()
    tmp = tempfile.TemporaryDirectory(prefix="modem-dialer-try-")
    lines = []
    try:
        lines = [await open_line(ModemConfig(**m)) for m in bank.modems_config()]
        conn = open_db(Path(tmp.name) / "try.db")
        journal = CallJournal(conn)
        groups = sorted({g for n in fl.doc.nodes.values() if (g := getattr(n, "group", None))})
        advisors = AdvisorsConfig(people=[Advisor(name="sim-advisor", number=SIM_ADVISOR, groups=groups)])
        script = flow_script(fl, fields, opt_out_key=opt_out_key, advisors=advisors,
                             lines=StaticLineProvider(lines), recordings_dir=Path(tmp.name) / "recordings")
        task = asyncio.ensure_future(place_call(lines[0], number, script, journal))
        if interactive:
            await _interactive(bank.modems[0], task, journal)
        r = await task
        await journal.aclose()
        return {"call": r.as_dict(), "events": journal.events_of(r.call_id), "answers": journal.answers_of(r.call_id)}
    finally:
        for line in lines:
            await line.close()
        await bank.stop()
        tmp.cleanup()


async def _interactive(sim, task: asyncio.Future, journal) -> None:
    """Keys typed on the keyboard are pressed by the simulated callee; q hangs up."""
    import asyncio
    import termios
    import tty

    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)
    chars: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(fd, lambda: chars.put_nowait(os.read(fd, 64).decode(errors="ignore")))
    click.echo("you are the callee: type 0-9 * # to press keys, q to hang up", err=True)
    shown = 0
    try:
        while not task.done():
            with contextlib.suppress(asyncio.TimeoutError):
                for ch in await asyncio.wait_for(chars.get(), 0.2):
                    if ch == "q" and sim.call is not None:
                        sim.end_call(sim.call, 16, "callee")
                    elif ch.upper() in DTMF_KEYS:
                        sim.press(ch.upper())
            calls = journal.calls(limit=1)
            if calls:
                events = [e for e in journal.events_of(calls[0]["id"]) if e["kind"] in ("node", "prompt", "answer",
                                                                                         "menu", "input", "transfer")]
                for ev in events[shown:]:
                    click.echo(f"  {ev['kind']}: {ev['data']}", err=True)
                shown = len(events)
    finally:
        loop.remove_reader(fd)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
