"""The call path's journal: writes through the writer thread, never a commit on the loop.

Same steps as :class:`~.journal.Journal` (whose SQL it runs, on the writer's connection):

- ``await start_call(...)`` returns the new call's id once its row is **committed**: the
  call layer sends ``ATD`` only after that (an attempt is on record even if the process
  dies while the modem dials).
- ``mark_dialed``, ``mark_answered``, ``event``, ``key``, ``answer``, ``refusal`` queue
  their row and return at once (a future the caller may keep); they commit in order,
  grouped with other lines' rows (one fsync for many). The state marks, events and
  ``finish_call_nowait`` are *lazy* (DbWriter.submit): they wait for the next write
  someone waits for (at most LAZY_COMMIT_S); keys, answers and refusals commit at once.
- ``await finish_call(...)`` returns once the outcome is committed, together with every
  row queued before it; ``await flush()`` waits for everything queued so far.
- Reads: ``get_call`` goes through the writer (it sees the rows still queued), except
  ``get_call(committed=False)`` of a call this journal started and finished: that one is
  answered at once from what was queued (see :class:`_Ledger`), so a campaign line is
  free again without a round trip through the writer (one fsync or more on a busy disk);
  ``calls``/``events_of``/``keys_of``/``answers_of`` read committed rows on the caller's
  connection (flush first when the rows were just queued).

Each row's time is taken when it is queued, not when the group commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .boxes import CallRow, Claim, claim_and_start, this_box
from .compliance import DialFacts, FactsAsk
from .dialect import dialect_of
from .journal import HANGUP_BY, KEYS, OUTCOMES, Journal
from .migrations import db_file
from .spool import decode, encode
from .statement import Statement
from .timestamps import from_ts, to_ts, utc_now
from .types import Connection
from .writer import DEFAULT_LOCK_LIMIT_S, DatabaseFault, DbWriter

if TYPE_CHECKING:
    from .pg import FactsWatch, PreparedReader

__all__ = ["CallJournal", "DatabaseFault", "DbWriter"]

# facts_unchanged vouches only while the journal writer committed within this (s): a campaign's
# lines commit their steps every LAZY_COMMIT_S; a box whose connections hang without an error
# reads again (and waits for the server, as before) this long after its last commit at most
FACTS_FRESH_S = 2.0

T = TypeVar("T")


class CallJournal:
    """The journal of a dialing process (see the module doc). ``conn`` is the caller's own
    connection, used for reads; ``writer`` is shared by every writer of the process (one is
    started on ``conn``'s file, and closed by :meth:`close`, when none is given)."""

    def __init__(self, conn: Connection, writer: DbWriter | None = None, *,
                 clock: Callable[[], datetime] = utc_now, lock_limit_s: float = DEFAULT_LOCK_LIMIT_S,
                 spool: str | Path | None = None) -> None:
        """``spool``: on PostgreSQL, the local file that keeps the calls' steps while the
        server is away (spool.py); steps left there by the last run are committed first."""
        self.conn = conn
        self.clock = clock
        self._own_writer = writer is None
        self.writer = writer if writer is not None else DbWriter(db_file(conn), lock_limit_s=lock_limit_s,
                                                                 spool=spool, replay=_replay)
        self.read = Journal(conn, clock)
        self._ledger = _Ledger()
        # PostgreSQL: the urgent reads' thread and its connection, at the first such read
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_conn: PreparedReader | None = None
        # PostgreSQL: changes to numbers' dial records heard since a moment (prepare_reads)
        self._watch: FactsWatch | None = None
        # dial_facts(urgent) asks waiting for the reader thread (taken all at once there)
        self._asks: list[tuple[FactsAsk, asyncio.Future[DialFacts]]] = []
        self._asks_lock = threading.Lock()

    def _at(self, at: datetime | None = None) -> _Frozen:
        """A Journal for the writer's connection whose clock is frozen at queue time."""
        t = at if at is not None else self.clock()
        return _Frozen(t)

    def _put(self, method: str, at: datetime | None, *args: Any, lazy: bool = False,
             **kw: Any) -> concurrent.futures.Future:
        j = self._at(at)
        if method not in _STEPS:        # a call's own step (its first argument is the call id)
            duration = self._ledger.note(method, j.t, args, kw)
            if duration is not None and kw.get("duration_s") is None:
                # a call this journal started: its duration as Journal.finish_call would take it
                # from the row (the answer's time as queued here), so the row is not read first:
                # a round trip to a PostgreSQL server less per call (issue 14)
                kw = {**kw, "duration_s": duration}
        # as data too when a spool may need it (PostgreSQL): SQLite pays nothing for it
        record = encode(method, j.t, args, kw) if self.writer.spool is not None else None
        return self.writer.submit(_call, j, method, args, kw, record=record, lazy=lazy, statement=_statement)

    # ---- awaited: order or ids matter ---------------------------------------------------
    async def start_call(self, number: str, modem: str, imei: str | None = None, iccid: str | None = None,
                         *, campaign_id: int | None = None, contact_id: int | None = None,
                         alert_id: int | None = None, caller_id: str | None = None,
                         claim: Callable[[Connection], bool] | None = None) -> int | None:
        """The new call's id once its row is committed. With ``claim``, that function runs
        first in the same transaction; when it returns False no row is written and the
        result is None (e.g. the contact was taken by someone else)."""
        return await self.start_call_soon(number, modem, imei, iccid, campaign_id=campaign_id,
                                          contact_id=contact_id, alert_id=alert_id, caller_id=caller_id, claim=claim)

    def start_call_soon(self, number: str, modem: str, imei: str | None = None, iccid: str | None = None,
                        *, campaign_id: int | None = None, contact_id: int | None = None,
                        alert_id: int | None = None, caller_id: str | None = None,
                        claim: Callable[[Connection], bool] | None = None,
                        at: datetime | None = None, armed: bool = False) -> asyncio.Future[int | None]:
        """:meth:`start_call` queued now, awaited later: a campaign line writes its next call's
        row while the current call still plays (``armed``, see Journal.start_call; the row is
        committed long before that ATD). An armed row is a *lazy* write (DbWriter.submit): it
        rides with the group the line's other steps commit in (within LAZY_COMMIT_S) instead
        of starting a commit of its own, one per call: about a third as many commits, and as
        many fewer wake-ups of the writer thread. Its future still resolves only once the row
        is committed, so the ATD still follows a durable row; a line that comes to dial it
        sooner calls ``writer.hurry()``. ``at``: the row's time (default: now). Call from
        the event loop."""
        j = self._at(at)
        cols = dict(campaign_id=campaign_id, contact_id=contact_id, alert_id=alert_id, caller_id=caller_id)
        # a contact's claim (PostgreSQL): run with the other claims of the writer's group in two
        # statements (boxes.claim_and_start); the group's claims have distinct numbers
        together = isinstance(claim, Claim) and claim.contact_id == contact_id and self.writer.pg
        fut = asyncio.wrap_future(self.writer.submit(_start, j, claim, (number, modem, imei, iccid),
                                                     {**cols, "armed": armed} if armed else cols,
                                                     batch=(_start_together, claim.number)  # type: ignore[union-attr]
                                                     if together else None, lazy=armed))

        def started(f: asyncio.Future[int | None]) -> None:
            # on the loop, before the task awaiting ``fut`` resumes (callbacks run in order)
            call_id = None if f.cancelled() or f.exception() is not None else f.result()
            if call_id is not None:
                self._ledger.started(call_id, j.t, dict(number=number, modem=modem, imei=imei, iccid=iccid,
                                                           **cols))
        fut.add_done_callback(started)
        return fut

    async def finish_call(self, call_id: int, outcome: str, **kw: Any) -> bool:
        """Close the call with its outcome (see Journal.finish_call); returns once committed."""
        return await asyncio.wrap_future(self._put("finish_call", kw.get("ended_at"), call_id, outcome, **kw))

    def finish_call_nowait(self, call_id: int, outcome: str, **kw: Any) -> concurrent.futures.Future:
        """Queue the outcome (lazy: committed with the next write someone waits for, e.g.
        the next call row, or within LAZY_COMMIT_S)."""
        return self._put("finish_call", kw.get("ended_at"), call_id, outcome, lazy=True, **kw)

    async def get_call(self, call_id: int, *, committed: bool = True) -> dict[str, Any]:
        """The call row with its keys, including rows still queued (read through the writer).
        ``committed=False``: not waiting for the commit. For a call started and finished
        through this journal, the row as queued (the values the writer commits, in order;
        if it cannot, the fault listeners hear it), at once; otherwise as soon as the writer
        has run the rows queued before (about one fsync sooner)."""
        row = self._ledger.pop(call_id)
        if row is not None and not committed:
            return row
        return await asyncio.wrap_future(self.writer.submit(lambda c: Journal(c).get_call(call_id),
                                                            early=not committed))

    async def flush(self) -> None:
        await self.writer.flush()

    @property
    def reads_off_loop(self) -> bool:
        """Does :meth:`read_off_loop` leave the loop (a round trip to a server), or read at once?"""
        return dialect_of(self.conn).name == "postgresql"

    async def read_off_loop(self, fn: Callable[..., T], *args: Any,
                            statement: Callable[..., Statement | None] | None = None) -> T:
        """``fn(conn, *args)``, a read the event loop need not wait for (on the loop's connection, a
        PostgreSQL read stops every line of the process for the round trip to the server).
        ``statement(*args)``: the read as one statement, sent with the writer's steps around it
        on PostgreSQL (DbWriter.submit ``statement``).

        On PostgreSQL it runs on the writer's connection as an ``early`` read: in the group
        the writer is running, no transaction of its own (fewer transactions and less CPU on
        both sides), the rows queued before it seen, after the writes queued before it. On
        SQLite it runs on the caller's connection at once (a local read takes microseconds,
        less than the hop to a thread). A line waiting for its read uses :meth:`dial_facts`
        with ``urgent``."""
        if not self.reads_off_loop:
            return fn(self.conn, *args)
        return await asyncio.wrap_future(self.writer.submit(fn, *args, early=True, statement=statement))

    async def dial_facts(self, number: str, *, since: datetime | None, except_call: int | None = None,
                         contact_id: int | None = None, urgent: bool = False) -> DialFacts:
        """``Compliance.dial_facts`` read as :meth:`read_off_loop` reads. ``urgent`` on
        PostgreSQL (a line waits for it to dial): committed rows, not behind the writer's
        queue, in this journal's reader thread on a connection of its own, together with
        those the other lines asked for meanwhile, in one statement
        (``Compliance.dial_facts_many``): the lines of a box starting at once (a campaign
        started or joined) wait for one round trip, not for one each in turn; a server away
        raises ``DatabaseUnreachable`` as a read on the loop's connection does."""

        if not (urgent and self.reads_off_loop):
            return await self.read_off_loop(_facts, (number, since, except_call, contact_id),
                                            statement=_facts_statement)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[DialFacts] = loop.create_future()
        with self._asks_lock:
            self._asks.append(((number, since, except_call, contact_id), fut))
            first = len(self._asks) == 1
        if first:       # else a look already queued in the reader takes this ask along
            self._reader_thread().submit(self._answer_asks, loop)
        return await fut

    async def suppressed_now(self, number: str) -> bool:
        """Is ``number`` on the suppression list now (committed rows)? On PostgreSQL an urgent
        :meth:`dial_facts` ask: a campaign asks it as a call ends, the moment its line's next
        call asks its own rules' read, and both go in one statement instead of a round trip
        each. On SQLite read at once on the caller's connection."""
        if not self.reads_off_loop:
            return self.suppressed_here(number)
        return (await self.dial_facts(number, since=None, urgent=True)).suppressed

    def suppressed_here(self, number: str) -> bool:
        """:meth:`suppressed_now` read at once on the caller's connection: for SQLite, where
        :meth:`read_off_loop` reads there anyway (``reads_off_loop`` is False)."""
        from .compliance import Compliance

        return Compliance(self.conn, self.clock).is_suppressed(number)

    def prepare_reads(self) -> None:
        """PostgreSQL: start the reader thread and open its connection now, in that thread
        (returns at once), so that the first urgent read (a campaign's lines starting or
        joining together) does not wait for a new connection to the server (10-30 ms) and
        the asks made meanwhile are not held behind it. Nothing on SQLite. A connection that
        fails here is opened again by the first read (which then reports the error)."""
        if not self.reads_off_loop:
            return
        self._reader_thread().submit(self._open_reader)
        if self._watch is None:
            from .pg import FactsWatch

            self._watch = FactsWatch(db_file(self.conn)).start()

    def facts_mark(self) -> object | None:
        """Taken just before a number's records are read (``dial_facts``), to ask later with
        :meth:`facts_unchanged` whether they still hold. None when nothing can be vouched for:
        SQLite (the records are read again, locally, at once), or PostgreSQL while the
        journal's watch of changes (pg.FactsWatch, started by :meth:`prepare_reads`) is not
        listening."""
        return None if self._watch is None else self._watch.mark()

    def facts_unchanged(self, number: str, mark: object | None) -> bool:
        """No change to ``number``'s dial records (a suppression, a refusal, a call outside
        the campaigns: schema step 7's notices) committed since ``mark`` (:meth:`facts_mark`),
        as heard by the watch listening all along: the records read after that mark still
        hold, but for what was committed within the notice's delivery (milliseconds)."""
        # and the server answered this process lately: a connection cut silently (no error
        # yet, nothing heard) vouches for nothing past FACTS_FRESH_S; the dial then reads,
        # and waits or holds as it did
        return (self._watch is not None and self.writer.unreachable is None
                and time.monotonic() - self.writer.last_ok < FACTS_FRESH_S
                and self._watch.unchanged(number, mark))  # type: ignore[arg-type]

    def _reader_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._reader is None:
            self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal-reader")
        return self._reader

    def _open_reader(self) -> None:
        """In the reader thread."""
        from .pg import PreparedReader

        if self._reader_conn is None:
            self._reader_conn = PreparedReader(db_file(self.conn))
        with contextlib.suppress(Exception):   # the first read opens it again and says why
            self._reader_conn.connect()

    def _answer_asks(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the reader thread: every ask queued so far, in one statement."""
        from .compliance import facts_from_rows, facts_query
        from .pg import PreparedReader

        with self._asks_lock:
            asks, self._asks = self._asks, []
        if not asks:
            return
        try:
            if self._reader_conn is None:
                self._reader_conn = PreparedReader(db_file(self.conn))
            ask = [a for a, _ in asks]
            got: list[Any] = facts_from_rows(ask, self._reader_conn.fetchall(*facts_query(ask)))
        except Exception as exc:
            got = [exc] * len(asks)

        def resolve() -> None:
            for (_, fut), value in zip(asks, got, strict=True):
                if fut.done():
                    continue
                if isinstance(value, Exception):
                    fut.set_exception(value)
                else:
                    fut.set_result(value)
        with contextlib.suppress(RuntimeError):     # the loop is closed: nobody waits
            loop.call_soon_threadsafe(resolve)

    def _close_reader(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._reader is not None:
            if self._reader_conn is not None:
                self._reader.submit(self._reader_conn.close).result()
            self._reader.shutdown()
            self._reader = self._reader_conn = None

    # ---- queued: return at once, commit in order -------------------------------------
    def mark_dialed(self, call_id: int, at: datetime | None = None) -> concurrent.futures.Future:
        return self._put("mark_dialed", at, call_id, lazy=True)

    def bind_line(self, call_id: int, modem: str, imei: str | None, iccid: str | None) -> concurrent.futures.Future:
        """Journal.bind_line, committed at once: the caller waits for it before the ATD (a
        kill -9 after the ATD must leave the row on the SIM that dialed: per-SIM limits)."""
        return self._put("bind_line", None, call_id, modem, imei, iccid)

    def mark_answered(self, call_id: int, at: datetime | None = None) -> concurrent.futures.Future:
        return self._put("mark_answered", at, call_id, lazy=True)

    def event(self, call_id: int, kind: str, **data: Any) -> concurrent.futures.Future:
        return self._put("event", None, call_id, kind, lazy=True, **data)

    def key(self, call_id: int, key: str, source: str, at: datetime | None = None) -> concurrent.futures.Future:
        return self._put("key", at, call_id, key, source)

    def answer(self, call_id: int, name: str, value: Any, *, contact_id: int | None = None
               ) -> concurrent.futures.Future:
        return self._put("answer", None, call_id, name, value, contact_id=contact_id)

    def refusal(self, call_id: int, source: str = "key") -> concurrent.futures.Future:
        """Queued after whatever the caller queued before (suppression first, A.5.4)."""
        return self._put("refusal", None, call_id, source)

    # the other writes a call leads to, queued and spooled like its own steps: an opt-out
    # pressed, or a contact's status after its call, while PostgreSQL is away is kept on
    # this box's disk and replayed (spool.py), never lost with the process
    def suppress(self, number: str, reason: str, source: str) -> concurrent.futures.Future:
        """Add ``number`` to the suppression list (Compliance.suppress; dated at queue time)."""
        return self._put("suppress", None, number, reason, source)

    def settle_contact(self, contact_id: int, lease: str | None, *, lazy: bool = False,
                       **kw: Any) -> concurrent.futures.Future:
        """A contact's next status after its call, fenced on its lease (Leases.settle)."""
        return self._put("settle_contact", None, contact_id, lease, lazy=lazy, **kw)

    def submit(self, fn: Callable[..., Any], *args: Any, lazy: bool = False) -> concurrent.futures.Future:
        """Any other store write, ``fn(conn, *args)``, in the same order as the call rows
        (``lazy``: see DbWriter.submit)."""
        return self.writer.submit(fn, *args, lazy=lazy)

    # ---- committed reads on the caller's connection ------------------------------------
    def calls(self, **kw: Any) -> list[dict[str, Any]]:
        return self.read.calls(**kw)

    def events_of(self, call_id: int) -> list[dict[str, Any]]:
        return self.read.events_of(call_id)

    def keys_of(self, call_id: int) -> list[dict[str, Any]]:
        return self.read.keys_of(call_id)

    def answers_of(self, call_id: int) -> list[dict[str, Any]]:
        return self.read.answers_of(call_id)

    # ---- end ------------------------------------------------------------------------------
    def close(self, give_up_after: float | None = None) -> int:
        """Commit what is queued and stop the writer if this journal started it; returns
        the number of writes that could not be committed."""
        self._close_reader()
        return self.writer.close(give_up_after) if self._own_writer else 0

    async def aclose(self, give_up_after: float | None = None) -> int:
        await asyncio.to_thread(self._close_reader)
        return await self.writer.aclose(give_up_after) if self._own_writer else 0


class _Ledger:
    """What was queued for the calls in progress, as the ``calls`` row plus ``keys`` will
    read once committed (Journal's own rules: times at queue time, the duration from the
    answer when none is given, the first outcome wins). Kept from ``start_call`` until
    ``get_call``; a row whose step the journal would refuse is dropped, so that read goes
    through the writer and shows what was really written."""

    MAX_ROWS = 1024      # calls whose result nobody asked for (cancelled) are forgotten

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, Any]] = {}

    def started(self, call_id: int, t: datetime, cols: dict[str, Any]) -> None:
        self._rows[call_id] = {"id": call_id, **cols, "created_at": to_ts(t), "started_at": None,
                               "answered_at": None, "ended_at": None, "outcome": None, "cause": None,
                               "cause_text": None, "hangup_by": None, "duration_s": None, "keys": []}
        if len(self._rows) > self.MAX_ROWS:
            self._drop(next(iter(self._rows)))

    def note(self, method: str, t: datetime, args: tuple, kw: dict[str, Any]) -> float | None:
        """Take the step into the row; for a call's first outcome, its duration (None otherwise)."""
        row = self._rows.get(args[0]) if args else None
        if row is None:
            return None
        call_id = row["id"]
        if method == "mark_dialed":
            row["started_at"] = to_ts(t)
        elif method == "bind_line":
            if row["started_at"] is None:
                row.update(modem=args[1], imei=args[2], iccid=args[3])
        elif method == "mark_answered":
            row["answered_at"] = to_ts(t)
        elif method == "key":
            if args[1] not in KEYS:
                self._drop(call_id)
                return None
            row["keys"].append({"key": args[1], "source": args[2], "at": to_ts(t)})
        elif method == "finish_call":
            outcome, by = args[1], kw.get("hangup_by")
            if outcome not in OUTCOMES or (by is not None and by not in HANGUP_BY):
                self._drop(call_id)
                return None
            if row["outcome"] is not None:
                return None
            duration = kw.get("duration_s")
            if duration is None:
                answered = row["answered_at"]
                duration = max(0.0, (t - from_ts(answered)).total_seconds()) if answered else 0.0
            row.update(outcome=outcome, cause=kw.get("cause"), cause_text=kw.get("cause_text"), hangup_by=by,
                       duration_s=duration, ended_at=to_ts(t))
            return float(duration)
        return None

    def pop(self, call_id: int) -> dict[str, Any] | None:
        """The row if the call's outcome was queued (None otherwise); forgotten either way."""
        row = self._rows.get(call_id)
        self._drop(call_id)
        return row if row is not None and row["outcome"] is not None else None

    def _drop(self, call_id: int) -> None:
        self._rows.pop(call_id, None)


