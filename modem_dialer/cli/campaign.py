"""Commands of the campaign area: ``campaign run|import|status|pause|resume|list`` and ``report``
(the suppression list and consent records: cli/compliance.py)."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable
from typing import TextIO

import click

from ..errors import UserError
from . import load, main, open_database, run_command, writing

EXIT_DONE, EXIT_ERROR, EXIT_STOPPED = 0, 1, 2


def _campaign(conn, name: str) -> dict:
    from ..store import Campaigns

    c = Campaigns(conn).get_campaign(name)
    if c is None:
        names = [x["name"] for x in Campaigns(conn).list_campaigns()]
        raise UserError(f"no campaign named {name!r} (have: {', '.join(names) or 'none'})")
    return c


@main.group()
def campaign() -> None:
    """Run a campaign file over the modem bank, and watch or steer it."""


@campaign.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--detach", is_flag=True, help="with a running service: submit and return at once")
@click.pass_context
@run_command
def campaign_run(ctx: click.Context, file: str, detach: bool) -> None:
    """Dial every contact of FILE until each has a final status.

    Re-running the same file continues the same campaign (contacts are merged). When the
    service (`modem-dialer serve`) runs on this database, the campaign is handed to it
    (alerts keep priority on the modems) and followed here until done; Ctrl-C then only
    stops following. Otherwise it dials itself: Ctrl-C or SIGTERM: no new calls, calls in
    progress finish; a second one hangs up. Exit 0 when done, 2 when stopped before the
    end, 1 on a configuration error or no modem ready.
    """
    from ..campaign.launcher import run_campaign
    from ..campaign.spec import load_campaign

    loaded = load(ctx)
    cf = load_campaign(file)
    client = _service_for(loaded)
    if client is not None:
        sys.exit(_run_in_service(loaded, cf, client, detach))
    if detach:
        raise UserError("--detach: no service runs on this database (start `modem-dialer serve` first)")
    result = run_campaign(loaded, cf, echo=click.echo)
    sys.exit(EXIT_DONE if result == "done" else EXIT_STOPPED)


def _service_for(loaded):
    """The service's API client when a service dials on this database, else None.

    The service holds the dialer lock; a held lock with no API answering is another
    ``campaign run``: the lock's own error says so."""
    from ..service.client import Client
    from ..store.lock import DialerLock

    lock = DialerLock(loaded.database_path)
    try:
        lock.acquire()
    except UserError as busy:
        client = Client.from_config(loaded.config)
        if client.running():
            return client
        raise busy from None
    lock.release()
    return None


def _run_in_service(loaded, cf, client, detach: bool) -> int:
    from ..campaign.follow import Follower, follow
    from ..campaign.launcher import check_campaign, prepare
    from ..campaign.view import make_view
    from ..service.client import ServiceError
    from ..store import open_db

    check_campaign(loaded, cf)          # same checks as a standalone run, before anything is sent
    conn = open_db(loaded.database_path)
    try:
        cid, _ = prepare(loaded, cf, conn, echo=click.echo, echo_err=lambda t: click.echo(t, err=True))
        # where the journal stands before the hand-over: a short campaign may be over before
        # following starts, and its calls must still be shown
        since = Follower(conn, cid)
        try:
            r = client.request("POST", "/v1/campaigns", {"file": str(cf.path)})
        except ServiceError as exc:
            raise UserError(f"{client.base}: {exc}") from None
        except OSError as exc:
            raise UserError(f"{client.base}: the service did not answer: {exc}") from None
        name = cf.spec.name
        click.echo(f"campaign {name}: {'submitted to' if r.get('started') else 'already running in'} "
                   f"the service at {client.base}")
        if detach:
            click.echo(f"follow it with: modem-dialer campaign status {name}")
            return EXIT_DONE
        try:
            f = follow(conn, cid, make_view(name, None), since=since)
        except KeyboardInterrupt:
            click.echo(f"stopped following; campaign {name} goes on in the service "
                       f"(modem-dialer campaign pause {name} to pause it)")
            return EXIT_STOPPED
        click.echo(f"campaign {name}: done; contacts "
                   + ", ".join(f"{k} {v}" for k, v in sorted(f.statuses.items()) if v > 0))
        return EXIT_DONE
    finally:
        conn.close()


