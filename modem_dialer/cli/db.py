"""``modem-dialer db migrate``, ``db copy`` and ``db purge``: the journal's schema, moving a
SQLite journal to PostgreSQL (docs/schema.md, "PostgreSQL"), and retention."""

from __future__ import annotations

import click

from ..errors import UserError
from . import load, main, run_command


@main.group("db")
def db() -> None:
    """The journal database: schema version, move to PostgreSQL, retention."""


@db.command("migrate")
@click.pass_context
@run_command
def db_migrate(ctx: click.Context) -> None:
    """Bring the configured database's schema up to date and print its version.

    Every command does this when it opens the database; run it on its own to upgrade a
    shared PostgreSQL database once, before starting the boxes with a new version.
    """
    from ..store import open_db
    from ..store.migrations import LATEST, db_name, migrate, user_version

    target = load(ctx).database_path
    conn = open_db(target, migrate=False)
    try:
        before = user_version(conn)
        after = migrate(conn)
        name = db_name(conn)
    finally:
        conn.close()
    if before == after:
        click.echo(f"database {name}: schema version {after} (up to date)")
    else:
        click.echo(f"database {name}: schema version {after} (migrated from {before}; latest {LATEST})")


@db.command("copy")
@click.option("--to", "to", required=True, metavar="URL",
              help="the PostgreSQL database to fill: postgresql://user@host/dbname (must be empty)")
@click.option("--from", "source", metavar="PATH", type=click.Path(dir_okay=False),
              help="the SQLite file to copy (default: the config's database)")
@click.option("--batch", type=click.IntRange(100, 1_000_000), default=5000, show_default=True,
              help="rows read from SQLite at a time")
@click.pass_context
@run_command
def db_copy(ctx: click.Context, to: str, source: str | None, batch: int) -> None:
    """Copy a SQLite journal (every table, ids kept) into an empty PostgreSQL database.

    Stop the service first: rows written during the copy would not be copied. Then set
    ``database:`` in the config to the URL.
    """
    from pathlib import Path

    from ..store.copy import copy_sqlite_to_pg
    from ..store.db import open_pg, open_sqlite
    from ..store.pg import is_postgres

    if not is_postgres(to):
        raise UserError(f"--to {to!r}: not a PostgreSQL URL (postgresql://user@host/dbname)")
    if source is None:
        configured = load(ctx).database_path
        if is_postgres(configured):
            raise UserError("the config's database is already PostgreSQL: pass --from PATH (a SQLite file)")
        src_path = Path(configured)
    else:
        src_path = Path(source)
    if not src_path.is_file():
        raise UserError(f"{src_path}: no such SQLite file")
    src = open_sqlite(src_path)
    try:
        dst = open_pg(to)
        try:
            result = copy_sqlite_to_pg(src, dst, batch=batch,
                                       progress=lambda t, n: click.echo(f"  {t}: {n} row(s)"))
            name = dst.name
        finally:
            dst.close()
    finally:
        src.close()
    click.echo(f"copied {result.rows} row(s) from {src_path} to {name} (schema version {result.version}); "
               "set 'database:' in the config to that URL to use it")


@db.command("purge")
@click.option("--older-than", "days", type=click.IntRange(1, 36_500), required=True, metavar="DAYS",
              help="delete the records made more than DAYS days ago")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@run_command
def db_purge(ctx: click.Context, days: int, yes: bool) -> None:
    """Retention: delete the finished calls (with their keys, answers and voice recordings),
    SMS, refusals and rule decisions older than DAYS days.

    Suppression and consent records are kept: they are the proof that an objection is
    honoured and that past calls were allowed. Run it daily (cron, a systemd timer) with
    the retention period of the place you call.
    """
    from datetime import timedelta

    from ..files import remove_recordings
    from ..store import open_db, utc_now
    from ..store.retention import purge_before, recordings_before

    conn = open_db(load(ctx).database_path)
    cutoff = utc_now() - timedelta(days=days)
    if not yes:
        click.confirm(f"Delete the records made before {cutoff:%Y-%m-%d %H:%M} UTC?", abort=True, err=True)
    # the files first: one that cannot be removed stays named by its call for the next purge
    removal = remove_recordings(recordings_before(conn, cutoff))
    for p in removal.problems:
        click.echo(f"db purge: {p}", err=True)
    if removal.stuck:
        raise UserError("nothing purged: a recording could not be removed (above); run again once fixed")
    counts = purge_before(conn, cutoff)
    click.echo(f"purged the records made before {cutoff:%Y-%m-%d %H:%M} UTC: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()) + f", recordings {removal.removed}"
               + "; suppression and consent records kept")
