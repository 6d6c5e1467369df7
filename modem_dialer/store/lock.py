"""One dialing process per database: start-up recovery closes every open call, so a second
runner on the same journal would close the first one's live calls.

SQLite: an flock on a file next to the database. PostgreSQL: a session advisory lock held
by a connection of its own (released when the process ends or its connection drops)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import UserError
from ..store.pg import DatabaseUnreachable, PgConnection, is_postgres, redact

# PostgreSQL advisory lock key of "the dialing process" of a database
PG_DIALER_LOCK = 0x6D64_6469_616C   # "mddial"


class DialerLock:
    def __init__(self, database: Path | str) -> None:
        self.database = str(database)
        self.pg = is_postgres(database)
        self.path = Path(str(database) + ".dialer.lock")
        self._f: IO[str] | None = None
        self._pg_conn: PgConnection | None = None

    def _acquire_pg(self) -> DialerLock:
        try:
            conn = PgConnection(self.database)
        except DatabaseUnreachable as exc:
            raise UserError(f"database {redact(self.database)}: {exc}") from None
        if not conn.execute("SELECT pg_try_advisory_lock(?)", (PG_DIALER_LOCK,)).fetchone()[0]:
            conn.close()
            raise UserError(f"database {redact(self.database)}: another dialing process is using this database")
        self._pg_conn = conn
        return self

    def acquire(self) -> DialerLock:
        if self.pg:
            return self._acquire_pg()
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "?"
            f.close()
            raise UserError(f"{self.path}: another dialing process (pid {who}) is using this database") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._pg_conn is not None:
            self._pg_conn.close()
            self._pg_conn = None
        if self._f is not None:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self) -> DialerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
