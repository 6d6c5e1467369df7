"""One dialing process per box and database: start-up recovery closes the box's open calls,
so a second runner of the same box would close the first one's live calls. Other boxes
(docs/scale-out.md) dial on the same database with locks of their own; on one machine they
need distinct ``box`` names.

SQLite: an flock on a file next to the database, one per box. PostgreSQL: a session
advisory lock, one key per box, held by a connection of its own (released when the process
ends or its connection drops)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import IO

from ..errors import UserError
from ..store.pg import DatabaseUnreachable, PgConnection, is_postgres, redact


def pg_dialer_lock_key(box: str) -> int:
    """PostgreSQL advisory lock key of box ``box``'s dialing process: a signed 64-bit hash
    of the box name, so two boxes sharing a database hold two different locks."""
    digest = hashlib.sha256(f"modem-dialer dialer {box}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class DialerLock:
    def __init__(self, database: Path | str, box: str | None = None) -> None:
        from ..store.boxes import this_box

        self.box = box or this_box()
        self.database = str(database)
        self.pg = is_postgres(database)
        # the box name is checked (letters, digits, '_', '.', '-'): safe in a file name
        self.path = Path(f"{database}.{self.box}.dialer.lock")
        self._f: IO[str] | None = None
        self._pg_conn: PgConnection | None = None

    def _acquire_pg(self) -> DialerLock:
        try:
            conn = PgConnection(self.database)
        except DatabaseUnreachable as exc:
            raise UserError(f"database {redact(self.database)}: {exc}") from None
        if not conn.execute("SELECT pg_try_advisory_lock(?)", (pg_dialer_lock_key(self.box),)).fetchone()[0]:
            conn.close()
            raise UserError(f"database {redact(self.database)}: another dialing process of box {self.box!r} "
                            "is using this database")
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
            raise UserError(f"{self.path}: another dialing process of box {self.box!r} (pid {who}) is using "
                            "this database") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._pg_conn is not None:
            # unlock, then close: a close only asks the server to end the session, whose locks
            # go when its backend process has exited, later on a loaded machine; a run started
            # right after this one (re-running a finished campaign) found the lock still held
            with contextlib.suppress(sqlite3.Error):      # connection lost: the server let go already
                self._pg_conn.execute("SELECT pg_advisory_unlock(?)", (pg_dialer_lock_key(self.box),))
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
