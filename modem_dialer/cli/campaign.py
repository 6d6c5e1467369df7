"""Commands of the campaign area: ``campaign run|import|status|pause|resume|list``, ``report``,
``suppress add|remove|import|export`` and ``consent import|export|revoke``."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from typing import TextIO

import click

from ..campaign.terms import CONSENT_SCOPES
from ..errors import UserError
from ..files import open_private
from . import load, main, run_command

EXIT_DONE, EXIT_ERROR, EXIT_STOPPED = 0, 1, 2


def _db(ctx: click.Context):
    from ..store import open_db

    return open_db(load(ctx).database_path)


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
    from ..campaign.follow import follow
    from ..campaign.launcher import check_campaign, prepare
    from ..campaign.view import make_view
    from ..service.client import ServiceError
    from ..store import open_db

    check_campaign(loaded, cf)          # same checks as a standalone run, before anything is sent
    conn = open_db(loaded.database_path)
    try:
        cid, _ = prepare(loaded, cf, conn, echo=click.echo, echo_err=lambda t: click.echo(t, err=True))
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
            f = follow(conn, cid, make_view(name, None))
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
    conn = _db(ctx)
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

    conn = _db(ctx)
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

    conn = _db(ctx)
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

    conn = _db(ctx)
    c = _campaign(conn, name)
    with _writing(output) as out:
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
    ct = Table("number", "fields", "status", "attempts", "last outcome", "keys", "answers")
    for r in rows:
        ct.add_row(r["number"], ", ".join(f"{k}={v}" for k, v in r["fields"].items()), r["status"], str(r["attempts"]),
                   r["last_outcome"] or "-", r["keys"] or "-",
                   ", ".join(f"{k}={v}" for k, v in r["answers"].items()) or "-")
    console.print(ct)


# ---- suppression list -----------------------------------------------------------------------

@contextlib.contextmanager
def _writing(output: str | None) -> Iterator[TextIO]:
    """stdout, or ``output`` created 0600; a failed write (disk full, EIO) names the file."""
    try:
        if output is None:
            yield sys.stdout
            return
        with open_private(output) as out:
            yield out
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise UserError(f"{output or 'stdout'}: cannot write: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _decoding(path: str, encoding: str) -> Iterator[None]:
    """A byte that is not ``encoding`` past the part the encoding was told from: one line."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not {encoding} text further down the file ({exc.reason}); "
                        "save it as UTF-8") from None


def _numbers_from(path: str, region: str, column: str = "number"):
    """Numbers from a CSV with a ``number`` column, or one number per line; bad lines to stderr."""
    from ..numbers import InvalidNumber, parse_number
    from ..textfile import open_text, sniff_dialect

    f, encoding = open_text(path, "number list")
    with f, _decoding(path, encoding):
        first = f.readline()
        f.seek(0)
        dialect = sniff_dialect(first)
        cols = [c.strip() for c in next(csv.reader([first], dialect), [])] if first else []
        reader = csv.DictReader(f, dialect=dialect) if column in cols else None
        if reader is not None:
            reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
            for row in reader:
                try:
                    yield parse_number(row.get(column) or "", region), row
                except InvalidNumber as exc:
                    click.echo(f"{path}:{reader.line_num}: {exc}", err=True)
        else:
            for i, line in enumerate(f, start=1):
                raw = line.strip()
                if not raw or raw.startswith("#"):
                    continue
                try:
                    yield parse_number(raw, region), {}
                except InvalidNumber as exc:
                    click.echo(f"{path}:{i}: {exc}", err=True)


@main.group()
def suppress() -> None:
    """The suppression list (opt-outs, do-not-call): checked before every attempt."""


@suppress.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", default="manual", show_default=True)
@click.pass_context
@run_command
def suppress_add(ctx: click.Context, numbers: tuple[str, ...], reason: str) -> None:
    """Add NUMBERS to the suppression list."""
    from ..numbers import parse_number
    from ..store import Compliance

    loaded = load(ctx)
    parsed = [parse_number(n, loaded.config.default_region) for n in numbers]
    comp = Compliance(_db(ctx))
    for n in parsed:
        click.echo(f"{n}: {'added' if comp.suppress(n, reason, 'cli') else 'already suppressed'}")


