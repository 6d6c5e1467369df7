"""``modem-dialer demo``: the whole path on a simulated bank, no hardware needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import main, run_command

# Who answers what in the demo: one number per behaviour.
DEMO_CALLEES: dict[str, tuple[str, dict[str, Any]]] = {   # number: (what it does, Callee settings)
    "+33612345601": ("answers and presses 1", dict(answer_after=1.0, keys=[(1.5, "1")])),
    "+33612345602": ("busy", dict(outcome="busy", end_after=1.0)),
    "+33612345603": ("lets it ring, network gives up", dict(outcome="no_answer", end_after=3.0)),
    "+33612345604": ("answers, hangs up after 2 s", dict(answer_after=0.8, hangup_after=2.0)),
    "+33612345605": ("rejects the call", dict(outcome="rejected", end_after=1.5)),
    "+33612345606": ("answers and presses 9 (in-band tone)", dict(answer_after=0.6, keys=[(1.0, "9")], inband=True)),
}
# What the demo says to those who answer (spoken by espeak-ng; a test may shorten it).
DEMO_MESSAGE = "Hello, this is modem dialer. Press 1 to confirm, or 9 to stop receiving calls."


@main.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), help="where to keep config and journal")
@run_command
def demo(workdir: str | None) -> None:
    """Call six simulated people on a bank of four simulated modems and show the journal."""
    import asyncio
    import tempfile

    asyncio.run(_demo(Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="modem-dialer-demo-"))))


async def _demo(work: Path) -> None:
    import asyncio
    import sys

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from ..audio.source import message_samples
    from ..call.line import open_lines
    from ..call.message import message_script
    from ..call.session import place_call
    from ..errors import UserError
    from ..modems.options import ModemConfig
    from ..sim.callee import Callee, Scenario
    from ..sim.sim_bank import SimBank, SimSpec
    from ..store import open_db
    from ..store.call_journal import CallJournal

    console = Console(width=None if sys.stdout.isatty() else 120)
    work.mkdir(parents=True, exist_ok=True)
    scenario = Scenario(Callee(), {n: Callee(**kw) for n, (_, kw) in DEMO_CALLEES.items()})
    bank = await SimBank([SimSpec("quectel"), SimSpec("simcom"), SimSpec("huawei"), SimSpec("quectel")],
                         scenario).start()
    (work / "config.yaml").write_text(bank.config_yaml(database="demo.db"))
    console.print(f"[bold]Simulated bank[/]: {', '.join(f'{m.name} ({m.dialect.family}) on {m.path}' for m in bank.modems)}")
    try:
        samples = message_samples(say=DEMO_MESSAGE, cache_dir=work / "cache")
    except UserError as exc:       # no espeak-ng: a tone stands in for the message
        console.print(f"[yellow]{exc}; playing a tone instead[/]")
        samples = (np.sin(np.arange(16000) / 8000 * 2 * np.pi * 440) * 4000).astype(np.int16)
    # keys by URC where the family reports them, and by the in-band detector everywhere
    lines, errors = await open_lines([ModemConfig(**c, dtmf="both") for c in bank.modems_config()])
    for name, err in errors.items():
        console.print(f"[red]{name}: {err}[/]")
    conn = open_db(work / "demo.db")
    journal = CallJournal(conn)
    queue = list(DEMO_CALLEES)
    results = []

    async def worker(line):
        while queue:
            number = queue.pop(0)
            console.print(f"{line.name}: calling {number} ({DEMO_CALLEES[number][0]})")
            r = await place_call(line, number, message_script(samples), journal)
            results.append(r)
            d = r.as_dict()
            console.print(f"{line.name}: {number} → [bold]{d['outcome']}[/] keys={''.join(k['key'] for k in d['keys']) or '-'}")

    await asyncio.gather(*(worker(line) for line in lines))
    table = Table("call", "number", "modem", "outcome", "keys", "duration", "hung up by", "cause", title="Journal")
    for r in sorted(results, key=lambda r: r.call_id):
        d = r.as_dict()
        table.add_row(str(d["call_id"]), d["number"], d["modem"], d["outcome"],
                      "".join(k["key"] for k in d["keys"]) or "-",
                      f"{d['duration_s']:.1f} s" if d["duration_s"] else "-", d["hangup_by"] or "-",
                      str(d["cause"]) if d["cause"] is not None else "-")
    console.print(table)
    console.print(f"Journal: {work / 'demo.db'}  (config: {work / 'config.yaml'})")
    for line in lines:
        await line.close()
    await bank.stop()
    await journal.aclose()
    conn.close()