@campaign.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@run_command
def campaign_import(ctx: click.Context, file: str) -> None:
    """Check FILE as `campaign run` does and import (merge) its contacts without dialing."""
    from ..campaign.launcher import check_campaign, prepare
    from ..campaign.spec import load_campaign
    from ..store import open_db

    loaded = load(ctx)
    cf = load_campaign(file)
    check_campaign(loaded, cf)
    conn = open_db(loaded.database_path)
    try:
        prepare(loaded, cf, conn, echo=click.echo, echo_err=lambda t: click.echo(t, err=True))
    finally:
        conn.close()


def _status(conn, c: dict) -> dict:
    from ..campaign.report import summary
    from ..store import Campaigns, to_ts

    s = summary(conn, c["id"])
    due = Campaigns(conn).next_pending_at(c["id"])
    nxt = None if due is None else to_ts(due)
    return {"name": c["name"], "status": c["status"], "file": c["file"], "contacts": s["contacts"],
            "statuses": s["statuses"], "calls": s["calls"], "outcomes": s["outcomes"],
            "answer_rate": s["answer_rate"], "next_attempt_at": nxt}


@campaign.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@run_command
def campaign_status(ctx: click.Context, name: str, as_json: bool) -> None:
    """Progress of campaign NAME (reads the database only)."""
    conn = open_database(ctx)
    st = _status(conn, _campaign(conn, name))
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"{st['name']}: {st['status']}  ({st['file']})")
    click.echo("contacts: " + ", ".join(f"{k} {v}" for k, v in sorted(st["statuses"].items())) + f"  (total {st['contacts']})")
    click.echo(f"calls: {st['calls']}  " + ", ".join(f"{k} {v}" for k, v in sorted(st["outcomes"].items())))
    if st["answer_rate"] is not None:
        click.echo(f"answer rate: {st['answer_rate']:.1%}")
    if st["next_attempt_at"]:
        click.echo(f"next attempt due: {st['next_attempt_at']}")


def _set_status(ctx: click.Context, name: str, status: str, allowed_from: tuple[str, ...]) -> None:
    from ..store import Campaigns
    from ..store.campaign_log import CampaignLog

    conn = open_database(ctx)
    c = _campaign(conn, name)
    if c["status"] not in allowed_from:
        raise UserError(f"campaign {name!r} is {c['status']}; cannot {'pause' if status == 'paused' else 'resume'} it")
    Campaigns(conn).update_campaign(c["id"], status=status)
    CampaignLog(conn, c["id"]).write("control", verdict=f"{status} by operator")
    click.echo(f"{name}: {status}")


@campaign.command("pause")
@click.argument("name")
@click.pass_context
@run_command
def campaign_pause(ctx: click.Context, name: str) -> None:
    """Pause NAME: the runner finishes the calls in progress and dials no more until resumed."""
    _set_status(ctx, name, "paused", ("created", "running", "stopped"))


@campaign.command("resume")
@click.argument("name")
@click.pass_context
@run_command
def campaign_resume(ctx: click.Context, name: str) -> None:
    """Resume a paused campaign NAME."""
    _set_status(ctx, name, "running", ("paused",))


@campaign.command("list")
@click.pass_context
@run_command
def campaign_list(ctx: click.Context) -> None:
    """Every campaign in the database with its status."""
    from ..store import Campaigns

    conn = open_database(ctx)
    store = Campaigns(conn)
    for c in store.list_campaigns():
        counts = store.counts(c["id"])
        click.echo(f"{c['name']:24} {c['status']:9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


# ---- report -------------------------------------------------------------------------------

@main.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="write here instead of stdout (created 0600)")
@click.option("--answers", "answers_only", is_flag=True,
              help="only the survey: each question's count per answer (csv: question,answer,count)")
@click.pass_context
@run_command
def report(ctx: click.Context, name: str, fmt: str, output: str | None, answers_only: bool) -> None:
    """Per-contact results of campaign NAME and a summary, with each survey question's
    count per answer (table and json always; csv with --answers)."""
    from ..campaign.report import contact_rows, summary, write_csv

    conn = open_database(ctx)
    c = _campaign(conn, name)
    with writing(output) as out:
        if answers_only:
            _report_answers(out, fmt, name, summary(conn, c["id"])["answers"])
        elif fmt == "json":
            out.write('{"campaign": ' + json.dumps(name) + ', "summary": ' + json.dumps(summary(conn, c["id"]))
                      + ', "contacts": [\n')
            for i, row in enumerate(contact_rows(conn, c["id"])):
                out.write(("," if i else "") + json.dumps(row, ensure_ascii=False) + "\n")
            out.write("]}\n")
        elif fmt == "csv":
            write_csv(out, contact_rows(conn, c["id"]))
        else:
            _report_table(out, name, summary(conn, c["id"]), contact_rows(conn, c["id"]))


