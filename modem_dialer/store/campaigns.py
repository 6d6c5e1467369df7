"""Data access for campaigns and their contacts (the campaign controller's store).

Suppression, consent, refusals and attempt counts live in ``compliance.py``.
Numbers arrive here already normalised to E.164; validating them is the caller's job.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from ..errors import UserError
from .campaign_log import CampaignLog
from .dialect import Dialect, dialect_of
from .pg import NOTIFY_CAMPAIGNS
from .timestamps import from_ts, to_ts, utc_now
from .types import Connection

CONTACT_STATUSES = frozenset(
    {"pending", "in_progress", "answered", "exhausted", "suppressed", "no_consent", "invalid", "refused",
     "cancelled", "opted_out"}
)
IMPORT_BATCH = 5_000


# sort_keys: the same fields give the same text, so a re-import sees "unchanged". One encoder
# for every contact: json.dumps with options builds a new one per call, a third of its ~2 µs
_FIELDS_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _fields_json(fields: dict[str, Any]) -> str:
    return _FIELDS_ENCODER.encode(fields)


@dataclass(frozen=True)
class Contact:
    id: int
    campaign_id: int
    number: str
    fields: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: str
    last_outcome: str | None
    last_call_id: int | None
    line_no: int | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Contact:
        return cls(r["id"], r["campaign_id"], r["number"], json.loads(r["fields"]), r["status"],
                   r["attempts"], r["next_attempt_at"], r["last_outcome"], r["last_call_id"], r["line_no"])


@dataclass(frozen=True)
class CallStats:
    """A campaign's calls for its summary (``campaign report``, ``campaign status``)."""
    calls: int
    answered: int | None                        # None when there is no call
    avg_answered_s: float | None
    by_modem: list[tuple[str, str | None, str | None, int]]     # modem, iccid, outcome (None: open), calls
    per_hour: dict[str, int]                    # "YYYY-MM-DDTHH:00Z" -> calls
    outcomes: dict[str, int]                    # outcome ("open" for open calls) -> calls


@dataclass(frozen=True)
class ImportResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


_CONTACT_COLS = "id, campaign_id, number, fields, status, attempts, next_attempt_at, last_outcome, last_call_id, line_no"


def _upsert(d: Dialect) -> str:
    return (
        "INSERT INTO contacts (campaign_id, number, fields, line_no, next_attempt_at, created_at, updated_at)"  # noqa: S608 - dialect constants
        " VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)"
        " ON CONFLICT (campaign_id, number) DO UPDATE SET"
        " fields = excluded.fields, line_no = excluded.line_no, updated_at = excluded.updated_at"
        f" WHERE contacts.fields {d.is_distinct} excluded.fields OR contacts.line_no {d.is_distinct} excluded.line_no"
    )


