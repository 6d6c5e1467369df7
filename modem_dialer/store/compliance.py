"""The records the calling rules read before every ATD (rules_and_signals.md A.5).

Suppression list (A.5.4), consent records (A.5.5, append-only), refusals and the
attempt log (A.5.3, counted from ``calls`` across all campaigns and modems). This
module stores and answers; deciding allow/deny/defer is the campaign layer's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from .timestamps import from_ts, to_ts, utc_now
from .types import Connection


@dataclass(frozen=True)
class DialFacts:
    """What the calling rules read about one number before a dial, read in one round trip
    (:meth:`Compliance.dial_facts`): on PostgreSQL each read is a round trip to the server
    during which the dialing process's event loop serves none of its lines."""

    number: str
    suppressed: bool
    last_refusal: datetime | None
    attempts: tuple[datetime, ...]      # attempt times since the ``since`` asked for, oldest first
    open_call: bool                     # a call to the number is open (besides ``except_call``)
    contact_status: str | None = None   # the campaign contact's status now, when asked for


# (number, since, except_call, contact_id): one number's question of Compliance.dial_facts_many
FactsAsk = tuple[str, datetime | None, int | None, int | None]


class Compliance:
    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def _ts(self, at: datetime | None) -> str:
        return to_ts(at if at is not None else self._clock())

    # --- suppression -------------------------------------------------------------

    def suppress(self, number: str, reason: str, source: str, at: datetime | None = None) -> bool:
        """Add ``number``; True if it was new. An existing entry keeps its first reason and date."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO suppression (number, reason, source, added_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (number) DO NOTHING",
                (number, reason, source, self._ts(at)),
            )
        return cur.rowcount == 1

    def unsuppress(self, number: str) -> bool:
        with self.conn:
            cur = self.conn.execute("DELETE FROM suppression WHERE number = ?", (number,))
        return cur.rowcount == 1

    def is_suppressed(self, number: str) -> bool:
        return self.conn.execute("SELECT 1 FROM suppression WHERE number = ?", (number,)).fetchone() is not None

    def import_suppression(self, numbers: Iterable[str], *, reason: str, source: str,
                           batch_size: int = 20_000) -> int:
        """Add many numbers (e.g. a national DNC extract); returns how many were new."""
        added = 0
        it = iter(numbers)
        while batch := list(islice(it, batch_size)):
            now = self._ts(None)
            before = self.conn.total_changes
            with self.conn:
                self.conn.executemany(
                    "INSERT INTO suppression (number, reason, source, added_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (number) DO NOTHING",
                    ((n, reason, source, now) for n in batch),
                )
            added += self.conn.total_changes - before
        return added

    def export_suppression(self, chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every entry in number order, read in chunks."""
        last = ""
        while rows := self.conn.execute(
            "SELECT * FROM suppression WHERE number > ? ORDER BY number LIMIT ?", (last, chunk)
        ).fetchall():
            yield from (dict(r) for r in rows)
            last = rows[-1]["number"]

    # --- consent (append-only; only the revocation may be added) -----------------

    def export_consent(self, chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every consent record (with its revocation) in id order, read in chunks."""
        last = 0
        while rows := self.conn.execute("SELECT * FROM consent WHERE id > ? ORDER BY id LIMIT ?",
                                        (last, chunk)).fetchall():
            yield from (dict(r) for r in rows)
            last = rows[-1]["id"]

    def add_consent(self, number: str, scope: str, source: str, given_at: datetime, proof_ref: str | None = None,
                    *, name: str | None = None, text_shown: str | None = None, collector: str | None = None,
                    time_slot: str | None = None, tz: str | None = None) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO consent (number, scope, source, given_at, proof_ref, name, text_shown, collector,"
                " time_slot, tz, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, scope, source, to_ts(given_at), proof_ref, name, text_shown, collector, time_slot, tz,
                 self._ts(None)),
            )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def find_consent(self, number: str, scope: str, at: datetime | None = None) -> dict[str, Any] | None:
        """The latest consent for (number, scope) in force at ``at`` (default now), or None."""
        when = self._ts(at)
        row = self.conn.execute(
            "SELECT * FROM consent WHERE number = ? AND scope = ? AND given_at <= ?"
            " AND (revoked_at IS NULL OR revoked_at > ?) ORDER BY given_at DESC, id DESC LIMIT 1",
            (number, scope, when, when),
        ).fetchone()
        return None if row is None else dict(row)

    def revoke_consent(self, number: str, via: str, scope: str | None = None, at: datetime | None = None) -> int:
        """Revoke the number's live consents (all scopes if ``scope`` is None); returns how many."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE consent SET revoked_at = ?, revoked_via = ?"
                " WHERE number = ? AND (? IS NULL OR scope = ?) AND revoked_at IS NULL",
                (self._ts(at), via, number, scope, scope),
            )
        return cur.rowcount

    # --- refusals and attempts ---------------------------------------------------

    def last_refusal(self, number: str) -> datetime | None:
        row = self.conn.execute("SELECT MAX(at) FROM refusals WHERE number = ?", (number,)).fetchone()
        return None if row[0] is None else from_ts(row[0])

    def dial_facts(self, number: str, *, since: datetime | None, except_call: int | None = None,
                   contact_id: int | None = None) -> DialFacts:
        """Suppression, the last refusal, the attempt times since ``since`` (None: not read)
        and whether a call to the number is open (``except_call``, one's own armed row, not
        counted): the same answers as :meth:`is_suppressed`, :meth:`last_refusal` and
        :meth:`attempt_times`, in one statement. With
        ``contact_id``, also that contact's status now (another box may have claimed it
        since it was read as due)."""
        return self.dial_facts_many([(number, since, except_call, contact_id)])[0]

    def dial_facts_many(self, asks: Sequence[FactsAsk]) -> list[DialFacts]:
        """:meth:`dial_facts` for several numbers in one statement (a box's lines starting
        together each ask for their first contact's records: one round trip, not one each).
        ``asks``: (number, since, except_call, contact_id) each, distinct or not."""
        return facts_from_rows(asks, self.conn.execute(*facts_query(asks)))

    def attempt_times(self, number: str, since: datetime) -> list[datetime]:
        """When each attempt to ``number`` since ``since`` was made (oldest first), all campaigns.

        The calling rules need the times, not just the count, to say when a rolling cap frees.
        """
        return [from_ts(r[0]) for r in self.conn.execute(
            "SELECT created_at FROM calls WHERE number = ? AND created_at >= ? AND direction = 'out'"
            " AND COALESCE(outcome, '') != 'line_busy' ORDER BY created_at",
            (number, to_ts(since)),
        )]


