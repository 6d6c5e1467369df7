"""Open the database: a SQLite file (the default) or a PostgreSQL server (``postgresql://…``).

Both give the store the same connection surface (see ``pg.py`` for PostgreSQL's); the
rest of this doc is about SQLite.

SQLite: durable, shared by several processes, rows by name.

One connection per process, used from the asyncio thread. Writes are short
transactions: ``with conn:`` around one logical step. The connection runs in
Python's legacy transaction mode with ``isolation_level="IMMEDIATE"``: the first
INSERT/UPDATE/DELETE of a ``with conn:`` block opens ``BEGIN IMMEDIATE`` (so the
write lock is taken up front and ``busy_timeout`` applies instead of a deadlock
between two deferred writers), and leaving the block commits. Plain SELECTs outside
a block read the latest committed state.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import UserError
from . import migrations
from .pg import DatabaseUnreachable, PgConnection, is_postgres, redact
from .types import Connection

DEFAULT_BUSY_TIMEOUT_MS = 5000
# how soon the switch to WAL mode is tried again while another process holds the file (_wal)
WAL_RETRY_S = 0.01
C = TypeVar("C", sqlite3.Connection, PgConnection)


def open_db(path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, migrate: bool = True) -> Connection:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    ``postgresql://user@host/db`` opens that PostgreSQL database instead (:func:`open_pg`).

    - WAL mode: readers (``campaign status``) never block the running service's writes.
    - ``synchronous=FULL``: every commit is fsynced, so a kill -9 or a power cut after a
      commit loses nothing.
    - foreign keys on, ``busy_timeout`` for the other processes, rows as ``sqlite3.Row``.

    - a new file is created mode 0600 (it holds people's numbers and answers); SQLite
      gives its ``-wal`` and ``-shm`` files the database file's mode.

    Raises UserError naming the file when it cannot be opened or is not a database.
    """
    if is_postgres(path):
        return open_pg(str(path), migrate=migrate)
    return open_sqlite(path, busy_timeout_ms=busy_timeout_ms, migrate=migrate)


def open_sqlite(path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                migrate: bool = True) -> sqlite3.Connection:
    """open_db for a SQLite file (``db copy`` reads one whatever the config says)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"database {p}: directory {p.parent} does not exist")
    if p.is_dir():
        raise UserError(f"database {p}: is a directory")
    _create_private(p)
    try:
        conn = sqlite3.connect(p, isolation_level="IMMEDIATE", timeout=busy_timeout_ms / 1000)
    except sqlite3.Error as exc:
        raise UserError(f"database {p}: cannot open ({exc})") from None

    def setup() -> None:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = _wal(conn, busy_timeout_ms)
        if str(mode).lower() != "wal":
            raise UserError(f"database {p}: cannot switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    return _ready(conn, str(p), setup, migrate)


def _wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> str:
    """``PRAGMA journal_mode = WAL``, tried again for up to the busy timeout while another
    process holds the file. Processes opening a new file at once (the boxes of one bank
    started together, issue 14) get SQLITE_BUSY here straight away, SQLite not calling the
    busy handler for this lock: one of three serves failed to start, "database is locked",
    about once in 30 starts (a box started alone, or on an existing file, never waits here)."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (5, 6)     # SQLITE_BUSY, SQLITE_LOCKED
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_RETRY_S)


def _ready(conn: C, name: str, setup: Callable[[], None] | None, migrate: bool) -> C:
    """Run ``setup`` and the migrations on a new connection; on failure close it and raise
    UserError naming the database."""
    try:
        if setup is not None:
            setup()
        if migrate:
            migrations.migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UserError(f"database {name}: cannot use it ({exc})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_pg(dsn: str, *, migrate: bool = True) -> PgConnection:
    """Connect to a PostgreSQL database and bring its schema up to date (the database
    itself must exist: ``createdb``). UserError names the server (without the password)."""
    try:
        conn = PgConnection(dsn)
    except DatabaseUnreachable as exc:
        raise UserError(f"database {redact(dsn)}: {exc}") from None
    return _ready(conn, redact(dsn), None, migrate)


def _create_private(p: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite would use 0644 & ~umask)."""
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise UserError(f"database {p}: cannot create ({exc.strerror})") from None
    os.close(fd)


def write_lock_error(path: Path) -> str | None:
    """Can this process take the write lock of the existing database at ``path``? None if
    so, else the reason (``modem-dialer doctor``; the file itself is not changed)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None


def server_problem(dsn: str) -> str | None:
    """Can this process write to the PostgreSQL database at ``dsn``? None if so, else why
    (``modem-dialer doctor``; nothing is changed)."""
    try:
        conn = PgConnection(dsn, connect_timeout=5)
    except DatabaseUnreachable as exc:
        return str(exc)
    try:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            return "a read-only standby (point 'database:' at the primary)"
        if conn.execute("SELECT current_setting('transaction_read_only')").fetchone()[0] == "on":
            return "read-only for this user"
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None
