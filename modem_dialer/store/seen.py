"""First line of each number in a contacts file, in bounded memory.

A private temporary SQLite table on disk (``connect("")``): a million-row import finds
its duplicates without holding every number in memory. Local to the importing process
whatever the journal's backend is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence


class SeenNumbers:
    def __init__(self) -> None:
        self._db = sqlite3.connect("")     # private temporary database on disk: bounded memory
        self._db.execute("CREATE TABLE seen (number TEXT PRIMARY KEY, line INTEGER NOT NULL)")

    def first_lines(self, batch: Sequence[tuple[int, str]]) -> dict[str, int]:
        """Record ``(line, number)`` pairs; -> the first line each of these numbers was seen on
        (in this batch or an earlier one)."""
        # first occurrence wins: INSERT OR IGNORE keeps the first line of each number
        self._db.executemany("INSERT OR IGNORE INTO seen (number, line) VALUES (?, ?)",
                             ((n, ln) for ln, n in batch))
        return dict(self._db.execute(
            "SELECT s.number, s.line FROM json_each(?) j JOIN seen s ON s.number = j.value",
            (json.dumps([n for _, n in batch]),)).fetchall())

    def close(self) -> None:
        self._db.close()
