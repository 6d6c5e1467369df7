"""An operation of the journal writer as one SQL statement (DbWriter.submit ``statement``).

On PostgreSQL the writer sends consecutive such operations in one round trip instead of a
round trip each (docs/architecture.md, "Journal writer"). The steps that are one statement
build theirs from the same SQL their functions run (``Journal.step_statement``,
``Leases.settle_statement``, call_journal's arming read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Statement:
    """An operation as one SQL statement (SQLite's placeholders, as everywhere in the store)
    and how its result is the operation's value: ``value(rowcount, rows)``, which raises
    :class:`Undecided` when that result alone cannot tell (the operation is then run on its
    own by its function, which decides as it always does). DbWriter.submit ``statement``."""
    sql: str
    params: Sequence[Any]
    value: Callable[[int, list[Any]], Any]


class Undecided(Exception):
    """A :class:`Statement`'s result is not the usual one (no row changed, say): run the
    operation on its own."""
