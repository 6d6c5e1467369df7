"""Commands of the compliance area: ``suppress add|remove|import|export`` (the suppression
list, checked before every attempt), ``consent import|export|revoke`` (consent records) and
``erase`` (an erasure request: everything about a number, which stays suppressed).

They read and write the journal database only; a running service sees the changes at its
next attempt.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator

import click

from ..campaign.terms import CONSENT_SCOPES
from ..errors import UserError
from . import load, main, open_database, run_command, writing

# ---- suppression list -----------------------------------------------------------------------

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
    comp = Compliance(open_database(ctx))
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
    comp = Compliance(open_database(ctx))
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
    comp = Compliance(open_database(ctx))
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

    comp = Compliance(open_database(ctx))
    with writing(output) as out:
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
    comp = Compliance(open_database(ctx))
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

    conn = open_database(ctx)
    with writing(output) as out:
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
    count = Compliance(open_database(ctx)).revoke_consent(n, via, scope)
    click.echo(f"{n}: {count} consent record(s) revoked")


# ---- erasure ------------------------------------------------------------------------------------

@main.command("erase")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@run_command
def erase(ctx: click.Context, numbers: tuple[str, ...], yes: bool) -> None:
    """An erasure request: delete everything about NUMBERS (calls with their keys, answers and
    voice recordings, contacts, consent records, refusals, SMS, rule decisions); each number
    stays on the suppression list, which is what keeps honouring the objection."""
    from ..files import remove_recordings
    from ..numbers import parse_number
    from ..store import Compliance
    from ..store.retention import erase_number, recordings_of_number

    loaded = load(ctx)
    parsed = [parse_number(n, loaded.config.default_region) for n in numbers]
    conn = open_database(ctx)
    # a call in progress would write its rows again after the erasure (and lose its own)
    busy = [n for n in parsed if Compliance(conn).dial_facts(n, since=None).open_call]
    if busy:
        raise UserError(f"{busy[0]}: a call to this number is in progress; erase it once the call has ended")
    if not yes:
        click.confirm(f"Erase everything about {', '.join(parsed)}?", abort=True, err=True)
    failed = False
    for n in parsed:
        # the files first: one that cannot be removed is still named by the journal for a rerun
        removal = remove_recordings(recordings_of_number(conn, n))
        for p in removal.problems:
            click.echo(f"erase: {p}", err=True)
        if removal.stuck:
            click.echo(f"{n}: not erased (a recording could not be removed); run again once fixed", err=True)
            failed = True
            continue
        counts = erase_number(conn, n, source="cli")
        gone = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        click.echo(f"{n}: erased ({gone or 'nothing was held'}; recordings {removal.removed}); "
                   "kept on the suppression list")
    if failed:
        ctx.exit(1)
