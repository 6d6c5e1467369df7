"""Several boxes on one database: box identity, leases, take-over of a lost box's work.

A *box* is one dialing process (``serve``, ``campaign run``) owning its local modems; its
name comes from the config (``box:``, default the host name). The process's box is set
once at start-up (:func:`set_this_box`) and recorded in every call row and modem state row
it writes, whichever path writes them.

Leases (docs/scale-out.md): a box registers with a lease (``boxes.lease_until``) that its
heartbeat renews. A contact it claims records the box (``contacts.lease_box``): the box's
lease is the contact's lease, so one heartbeat renews every contact the box holds (one row
written, not one per contact). When a box's lease runs out, the first other box to notice
marks it ``lost`` and, in the same transaction, closes its open calls as ``interrupted``
and releases its contacts (``lease_box`` NULL, still ``in_progress``) and its alerts; the
campaign controllers then settle those contacts by the retry rules (:meth:`Leases.orphans`,
writes fenced on ``lease_box IS NULL`` so two boxes never settle one contact twice).

A claim is one conditional UPDATE: the contact is still pending, the claiming box's lease
is valid (a box that could not renew claims nothing), and no call to the number is open
on any box. On SQLite the writer's ``BEGIN IMMEDIATE`` serialises claims between
processes; on PostgreSQL the row is taken ``FOR UPDATE SKIP LOCKED`` (another box's claim
in flight is skipped, not waited for) and a transaction-scoped advisory lock on the number
(tried, never waited for: no deadlock between two boxes' groups) serialises the "no open
call" check with the call row's insert.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["DEFAULT_LEASE", "Boxes", "CallRow", "Claim", "Leases", "Takeover", "claim_alert", "claim_and_start",
           "set_this_box", "this_box", "unowned_alerts"]

from ..boxname import DEFAULT_LEASE, check_box_name, default_box
from ..errors import UserError
from .campaigns import _CONTACT_COLS, Contact
from .dialect import dialect_of
from .statement import Statement
from .timestamps import from_ts, to_ts, utc_now

_this_box = default_box()


def this_box() -> str:
    """The box of this process (recorded in the call and modem state rows it writes)."""
    return _this_box


def set_this_box(name: str) -> None:
    """Called once at start-up by the dialing commands with the config's ``box``."""
    global _this_box
    _this_box = check_box_name(name)


@dataclass(frozen=True)
class Takeover:
    """What a box took over from a lost one."""
    box: str
    calls: list[int]       # calls closed as interrupted
    contacts: int          # in-progress contacts released for settling
    alerts: int            # live alerts released for another box to run


# An attempt as the calling rules' caps count it (store/compliance.py attempt_times): an
# outgoing call to the number since a time, of any campaign and any box, a line-busy one aside.
_CAP_SQL = (" AND (SELECT COUNT(*) FROM calls WHERE number = ? AND created_at >= ? AND direction = 'out'"
            " AND COALESCE(outcome, '') != 'line_busy') < ?")


@functools.lru_cache(maxsize=16)
def _claim_sql(skip: str, caps: int = 0) -> str:
    """The claim: still pending (PostgreSQL: the row taken SKIP LOCKED, so a claim by another
    box in flight is skipped, not waited for), the box's lease valid (a box that never
    registered has none to check), no call open to the number on any box, and each of
    ``caps`` attempt caps not reached (counted in the same statement as the rest, under the
    same serialisation as the call row's insert: two boxes cannot both take the last attempt)."""
    return ("UPDATE contacts SET status = 'in_progress', lease_box = ?, updated_at = ?"  # noqa: S608 - constants
            f" WHERE id = (SELECT id FROM contacts WHERE id = ? AND status = 'pending'{skip})"
            " AND NOT EXISTS (SELECT 1 FROM boxes WHERE name = ? AND (status != 'up' OR lease_until <= ?))"
            " AND NOT EXISTS (SELECT 1 FROM calls WHERE number = ? AND outcome IS NULL)" + _CAP_SQL * caps)


@dataclass(frozen=True)
class Claim:
    """A contact's claim as data, run by the journal writer with the call row it is for:
    alone (``claim(conn)``, the claim of :meth:`Leases.claim` and its campaign_log row), or on
    PostgreSQL together with the other claims of the writer's group (:func:`claim_and_start`:
    two statements for the whole group instead of about five round trips a claim)."""
    contact_id: int
    number: str
    box: str
    caps: tuple[tuple[int, timedelta], ...] = ()
    log_row: tuple | None = None        # a campaign_log row (CampaignLog.row) written with the claim
    allowed: Callable[[], bool] | None = None   # asked in the writer first: False claims nothing (fenced)
    clock: Callable[[], datetime] = utc_now

    def __call__(self, conn: Any) -> bool:
        if self.allowed is not None and not self.allowed():
            return False
        if not Leases(conn, self.clock).claim(self.contact_id, self.number, self.box, caps=self.caps):
            return False
        if self.log_row is not None:
            conn.execute(_LOG_INSERT, self.log_row)
        return True