def _report_answers(out, fmt: str, name: str, answers: dict[str, dict[str, int]]) -> None:
    if fmt == "json":
        out.write(json.dumps({"campaign": name, "answers": answers}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(["question", "answer", "count"])
        for question, counts in answers.items():
            for answer, n in counts.items():
                w.writerow([question, answer, n])
    else:
        from rich.console import Console

        Console(file=out, width=None if out.isatty() else 160).print(_answers_table(name, answers))


def _answers_table(name: str, answers: dict[str, dict[str, int]]):
    from rich.table import Table

    t = Table("question", "answers (count)", "total", title=f"campaign {name}: survey answers")
    for question, counts in answers.items():
        t.add_row(question, ", ".join(f"{a or '(empty)'}: {n}" for a, n in counts.items()), str(sum(counts.values())))
    if not answers:
        t.add_row("-", "no answers recorded", "0")
    return t


def _report_table(out, name: str, s: dict, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=None if out.isatty() else 160)
    t = Table(title=f"campaign {name}: summary", show_header=False)
    t.add_row("contacts", f"{s['contacts']} (" + ", ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items())) + ")")
    t.add_row("calls", f"{s['calls']} (" + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())) + ")")
    t.add_row("answer rate", "-" if s["answer_rate"] is None else f"{s['answer_rate']:.1%}")
    t.add_row("average answered duration", "-" if s["avg_answered_duration_s"] is None else f"{s['avg_answered_duration_s']:.1f} s")
    for modem, m in s["by_modem"].items():
        t.add_row(f"modem {modem} (SIM {m['iccid'] or '?'})",
                  f"{m['calls']} calls: " + ", ".join(f"{k} {v}" for k, v in sorted(m["outcomes"].items())))
    for hour, n in s["attempts_per_hour"].items():
        t.add_row(f"attempts {hour}", str(n))
    if s.get("called_back"):
        t.add_row("called back", f"{len(s['called_back'])} contact(s): " + ", ".join(s["called_back"]))
    console.print(t)
    if s["answers"]:
        console.print(_answers_table(name, s["answers"]))
    _contact_table(out, rows)


CONTACT_COLUMNS = ("number", "fields", "status", "attempts", "last outcome", "keys", "answers")
TABLE_CHUNK = 1000


def _contact_table(out: TextIO, rows: Iterable[dict]) -> None:
    """The per-contact table as plain aligned columns, written a chunk of rows at a time.

    Not a rich Table: it holds every row until it is printed and measures every cell (10M
    contacts would not fit in memory, and took ~7 ms a row). The widths come from the first
    chunk and only grow, so a later longer cell widens the columns from there on. A chunk's
    widths are taken column by column and its lines written with one format string (a
    ``ljust`` per cell and a ``max`` per cell and row were ~4 µs of a contact's ~11)."""
    widths = [len(h) for h in CONTACT_COLUMNS]
    first = True
    it = iter(rows)
    while chunk := [[r["number"], ", ".join(f"{k}={v}" for k, v in r["fields"].items()), r["status"],
                     str(r["attempts"]), r["last_outcome"] or "-", r["keys"] or "-",
                     ", ".join(f"{k}={v}" for k, v in r["answers"].items()) or "-"]
                    for r in itertools.islice(it, TABLE_CHUNK)]:
        widths = [max(w, *map(len, column)) for w, column in zip(widths, zip(*chunk, strict=True), strict=True)]
        line = _line_format(widths)
        lines = [line.format(*cells).rstrip() for cells in chunk]
        if first:
            lines[:0] = [_aligned(list(CONTACT_COLUMNS), widths), _aligned(["-" * w for w in widths], widths)]
            first = False
        out.write("\n".join(lines) + "\n")
    if first:
        out.write(_aligned(list(CONTACT_COLUMNS), widths) + "\n(no contacts)\n")


def _line_format(widths: list[int]) -> str:
    """A format string that left-aligns each cell to its width, two spaces apart (a cell
    longer than its width is written whole, as ``str.ljust`` does)."""
    return "  ".join(f"{{:<{w}}}" for w in widths)


def _aligned(cells: list[str], widths: list[int]) -> str:
    return _line_format(widths).format(*cells).rstrip()