class Campaigns:
    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    # --- campaigns ---------------------------------------------------------------

    def create_campaign(self, name: str, *, file: str | None = None, config: dict[str, Any] | None = None,
                        status: str = "created") -> int:
        now = to_ts(self._clock())
        try:
            with self.conn:
                cur = self.conn.execute(
                    "INSERT INTO campaigns (name, file, config, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, file, json.dumps(config or {}, default=str), status, now, now),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"campaign {name!r} already exists") from None
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def get_campaign(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
        return self._campaign(row)

    def get_campaign_by_id(self, campaign_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return self._campaign(row)

    def last_change(self) -> tuple[int, str | None]:
        """(campaigns, latest ``updated_at``): changes when a campaign is created, started,
        paused, resumed or finished (a box looking for campaigns to join reads only this)."""
        row = self.conn.execute("SELECT COUNT(*), MAX(updated_at) FROM campaigns").fetchone()
        return int(row[0]), None if row[1] is None else str(row[1])

    def list_campaigns(self) -> list[dict[str, Any]]:
        return [self._campaign(r) for r in self.conn.execute("SELECT * FROM campaigns ORDER BY id")]  # type: ignore[misc]

    def update_campaign(self, campaign_id: int, *, status: str | None = None,
                        config: dict[str, Any] | None = None, file: str | None = None) -> None:
        with self.conn:
            cur = self.conn.execute(
                "UPDATE campaigns SET status = COALESCE(?, status), config = COALESCE(?, config),"
                " file = COALESCE(?, file), updated_at = ? WHERE id = ?",
                (status, None if config is None else json.dumps(config, default=str), file,
                 to_ts(self._clock()), campaign_id),
            )
            if cur.rowcount and dialect_of(self.conn).name == "postgresql":
                # the other boxes hear it at the commit (pg.listen_campaign_changes): they join a
                # campaign started here at once, not at their next look (JOIN_LOOK_S)
                self.conn.execute(NOTIFY_CAMPAIGNS)
        if cur.rowcount == 0:
            raise KeyError(f"no campaign {campaign_id}")

    def set_status(self, campaign_id: int, status: str) -> bool:
        """The campaign's status, written (and on PostgreSQL notified to the other boxes) only
        if it is another one: a box starting or joining a campaign already ``running`` writes
        nothing, so the other boxes, starting their own lines at that moment, are not woken to
        read the campaigns again on their event loops. True if it changed."""
        with self.conn:
            cur = self.conn.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ? AND status != ?",
                                    (status, to_ts(self._clock()), campaign_id, status))
            if cur.rowcount and dialect_of(self.conn).name == "postgresql":
                self.conn.execute(NOTIFY_CAMPAIGNS)
        return bool(cur.rowcount)

    @staticmethod
    def _campaign(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {**dict(row), "config": json.loads(row["config"])}

    # --- contacts ----------------------------------------------------------------

    def import_contacts(self, campaign_id: int, rows: Iterable[tuple[int | None, str, dict[str, Any]]],
                        *, batch_size: int = IMPORT_BATCH) -> ImportResult:
        """Merge ``(line_no, number, fields)`` rows into the campaign.

        A number already there keeps its status, attempts and schedule; only its fields
        and line number are refreshed. One transaction per batch keeps memory bounded
        and lets the running service write between batches.
        """
        if self.get_campaign_by_id(campaign_id) is None:
            raise KeyError(f"no campaign {campaign_id}")
        max_before = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM contacts").fetchone()[0]
        changes_before = self.conn.total_changes
        seen = 0
        it = iter(rows)
        while True:
            now = to_ts(self._clock())
            # JSON is encoded before the transaction: the write lock (which the running
            # service's journal waits on) is held only for the SQL, ~50 ms per batch.
            batch = [(campaign_id, number, _fields_json(fields), line_no, now)
                     for line_no, number, fields in islice(it, batch_size)]
            if not batch:
                break
            seen += len(batch)
            with self.conn:
                self.conn.executemany(_upsert(dialect_of(self.conn)), batch)
        changed = self.conn.total_changes - changes_before
        inserted = self.conn.execute(
            "SELECT COUNT(*) FROM contacts WHERE id > ? AND campaign_id = ?", (max_before, campaign_id)
        ).fetchone()[0]
        return ImportResult(inserted=inserted, updated=changed - inserted, unchanged=seen - changed)

    def next_due(self, campaign_id: int, now: datetime, limit: int = 100,
                 exclude_numbers: Iterable[str] = (), share: tuple[int, int] | None = None) -> list[Contact]:
        """Up to ``limit`` pending contacts due at ``now``, earliest due first (then file order).

        ``exclude_numbers`` (e.g. numbers being dialed right now) are skipped in SQL, so
        the limit is filled with other contacts. ``share`` (place, of): only the contacts
        whose id falls to that place (``id % of == place``): concurrent claimers each reading
        their own share of the queue do not reach for the same contacts.
        """
        excluded = json.dumps(sorted(set(exclude_numbers)))
        params: list[Any] = [campaign_id, to_ts(now), excluded]
        if share is not None:
            params += [int(share[1]), int(share[0])]
        rows = self.conn.execute(
            f"SELECT {_CONTACT_COLS} FROM contacts"  # noqa: S608 - constant column list
            " WHERE campaign_id = ? AND status = 'pending' AND next_attempt_at <= ?"
            f" AND number NOT IN ({dialect_of(self.conn).json_values()})"
            + (" AND id % ? = ?" if share is not None else "")
            + " ORDER BY next_attempt_at, id LIMIT ?",
            (*params, int(limit)),
        ).fetchall()
        return [Contact.from_row(r) for r in rows]

    def get_contact(self, contact_id: int) -> Contact | None:
        row = self.conn.execute(
            f"SELECT {_CONTACT_COLS} FROM contacts WHERE id = ?", (contact_id,)  # noqa: S608
        ).fetchone()
        return None if row is None else Contact.from_row(row)

    def counts(self, campaign_id: int) -> dict[str, int]:
        """Number of contacts per status (statuses with none are absent)."""
        rows = self.conn.execute(
            "SELECT status, COUNT(*) FROM contacts WHERE campaign_id = ? GROUP BY status", (campaign_id,)
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def answer_counts(self, campaign_id: int) -> dict[str, dict[str, int]]:
        """``{question: {answer: count}}`` over the campaign's calls, both sorted (survey
        results). A contact who answered the same question on two calls counts twice."""
        rows = self.conn.execute(
            "SELECT a.name, COALESCE(a.value, ''), COUNT(*) FROM answers a JOIN calls c ON c.id = a.call_id"
            " WHERE c.campaign_id = ? GROUP BY a.name, a.value ORDER BY a.name, a.value",
            (campaign_id,),
        ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for name, value, count in rows:
            out.setdefault(name, {})[value] = count
        return out

    # --- reports ----------------------------------------------------------------------

    def report_chunks(self, campaign_id: int, chunk: int = 2000) -> Iterator[list[Any]]:
        """Every contact of the campaign in id order for the per-contact report, ``chunk`` rows
        at a time, each row ``(id, number, fields as JSON text, status, attempts, last_outcome,
        next_attempt_at)``: no Contact built (its frozen dataclass and named look-ups were half
        of a report's ~7 µs of CPU a contact). Keyset paging (``id > last``): each chunk is one
        short query on the campaign's index, however far in."""
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT id, number, fields, status, attempts, last_outcome, next_attempt_at FROM contacts"
                " WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT ?", (campaign_id, last, chunk)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def keys_and_answers(self, contact_ids: Sequence[int]) -> tuple[dict[int, list[str]], dict[int, dict[str, Any]]]:
        """Per contact: the keys pressed on all its calls (in order) and its answers (the
        latest wins), for a chunk of the per-contact report."""
        ids = json.dumps(list(contact_ids))
        keys: dict[int, list[str]] = defaultdict(list)
        for cid, key in self.conn.execute(
                "SELECT c.contact_id, k.key FROM calls c JOIN keys k ON k.call_id = c.id"  # noqa: S608 - dialect constant
                f" WHERE c.contact_id IN ({dialect_of(self.conn).json_values(integer=True)}) ORDER BY c.id, k.id",
                (ids,)):
            keys[cid].append(key)
        answers: dict[int, dict[str, Any]] = defaultdict(dict)
        for cid, name, value in self.conn.execute(
                "SELECT c.contact_id, a.name, a.value FROM calls c JOIN answers a ON a.call_id = c.id"  # noqa: S608 - dialect constant
                f" WHERE c.contact_id IN ({dialect_of(self.conn).json_values(integer=True)}) ORDER BY a.id",
                (ids,)):
            answers[cid][name] = value
        return keys, answers

    def call_stats(self, campaign_id: int) -> CallStats:
        """The campaign's calls counted for its summary report."""
        q = self.conn.execute
        calls, answered, avg = q(
            "SELECT COUNT(*), SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END), AVG(CASE WHEN outcome = 'answered' THEN duration_s END)"
            " FROM calls WHERE campaign_id = ?", (campaign_id,)).fetchone()
        by_modem = [(m, i, o, int(n)) for m, i, o, n in q(
            "SELECT modem, iccid, outcome, COUNT(*) FROM calls WHERE campaign_id = ?"
            " GROUP BY modem, iccid, outcome"
            " ORDER BY modem, iccid NULLS FIRST, outcome NULLS FIRST", (campaign_id,))]
        per_hour = dict(q("SELECT substr(created_at, 1, 13) || ':00Z', COUNT(*) FROM calls WHERE campaign_id = ?"
                          " GROUP BY 1 ORDER BY 1", (campaign_id,)).fetchall())
        outcomes = dict(q("SELECT COALESCE(outcome, 'open'), COUNT(*) FROM calls WHERE campaign_id = ? GROUP BY 1",
                          (campaign_id,)).fetchall())
        return CallStats(calls, answered, avg, by_modem, per_hour, outcomes)

    # --- the dialing run ------------------------------------------------------------

    def fresh_snapshot(self) -> None:
        """End this connection's read transaction: the next reads see what other processes
        committed since (a follower polling the service's progress)."""
        self.conn.commit()

    def status_of(self, campaign_id: int) -> str | None:
        """The campaign's status (``paused`` is set by another process), None if it is gone."""
        row = self.conn.execute("SELECT status FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return None if row is None else str(row[0])

    def has_open_contacts(self, campaign_id: int) -> bool:
        """Is a contact still pending or in progress (the campaign is not complete)?"""
        return self.conn.execute(
            "SELECT 1 FROM contacts WHERE campaign_id = ? AND status IN ('pending', 'in_progress') LIMIT 1",
            (campaign_id,)).fetchone() is not None

    def next_pending_at(self, campaign_id: int) -> datetime | None:
        """When the earliest pending contact is due (None: no pending contact). The one
        "next attempt" query: the controller, ``campaign status`` and the follower use it."""
        row = self.conn.execute(
            "SELECT MIN(next_attempt_at) FROM contacts WHERE campaign_id = ? AND status = 'pending'",
            (campaign_id,)).fetchone()
        return None if row is None or row[0] is None else from_ts(row[0])

    def outcome_counts(self, campaign_id: int) -> dict[str, int]:
        """Finished calls of the campaign per outcome (open calls are left out)."""
        return {str(o): int(n) for o, n in self.conn.execute(
            "SELECT outcome, COUNT(*) FROM calls WHERE campaign_id = ? AND outcome IS NOT NULL GROUP BY outcome",
            (campaign_id,))}

    def calls_of_contact(self, contact_id: int, not_attempts: str) -> tuple[int, dict[str, Any] | None]:
        """(calls that count as attempts, the latest call's row or None). A call whose
        outcome is ``not_attempts`` (a dial refused because someone called in) is not one,
        nor an armed call (written ahead of its ATD) closed as interrupted with no dial on
        record: most likely never dialed (campaign/controller.py ``_settle``), whether it is
        the latest call or an earlier one (a kill -9 at each)."""
        n = self.conn.execute(
            "SELECT COUNT(*) FROM calls WHERE contact_id = ? AND COALESCE(outcome, '') != ?"
            " AND NOT (outcome = 'interrupted' AND started_at IS NULL AND EXISTS"
            " (SELECT 1 FROM call_events e WHERE e.call_id = calls.id AND e.kind = 'armed'))",
            (contact_id, not_attempts)).fetchone()[0]
        row = self.conn.execute("SELECT * FROM calls WHERE contact_id = ? ORDER BY id DESC LIMIT 1",
                                (contact_id,)).fetchone()
        return int(n), None if row is None else dict(row)

    def rule_decision(self, contact_id: int, log_row: tuple, at: datetime, *, final_status: str | None = None,
                      outcome: str | None = None, until: datetime | None = None) -> None:
        """A calling rule denied the contact (its ``final_status`` and ``outcome``) or deferred
        it to ``until``; the decision and its campaign_log row commit together. Only while
        the contact is pending: another box may have claimed it since it was read."""
        with self.conn:
            CampaignLog.write_row(self.conn, log_row)
            if final_status is not None:
                self.conn.execute("UPDATE contacts SET status = ?, last_outcome = ?, updated_at = ? WHERE id = ?"
                                  " AND status = 'pending'", (final_status, outcome, to_ts(at), contact_id))
            else:
                assert until is not None
                self.conn.execute("UPDATE contacts SET next_attempt_at = ?, updated_at = ? WHERE id = ?"
                                  " AND status = 'pending'", (to_ts(until), to_ts(at), contact_id))