_LOG_COLS = "campaign_id, contact_id, number, modem, at, kind, verdict, rule, until, data"
_LOG_INSERT = f"INSERT INTO campaign_log ({_LOG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_LOG_TYPES = ("bigint", "bigint", "text", "text", "text", "text", "text", "text", "text", "text")
# one claim of a group: its order, the claim's number (the rules' and the open call's), the call row
_ITEM_COLS = ("ord", "claim_number", "number", "modem", "imei", "iccid", "caller_id", "campaign_id", "contact_id",
              "alert_id", "created_at", "armed")
_ITEM_TYPES = ("int", "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "text", "boolean")


def _values(types: Sequence[str], rows: int) -> str:
    one = "(" + ", ".join(f"CAST(? AS {t})" for t in types) + ")"
    return ", ".join([one] * rows)


@functools.lru_cache(maxsize=64)
def _claim_and_start_sql(items: int, caps: int, logs: int) -> str:
    """One statement for a writer group's claims (PostgreSQL, after their number locks): the
    claims (the conditions of :func:`_claim_sql`, each contact's own number), then the call
    rows of the contacts claimed, their ``created`` (and ``armed``) events and campaign_log
    rows; it returns (contact_id, call id) of each call row written. A data-modifying WITH
    runs on one snapshot: the group's contacts are distinct numbers (the caller sees to it),
    so no claim of the group can see another's call row."""
    cap = (" AND (SELECT COUNT(*) FROM calls WHERE calls.number = v.claim_number AND calls.created_at >= ?"
           " AND calls.direction = 'out' AND COALESCE(calls.outcome, '') != 'line_busy') < ?")
    log_cols = ", ".join(f"l.{c}" for c in _LOG_COLS.split(", "))
    logs_sql = (f", lg AS (INSERT INTO campaign_log ({_LOG_COLS}) SELECT {log_cols} FROM"  # noqa: S608 - constants
                f" (VALUES {_values(('int', *_LOG_TYPES), logs)}) AS l(ord, {_LOG_COLS})"
                " JOIN claimed ON claimed.id = l.contact_id ORDER BY l.ord)") if logs else ""
    return (f"WITH v({', '.join(_ITEM_COLS)}) AS (VALUES {_values(_ITEM_TYPES, items)}),"  # noqa: S608 - constants
            " claimed AS (UPDATE contacts AS c SET status = 'in_progress', lease_box = ?, updated_at = ?"
            " FROM v WHERE c.id = v.contact_id"
            " AND c.id IN (SELECT id FROM contacts WHERE id IN (SELECT contact_id FROM v) AND status = 'pending'"
            " FOR UPDATE SKIP LOCKED)"
            " AND NOT EXISTS (SELECT 1 FROM boxes WHERE name = ? AND (status != 'up' OR lease_until <= ?))"
            " AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.number = v.claim_number AND calls.outcome IS NULL)"
            + cap * caps + " RETURNING c.id),"
            " ins AS (INSERT INTO calls (number, modem, imei, iccid, caller_id, campaign_id, contact_id, alert_id,"
            " created_at, box) SELECT v.number, v.modem, v.imei, v.iccid, v.caller_id, v.campaign_id, v.contact_id,"
            " v.alert_id, v.created_at, ? FROM v JOIN claimed ON claimed.id = v.contact_id ORDER BY v.ord"
            " RETURNING id, contact_id, created_at),"
            " ev AS (INSERT INTO call_events (call_id, at, kind, data) SELECT id, created_at, 'state', ? FROM ins"
            " UNION ALL SELECT ins.id, ins.created_at, 'armed', '{}' FROM ins JOIN v ON v.contact_id = ins.contact_id"
            " WHERE v.armed)" + logs_sql + " SELECT contact_id, id FROM ins")


@dataclass(frozen=True)
class CallRow:
    """The call row a claim is for (Journal.start_call's columns)."""
    number: str
    modem: str
    imei: str | None
    iccid: str | None
    caller_id: str | None
    campaign_id: int | None
    alert_id: int | None
    created_at: datetime
    armed: bool


def claim_and_start(conn: Any, items: Sequence[tuple[Claim, CallRow]], call_box: str) -> list[int | None]:
    """PostgreSQL: a writer group's claims with their call rows (Journal.start_call, the
    ``created``/``armed`` events, the claims' campaign_log rows) in two statements: the number
    locks first, in a statement of their own (the claims' "no open call" check must see
    what was committed before the lock was taken: one snapshot per statement), then one for
    the rest (:func:`_claim_and_start_sql`). The same result, claim by claim, as
    ``Claim(conn)`` then ``Journal.start_call`` for each; the call id or None (not claimed).
    ``items``: distinct numbers, one box and one set of caps (the caller groups them)."""
    out: list[int | None] = [None] * len(items)
    todo = [i for i, (claim, _) in enumerate(items) if claim.allowed is None or claim.allowed()]
    if not todo:
        return out
    locks = conn.execute("SELECT " + ", ".join(["pg_try_advisory_xact_lock(hashtextextended(?, 0))"] * len(todo)),
                         [items[i][0].number for i in todo]).fetchone()
    todo = [i for i, ok in zip(todo, locks, strict=True) if ok]
    if not todo:
        return out
    first = items[todo[0]][0]
    at = first.clock()
    ts = to_ts(at)
    params: list[Any] = []
    for i in todo:
        claim, row = items[i]
        params += [i, claim.number, row.number, row.modem, row.imei, row.iccid, row.caller_id, row.campaign_id,
                   claim.contact_id, row.alert_id, to_ts(row.created_at), row.armed]
    params += [first.box, ts, first.box, ts]
    for most, per in first.caps:
        params += [to_ts(at - per), most]
    params += [call_box, '{"state":"created"}']
    logs = [(i, items[i][0].log_row) for i in todo if items[i][0].log_row is not None]
    for i, log_row in logs:
        params += [i, *log_row]   # type: ignore[misc]
    sql = _claim_and_start_sql(len(todo), len(first.caps), len(logs))
    ids = {int(r[0]): int(r[1]) for r in conn.execute(sql, params).fetchall()}
    for i in todo:
        out[i] = ids.get(items[i][0].contact_id)
    return out


class Leases:
    """Contact leases: the claim, and the contacts a lost box left to settle."""

    def __init__(self, conn: Any, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def claim(self, contact_id: int, number: str, box: str, now: datetime | None = None,
              caps: Sequence[tuple[int, timedelta]] = ()) -> bool:
        """pending → in_progress leased to ``box``, inside the caller's transaction (the
        writer's, together with the call row). False: taken by another box, the box's lease
        has run out (or it was declared lost), a call to the number is open somewhere, or
        one of ``caps`` ((max attempts, rolling window) of the calling rules) is reached by
        the calls of every box and campaign (the rules checked it when deciding; a call
        placed since, by another box, may have used the last attempt).
        A box that never registered (a controller run without a :class:`BoxKeeper`, as in
        the library tests) has no lease to check."""
        at = now or self._clock()
        ts = to_ts(at)
        dialect = dialect_of(self.conn)
        if dialect.name == "postgresql":
            # serialises "no open call to this number" with the call row's insert across boxes
            # (SQLite: the writer's BEGIN IMMEDIATE already does). Tried, not waited for: a
            # writer's group claims several numbers in no set order, so two boxes waiting on
            # each other's number locks would deadlock; held elsewhere means another box is
            # claiming or calling the number right now, i.e. not claimed (as for an open call).
            if not self.conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))",
                                     (number,)).fetchone()[0]:
                return False
        params: list[Any] = [box, ts, contact_id, box, ts, number]
        for most, per in caps:
            params += [number, to_ts(at - per), most]
        cur = self.conn.execute(_claim_sql(dialect.skip_locked, len(caps)), params)
        return cur.rowcount == 1

    def release(self, box: str) -> int:
        """The box's in-progress contacts are let go (its process restarted: its calls were
        closed first); they are settled like a lost box's."""
        with self.conn:
            cur = self.conn.execute("UPDATE contacts SET lease_box = NULL, updated_at = ?"
                                    " WHERE status = 'in_progress' AND lease_box = ?", (to_ts(self._clock()), box))
        return int(cur.rowcount)

    def settle(self, contact_id: int, lease: str | None, *, status: str, next_attempt_at: datetime | None,
               last_outcome: str | None, last_call_id: int | None, attempts: int) -> bool:
        """An in-progress contact's next status after its call (by the retry rules), only if
        the lease is still ``lease`` (the box's own, or None for a released contact): a box
        declared lost meanwhile, or a second box settling the same released contact, writes
        nothing. ``next_attempt_at`` None keeps the current one."""
        stmt = self.settle_statement(contact_id, lease, status=status, next_attempt_at=next_attempt_at,
                                     last_outcome=last_outcome, last_call_id=last_call_id, attempts=attempts)
        with self.conn:
            cur = self.conn.execute(stmt.sql, stmt.params)
        return bool(stmt.value(cur.rowcount, []))

    def settle_statement(self, contact_id: int, lease: str | None, *, status: str,
                         next_attempt_at: datetime | None, last_outcome: str | None, last_call_id: int | None,
                         attempts: int) -> Statement:
        """:meth:`settle` as one statement (the journal writer sends it with a call's other
        steps, DbWriter.submit ``statement``); its value is settle's."""
        return Statement(
            "UPDATE contacts SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
            " last_outcome = COALESCE(?, last_outcome), last_call_id = COALESCE(?, last_call_id),"
            " attempts = ?, updated_at = ?"
            " WHERE id = ? AND status = 'in_progress' AND (lease_box = ? OR (? IS NULL AND lease_box IS NULL))",
            (status, None if next_attempt_at is None else to_ts(next_attempt_at), last_outcome, last_call_id,
             attempts, to_ts(self._clock()), contact_id, lease, lease), _one_changed)

    def lease_of(self, contact_id: int) -> tuple[str, str | None] | None:
        """(status, lease_box) of the contact, None if there is none."""
        row = self.conn.execute("SELECT status, lease_box FROM contacts WHERE id = ?", (contact_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def orphans(self, campaign_id: int) -> list[Contact]:
        """In-progress contacts whose box let go of them (lost, restarted or stopped): to be
        settled from their journaled calls by the retry rules."""
        rows = self.conn.execute(
            f"SELECT {_CONTACT_COLS} FROM contacts"  # noqa: S608 - constant column list
            " WHERE campaign_id = ? AND status = 'in_progress' AND lease_box IS NULL ORDER BY id",
            (campaign_id,)).fetchall()
        return [Contact.from_row(r) for r in rows]

    def held(self, campaign_id: int) -> dict[str, int]:
        """In-progress contacts of the campaign per box holding them."""
        rows = self.conn.execute(
            "SELECT COALESCE(lease_box, ''), COUNT(*) FROM contacts WHERE campaign_id = ? AND status = 'in_progress'"
            " GROUP BY lease_box", (campaign_id,)).fetchall()
        return {r[0]: int(r[1]) for r in rows}


class Boxes:
    """The boxes table: register, heartbeat, leave, take over the lost ones, the whole bank."""

    def __init__(self, conn: Any, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def register(self, box: str, lease: timedelta, *, host: str | None = None, pid: int) -> list[int]:
        """This process is ``box`` from now on. Refused (UserError) when a box of that name is
        up on another host with a valid lease. On this host the caller holds the box's dialer
        lock, so a row still 'up' is a killed predecessor: its leases are void now. Closes
        the box's calls left open (interrupted) and releases its in-progress contacts;
        returns the ids of the calls closed."""
        from .journal import Journal

        host = host or socket.gethostname()
        now = self._clock()
        row = self.conn.execute("SELECT host, pid, status, heartbeat_at, lease_until FROM boxes WHERE name = ?",
                                (box,)).fetchone()
        if row is not None and row[2] == "up" and row[0] != host and from_ts(row[4]) > now:
            ago = (now - from_ts(row[3])).total_seconds()
            raise UserError(f"box: {box!r} is already up on {row[0]} (pid {row[1]}, heartbeat {ago:.0f} s ago); "
                            "give each box its own 'box' name in its config")
        closed = Journal(self.conn, self._clock).recover_interrupted(box=box)
        ts, until = to_ts(now), to_ts(now + lease)
        with self.conn:
            self.conn.execute(
                "INSERT INTO boxes (name, host, pid, status, started_at, heartbeat_at, lease_until)"
                " VALUES (?, ?, ?, 'up', ?, ?, ?) ON CONFLICT (name) DO UPDATE SET host = excluded.host,"
                " pid = excluded.pid, status = 'up', started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, lease_until = excluded.lease_until",
                (box, host, pid, ts, ts, until))
            # contacts the box's last run held (or that nobody holds: from before boxes)
            self.conn.execute("UPDATE contacts SET lease_box = NULL, updated_at = ?"
                              " WHERE status = 'in_progress' AND lease_box = ?", (ts, box))
            # modem rows from before boxes are this box's (a single box upgrading)
            self.conn.execute("UPDATE modem_state SET box = ? WHERE box = ''"
                              " AND name NOT IN (SELECT name FROM modem_state WHERE box = ?)", (box, box))
            self.conn.execute("DELETE FROM modem_state WHERE box = ''")
        return closed

    def heartbeat(self, box: str, lease: timedelta, pid: int) -> bool:
        """Renew the box's lease (and so its contacts'). False: the box was declared lost (or
        another process of this name took over): it must stop dialing."""
        now = self._clock()
        cur = self.conn.execute(
            "UPDATE boxes SET heartbeat_at = ?, lease_until = ? WHERE name = ? AND pid = ? AND status = 'up'",
            (to_ts(now), to_ts(now + lease), box, pid))
        return cur.rowcount == 1

    def leave(self, box: str, pid: int) -> None:
        """A clean stop: the box is 'stopped'; whatever it still held is released."""
        ts = to_ts(self._clock())
        with self.conn:
            cur = self.conn.execute("UPDATE boxes SET status = 'stopped', heartbeat_at = ?, lease_until = ?"
                                    " WHERE name = ? AND pid = ? AND status = 'up'", (ts, ts, box, pid))
            if cur.rowcount:
                self._release(box, ts)

    def expired(self, me: str) -> list[str]:
        """Boxes still marked up whose lease has run out (read; :meth:`take_over` acts)."""
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM boxes WHERE status = 'up' AND lease_until < ? AND name != ? ORDER BY name",
            (to_ts(self._clock()), me))]

    def take_over(self, lost: str) -> Takeover | None:
        """Mark ``lost`` as lost (if its lease has run out and nobody did it first), close its
        open calls as interrupted, release its contacts and alerts. One transaction: the
        first box to get there does it all, the others get None. Run by the writer."""
        now = self._clock()
        ts = to_ts(now)
        with self.conn:
            cur = self.conn.execute("UPDATE boxes SET status = 'lost' WHERE name = ? AND status = 'up'"
                                    " AND lease_until < ?", (lost, ts))
            if cur.rowcount != 1:
                return None
            calls = [r[0] for r in self.conn.execute(
                "UPDATE calls SET outcome = 'interrupted', ended_at = ?, cause_text = ?,"  # noqa: S608 - constants
                f" duration_s = COALESCE({dialect_of(self.conn).seconds_between('?', 'answered_at')}, 0)"
                " WHERE outcome IS NULL AND box = ? RETURNING id",
                (ts, f"box {lost} lost (no heartbeat)", ts, lost)).fetchall()]
            for call_id in calls:
                self.conn.execute("INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, 'state', ?)",
                                  (call_id, ts, json.dumps({"state": "ended", "outcome": "interrupted",
                                                            "box_lost": lost})))
            contacts, alerts = self._release(lost, ts)
        return Takeover(lost, sorted(calls), contacts, alerts)

    def _release(self, box: str, ts: str) -> tuple[int, int]:
        contacts = self.conn.execute("UPDATE contacts SET lease_box = NULL, updated_at = ?"
                                     " WHERE status = 'in_progress' AND lease_box = ?", (ts, box)).rowcount
        alerts = self.conn.execute("UPDATE alerts SET box = NULL WHERE box = ? AND status IN ('open', 'acknowledged')",
                                   (box,)).rowcount
        return int(contacts), int(alerts)

    def up(self) -> list[str]:
        """Names of the boxes up with a valid lease, in name order."""
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM boxes WHERE status = 'up' AND lease_until >= ? ORDER BY name",
            (to_ts(self._clock()),))]

    def list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM boxes ORDER BY name")]


def claim_alert(conn: Any, alert_id: int, box: str) -> bool:
    """The alert's escalation is run by ``box`` from now on: only when no box runs it (or
    ``box`` already does). Exactly one box wins (one conditional UPDATE)."""
    with conn:
        cur = conn.execute("UPDATE alerts SET box = ? WHERE id = ? AND status IN ('open', 'acknowledged')"
                           " AND (box IS NULL OR box = ?)", (box, alert_id, box))
    return cur.rowcount == 1


def unowned_alerts(conn: Any) -> list[int]:
    """Live alerts no box runs (their box was lost, or they are from before boxes)."""
    return [int(r[0]) for r in conn.execute(
        "SELECT id FROM alerts WHERE status IN ('open', 'acknowledged') AND box IS NULL ORDER BY id")]


def _one_changed(rowcount: int, rows: list[Any]) -> bool:
    return rowcount == 1
