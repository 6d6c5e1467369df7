"""The call journal: one ``calls`` row per attempt, one committed row per step.

The call layer writes the row with :meth:`Journal.start_call` *before* ``ATD`` is sent,
so that an attempt is on record (and counts against the attempt caps) even if the
process dies while the modem dials. Every method is one short transaction that is
committed (and fsynced, ``synchronous=FULL``) before it returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .boxes import this_box
from .dialect import dialect_of
from .statement import Statement, Undecided
from .timestamps import from_ts, to_ts, utc_now
from .types import Connection

OUTCOMES = frozenset(
    {"answered", "busy", "no_answer", "rejected", "invalid_number", "failed", "machine", "interrupted",
     "line_busy"}   # line_busy: ATD refused because a call rang in (not an attempt)
)
HANGUP_BY = frozenset({"callee", "dialer", "network"})
KEYS = frozenset("0123456789*#ABCD")


# default=str: an enum, Path or datetime in an event must not make the journal fail mid-call.
# One encoder for all rows: json.dumps with options builds a new one per call (every event row).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json(data: dict[str, Any]) -> str:
    return _ENCODER.encode(data)


@dataclass(frozen=True)
class OutboundUsage:
    """One SIM's outgoing calls for the pool's daily and hourly limits."""
    calls: int
    seconds: float
    hour: list[datetime]        # start times within the last hour, oldest first


class Journal:
    """Call journal on an open connection (see ``db.open_db``)."""

    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def _now(self, at: datetime | None = None) -> str:
        return to_ts(at if at is not None else self._clock())

    # --- writing -----------------------------------------------------------------

    def start_call(
        self,
        number: str,
        modem: str,
        imei: str | None = None,
        iccid: str | None = None,
        *,
        campaign_id: int | None = None,
        contact_id: int | None = None,
        alert_id: int | None = None,
        caller_id: str | None = None,
        armed: bool = False,
    ) -> int:
        """Record a new attempt and return its id. Call this before sending ATD.

        ``armed``: written ahead, while the line's previous call still plays (a campaign's
        armed next call); an ``armed`` event says so, for the recovery after a kill -9: such a
        row without its dial mark (``started_at``) was most likely never dialed."""
        now = self._now()
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO calls (number, modem, imei, iccid, caller_id, campaign_id, contact_id,"
                " alert_id, created_at, box) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, modem, imei, iccid, caller_id, campaign_id, contact_id, alert_id, now, this_box()),
            )
            call_id = int(cur.lastrowid)  # type: ignore[arg-type]
            if armed:
                # both events in one statement (one round trip less on PostgreSQL per armed call)
                self.conn.execute("INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
                                  (call_id, now, "state", _json({"state": "created"}), call_id, now, "armed", _json({})))
            else:
                self._event(call_id, now, "state", {"state": "created"})
        return call_id

    def bind_line(self, call_id: int, modem: str, imei: str | None, iccid: str | None) -> bool:
        """The line a call written ahead of its ``ATD`` is dialed on, when it is not the one
        it was written for (the service's bank lends a campaign worker a line per call: its
        armed call is bound to a line at the dial). Only before the dial mark (False after)."""
        with self.conn:
            cur = self.conn.execute("UPDATE calls SET modem = ?, imei = ?, iccid = ? WHERE id = ? AND started_at IS NULL",
                                    (modem, imei, iccid, call_id))
        return cur.rowcount == 1

    def mark_dialed(self, call_id: int, at: datetime | None = None) -> None:
        """ATD has been sent."""
        with self.conn:
            self._mark(call_id, "started_at", self._now(at), "dialing")

    def mark_answered(self, call_id: int, at: datetime | None = None) -> None:
        with self.conn:
            self._mark(call_id, "answered_at", self._now(at), "answered")

    def finish_call(
        self,
        call_id: int,
        outcome: str,
        *,
        cause: int | None = None,
        cause_text: str | None = None,
        hangup_by: str | None = None,
        duration_s: float | None = None,
        ended_at: datetime | None = None,
    ) -> bool:
        """Close the call with its outcome. Returns False if it already had one.

        ``duration_s`` defaults to the answered time (answer → end), 0 if never answered.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown call outcome {outcome!r}")
        if hangup_by is not None and hangup_by not in HANGUP_BY:
            raise ValueError(f"unknown hangup_by {hangup_by!r}")
        end = ended_at if ended_at is not None else self._clock()
        end_ts = to_ts(end)
        with self.conn:
            if duration_s is None:
                row = self.conn.execute("SELECT outcome, answered_at FROM calls WHERE id = ?", (call_id,)).fetchone()
                if row is None:
                    raise KeyError(f"no call {call_id}")
                if row["outcome"] is not None:
                    return False
                duration_s = (
                    max(0.0, (end - from_ts(row["answered_at"])).total_seconds()) if row["answered_at"] else 0.0
                )
            # only a call with no outcome yet is closed (the read above is needed only for the
            # duration: a call the caller timed is closed in one statement, with its event on
            # PostgreSQL: _with_event)
            update, params = _finish_update(call_id, outcome, cause, cause_text, hangup_by, duration_s, end_ts)
            if self._with_event(update, params, call_id, end_ts, _ended(outcome, cause)):
                return True
            if self.conn.execute("SELECT 1 FROM calls WHERE id = ?", (call_id,)).fetchone() is None:
                raise KeyError(f"no call {call_id}")
            return False
        return True

    def event(self, call_id: int, kind: str, **data: Any) -> int:
        """One committed ``call_events`` row; ``data`` is stored as JSON."""
        with self.conn:
            return self._event(call_id, self._now(), kind, data)

    def key(self, call_id: int, key: str, source: str, at: datetime | None = None) -> int:
        """A key press (``source``: e.g. ``inband`` or ``urc``). One INSERT + commit: keep it fast."""
        if key not in KEYS:
            raise ValueError(f"not a DTMF key: {key!r}")
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO keys (call_id, key, source, at) VALUES (?, ?, ?, ?)",
                (call_id, key, source, self._now(at)),
            )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def answer(self, call_id: int, name: str, value: Any, *, contact_id: int | None = None) -> int:
        """An IVR answer (``name`` = the flow's question, ``value`` stored as text)."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO answers (call_id, contact_id, name, value, at) VALUES (?, ?, ?, ?, ?)",
                (call_id, contact_id, name, None if value is None else str(value), self._now()),
            )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def refusal(self, call_id: int, source: str = "key") -> int:
        """The callee refused further calls during this call (FR: no call for 60 days).

        Write it before anything else the opt-out triggers (A.5.4); suppression is a
        separate, permanent record (``Campaigns.suppress``).
        """
        now = self._now()
        with self.conn:
            row = self.conn.execute("SELECT number, campaign_id FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                raise KeyError(f"no call {call_id}")
            cur = self.conn.execute(
                "INSERT INTO refusals (number, at, source, call_id, campaign_id) VALUES (?, ?, ?, ?, ?)",
                (row["number"], now, source, call_id, row["campaign_id"]),
            )
            self._event(call_id, now, "refusal", {"source": source})
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def drop_undialed_call(self, call_id: int) -> bool:
        """Take back a call row written ahead of its ``ATD`` (a campaign line's armed next
        call) that its own process decided not to dial: the row and its events go, as if it
        had never been written (it was no attempt). Only for the process that wrote it, which
        knows the ATD was not sent; a row with a dial mark or an outcome is kept (False)."""
        with self.conn:
            cur = self.conn.execute("DELETE FROM calls WHERE id = ? AND outcome IS NULL AND started_at IS NULL",
                                    (call_id,))
        return cur.rowcount == 1

    def recover_interrupted(self, box: str | None = None) -> list[int]:
        """At start-up: close the calls a killed process of ``box`` (default: this process's
        box) left open; return their ids. Calls of other boxes are theirs (a lost box's are
        closed by the box that takes it over, store/boxes.py); calls with no box are from
        before boxes existed.

        Only the box's dialing process may call this, holding the box's dialer lock (a CLI
        reading the DB while the service runs would close live calls).
        """
        box = this_box() if box is None else box
        now = self._now()
        with self.conn:
            ids = [
                r[0]
                for r in self.conn.execute(
                    "UPDATE calls SET outcome = 'interrupted', ended_at = ?,"  # noqa: S608 - dialect constant
                    # a row armed ahead of its ATD (campaign/controller.py) with no dial mark: most
                    # likely never dialed, perhaps dialed an instant before the process died
                    " cause_text = CASE WHEN started_at IS NULL AND EXISTS (SELECT 1 FROM call_events"
                    " WHERE call_id = calls.id AND kind = 'armed') THEN 'process stopped before or as it dialed'"
                    " ELSE 'process stopped during the call' END,"
                    f" duration_s = COALESCE({dialect_of(self.conn).seconds_between('?', 'answered_at')}, 0)"
                    " WHERE outcome IS NULL AND (box = ? OR box IS NULL) RETURNING id",
                    (now, now, box),
                ).fetchall()
            ]
            for call_id in ids:
                self._event(call_id, now, "state", {"state": "ended", "outcome": "interrupted"})
        return sorted(ids)

    # --- reading -----------------------------------------------------------------

    def get_call(self, call_id: int) -> dict[str, Any]:
        """The call row as a dict plus ``keys``: [{key, source, at}] in order."""
        row = self.conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            raise KeyError(f"no call {call_id}")
        call = dict(row)
        call["keys"] = self.keys_of(call_id)
        return call

    def keys_of(self, call_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT key, source, at FROM keys WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def events_of(self, call_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, at, kind, data FROM call_events WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def answers_of(self, call_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT name, value, at, contact_id FROM answers WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def calls(
        self,
        *,
        number: str | None = None,
        campaign_id: int | None = None,
        alert_id: int | None = None,
        outcome: str | None = None,
        open_only: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Call rows matching every given filter (``since`` ≤ created_at < ``until``)."""
        # Only constant fragments are joined; every value goes through a parameter.
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("number", number), ("campaign_id", campaign_id), ("alert_id", alert_id),
                              ("outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if open_only:
            clauses.append("outcome IS NULL")
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(to_ts(since))
        if until is not None:
            clauses.append("created_at < ?")
            params.append(to_ts(until))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        order = "DESC" if newest_first else "ASC"
        sql = "SELECT * FROM calls" + where + f" ORDER BY created_at {order}, id {order} LIMIT ?"  # noqa: S608
        params.append(int(limit))
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def has_event(self, call_id: int, kind: str) -> bool:
        """Did the call journal an event of this kind (e.g. ``opt_out``)?"""
        return self.conn.execute("SELECT 1 FROM call_events WHERE call_id = ? AND kind = ? LIMIT 1",
                                 (call_id, kind)).fetchone() is not None

    def outbound_usage(self, since_day: datetime, since_hour: datetime, *, iccid: str | None = None,
                       modem: str | None = None) -> OutboundUsage:
        """A SIM's (by ICCID when known, else the modem's) outgoing calls: count and seconds
        since ``since_day``, start times since ``since_hour`` (the pool's limits). By ICCID
        the SIM's calls on every box count (a SIM moved to another box keeps its day); by
        modem name only this box's (another box's ``gsm0`` is another SIM)."""
        return self.outbound_usage_many([(since_day, since_hour, iccid, modem)])[0]

    def outbound_usage_many(self, asks: Sequence[tuple[datetime, datetime, str | None, str | None]],
                            ) -> list[OutboundUsage]:
        """:meth:`outbound_usage` of several SIMs in one statement (a campaign starting on a
        box's lines seeds every line's counters: one round trip, not two a line).
        ``asks``: (since_day, since_hour, iccid or None, modem) each."""
        parts: list[str] = []
        params: list[Any] = []
        for k, (since_day, since_hour, iccid, modem) in enumerate(asks):
            col, key = ("iccid", iccid) if iccid else ("modem", modem)
            # ICCID: the box test is always true; modem name: this box's rows (and rows from before boxes)
            box = None if iccid else this_box()
            parts += [f"SELECT CAST(? AS INTEGER), 'n', CAST(COUNT(*) AS TEXT), COALESCE(SUM(duration_s), 0)"  # noqa: S608
                      f" FROM calls WHERE {col} = ? AND created_at >= ? AND direction = 'out'"
                      " AND (? IS NULL OR box = ? OR box IS NULL)",
                      f"SELECT CAST(? AS INTEGER), 'h', created_at, 0 FROM calls WHERE {col} = ?"  # noqa: S608
                      " AND created_at >= ? AND direction = 'out' AND (? IS NULL OR box = ? OR box IS NULL)"]
            params += [k, key, to_ts(since_day), box, box, k, key, to_ts(since_hour), box, box]
        counts: list[tuple[int, float]] = [(0, 0.0)] * len(asks)
        hours: list[list[datetime]] = [[] for _ in asks]
        for k, kind, value, seconds in self.conn.execute(" UNION ALL ".join(parts), params):
            if kind == "n":
                counts[int(k)] = (int(value), float(seconds))
            else:
                hours[int(k)].append(from_ts(value))
        return [OutboundUsage(n, secs, sorted(h)) for (n, secs), h in zip(counts, hours, strict=True)]

    def alert_calls_since(self, number: str, since: datetime) -> int:
        """Alert calls to ``number`` created since ``since`` (the per-number rate limit)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM calls WHERE number = ? AND alert_id IS NOT NULL"
                                     " AND created_at >= ?", (number, to_ts(since))).fetchone()[0])

    def campaign_calls_after(self, campaign_id: int, last_id: int) -> list[dict[str, Any]]:
        """id, number, modem, outcome of the campaign's calls after ``last_id``, in order."""
        return [dict(r) for r in self.conn.execute(
            "SELECT id, number, modem, outcome FROM calls WHERE campaign_id = ? AND id > ? ORDER BY id",
            (campaign_id, last_id)).fetchall()]

    def last_campaign_call_id(self, campaign_id: int) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls WHERE campaign_id = ?",
                                (campaign_id,)).fetchone()
        return int(row[0])

    def campaign_calls_per_modem(self, campaign_id: int, since: str) -> list[tuple[str, int]]:
        """(modem, calls) of the campaign created since ``since`` (a timestamp), by modem name."""
        return [(str(m), int(n)) for m, n in self.conn.execute(
            "SELECT modem, COUNT(*) FROM calls WHERE campaign_id = ? AND created_at >= ?"
            " GROUP BY modem ORDER BY modem", (campaign_id, since))]

    # --- internals ---------------------------------------------------------------

    def _event(self, call_id: int, at: str, kind: str, data: dict[str, Any]) -> int:
        cur = self.conn.execute(_EVENT_INSERT, (call_id, at, kind, _json(data)))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    # --- a call's step as one statement (PostgreSQL) ----------------------------------

    def step_statement(self, method: str, args: tuple, kw: dict[str, Any]) -> Statement | None:
        """The step ``method(*args, **kw)`` (mark_dialed, mark_answered, event, a finish_call
        with its duration given) as the one statement it runs on PostgreSQL, with the value it
        returns (DbWriter.submit ``statement``: the journal writer sends consecutive steps in
        one round trip); None for any other step, or arguments the method would refuse (it
        is then run by itself, and raises)."""
        try:
            if method in ("mark_dialed", "mark_answered"):
                call_id = args[0]
                now = self._now(args[1] if len(args) > 1 else kw.get("at"))
                column, state = ("started_at", "dialing") if method == "mark_dialed" else ("answered_at", "answered")
                return Statement(*_update_with_event(*_mark_update(call_id, column, now), now, {"state": state}),
                                 _marked)
            if method == "event":
                call_id, kind = args
                return Statement("INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, ?, ?) RETURNING id",
                                 (call_id, self._now(), kind, _json(kw)), _returned_id)
            if method == "finish_call":
                call_id, outcome = args
                duration_s, by = kw.get("duration_s"), kw.get("hangup_by")
                if duration_s is None or outcome not in OUTCOMES or (by is not None and by not in HANGUP_BY) \
                        or set(kw) - {"cause", "cause_text", "hangup_by", "duration_s", "ended_at"}:
                    return None
                end_ts = self._now(kw.get("ended_at"))
                cause = kw.get("cause")
                update, params = _finish_update(call_id, outcome, cause, kw.get("cause_text"), by, duration_s, end_ts)
                # True; a call already closed (False) or missing (KeyError): finish_call decides
                return Statement(*_update_with_event(update, params, end_ts, _ended(outcome, cause)),
                                 _one_row_or_undecided)
        except (TypeError, ValueError):
            return None
        return None

    def _mark(self, call_id: int, column: str, now: str, state: str) -> None:
        """A call's state mark and its event (``column``: ``started_at``/``answered_at``, our own
        literals, never input)."""
        if not self._with_event(*_mark_update(call_id, column, now), call_id, now, {"state": state}):
            raise KeyError(f"no call {call_id}")

    def _with_event(self, update: str, params: Sequence[Any], call_id: int, at: str, data: dict[str, Any]) -> bool:
        """``update`` (of the call's row) and, if it changed the row, its ``state`` event;
        whether it did. On PostgreSQL in one statement (the update as a data-modifying
        ``WITH``): each of a call's steps is a round trip to the server from the journal
        writer, and psycopg's and the server's cost is per statement; SQLite has no such
        statement and no round trip to save."""
        if dialect_of(self.conn).name == "postgresql":
            return self.conn.execute(*_update_with_event(update, params, at, data)).rowcount == 1
        if self.conn.execute(update, params).rowcount == 0:
            return False
        self._event(call_id, at, "state", data)
        return True


