"""The journal writer: one thread owns the process's *write* connection (SQLite or PostgreSQL).

Why a thread: with ``synchronous=FULL`` every commit waits for an fsync, which takes
milliseconds on an SSD and 40–200 ms on an SD card. Run on the asyncio loop, that wait
stalls every line's call handling. Here the loop only *enqueues* a write (a function
run on the writer's connection) and gets a :class:`concurrent.futures.Future`; the
thread runs everything queued so far in one transaction and commits once (group
commit: one fsync for many rows), then resolves the futures.

Contract (the same on both backends, see docs/architecture.md):

- **Ordered**: operations commit in the order they were submitted. A later write never
  becomes durable without the earlier ones; a read submitted after a write sees it.
- **Durable when resolved**: a future resolves only after the COMMIT that holds its
  operation returned, so a caller told "committed" survives kill -9 and power loss.
- **Isolated failures**: one operation that raises (a bug, a constraint) is rolled back
  alone and its future carries the exception. On PostgreSQL each operation runs in its own
  SAVEPOINT; on SQLite a group first runs without them and, if an operation fails, is
  rolled back and run again with them (see DbWriter._attempt).
- **Never dropped**: a database locked by another process is waited for (a warning
  names the database every few seconds) and retried; after ``lock_limit`` seconds the
  fault listeners hear a :class:`DatabaseFault` ``locked`` (so the run can stop starting
  calls) while the writes go on waiting. A full disk or an I/O error is fatal: the
  batch rolls back (nothing committed before is touched), its futures and every later
  one fail with :class:`DatabaseFault`, and the listeners hear it once.
- **PostgreSQL unreachable** (server down or restarting, network): the group is kept and
  retried on a new connection until the server is back; the listeners hear a
  :class:`DatabaseFault` ``unreachable`` at once (the run stops starting calls) and an
  ``unreachable`` fault with ``resolved`` set when writes go through again. A COMMIT whose
  answer was lost is not replayed blindly: the group's transaction id is asked for
  (``txid_status``), so a group is committed exactly once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import UserError
from .pg import DatabaseUnreachable, PgConnection, is_postgres, redact
from .spool import Spool
from .statement import Statement, Undecided

log = logging.getLogger("modem_dialer.store")

T = TypeVar("T")
FaultKind = Literal["locked", "full", "io", "unreachable"]

# How long one BEGIN IMMEDIATE waits for another process's lock before the writer looks
# at the clock (warning, limit) and tries again. Patchable for tests.
LOCK_POLL_S = 0.5
# Repeat the "database is locked" warning this often while waiting.
LOCK_WARN_EVERY_S = 5.0
# Default for how long writes may wait for a lock before the run is told to stop.
DEFAULT_LOCK_LIMIT_S = 60.0
# An upper bound on one group (keeps one transaction's memory and lock time bounded).
MAX_BATCH = 2000
# PostgreSQL unreachable: wait this long between two connection attempts. Patchable for tests.
RECONNECT_EVERY_S = 0.5
# A group of lazy steps only (submit(lazy=True)) waits this long for a write that someone
# waits for before it commits on its own. A kill -9 may lose lazy steps queued this recently
# (never a committed one, never the call row written before ATD).
LAZY_COMMIT_S = 0.05
# Writes queued while a group runs join it before its COMMIT; after the first look, further
# late writes are taken for at most this long (then the group commits and they go in the
# next one): a steady stream cannot hold a commit off.
JOIN_LATE_S = 0.02

# SQLite primary result codes that are about the database as a whole, not one operation
_BUSY = {5, 6}                      # SQLITE_BUSY, SQLITE_LOCKED
_FULL = {13}                        # SQLITE_FULL
_FATAL = {8, 10, 11, 14, 26}        # READONLY, IOERR, CORRUPT, CANTOPEN, NOTADB


class DatabaseFault(UserError):
    """The database cannot take writes: locked by another process too long, disk full, I/O error.

    One line for the user, naming the database and the cause.
    """

    def __init__(self, path: str, kind: FaultKind, detail: str, *, resolved: bool = False) -> None:
        self.path, self.kind, self.detail, self.resolved = path, kind, detail, resolved
        what = {"locked": "locked by another process", "full": "disk full", "io": "cannot write",
                "unreachable": "server unreachable"}[kind]
        if resolved:
            what = {"locked": "unlocked", "unreachable": "server reachable again"}.get(kind, what)
        super().__init__(f"database {path}: {what} ({detail})")


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY or "locked" in str(exc) or "busy" in str(exc)


def _db_level(exc: BaseException) -> bool:
    """Is this error about the database (abort the group) rather than one operation?"""
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) or isinstance(
            exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return False
    code = _code(exc)
    text = str(exc)
    return (code in _BUSY | _FULL | _FATAL or "disk is full" in text or "disk I/O" in text
            or "locked" in text or "readonly" in text)


class BatchConnection(sqlite3.Connection):
    """The writer's connection: ``with conn:`` in an operation is a SAVEPOINT, not a commit.

    The store's methods keep their ``with conn:`` blocks (one logical step each); on the
    writer's connection they nest inside the group transaction, which the writer commits.
    """

    _depth = 0
    # Set by _run_ops right after an operation's own ``SAVEPOINT op``: total_changes then.
    # A first-level block entered before the operation wrote anything shares that savepoint
    # instead of opening its own: on failure ``ROLLBACK TO op`` undoes exactly the block (nothing
    # else was written since), on success there is nothing to release. Most operations are one
    # such block (every journal step), so this saves two statements per write.
    _op_changes: int | None = None
    _shared = False          # whether the open first-level block shares the op's savepoint
    # A group's first attempt runs its operations with no savepoint at all (see _run_ops):
    # a first-level block then opens none either, and one that fails inside an operation
    # that goes on (catches the error) marks the group ``_dirty``: it is run again carefully.
    _optimistic = False
    _dirty = False

    def __enter__(self) -> BatchConnection:
        self._depth += 1
        if self._depth == 1 and (self._optimistic or (
                self._op_changes is not None and self.total_changes == self._op_changes)):
            self._shared = True
            return self
        self.execute(f"SAVEPOINT s{self._depth}")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        depth = self._depth
        self._depth -= 1
        if depth == 1 and self._shared:
            self._shared = False
            if exc_type is not None:
                if self._optimistic:
                    self._dirty = True
                else:
                    with contextlib.suppress(sqlite3.Error):
                        self.execute("ROLLBACK TO op")
            return False
        name = f"s{depth}"
        if exc_type is not None:
            with contextlib.suppress(sqlite3.Error):
                self.execute(f"ROLLBACK TO {name}")
                self.execute(f"RELEASE {name}")
        else:
            self.execute(f"RELEASE {name}")
        return False


# PostgreSQL: at most this many operations' statements in one round trip (DbWriter.submit
# ``statement``): a bound on the text sent at once, and on what one failure sends back to be
# run one by one
MAX_STATEMENTS = 200


class _Careful(Exception):
    """An operation failed in a group's optimistic first attempt: run the group again with
    a savepoint per operation."""


_NOT_YET = object()


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    early: bool = False     # a read: resolved as soon as it ran, before the group's COMMIT
    record: str | None = None   # the step as data (spool.encode), for the local spool
    spooled: int | None = None  # its number in the spool once written there
    lazy: bool = False      # nobody waits for it: committed with the next write that is waited
                            # for, or LAZY_COMMIT_S after it was queued
    # PostgreSQL: (run_together, key): consecutive operations with the same ``run_together`` and
    # distinct keys run as one, ``run_together(conn, [args…])`` → their results (submit())
    batch: tuple[Callable[[Any, list[tuple[Any, ...]]], list[Any]], Any] | None = None
    # PostgreSQL: ``statement(*args)`` → the operation as one Statement, or None (submit())
    statement: Callable[..., Statement | None] | None = None
    made: Statement | object | None = _NOT_YET   # statement(*args), once made (_statement_of)


_STOP = object()


class DbWriter:
    """The thread that owns the write connection of one database file (see the module doc)."""

    def __init__(self, path: str | Path, *, lock_limit_s: float = DEFAULT_LOCK_LIMIT_S,
                 busy_timeout_s: float = LOCK_POLL_S, spool: str | Path | None = None,
                 replay: Callable[[str], tuple[Callable[..., Any], tuple[Any, ...]]] | None = None) -> None:
        """``spool`` (PostgreSQL only): the local file keeping the journal's steps while the
        server is away; ``replay`` turns a spooled record back into ``(fn, args)``. Steps
        left in the spool by a previous run are committed here, before this returns."""
        self.target = str(path)
        self.pg = is_postgres(self.target)
        self.path = redact(self.target) if self.pg else self.target   # for messages: no password
        self.lock_limit_s = lock_limit_s
        self.fault: DatabaseFault | None = None     # fatal (full, io): no write will succeed
        self.lock_fault: DatabaseFault | None = None  # the lock outlasted the limit (writes still wait)
        self.commits = 0          # group commits done (the bench reads these)
        self.ops_committed = 0
        self.careful_groups = 0   # groups run again with a savepoint per operation (one failed)
        self._listeners: list[Callable[[DatabaseFault], None]] = []
        self._q: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        # Set when a write someone waits for (or the stop mark) is queued: what a group of
        # lazy steps waits on, so that the lazy steps queued meanwhile (most of a call's
        # rows) do not each wake the thread (a wake-up, a context switch and a GIL hand-over
        # per row) just to be added to the group.
        self._waited = threading.Event()
        self._hurried = False     # hurry(): a lazy step is waited for after all
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._give_up_at: float | None = None       # set by close(): stop waiting for a lock then
        self._stop = False                          # the writer thread saw close()\'s stop mark
        self.unreachable: DatabaseFault | None = None  # PostgreSQL: the server is away right now
        self.last_ok = -math.inf      # when a group last committed (monotonic): the server answered
        self._results: list[tuple[bool, Any]] = []
        self._conn: Any
        if self.pg:
            try:
                self._conn = PgConnection(self.target)
            except DatabaseUnreachable as exc:
                raise UserError(f"database {self.path}: {exc}") from None
            name = "postgresql"
        else:
            try:
                self._conn = sqlite3.connect(self.path, factory=BatchConnection, isolation_level=None,
                                             timeout=busy_timeout_s, check_same_thread=False)
            except sqlite3.Error as exc:
                raise UserError(f"database {self.path}: cannot open ({exc})") from None
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            name = Path(self.path).name
        self.spool: Spool | None = Spool(spool) if spool is not None and self.pg else None
        if self.spool is not None and replay is not None:
            self._replay(replay)
        self._thread = threading.Thread(target=self._main, name=f"journal-writer {name}", daemon=True)
        self._thread.start()

    # ---- the loop side -----------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any, early: bool = False,
               record: str | None = None, lazy: bool = False,
               batch: tuple[Callable[[Any, list[tuple[Any, ...]]], list[Any]], Any] | None = None,
               statement: Callable[..., Statement | None] | None = None,
               ) -> concurrent.futures.Future[T]:
        """Queue ``fn(conn, *args)`` (run on the writer's connection, in order). The future
        resolves with its result once committed, or with its exception. Fire-and-forget
        callers may drop it: a fault reaches the listeners anyway.

        ``early``: for a read that must see what was queued before it but need not wait
        for the fsync (the rows it sees are committed with the same group, or the group
        fails and the listeners hear it).
        ``lazy``: a step nobody waits for (a call's state marks and events): it does not
        start a commit of its own, it rides with the next write someone waits for (the
        next call row, a key, a flush) or is committed LAZY_COMMIT_S after it was queued.
        Fewer commits (each costs an fsync and CPU), and a waited-for write more often
        finds the writer idle rather than in the middle of an fsync.

        ``record``: the same step as data (``spool.encode``); while PostgreSQL is away it is
        kept in the local spool (see spool.py).

        ``batch`` ``(run_together, key)`` (PostgreSQL): operations queued one after the other
        with the same ``run_together`` and distinct ``key``s run as one,
        ``run_together(conn, [args of each])`` returning each one's result, in one savepoint:
        a box's first claims (a line each) cost a few round trips together instead of a few
        each. ``run_together`` must give each the result ``fn`` would, run in order; if it
        raises, they are run again one by one (a failure stays the operation's own).

        ``statement`` (PostgreSQL): ``statement(*args)`` gives the operation as one
        :class:`Statement` (or None: not this time), the same writes and the same value as
        ``fn(conn, *args)``. Consecutive such operations are sent in one round trip, in one
        savepoint, each statement seeing the ones before (a campaign's call steps: the dial
        and end marks, events, the contact's next status, the arming's rules read), instead
        of a round trip and a savepoint each: on a busy box most of the writer's CPU and of
        the server's went to the round trips (the system calls and wake-ups on both sides)
        rather than to the statements. If one fails, or a value is :class:`Undecided`, they
        are rolled back and run again one by one by their functions (a failure stays the
        operation's own). On SQLite ``fn`` runs, as ever (no round trip to save)."""
        op = _Op(fn, args, early=early, record=record, lazy=lazy, batch=batch, statement=statement)
        if self.fault is not None:
            op.future.set_exception(self.fault)
            return op.future
        with self._pending_lock:
            self._pending += 1
        self._q.put(op)
        if not lazy:
            self._waited.set()
        return op.future

    def hurry(self) -> None:
        """Someone now waits for a lazy step queued earlier (a campaign line about to dial
        its armed call row): commit the group holding it now rather than LAZY_COMMIT_S
        after it was queued. At worst (the step was already being committed) one later
        group of lazy steps commits early."""
        self._hurried = True
        self._waited.set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Submit and wait until committed; the result (or exception) of ``fn``."""
        import asyncio
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def flush(self) -> None:
        """Wait until everything submitted before is committed (raises DatabaseFault if it cannot be)."""
        await self.run(_noop)

    @property
    def pending(self) -> int:
        return self._pending

    def add_fault_listener(self, cb: Callable[[DatabaseFault], None]) -> Callable[[], None]:
        """``cb(fault)`` runs in the thread that registered it when it has an asyncio loop
        (the usual case), else in the writer thread. Returns a remover."""
        wrapped: Callable[[DatabaseFault], None]
        try:
            import asyncio
            loop = asyncio.get_running_loop()

            def on_loop(f: DatabaseFault) -> None:
                with contextlib.suppress(RuntimeError):     # the loop is closed: nobody to tell
                    loop.call_soon_threadsafe(cb, f)
            wrapped = on_loop
        except RuntimeError:
            wrapped = cb
        self._listeners.append(wrapped)
        return lambda: self._listeners.remove(wrapped) if wrapped in self._listeners else None

    def close(self, give_up_after: float | None = None) -> int:
        """Commit what is queued, stop the thread, close the connection. With a database
        still locked, wait at most ``give_up_after`` seconds (default: the lock limit);
        returns how many queued writes could not be committed."""
        if not self._thread.is_alive():
            return 0
        self._give_up_at = time.monotonic() + (self.lock_limit_s if give_up_after is None else give_up_after)
        self._q.put(_STOP)
        self._waited.set()
        self._thread.join()
        lost = self._pending
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self.spool is not None:
            self.spool.close()
        return lost

    async def aclose(self, give_up_after: float | None = None) -> int:
        import asyncio
        return await asyncio.to_thread(self.close, give_up_after)

    # ---- the writer thread -------------------------------------------------------------
    def _main(self) -> None:
        while not self._stop:
            first = self._q.get()
            batch: list[_Op] = []
            if first is _STOP:
                self._stop = True
            else:
                batch.append(first)  # type: ignore[arg-type]
            # everything queued while the previous commit's fsync ran joins this group
            self._take_queued(batch)
            if batch and all(op.lazy for op in batch):
                self._wait_for_a_waited_write(batch)
            if batch:
                self._commit(batch)

    def _wait_for_a_waited_write(self, batch: list[_Op]) -> None:
        """Only lazy steps queued: hold them until a write someone waits for comes (it
        takes them along), the stop mark, or LAZY_COMMIT_S. Lazy steps queued meanwhile
        join without waking the thread (``_waited`` is set for the others only)."""
        deadline = time.monotonic() + LAZY_COMMIT_S
        while not self._stop and len(batch) < MAX_BATCH:
            self._waited.clear()     # before the look: a write queued after it sets it again
            hurried, self._hurried = self._hurried, False      # the same: a later hurry() is seen
            n = len(batch)
            self._take_queued(batch)
            if hurried:
                return
            if not all(op.lazy for op in batch[n:]):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop:
                return
            self._waited.wait(remaining)

    def _take_queued(self, batch: list[_Op]) -> None:
        """Everything queued now (past the stop mark too: writes submitted as close() began)."""
        while len(batch) < MAX_BATCH:
            nxt = self._next(0.0)
            if nxt is None and self._q.empty():
                return
            if nxt is not None:
                batch.append(nxt)

    def _next(self, timeout: float) -> _Op | None:
        """The next queued write, waiting up to ``timeout`` s (0: not at all); None when
        there is none, or on the stop mark (which sets ``_stop``)."""
        try:
            nxt = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None
        if nxt is _STOP:
            self._stop = True
            return None
        return nxt  # type: ignore[return-value]

    def _done(self, n: int) -> None:
        with self._pending_lock:
            self._pending -= n

    def _commit(self, batch: list[_Op]) -> None:
        if self.fault is not None:
            self._fail(batch, self.fault)
            return
        waiting_since: float | None = None
        last_warn = 0.0
        while True:
            try:
                results = self._attempt_pg(batch) if self.pg else self._attempt(batch)
            except DatabaseUnreachable as exc:
                if self._wait_for_server(batch, exc):
                    continue
                return
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                if _is_busy(exc):
                    now = time.monotonic()
                    if waiting_since is None:
                        waiting_since = now - LOCK_POLL_S
                    waited = now - waiting_since
                    if now - last_warn >= LOCK_WARN_EVERY_S:
                        last_warn = now
                        log.warning("database %s is locked by another process: %d journal write(s) waiting "
                                    "for %.0f s (limit %g s)", self.path, self._pending, waited, self.lock_limit_s)
                    if waited > self.lock_limit_s and self.lock_fault is None:
                        self.lock_fault = DatabaseFault(self.path, "locked",
                                                        f"writes waited more than {self.lock_limit_s:g} s")
                        self._tell(self.lock_fault)
                    if self._give_up_at is not None and now > self._give_up_at:
                        fault = DatabaseFault(self.path, "locked", f"writes waited {waited:.0f} s; gave up at exit")
                        log.error("%s; %d journal write(s) not recorded", fault, self._pending)
                        self._fail(batch, fault)
                        return
                    continue
                kind: FaultKind = "full" if (_code(exc) in _FULL or "full" in str(exc)) else "io"
                self.fault = DatabaseFault(self.path, kind, str(exc))
                log.error("%s: %d journal write(s) not recorded; nothing committed before is lost",
                          self.fault, self._pending)
                self._fail(batch, self.fault)
                self._tell(self.fault)
                return
            break
        if waiting_since is not None:
            log.warning("database %s: unlocked after %.0f s; journal writes resumed", self.path,
                        time.monotonic() - waiting_since)
        self._settle(batch, results)

    def _back(self, n: int) -> None:
        """PostgreSQL answered again after an outage: say so (the run may start calls again)."""
        if self.unreachable is not None:
            down = self.unreachable
            self.unreachable = None
            log.warning("database %s: server reachable again; %d queued journal write(s) committed",
                        self.path, n)
            self._tell(DatabaseFault(self.path, "unreachable", down.detail, resolved=True))

    def _attempt(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        """The group on SQLite. First with no savepoint per operation (two statements fewer
        per write, most of a journal step's cost): SQLite undoes a failed statement by
        itself, so as long as no operation fails, the result is the same. If one does, the
        group is rolled back and run again with a savepoint per operation, as every
        attempt on PostgreSQL is (operations are run again after a lock wait anyway)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = _run_ops(conn, batch, _db_level, self._take_queued, optimistic=True)
        except _Careful:
            conn.execute("ROLLBACK")
            self.careful_groups += 1
            conn.execute("BEGIN IMMEDIATE")
            results = _run_ops(conn, batch, _db_level, self._take_queued)
        conn.execute("COMMIT")
        return results

    def _attempt_pg(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        """The group on PostgreSQL: the same SAVEPOINT per operation; its transaction id is
        kept so that a COMMIT whose answer is lost can be checked instead of replayed."""
        conn = self._conn
        if conn.broken:
            conn.close()
            self._conn = conn = PgConnection(self.target)
        conn.execute("BEGIN")
        # travels with the group's first statement: the id the retry logic asks about
        conn.note_txid()
        results = _run_ops(conn, batch, lambda exc: isinstance(exc, DatabaseUnreachable), self._take_queued,
                           together=True)
        self._results = results
        if self.spool is not None and any(op.spooled is not None for op in batch):
            self.spool.note_commit(conn.current_txid())   # a restart asks the server about it
        conn.execute("COMMIT")
        return results

    def _wait_for_server(self, batch: list[_Op], exc: DatabaseUnreachable) -> bool:
        """PostgreSQL went away during the group. Wait for it (telling the listeners once),
        then find out whether the group's COMMIT made it. Returns True to run the group
        again; False when it is settled (committed after all, or given up at close)."""
        txid = self._conn.txid
        results, self._results = self._results, []
        if self.unreachable is None:
            self.unreachable = DatabaseFault(self.path, "unreachable", str(exc))
            log.error("%s: %d journal write(s) wait for it; no new calls until it is back",
                      self.unreachable, self._pending)
            self._tell(self.unreachable)
        while True:
            self._spool_waiting(batch)
            if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                fault = DatabaseFault(self.path, "unreachable", f"{exc}; gave up at exit")
                kept = sum(op.spooled is not None for op in batch)
                log.error("%s; %d journal write(s) not recorded%s", fault, self._pending - kept,
                          f" ({kept} kept in the spool {self.spool.path}: committed at the next start)"
                          if kept and self.spool is not None else "")
                self._fail(batch, fault)
                return False
            try:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = PgConnection(self.target, connect_timeout=2)
                break
            except DatabaseUnreachable:
                time.sleep(RECONNECT_EVERY_S)
        if txid is None:
            return True
        try:
            status = self._conn.execute("SELECT txid_status(?)", (txid,)).fetchone()[0]
        except DatabaseUnreachable as again:
            return self._wait_for_server(batch, again)
        if status != "committed":
            return True
        # the COMMIT went through before the connection dropped: settle its operations as
        # usual; those queued while waiting form the next attempt
        done, rest = batch[:len(results)], batch[len(results):]
        self._settle(done, results)
        batch[:] = rest
        return bool(rest)

    def _spool_waiting(self, batch: list[_Op]) -> None:
        """While the server is away: take what was queued since into the waiting group, and
        write the journal steps of the group to the local spool (durable on this box)."""
        self._take_queued(batch)
        if self.spool is None:
            return
        new = [op for op in batch if op.record is not None and op.spooled is None]
        if new:
            for op, seq in zip(new, self.spool.add([op.record for op in new]), strict=True):  # type: ignore[misc]
                op.spooled = seq
            log.warning("database %s unreachable: %d call journal step(s) kept in %s", self.path,
                        sum(op.spooled is not None for op in batch), self.spool.path)

    def _replay(self, replay: Callable[[str], tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
        """Commit the steps a previous run left in the spool (the server was away when it
        stopped), unless the note in the spool says their transaction committed."""
        assert self.spool is not None
        records = self.spool.records()
        txid = self.spool.committing()
        if txid is not None and self._conn.execute("SELECT txid_status(?)", (txid,)).fetchone()[0] == "committed":
            log.warning("spool %s: its %d step(s) were committed before the last stop", self.spool.path,
                        len(records))
            self.spool.clear()
            return
        if not records:
            return
        batch = []
        for seq, rec in records:
            fn, args = replay(rec)
            batch.append(_Op(fn, args, record=rec, spooled=seq))
        with self._pending_lock:
            self._pending += len(batch)
        self._commit(batch)
        failed = [op.future.exception() for op in batch if op.future.exception() is not None]
        log.warning("spool %s: %d call journal step(s) from the last run committed to %s%s", self.spool.path,
                    len(batch) - len(failed), self.path,
                    f"; {len(failed)} refused: {failed[0]}" if failed else "")

    def _settle(self, batch: list[_Op], results: list[tuple[bool, Any]]) -> None:
        self.last_ok = time.monotonic()
        spooled = [op.spooled for op in batch if op.spooled is not None]
        if spooled and self.spool is not None:
            self.spool.remove(spooled)      # committed to the server: the local copy goes
        self._back(len(batch))
        self.commits += 1
        self.ops_committed += len(batch)
        self._done(len(batch))
        for op, (ok, value) in zip(batch, results, strict=True):
            if op.future.done():        # an early read
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(value)

    def _fail(self, batch: list[_Op], fault: DatabaseFault) -> None:
        self._done(len(batch))
        for op in batch:
            if not op.future.done():
                op.future.set_exception(fault)
        if self.fault is not None:
            # nothing more can be written: fail what is queued too, now (callers are waiting)
            rest: list[_Op] = []
            while True:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._q.put(_STOP)
                    break
                rest.append(nxt)  # type: ignore[arg-type]
            self._done(len(rest))
            for op in rest:
                op.future.set_exception(fault)

    def _tell(self, fault: DatabaseFault) -> None:
        for cb in list(self._listeners):
            try:
                cb(fault)
            except Exception:
                log.exception("database fault listener failed")


def _run_ops(conn: Any, batch: list[_Op], fatal: Callable[[BaseException], bool],
             take_late: Callable[[list[_Op]], None], *, optimistic: bool = False,
             together: bool = False) -> list[tuple[bool, Any]]:
    """Each operation of the group in its own SAVEPOINT: one that raises is rolled back alone
    (its result is the exception), unless ``fatal`` says the error is about the database:
    then it propagates and the whole group is retried or failed. Early reads resolve here.

    ``optimistic`` (SQLite's first attempt, see DbWriter._attempt): no savepoints; the first
    operation that raises, or that caught an error of a block of its own, raises
    :class:`_Careful` instead (the caller rolls the group back and runs it carefully). An
    early read resolved meanwhile saw only operations that succeeded, which the careful
    run applies again: its result stands.

    Writes queued while the group ran join it before the COMMIT (``take_late`` appends them
    to ``batch``): they share its fsync instead of waiting for it and paying one of their
    own, which matters most for a call row waited for before ATD. After the first look,
    late writes are taken for at most JOIN_LATE_S.

    ``together`` (PostgreSQL): operations submitted with a ``batch`` run together (see
    DbWriter.submit), in one savepoint; if that raises (not ``fatal``), one by one."""
    results: list[tuple[bool, Any]] = []
    i = 0
    alone_until = 0                  # operations before this index run one by one (a batch failed)
    until: float | None = None       # set at the first look for late writes
    batch_conn = isinstance(conn, BatchConnection)
    optimistic = optimistic and batch_conn
    if optimistic:
        conn._optimistic, conn._dirty = True, False
    try:
        while True:
            if i == len(batch):
                now = time.monotonic()
                if until is None:
                    until = now + JOIN_LATE_S
                elif now > until:
                    break
                take_late(batch)
                if i == len(batch):
                    break
            op = batch[i]
            i += 1
            if optimistic:
                try:
                    value = op.fn(conn, *op.args)
                except Exception as exc:
                    if fatal(exc):
                        raise
                    raise _Careful from exc
                if conn._dirty:
                    raise _Careful
            elif together and i > alone_until and (_statement_of(op) is not None or op.batch is not None):
                # operations run as one (a round trip, a savepoint): one by one if that fails
                if _statement_of(op) is not None:
                    group, stmts = _chunk(batch, i - 1, take_late)
                    run, what = functools.partial(_run_statements, conn, stmts), "sent together"
                else:
                    assert op.batch is not None
                    group = _group(batch, i - 1, take_late)
                    run, what = functools.partial(op.batch[0], conn, [g.args for g in group]), "run together"
                if _together(conn, group, run, fatal, results, what):
                    i += len(group) - 1
                else:
                    alone_until = i - 1 + len(group)
                    i -= 1
                continue
            else:
                conn.execute("SAVEPOINT op")
                if batch_conn:
                    conn._op_changes = conn.total_changes
                try:
                    value = op.fn(conn, *op.args)
                except Exception as exc:
                    if fatal(exc):
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
                    continue
                finally:
                    if batch_conn:
                        conn._op_changes = None
                conn.execute("RELEASE op")
            results.append((True, value))
            if op.early and not op.future.done():
                op.future.set_result(value)
    finally:
        if optimistic:
            conn._optimistic = False
    return results


def _group(batch: list[_Op], start: int, take_late: Callable[[list[_Op]], None]) -> list[_Op]:
    """The operations from ``start`` on that run together (DbWriter.submit ``batch``): the
    same ``run_together``, distinct keys, consecutive (those queued meanwhile looked at too)."""
    first = batch[start]
    assert first.batch is not None
    keys = {first.batch[1]}
    end = start + 1
    while True:
        if end == len(batch):
            take_late(batch)
            if end == len(batch):
                break
        nxt = batch[end].batch
        if nxt is None or nxt[0] is not first.batch[0] or nxt[1] in keys:
            break
        keys.add(nxt[1])
        end += 1
    return batch[start:end]


def _together(conn: Any, group: list[_Op], run: Callable[[], list[Any]], fatal: Callable[[BaseException], bool],
              results: list[tuple[bool, Any]], what: str) -> bool:
    """``group``'s operations run as one, ``run()`` giving each one's value, in one savepoint;
    False (rolled back, nothing set) when that failed: they are then run one by one, and a
    failure stays the operation's own."""
    conn.execute("SAVEPOINT op")
    try:
        values = run()
    except Exception as exc:
        if fatal(exc):
            raise
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        if not isinstance(exc, Undecided):        # (an unusual value: no failure to report)
            log.warning("journal writer: %d operations %s failed (%s); run one by one", len(group), what, exc)
        return False
    conn.execute("RELEASE op")
    for g, value in zip(group, values, strict=True):
        results.append((True, value))
        if g.early and not g.future.done():
            g.future.set_result(value)
    return True


def _run_statements(conn: Any, stmts: list[Statement]) -> list[Any]:
    """The operations' values, their statements sent in one round trip (PgConnection)."""
    got = conn.run_statements([(s.sql, s.params) for s in stmts])
    return [s.value(n, rows) for s, (n, rows) in zip(stmts, got, strict=True)]


def _statement_of(op: _Op) -> Statement | None:
    """The operation as one statement (DbWriter.submit ``statement``), made once; None when it
    has none (or making it failed: the function, run alone, then says why)."""
    if op.made is _NOT_YET:
        op.made = None
        if op.statement is not None:
            with contextlib.suppress(Exception):
                op.made = op.statement(*op.args)
    return op.made  # type: ignore[return-value]


def _chunk(batch: list[_Op], start: int, take_late: Callable[[list[_Op]], None]) -> tuple[list[_Op], list[Statement]]:
    """The consecutive operations from ``start`` on that are one statement each (those queued
    meanwhile looked at too), at most MAX_STATEMENTS, and their statements."""
    ops: list[_Op] = []
    stmts: list[Statement] = []
    end = start
    while len(ops) < MAX_STATEMENTS:
        if end == len(batch):
            take_late(batch)
            if end == len(batch):
                break
        stmt = _statement_of(batch[end])
        if stmt is None:
            break
        ops.append(batch[end])
        stmts.append(stmt)
        end += 1
    return ops, stmts


def _noop(conn: sqlite3.Connection) -> None:
    return None
