"""``modem-dialer db copy``: move a SQLite journal into an empty PostgreSQL database.

Every table is copied with its ids (so calls, contacts and their events still point at each
other), in one PostgreSQL transaction: a copy that fails half-way leaves the target as empty
as it was. Rows are read from SQLite in pages of ``batch`` and streamed with COPY, so a
journal of millions of rows is moved in bounded memory. Foreign keys are dropped for the copy
(``contacts.last_call_id`` and ``calls.contact_id`` point at each other, so no table order
works) and added back at the end, which checks every row at once. Identity sequences are then
set past the highest id, so new rows do not collide with copied ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UserError
from .migrations import user_version
from .pg import PgConnection

COPY_BATCH = 5_000


@dataclass(frozen=True)
class CopyResult:
    tables: dict[str, int]      # rows copied per table, in copy order
    version: int

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _tables(src: sqlite3.Connection) -> list[str]:
    return [r[0] for r in src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]


def _columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute(f"PRAGMA table_info({table})")]  # a name from sqlite_master


def check_empty(dst: PgConnection, tables: list[str]) -> None:
    """UserError naming the first table that has rows: the copy only fills an empty database."""
    for t in tables:
        if dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is not None:  # noqa: S608 - our table names
            raise UserError(f"database {dst.name}: not empty (table {t} has rows); "
                            "db copy only fills a new, empty database")


def copy_sqlite_to_pg(src: sqlite3.Connection, dst: PgConnection, *, batch: int = COPY_BATCH,
                      progress: Callable[[str, int], None] | None = None) -> CopyResult:
    """Copy every table of ``src`` (at the latest schema version) into ``dst`` (migrated to
    the same version and empty). See the module doc."""
    version = user_version(src)
    if user_version(dst) != version:
        raise UserError(f"database {dst.name}: schema version {user_version(dst)}, the SQLite file has {version}")
    tables = _tables(src)
    missing = [t for t in tables if dst.execute("SELECT to_regclass(?)", (t,)).fetchone()[0] is None]
    if missing:
        raise UserError(f"database {dst.name}: has no table {missing[0]} (is it modem-dialer's schema?)")
    check_empty(dst, tables)
    counts: dict[str, int] = {}
    with dst:
        # no notice of each copied suppression, refusal or call to boxes listening (schema step 7):
        # the database is new, nobody dials on it yet
        dst.execute("SET LOCAL modem_dialer.copying = 'on'")
        # the foreign keys of our tables, to add back once every row is in
        fks = dst.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace").fetchall()
        for table, name, _ in fks:
            dst.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for table in tables:
            cols = _columns(src, table)
            counts[table] = _copy_table(src, dst, table, cols, batch)
            if progress is not None:
                progress(table, counts[table])
        for table, name, definition in fks:
            dst.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for table in tables:
            if "id" in _columns(src, table):
                # the next id is past the copied ones (false: setval's value is the next one given)
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                            f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)")
    return CopyResult(counts, version)


def _copy_table(src: sqlite3.Connection, dst: PgConnection, table: str, cols: list[str], batch: int) -> int:
    col_list = ", ".join(cols)
    n = 0
    last = -(2 ** 63)
    with dst.copy_in(table, cols) as copy:
        while True:
            rows = src.execute(
                f"SELECT rowid, {col_list} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",  # noqa: S608
                (last, batch)).fetchall()
            if not rows:
                return n
            for r in rows:
                copy.write_row(tuple(r)[1:])
            n += len(rows)
            last = rows[-1][0]