class _Frozen:
    """Carries the queue-time clock to the writer thread (a Journal is built there)."""

    __slots__ = ("t",)

    def __init__(self, t: datetime) -> None:
        self.t = t

    def on(self, conn: Connection) -> Journal:
        t = self.t
        return Journal(conn, lambda: t)


def _call(conn: Connection, j: _Frozen, method: str, args: tuple, kw: dict[str, Any]) -> Any:
    step = _STEPS.get(method)
    if step is not None:
        return step(conn, j.t, *args, **kw)
    return getattr(j.on(conn), method)(*args, **kw)


def _statement(j: _Frozen, method: str, args: tuple, kw: dict[str, Any]) -> Statement | None:
    """:func:`_call`'s step as one statement (DbWriter.submit ``statement``), or None."""
    if method == "settle_contact":
        from .boxes import Leases

        contact_id, lease = args
        return Leases(None, lambda: j.t).settle_statement(contact_id, lease, **kw)
    if method in _STEPS:
        return None
    return Journal(None, lambda: j.t).step_statement(method, args, kw)  # type: ignore[arg-type]


def _facts(conn: Connection, ask: FactsAsk) -> DialFacts:
    from .compliance import Compliance

    return Compliance(conn).dial_facts_many([ask])[0]


def _facts_statement(ask: FactsAsk) -> Statement:
    from .compliance import facts_from_rows, facts_query

    return Statement(*facts_query([ask]), lambda rowcount, rows: facts_from_rows([ask], rows)[0])


