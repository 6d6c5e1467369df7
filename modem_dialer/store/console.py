"""The web console's reads (and its few writes), each an intent-named query returning typed rows.

Every list is paged by keyset (``id`` below/above the last row seen) on an existing index, so
a page costs the same at the first contact as at the millionth. Counts that would scan a
big table are asked once per page view, not per row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .compliance import Compliance
from .dialect import dialect_of
from .types import Connection

PAGE = 50
MAX_PAGE = 500


def _page(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


@dataclass(frozen=True)
class Row:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpenCall(Row):
    """A call the journal shows in progress (no outcome yet) on a modem."""
    id: int
    modem: str
    number: str
    created_at: str
    started_at: str | None
    answered_at: str | None
    campaign_id: int | None
    alert_id: int | None


@dataclass(frozen=True)
class LastFailure(Row):
    modem: str
    at: str
    outcome: str
    cause_text: str | None


@dataclass(frozen=True)
class ContactRow(Row):
    id: int
    number: str
    status: str
    attempts: int
    last_outcome: str | None
    next_attempt_at: str | None
    line_no: int | None
    fields: dict[str, Any]
    last_call_id: int | None


@dataclass(frozen=True)
class CallRow(Row):
    id: int
    number: str
    modem: str
    iccid: str | None
    campaign: str | None
    campaign_id: int | None
    alert_id: int | None
    created_at: str
    answered_at: str | None
    ended_at: str | None
    outcome: str | None
    cause_text: str | None
    hangup_by: str | None
    duration_s: float | None


@dataclass(frozen=True)
class CallEvent(Row):
    id: int
    at: str
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Recording(Row):
    """A WAV a flow's record node wrote during a call; ``index`` is how the console names it."""
    call_id: int
    index: int
    node: str
    seconds: float | None
    path: str


@dataclass(frozen=True)
class CallDetail(Row):
    call: CallRow
    events: list[CallEvent]
    keys: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    recordings: list[Recording] = field(default_factory=list)


@dataclass(frozen=True)
class SuppressionRow(Row):
    number: str
    reason: str
    source: str
    added_at: str


@dataclass(frozen=True)
class ConsentRow(Row):
    id: int
    number: str
    scope: str
    source: str
    given_at: str
    revoked_at: str | None
    revoked_via: str | None


@dataclass(frozen=True)
class ReportCharts(Row):
    outcomes_over_time: list[dict[str, Any]]     # {hour, outcome, n}
    answer_rate_by_hour: list[dict[str, Any]]    # {hour_of_day, calls, answered}
    answer_rate_by_modem: list[dict[str, Any]]   # {modem, iccid, calls, answered}
    questions: dict[str, dict[str, int]]         # question -> answer -> count


def _contact(r: sqlite3.Row) -> ContactRow:
    return ContactRow(id=r["id"], number=r["number"], status=r["status"], attempts=r["attempts"],
                      last_outcome=r["last_outcome"],
                      next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
                      line_no=r["line_no"], fields=json.loads(r["fields"] or "{}"), last_call_id=r["last_call_id"])


_CALL_COLS = ("c.id, c.number, c.modem, c.iccid, p.name AS campaign, c.campaign_id, c.alert_id, c.created_at,"
              " c.answered_at, c.ended_at, c.outcome, c.cause_text, c.hangup_by, c.duration_s")


def _call(r: sqlite3.Row) -> CallRow:
    return CallRow(**{k: r[k] for k in CallRow.__dataclass_fields__})


def number_prefix(q: str) -> str | None:
    """The digits of a search as an E.164 prefix ('+3361', '0612' → None: not international)."""
    s = "".join(ch for ch in q if ch.isdigit() or ch == "+")
    if not s.startswith("+") or len(s) < 2:
        return None
    return s


class ConsoleQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # ---- bank --------------------------------------------------------------------
    def change_mark(self) -> tuple[int | str, int]:
        """A mark that moves whenever the database changes; equal marks: the reads below would
        answer the same. With it, this connection's own change count.

        SQLite: ``data_version`` (commits by other connections, the journal writer's and
        other processes' included). PostgreSQL: the current snapshot (``xmin:xmax:in-progress
        ids``): a writing transaction moves ``xmax`` when it gets its id and leaves the
        in-progress list (or moves ``xmin``) when it commits, so every commit changes it,
        including one whose id was taken before the last mark. It is cluster-wide: a write
        elsewhere only costs a re-read."""
        if dialect_of(self.conn).name == "postgresql":
            snapshot = self.conn.execute("SELECT CAST(pg_current_snapshot() AS text)").fetchone()[0]
            return str(snapshot), self.conn.total_changes
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0]), self.conn.total_changes

    def open_calls(self) -> dict[str, OpenCall]:
        """The call in progress on each modem (the partial index on open calls: a handful of rows).
        A line's next call is armed (its row written, not yet dialed) while its current call
        plays: the modem is shown in the call it has, not dialing the next one."""
        out: dict[str, OpenCall] = {}
        for r in self.conn.execute(
                "SELECT id, modem, number, created_at, started_at, answered_at, campaign_id, alert_id"
                " FROM calls WHERE outcome IS NULL ORDER BY id"):
            had = out.get(r["modem"])
            if had is not None and had.started_at is not None and r["started_at"] is None:
                continue
            out[r["modem"]] = OpenCall(**dict(r))
        return out

    def last_call_id(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()[0])

    def first_call_since(self, since: str) -> int | None:
        """The id of the first call created at or after ``since`` (one step on the created_at index)."""
        row = self.conn.execute("SELECT id FROM calls WHERE created_at >= ? ORDER BY created_at LIMIT 1",
                                (since,)).fetchone()
        return None if row is None else int(row[0])

    def calls_by_modem_after(self, after_id: int) -> tuple[dict[str, int], int]:
        """Calls per modem with an id above ``after_id`` (a primary-key range), and the last id."""
        counts: dict[str, int] = {}
        last = after_id
        for modem, n, top in self.conn.execute(
                "SELECT modem, COUNT(*), MAX(id) FROM calls WHERE id > ? GROUP BY modem", (after_id,)):
            counts[modem] = n
            last = max(last, top)
        return counts, last

    def failures_after(self, after_id: int) -> dict[str, LastFailure]:
        """Each modem's latest failed call with an id above ``after_id``."""
        out: dict[str, LastFailure] = {}
        for r in self.conn.execute(
                "SELECT modem, ended_at, outcome, cause_text FROM calls WHERE id > ?"
                " AND outcome IN ('failed', 'interrupted') ORDER BY id", (after_id,)):
            out[r["modem"]] = LastFailure(r["modem"], r["ended_at"] or "", r["outcome"], r["cause_text"])
        return out

    # ---- campaigns ---------------------------------------------------------------
    def campaign_outcomes(self, campaign_id: int) -> dict[str, int]:
        return dict(self.conn.execute(
            "SELECT COALESCE(outcome, 'in progress'), COUNT(*) FROM calls WHERE campaign_id = ? GROUP BY 1",
            (campaign_id,)).fetchall())

    def contacts_page(self, campaign_id: int, *, after: str = "", status: str | None = None,
                      outcome: str | None = None, number: str | None = None,
                      limit: int = PAGE) -> tuple[list[ContactRow], str | None]:
        """One page of a campaign's contacts after the ``after`` token; (rows, next token).

        Keyset paging on an index, so the millionth contact costs what the first does: id
        order on (campaign_id) or (campaign_id, last_outcome) or (campaign_id, status); a
        number search is an E.164 prefix in number order on (campaign_id, number)."""
        limit = _page(limit)
        where = ["campaign_id = ?"]
        args: list[Any] = [campaign_id]
        if number:
            prefix = number_prefix(number)
            if prefix is None:
                return [], None
            # a range, not LIKE, in number order: the (campaign_id, number) index serves it
            if after.startswith("n:"):
                where.append("number > ? AND number < ?")
                args += [max(after[2:], prefix), prefix + "\uffff"]
            else:
                where.append("number >= ? AND number < ?")
                args += [prefix, prefix + "\uffff"]
            order = "number"
        else:
            where.append("id > ?")
            args.append(int(after) if after.isdigit() else 0)
            order = "id"
        if status:
            where.append("status = ?")
            args.append(status)
        if outcome:
            where.append("last_outcome = ?")
            args.append(outcome)
        cond = " AND ".join(where)
        # the WHERE parts and the order are our fixed strings; every value is a parameter
        sql = ("SELECT id, number, status, attempts, last_outcome, next_attempt_at, line_no, fields, last_call_id"  # noqa: S608
               f" FROM contacts WHERE {cond} ORDER BY {order} LIMIT ?")
        args.append(limit)
        rows = [_contact(r) for r in self.conn.execute(sql, args)]
        if len(rows) < limit:
            return rows, None
        return rows, ("n:" + rows[-1].number) if number else str(rows[-1].id)

    def report_charts(self, campaign_id: int) -> ReportCharts:
        q = self.conn.execute
        over_time = [{"hour": h, "outcome": o, "n": n} for h, o, n in q(
            "SELECT substr(created_at, 1, 13) || ':00Z', COALESCE(outcome, 'in progress'), COUNT(*)"
            " FROM calls WHERE campaign_id = ? GROUP BY 1, 2 ORDER BY 1", (campaign_id,))]
        by_hour = [{"hour_of_day": int(h), "calls": n, "answered": a or 0} for h, n, a in q(
            "SELECT substr(created_at, 12, 2), COUNT(*), SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END) FROM calls"
            " WHERE campaign_id = ? AND outcome IS NOT NULL GROUP BY 1 ORDER BY 1", (campaign_id,))]
        by_modem = [{"modem": m, "iccid": i, "calls": n, "answered": a or 0} for m, i, n, a in q(
            "SELECT modem, iccid, COUNT(*), SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END) FROM calls"
            " WHERE campaign_id = ? AND outcome IS NOT NULL GROUP BY 1, 2 ORDER BY 1", (campaign_id,))]
        questions: dict[str, dict[str, int]] = {}
        for name, value, n in q(
                # a record node's answer is the file's path: counted as one "(recorded)" answer
                "SELECT a.name, CASE WHEN a.value LIKE '%.wav' THEN '(recorded)' ELSE a.value END, COUNT(*)"
                " FROM calls c JOIN answers a ON a.call_id = c.id"
                " WHERE c.campaign_id = ? GROUP BY 1, 2 ORDER BY 1, 2", (campaign_id,)):
            questions.setdefault(name, {})[value if value is not None else ""] = n
        return ReportCharts(over_time, by_hour, by_modem, questions)

    # ---- call journal ------------------------------------------------------------
    def calls_page(self, *, before: str = "", number: str | None = None,
                   campaign: str | None = None, modem: str | None = None, outcome: str | None = None,
                   day: str | None = None, limit: int = PAGE) -> tuple[list[CallRow], str | None]:
        """Newest calls first, before the ``before`` token (keyset on created_at, id); (rows, next)."""
        where = ["1 = 1"]
        args: list[Any] = []
        if before and "|" in before:
            at, _, cid = before.partition("|")
            # a row value: the (created_at) and (campaign_id, created_at) indexes serve it
            where.append("(c.created_at, c.id) < (?, ?)")
            args += [at, int(cid) if cid.isdigit() else 0]
        if number:
            prefix = number_prefix(number)
            if prefix is None:
                return [], None
            where.append("c.number >= ? AND c.number < ?")
            args += [prefix, prefix + "\uffff"]
        if campaign:
            where.append("c.campaign_id = (SELECT id FROM campaigns WHERE name = ?)")
            args.append(campaign)
        if modem:
            where.append("c.modem = ?")
            args.append(modem)
        if outcome:
            if outcome == "in progress":
                where.append("c.outcome IS NULL")
            else:
                where.append("c.outcome = ?")
                args.append(outcome)
        if day:
            # created_at is fixed-width UTC text: a day is a range the created_at index serves
            where.append("c.created_at >= ? AND c.created_at < ?")
            args += [day + "T00:00:00.000Z", day + "T99"]
        cond = " AND ".join(where)
        limit = _page(limit)
        sql = (f"SELECT {_CALL_COLS} FROM calls c LEFT JOIN campaigns p ON p.id = c.campaign_id"  # noqa: S608
               f" WHERE {cond} ORDER BY c.created_at DESC, c.id DESC LIMIT ?")
        args.append(limit)
        rows = [_call(r) for r in self.conn.execute(sql, args)]
        return rows, (f"{rows[-1].created_at}|{rows[-1].id}" if len(rows) == limit else None)

    def call_detail(self, call_id: int) -> CallDetail | None:
        r = self.conn.execute(f"SELECT {_CALL_COLS} FROM calls c LEFT JOIN campaigns p"  # noqa: S608
                              " ON p.id = c.campaign_id WHERE c.id = ?", (call_id,)).fetchone()
        if r is None:
            return None
        events = [CallEvent(e["id"], e["at"], e["kind"], json.loads(e["data"] or "{}")) for e in self.conn.execute(
            "SELECT id, at, kind, data FROM call_events WHERE call_id = ? ORDER BY id", (call_id,))]
        keys = [dict(k) for k in self.conn.execute(
            "SELECT key, source, at FROM keys WHERE call_id = ? ORDER BY id", (call_id,))]
        answers = [dict(a) for a in self.conn.execute(
            "SELECT name, value, at FROM answers WHERE call_id = ? ORDER BY id", (call_id,))]
        recs = [Recording(call_id, i, str(e.data.get("node", "")), e.data.get("seconds"), str(e.data["path"]))
                for i, e in enumerate(x for x in events if x.kind == "record" and x.data.get("path"))]
        return CallDetail(_call(r), events, keys, answers, recs)

    def recording(self, call_id: int, index: int) -> Recording | None:
        d = self.call_detail(call_id)
        if d is None or not 0 <= index < len(d.recordings):
            return None
        return d.recordings[index]

    def filter_choices(self) -> dict[str, list[str]]:
        """Campaign names and modems for the journal's filter lists."""
        return {"campaigns": [r[0] for r in self.conn.execute("SELECT name FROM campaigns ORDER BY id DESC")],
                "modems": [r[0] for r in self.conn.execute("SELECT name FROM modem_state ORDER BY name")]}

    # ---- alerts ------------------------------------------------------------------
    def alert_ids(self, live_only: bool, limit: int = PAGE) -> list[int]:
        if live_only:
            sql = "SELECT id FROM alerts WHERE status IN ('open', 'acknowledged') ORDER BY id DESC LIMIT ?"
        else:
            sql = "SELECT id FROM alerts ORDER BY id DESC LIMIT ?"
        return [r[0] for r in self.conn.execute(sql, (_page(limit),))]

    # ---- suppression and consent ---------------------------------------------------
    def suppression_page(self, *, prefix: str | None = None, after: str = "",
                         limit: int = PAGE) -> list[SuppressionRow]:
        """Suppressed numbers in number order after ``after``, optionally by E.164 prefix."""
        lo, hi = after, "\uffff"
        if prefix:
            p = number_prefix(prefix)
            if p is None:
                return []
            lo, hi = max(after, p), p + "\uffff"
        return [SuppressionRow(**dict(r)) for r in self.conn.execute(
            "SELECT number, reason, source, added_at FROM suppression WHERE number > ? AND number < ?"
            " ORDER BY number LIMIT ?", (lo, hi, _page(limit)))]

    def suppression_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM suppression").fetchone()[0])

    def consent_for(self, prefix: str | None, limit: int = PAGE) -> list[ConsentRow]:
        """Consent records, newest first, optionally for numbers starting with ``prefix``."""
        cols = "id, number, scope, source, given_at, revoked_at, revoked_via"
        if prefix:
            p = number_prefix(prefix)
            if p is None:
                return []
            rows = self.conn.execute(f"SELECT {cols} FROM consent WHERE number >= ? AND number < ?"  # noqa: S608
                                     " ORDER BY id DESC LIMIT ?", (p, p + "\uffff", _page(limit)))
        else:
            rows = self.conn.execute(f"SELECT {cols} FROM consent ORDER BY id DESC LIMIT ?",  # noqa: S608
                                     (_page(limit),))
        return [ConsentRow(**dict(r)) for r in rows]

    def export_consent(self, chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every consent record, as ``consent export`` writes them."""
        return Compliance(self.conn).export_consent(chunk)

    # ---- flows -------------------------------------------------------------------
    def campaign_flow_files(self) -> list[tuple[str, str, str]]:
        """(campaign, campaign file, flow as written in it) for every campaign that runs a flow."""
        out = []
        for name, file, cfg in self.conn.execute("SELECT name, file, config FROM campaigns ORDER BY id DESC"):
            spec = (json.loads(cfg or "{}").get("spec") or {})
            if spec.get("flow") and file:
                out.append((name, file, spec["flow"]))
        return out
