"""The few SQL fragments that differ between SQLite and PostgreSQL.

Every other statement of the store is written once in the common subset (``?``
placeholders, ``ON CONFLICT … DO``, ``RETURNING``, ``COUNT(*) FILTER``, ``substr``, ``||``).
A store class reads its connection's dialect with :func:`dialect_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    # the statement that opens a write transaction (SQLite: take the write lock up front)
    begin_write: str
    # appended to a SELECT that claims rows: other workers skip the rows this one holds
    skip_locked: str
    # null-safe "differs from"
    is_distinct: str

    def json_values(self, param: str = "?", *, integer: bool = False) -> str:
        """A subquery of the values of a JSON array passed as one text parameter (the store
        passes lists of numbers or ids this way: one parameter whatever the length)."""
        if self.name == "sqlite":
            return f"SELECT value FROM json_each({param})"  # noqa: S608 - a placeholder, not a value
        value = "CAST(value AS BIGINT)" if integer else "value"
        return f"SELECT {value} FROM json_array_elements_text(CAST({param} AS json))"  # noqa: S608 - as above

    def seconds_between(self, later: str, earlier: str) -> str:
        """Seconds from one ISO-8601 UTC text timestamp to another, as a real."""
        if self.name == "sqlite":
            return f"((julianday({later}) - julianday({earlier})) * 86400.0)"
        return f"EXTRACT(EPOCH FROM (CAST({later} AS timestamptz) - CAST({earlier} AS timestamptz)))"


SQLITE = Dialect("sqlite", begin_write="BEGIN IMMEDIATE", skip_locked="", is_distinct="IS NOT")
POSTGRES = Dialect("postgresql", begin_write="BEGIN", skip_locked=" FOR UPDATE SKIP LOCKED",
                   is_distinct="IS DISTINCT FROM")


def dialect_of(conn: object) -> Dialect:
    """SQLite's connection has no ``dialect`` attribute; :class:`~.pg.PgConnection` has."""
    return getattr(conn, "dialect", SQLITE)
