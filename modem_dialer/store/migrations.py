"""Versioned schema: an ordered list of steps, the version kept in ``PRAGMA user_version``.

Step N takes a database at version N-1 to version N, inside one transaction together
with the ``user_version`` bump (SQLite DDL and the header field are transactional), so
a crash leaves the database at N-1 or N, never in between. To change the schema,
append a step; never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import UserError
from .migrations_boxes import BOXES
from .migrations_campaign import CAMPAIGN_LOG
from .migrations_console import CONSOLE_INDEXES
from .migrations_sms import SMS_INBOX
from .migrations_twoway import TWOWAY
from .schema_v1 import SCHEMA_V1


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: str | Callable[[sqlite3.Connection], None]  # an SQL script or a function


STEPS: tuple[Step, ...] = (
    Step(1, "initial schema", SCHEMA_V1),
    Step(2, "campaign log (calling-rule decisions, modem rotation)", CAMPAIGN_LOG),
    Step(3, "incoming SMS and the parts awaiting reassembly", SMS_INBOX),
    Step(4, "console indexes (contacts by campaign in id order, by last outcome)", CONSOLE_INDEXES),
    Step(5, "two-way: call direction, incoming calls, webhook outbox", TWOWAY),
    Step(6, "several boxes: boxes and their leases, the box of calls, contacts, alerts, modems", BOXES),
)

LATEST = STEPS[-1].version


def split_sql(script: str) -> list[str]:
    """Split a script into statements (triggers keep their inner ``;``).

    Needed because ``executescript`` commits first and so cannot run inside our
    transaction.
    """
    statements: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip(" \t\n;"):
        raise ValueError(f"incomplete SQL statement at the end of the script: {buf.strip()[:60]!r}")
    return statements


def db_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] or ":memory:"


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, steps: Sequence[Step] = STEPS) -> int:
    """Apply the missing steps in order; return the resulting version.

    Several processes may open an old database at once: each step re-reads the
    version after taking the write lock, so a step runs exactly once.
    """
    latest = steps[-1].version if steps else 0
    for i, step in enumerate(steps, start=1):
        if step.version != i:
            raise ValueError(f"migration steps out of order: step #{i} has version {step.version}")
    current = user_version(conn)
    if current > latest:
        raise UserError(
            f"database {db_file(conn)}: schema version {current} is newer than this program "
            f"supports ({latest}); upgrade modem-dialer"
        )
    for step in steps[current:]:
        _apply(conn, step)
    return user_version(conn)


def _apply(conn: sqlite3.Connection, step: Step) -> None:
    if conn.in_transaction:
        raise RuntimeError("migrate() must not run inside an open transaction")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if user_version(conn) >= step.version:  # another process got there first
            conn.execute("ROLLBACK")
            return
        if isinstance(step.apply, str):
            for statement in split_sql(step.apply):
                conn.execute(statement)
        else:
            step.apply(conn)
        # PRAGMA takes no parameters; the value is an int from our own table.
        conn.execute(f"PRAGMA user_version = {int(step.version)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