def _replay(record: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """A step from the spool, as the writer runs it: ``_call(conn, frozen clock, method, args, kw)``."""
    method, at, args, kw = decode(record)
    if method not in _SPOOLED and method not in _STEPS:
        raise ValueError(f"not a journal step: {method!r}")
    return _call, (_Frozen(at), method, args, kw)


def _suppress(conn: Connection, t: datetime, number: str, reason: str, source: str) -> bool:
    from .compliance import Compliance
    return Compliance(conn, lambda: t).suppress(number, reason, source, t)


def _settle_contact(conn: Connection, t: datetime, contact_id: int, lease: str | None, **kw: Any) -> bool:
    from .boxes import Leases
    return Leases(conn, lambda: t).settle(contact_id, lease, **kw)


# the Journal methods CallJournal queues, and its other steps (a spool record names one of
# these, nothing else)
_SPOOLED = frozenset({"bind_line", "mark_dialed", "mark_answered", "event", "key", "answer", "refusal", "finish_call"})
_STEPS: dict[str, Callable[..., Any]] = {"suppress": _suppress, "settle_contact": _settle_contact}


def _start(conn: Connection, j: _Frozen, claim: Callable[[Connection], bool] | None,
           args: tuple, kw: dict[str, Any]) -> int | None:
    if claim is not None and not claim(conn):
        return None
    return j.on(conn).start_call(*args, **kw)


def _start_together(conn: Connection, ops: list[tuple]) -> list[int | None]:
    """Several :func:`_start` of contacts' claims (``Claim``, distinct numbers) in a few
    statements (boxes.claim_and_start): what the writer runs for consecutive ones on
    PostgreSQL. Claims of one box and one set of caps go together (a campaign's)."""
    out: list[int | None] = [None] * len(ops)
    groups: dict[tuple, list[int]] = {}
    for i, (_, claim, _, _) in enumerate(ops):
        groups.setdefault((claim.box, claim.caps, claim.clock), []).append(i)
    box = this_box()
    for idx in groups.values():
        items = []
        for i in idx:
            j, claim, (number, modem, imei, iccid), kw = ops[i]
            items.append((claim, CallRow(number, modem, imei, iccid, kw.get("caller_id"), kw.get("campaign_id"),
                                         kw.get("alert_id"), j.t, bool(kw.get("armed")))))
        for i, call_id in zip(idx, claim_and_start(conn, items, box), strict=True):
            out[i] = call_id
    return out