def facts_query(asks: Sequence[FactsAsk]) -> tuple[str, list[Any]]:
    """The one statement of :meth:`Compliance.dial_facts_many`: for each ask, a row per record
    found, tagged with the ask's index. The same asks' shape (how many, which with ``since`` or
    ``contact_id``) gives the same text, so that a server can keep it prepared."""
    parts: list[str] = []
    params: list[Any] = []
    for k, (number, since, except_call, contact_id) in enumerate(asks):
        # each row says which ask it answers (its index, a parameter like the rest)
        parts += ["SELECT CAST(? AS INTEGER), 's', CAST(NULL AS TEXT) FROM suppression WHERE number = ?",
                  "SELECT CAST(? AS INTEGER), 'r', MAX(at) FROM refusals WHERE number = ?",
                  "SELECT CAST(? AS INTEGER), 'o', CAST(NULL AS TEXT) FROM (SELECT 1 AS one FROM calls"
                  " WHERE number = ? AND outcome IS NULL AND id != ? LIMIT 1) AS open_call"]
        params += [k, number, k, number, k, number, -1 if except_call is None else except_call]
        if since is not None:
            parts.append("SELECT CAST(? AS INTEGER), 'a', created_at FROM calls WHERE number = ?"
                         " AND created_at >= ? AND direction = 'out' AND COALESCE(outcome, '') != 'line_busy'")
            params += [k, number, to_ts(since)]
        if contact_id is not None:
            parts.append("SELECT CAST(? AS INTEGER), 'c', status FROM contacts WHERE id = ?")
            params += [k, contact_id]
    return " UNION ALL ".join(parts), params


def facts_from_rows(asks: Sequence[FactsAsk], rows: Iterable[Sequence[Any]]) -> list[DialFacts]:
    """The answers of :func:`facts_query`'s rows, one :class:`DialFacts` per ask."""
    got: list[dict[str, Any]] = [{"s": False, "o": False, "r": None, "c": None, "a": []} for _ in asks]
    for k, kind, value in rows:
        facts = got[int(k)]
        if kind in ("s", "o"):
            facts[kind] = True
        elif kind == "r":
            facts["r"] = None if value is None else from_ts(value)
        elif kind == "c":
            facts["c"] = str(value)
        else:
            facts["a"].append(from_ts(value))
    return [DialFacts(ask[0], f["s"], f["r"], tuple(sorted(f["a"])), f["o"], f["c"])
            for ask, f in zip(asks, got, strict=True)]