_EVENT_INSERT = "INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, ?, ?)"


def _mark_update(call_id: int, column: str, now: str) -> tuple[str, tuple[Any, ...]]:
    return f"UPDATE calls SET {column} = ? WHERE id = ?", (now, call_id)  # noqa: S608 - our column names


def _finish_update(call_id: int, outcome: str, cause: int | None, cause_text: str | None, hangup_by: str | None,
                   duration_s: float, end_ts: str) -> tuple[str, tuple[Any, ...]]:
    return ("UPDATE calls SET outcome = ?, cause = ?, cause_text = ?, hangup_by = ?, duration_s = ?,"
            " ended_at = ? WHERE id = ? AND outcome IS NULL",
            (outcome, cause, cause_text, hangup_by, duration_s, end_ts, call_id))


def _ended(outcome: str, cause: int | None) -> dict[str, Any]:
    return {"state": "ended", "outcome": outcome, "cause": cause}


def _update_with_event(update: str, params: Sequence[Any], at: str, data: dict[str, Any]) -> tuple[str, tuple]:
    """PostgreSQL: ``update`` of a call's row and, if it changed the row, its ``state`` event,
    in one statement (a data-modifying WITH; its rowcount: the event's, 1 or 0)."""
    return (f"WITH u AS ({update} RETURNING id) INSERT INTO call_events"  # noqa: S608 - our statements
            " (call_id, at, kind, data) SELECT id, ?, 'state', ? FROM u", (*params, at, _json(data)))


def _one_row_or_undecided(rowcount: int, rows: list[Any]) -> bool:
    if rowcount != 1:
        raise Undecided
    return True


def _marked(rowcount: int, rows: list[Any]) -> None:
    if rowcount != 1:
        raise Undecided         # no such call: the mark run alone raises KeyError


def _returned_id(rowcount: int, rows: list[Any]) -> int:
    return int(rows[0][0])
