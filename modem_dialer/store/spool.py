"""The local spool: a call's journal rows kept on this box's disk while PostgreSQL is away.

When the journal writer cannot reach the server, the steps of the calls in progress
(dialed, answered, keys, answers, events, refusals, the outcome) that are waiting for it are
also written here, to a SQLite file with ``synchronous=FULL``, so a box that dies before the
server returns loses none of them. When the server takes the group, the spool is emptied;
a box that restarts with a non-empty spool replays it before anything else (before the
start-up recovery looks for calls left open), then empties it.

A COMMIT to PostgreSQL whose answer is lost is not replayed twice: the group's transaction
id is noted here before the COMMIT, and a restart asks the server whether it committed.

Only the call journal's steps are spooled (they are plain data: a method name, its
arguments and the time it was queued): a call's own rows, and the writes its end leads to
(an opt-out's suppression row, the contact's next status: CallJournal.suppress and
settle_contact); other queued writes wait in memory.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError


def encode(method: str, at: datetime, args: tuple[Any, ...], kw: dict[str, Any]) -> str:
    """One journal step as JSON text (datetimes tagged, anything else exotic as text)."""
    def default(o: object) -> Any:
        if isinstance(o, datetime):
            return {"$dt": o.isoformat()}
        return str(o)
    return json.dumps({"m": method, "t": at.isoformat(), "a": list(args), "k": kw}, default=default,
                      ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> tuple[str, datetime, tuple[Any, ...], dict[str, Any]]:
    def hook(d: dict[str, Any]) -> Any:
        return datetime.fromisoformat(d["$dt"]) if set(d) == {"$dt"} else d
    rec = json.loads(text, object_hook=hook)
    return rec["m"], datetime.fromisoformat(rec["t"]), tuple(rec["a"]), rec["k"]


class Spool:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # people's data
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, op TEXT NOT NULL)")
            self._conn.execute("CREATE TABLE IF NOT EXISTS committing (txid INTEGER NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"spool {self.path}: cannot use it ({exc})") from None

    def add(self, records: list[str]) -> list[int]:
        """Durable once this returns (one fsynced transaction); returns each record's number."""
        seqs: list[int] = []
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for r in records:
                seqs.append(int(self._conn.execute("INSERT INTO spool (op) VALUES (?) RETURNING seq",
                                                   (r,)).fetchone()[0]))
        return seqs

    def records(self) -> list[tuple[int, str]]:
        return [(int(r[0]), r[1]) for r in self._conn.execute("SELECT seq, op FROM spool ORDER BY seq")]

    def remove(self, seqs: list[int]) -> None:
        """The records PostgreSQL has committed (and the note of that commit)."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("DELETE FROM spool WHERE seq = ?", [(q,) for q in seqs])
            self._conn.execute("DELETE FROM committing")

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def committing(self) -> int | None:
        """The PostgreSQL transaction that was taking the spooled steps when the box stopped."""
        row = self._conn.execute("SELECT txid FROM committing").fetchone()
        return None if row is None else int(row[0])

    def note_commit(self, txid: int) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM committing")
            self._conn.execute("INSERT INTO committing (txid) VALUES (?)", (txid,))

    def clear(self) -> None:
        self.remove([q for q, _ in self.records()])

    def close(self) -> None:
        self._conn.close()