@suppress.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@click.pass_context
@run_command
def suppress_remove(ctx: click.Context, numbers: tuple[str, ...]) -> None:
    """Remove NUMBERS from the suppression list."""
    from ..numbers import parse_number
    from ..store import Compliance

    loaded = load(ctx)
    comp = Compliance(_db(ctx))
    for raw in numbers:
        n = parse_number(raw, loaded.config.default_region)
        click.echo(f"{n}: {'removed' if comp.unsuppress(n) else 'was not suppressed'}")


@suppress.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--reason", default="dnc", show_default=True, help="why these numbers are suppressed")
@click.option("--source", default=None, help="where the list comes from (default: the file name)")
@click.pass_context
@run_command
def suppress_import(ctx: click.Context, file: str, reason: str, source: str | None) -> None:
    """Add the numbers of FILE (a CSV with a 'number' column, or one number per line)."""
    from ..store import Compliance

    loaded = load(ctx)
    comp = Compliance(_db(ctx))
    seen = 0

    def numbers():
        nonlocal seen
        for n, _ in _numbers_from(file, loaded.config.default_region):
            seen += 1
            yield n
    added = comp.import_suppression(numbers(), reason=reason, source=source or file)
    click.echo(f"{file}: {seen} number(s), {added} new on the suppression list")


@suppress.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False))
@click.pass_context
@run_command
def suppress_export(ctx: click.Context, output: str | None) -> None:
    """Write the suppression list as CSV (number, reason, source, added_at)."""
    from ..store import Compliance

    comp = Compliance(_db(ctx))
    with _writing(output) as out:
        w = csv.writer(out)
        w.writerow(["number", "reason", "source", "added_at"])
        for e in comp.export_suppression():
            w.writerow([e["number"], e["reason"], e["source"], e["added_at"]])


# ---- consent records --------------------------------------------------------------------------

@main.group()
def consent() -> None:
    """Consent records (proof): import, export, revoke. Append-only."""


@consent.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@run_command
def consent_import(ctx: click.Context, file: str) -> None:
    """Import consent records from a CSV with columns number, scope, source, given_at
    (ISO 8601) and optionally proof_ref, name, text_shown, collector, time_slot, tz."""
    from ..campaign.consent_csv import read_consent
    from ..store import Compliance
    from ..textfile import open_text

    loaded = load(ctx)
    comp = Compliance(_db(ctx))
    f, encoding = open_text(file, "consent file")
    added = bad = 0

    def report(msg: str) -> None:
        nonlocal bad
        click.echo(msg, err=True)
        bad += 1
    with f, _decoding(file, encoding):
        for r in read_consent(f, file, loaded.config.default_region, report):
            comp.add_consent(r.number, r.scope, r.source, r.given_at, r.proof_ref, name=r.name,
                             text_shown=r.text_shown, collector=r.collector, time_slot=r.time_slot, tz=r.tz)
            added += 1
    click.echo(f"{file}: {added} consent record(s) added, {bad} bad row(s)")


@consent.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False))
@click.pass_context
@run_command
def consent_export(ctx: click.Context, output: str | None) -> None:
    """Write every consent record (with revocations) as CSV."""
    from ..campaign.consent_csv import CONSENT_COLUMNS
    from ..store import Compliance

    conn = _db(ctx)
    with _writing(output) as out:
        w = csv.writer(out)
        cols = [*CONSENT_COLUMNS, "recorded_at", "revoked_at", "revoked_via"]
        w.writerow(cols)
        for r in Compliance(conn).export_consent():
            w.writerow([r[c] if r[c] is not None else "" for c in cols])


@consent.command("revoke")
@click.argument("number")
@click.option("--scope", type=click.Choice(CONSENT_SCOPES), default=None, help="only this scope (default: all)")
@click.option("--via", default="cli", show_default=True, help="how the person revoked it")
@click.pass_context
@run_command
def consent_revoke(ctx: click.Context, number: str, scope: str | None, via: str) -> None:
    """Revoke the live consents of NUMBER."""
    from ..numbers import parse_number
    from ..store import Compliance

    loaded = load(ctx)
    n = parse_number(number, loaded.config.default_region)
    count = Compliance(_db(ctx)).revoke_consent(n, via, scope)
    click.echo(f"{n}: {count} consent record(s) revoked")
