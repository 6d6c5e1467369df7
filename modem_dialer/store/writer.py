"""The journal writer: one thread owns the process's SQLite *write* connection.

Why a thread: with ``synchronous=FULL`` every commit waits for an fsync, which takes
milliseconds on an SSD and 40–200 ms on an SD card. Run on the asyncio loop, that wait
stalls every line's call handling. Here the loop only *enqueues* a write (a function
run on the writer's connection) and gets a :class:`concurrent.futures.Future`; the
thread runs everything queued so far in one transaction and commits once (group
commit: one fsync for many rows), then resolves the futures.

Contract (the same for a future PostgreSQL backend, see docs/architecture.md):

- **Ordered**: operations commit in the order they were submitted. A later write never
  becomes durable without the earlier ones; a read submitted after a write sees it.
- **Durable when resolved**: a future resolves only after the COMMIT that holds its
  operation returned, so a caller told "committed" survives kill -9 and power loss.
- **Isolated failures**: each operation runs in its own SAVEPOINT; one that raises
  (a bug, a constraint) is rolled back alone and its future carries the exception.
- **Never dropped**: a database locked by another process is waited for (a warning
  names the database every few seconds) and retried; after ``lock_limit`` seconds the
  fault listeners hear a :class:`DatabaseFault` ``locked`` (so the run can stop starting
  calls) while the writes go on waiting. A full disk or an I/O error is fatal: the
  batch rolls back (nothing committed before is touched), its futures and every later
  one fail with :class:`DatabaseFault`, and the listeners hear it once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import UserError

log = logging.getLogger("modem_dialer.store")

T = TypeVar("T")
FaultKind = Literal["locked", "full", "io"]

# How long one BEGIN IMMEDIATE waits for another process's lock before the writer looks
# at the clock (warning, limit) and tries again. Patchable for tests.
LOCK_POLL_S = 0.5
# Repeat the "database is locked" warning this often while waiting.
LOCK_WARN_EVERY_S = 5.0
# Default for how long writes may wait for a lock before the run is told to stop.
DEFAULT_LOCK_LIMIT_S = 60.0
# An upper bound on one group (keeps one transaction's memory and lock time bounded).
MAX_BATCH = 2000
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

    def __init__(self, path: str, kind: FaultKind, detail: str) -> None:
        self.path, self.kind, self.detail = path, kind, detail
        what = {"locked": "locked by another process", "full": "disk full", "io": "cannot write"}[kind]
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

    def __enter__(self) -> BatchConnection:
        self._depth += 1
        self.execute(f"SAVEPOINT s{self._depth}")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        name = f"s{self._depth}"
        self._depth -= 1
        if exc_type is not None:
            with contextlib.suppress(sqlite3.Error):
                self.execute(f"ROLLBACK TO {name}")
                self.execute(f"RELEASE {name}")
        else:
            self.execute(f"RELEASE {name}")
        return False


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    early: bool = False     # a read: resolved as soon as it ran, before the group's COMMIT
    lazy: bool = False      # nobody waits for it: committed with the next write that is waited
                            # for, or LAZY_COMMIT_S after it was queued


_STOP = object()


class DbWriter:
    """The thread that owns the write connection of one database file (see the module doc)."""

    def __init__(self, path: str | Path, *, lock_limit_s: float = DEFAULT_LOCK_LIMIT_S,
                 busy_timeout_s: float = LOCK_POLL_S) -> None:
        self.path = str(path)
        self.lock_limit_s = lock_limit_s
        self.fault: DatabaseFault | None = None     # fatal (full, io): no write will succeed
        self.lock_fault: DatabaseFault | None = None  # the lock outlasted the limit (writes still wait)
        self.commits = 0          # group commits done (the bench reads these)
        self.ops_committed = 0
        self._listeners: list[Callable[[DatabaseFault], None]] = []
        self._q: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._give_up_at: float | None = None       # set by close(): stop waiting for a lock then
        self._stop = False                          # the writer thread saw close()'s stop mark
        try:
            self._conn = sqlite3.connect(self.path, factory=BatchConnection, isolation_level=None,
                                         timeout=busy_timeout_s, check_same_thread=False)
        except sqlite3.Error as exc:
            raise UserError(f"database {self.path}: cannot open ({exc})") from None
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._thread = threading.Thread(target=self._main, name=f"journal-writer {Path(self.path).name}",
                                        daemon=True)
        self._thread.start()

    # ---- the loop side -----------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any, early: bool = False,
               lazy: bool = False) -> concurrent.futures.Future[T]:
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
        """
        op = _Op(fn, args, early=early, lazy=lazy)
        if self.fault is not None:
            op.future.set_exception(self.fault)
            return op.future
        with self._pending_lock:
            self._pending += 1
        self._q.put(op)
        return op.future

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
        self._thread.join()
        lost = self._pending
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
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
        takes them along), the stop mark, or LAZY_COMMIT_S."""
        deadline = time.monotonic() + LAZY_COMMIT_S
        while not self._stop and len(batch) < MAX_BATCH:
            remaining = deadline - time.monotonic()
            nxt = self._next(remaining) if remaining > 0 else None
            if nxt is None:
                return
            batch.append(nxt)
            self._take_queued(batch)
            if not all(op.lazy for op in batch):
                return

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
                results = self._attempt(batch)
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

    def _attempt(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one transaction and commit. Writes queued while it ran join it
        before the COMMIT (appended to ``batch``): they share its fsync instead of waiting
        for it and paying one of their own, which matters most for a call row waited for
        before ATD."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        results: list[tuple[bool, Any]] = []
        i = 0
        until: float | None = None       # set at the first look for late writes
        while True:
            if i == len(batch):
                now = time.monotonic()
                if until is None:
                    until = now + JOIN_LATE_S
                elif now > until:
                    break
                self._take_queued(batch)
                if i == len(batch):
                    break
            op = batch[i]
            i += 1
            conn.execute("SAVEPOINT op")
            try:
                value = op.fn(conn, *op.args)
            except Exception as exc:
                if _db_level(exc):
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((False, exc))
                continue
            conn.execute("RELEASE op")
            results.append((True, value))
            if op.early and not op.future.done():
                op.future.set_result(value)
        conn.execute("COMMIT")
        return results

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


def _noop(conn: sqlite3.Connection) -> None:
    return None
