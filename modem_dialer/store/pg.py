"""PostgreSQL behind the store's connection surface (``database: postgresql://…``).

The store's classes were written against ``sqlite3.Connection``; :class:`PgConnection`
gives them the same small surface on a psycopg 3 connection, so each statement is written
once for both backends:

- ``execute(sql, params)`` / ``executemany`` with SQLite's ``?`` and ``?N`` placeholders,
  translated here (and only here) to psycopg's;
- rows by name and by position (:class:`Row`, like ``sqlite3.Row``), ``dict(row)``;
- ``with conn:`` is a transaction (``BEGIN`` … ``COMMIT``/``ROLLBACK``), or a SAVEPOINT when
  one is already open (the journal writer's group transaction);
- ``total_changes``, ``in_transaction``, ``rowcount``, and ``lastrowid``: PostgreSQL has
  none, so an ``INSERT INTO t`` (without its own RETURNING) into a table with an ``id``
  column gets ``RETURNING id`` appended here, in the same round trip;
- errors are raised as the DB-API classes of ``sqlite3`` (IntegrityError, OperationalError…)
  so that the callers' ``except`` clauses mean the same on both backends; the psycopg error is
  the ``__cause__``. A lost connection is :class:`DatabaseUnreachable`.

Parameters are merged on the client (psycopg's ClientCursor): SQLite's loose typing of
parameters (``? IS NULL`` with None, a text compared with an integer column) keeps working,
and transaction control statements (BEGIN, SAVEPOINT, RELEASE) are sent in the same round
trip as the statement that follows them instead of one round trip each, as are several
statements whose results are all read at once (:meth:`PgConnection.run_statements`: the
journal writer's consecutive one-statement steps). Server-side binding would need a round
trip per statement, or a pipeline.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .dialect import POSTGRES, Dialect

if TYPE_CHECKING:
    import psycopg
    from psycopg import pq


def _load_psycopg() -> None:
    """Import psycopg (the module globals ``psycopg`` and ``pq``) at the first PostgreSQL
    connection or URL check rather than with the store: ~0.2 s of CPU at start-up that a process
    on SQLite (``serve``, ``campaign run``… on a file) never needs."""
    if "psycopg" not in globals():
        import psycopg
        from psycopg import pq

        globals().update(psycopg=psycopg, pq=pq)

# The control statements PgConnection may defer to the next round trip.
_CONTROL = re.compile(r"^\s*(BEGIN|SAVEPOINT|RELEASE|ROLLBACK\s+TO)\b", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_LITERALS = re.compile(r"'(?:[^']|'')*'|--[^\n]*")
_TOKEN = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\?(\d*)|%")


def is_postgres(target: object) -> bool:
    """Does a ``database:`` value name a PostgreSQL server rather than a SQLite file?"""
    return str(target).startswith(("postgresql://", "postgres://"))


def url_problem(dsn: str) -> str | None:
    """What libpq would refuse in a ``postgresql://`` URL (the config checks it at load), or None."""
    from psycopg.conninfo import conninfo_to_dict

    _load_psycopg()
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", dsn)


class DatabaseUnreachable(sqlite3.OperationalError):
    """The PostgreSQL server cannot be reached (down, restarting, network): the statement
    did not run, or its transaction was rolled back by the server."""


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """SQLite placeholders to psycopg's: ``?`` → ``%s``; ``?N`` → ``%s`` with the parameters
    reordered (returned as the 0-based index of each); a literal ``%`` doubled. String
    literals and comments are left alone. A statement with psycopg's own ``%s`` and no ``?``
    (PostgreSQL-only SQL) passes unchanged."""
    order: list[int] = []
    numbered = plain = False

    def sub(m: re.Match[str]) -> str:
        nonlocal numbered, plain
        tok = m.group(0)
        if tok == "%":
            return "%%"
        if tok.startswith("?"):
            if m.group(1):
                numbered = True
                order.append(int(m.group(1)) - 1)
            else:
                plain = True
            return "%s"
        return tok.replace("%", "%%") if tok.startswith("'") else tok

    bare = _LITERALS.sub("", sql)
    if "%s" in bare and "?" not in bare:
        return sql, None        # written for psycopg already (%s placeholders, % escaped): as is
    out = _TOKEN.sub(sub, sql)
    if numbered and plain:
        raise ValueError(f"mixed ? and ?N placeholders: {sql[:60]!r}")
    return out, (tuple(order) if numbered else None)


def _params(order: tuple[int, ...] | None, params: Sequence[Any]) -> Sequence[Any]:
    return params if order is None else [params[i] for i in order]


class Row:
    """One result row: ``row[0]``, ``row["name"]``, ``dict(row)``, unpacking — like sqlite3.Row."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self._values) == (tuple(other) if isinstance(other, Row | tuple) else other)

    def __hash__(self) -> int:
        return hash(tuple(self._values))

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _field_names(cursor: Any) -> list[str] | None:
    """The current result's column names, read off the libpq result (``cursor.description``
    builds a Column object per column and result: a third of the journal writer's CPU went
    there, for the SAVEPOINT/RELEASE results of every statement); None: no rows (a command)."""
    res = cursor.pgresult
    if res is None or res.status != pq.ExecStatus.TUPLES_OK:
        return None
    codec = cursor.connection.info.encoding
    return [(res.fname(i) or b"").decode(codec) for i in range(res.nfields)]


def _row_factory(cursor: Any) -> Any:
    names = _field_names(cursor)
    if names is None:
        return tuple
    index = {n: i for i, n in enumerate(names)}
    return lambda values: Row(values, index)


@functools.cache
def _number_loader() -> type:
    from psycopg.adapt import Loader

    class _NumberLoader(Loader):
        """numeric → int when whole, else float: SUM/AVG/EXTRACT give numeric in PostgreSQL where
        SQLite gives an integer or a real; a Decimal would break JSON output and arithmetic."""

        def load(self, data: Any) -> int | float:
            s = bytes(data).decode()
            try:
                return int(s)
            except ValueError:
                return float(s)

    return _NumberLoader


def _translate_error(exc: psycopg.Error, conn: psycopg.Connection) -> sqlite3.Error:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if conn.closed or conn.broken or (isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None) \
            or (exc.sqlstate or "").startswith(("08", "57P")):
        return DatabaseUnreachable(msg)
    cls: type[sqlite3.Error]
    if isinstance(exc, psycopg.IntegrityError):
        cls = sqlite3.IntegrityError
    elif isinstance(exc, psycopg.errors.RaiseException):
        cls = sqlite3.IntegrityError
    elif isinstance(exc, psycopg.DataError):
        cls = sqlite3.DataError
    elif isinstance(exc, psycopg.ProgrammingError):
        cls = sqlite3.ProgrammingError
    elif isinstance(exc, psycopg.OperationalError):
        cls = sqlite3.OperationalError
    else:
        cls = sqlite3.DatabaseError
    return cls(msg)


def _open(dsn: str, connect_timeout: float, *, client_side: bool) -> psycopg.Connection[Any]:
    """An autocommit connection (``client_side``: parameters merged on the client, module doc),
    numeric read as int/float; ``DatabaseUnreachable`` when the server cannot be reached."""
    _load_psycopg()
    try:
        timeout = max(1, int(connect_timeout))
        pg: psycopg.Connection[Any] = (
            psycopg.connect(dsn, autocommit=True, connect_timeout=timeout, cursor_factory=psycopg.ClientCursor)
            if client_side else psycopg.connect(dsn, autocommit=True, connect_timeout=timeout))
    except psycopg.Error as exc:
        text = str(exc).strip()
        raise DatabaseUnreachable(f"cannot connect ({text.splitlines()[-1] if text else type(exc).__name__})") \
            from exc
    pg.adapters.register_loader("numeric", _number_loader())
    return pg


def _safe_to_resend(query: str, exc: psycopg.Error) -> bool:
    """A statement outside a transaction that failed with the connection: sending it again
    cannot apply it twice when it only reads, or when the server says it had ended the
    session before the statement came (57P01..57P03: shutdown, crash, not accepting yet)."""
    return query.lstrip().upper().startswith("SELECT") or (exc.sqlstate or "").startswith("57P")


class PgCursor:
    """The result of one ``execute``: fetchone/fetchall/iteration, rowcount."""

    __slots__ = ("_cur", "lastrowid", "rowcount")

    def __init__(self, cur: psycopg.Cursor[Any], rowcount: int, lastrowid: int | None = None) -> None:
        self._cur = cur
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._cur.fetchmany(size) if self._cur.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection with the sqlite3.Connection surface the store uses (module doc)."""

    dialect: Dialect = POSTGRES
    # round trips of every connection of the process (bench/pg_store.py reports them per call)
    all_round_trips = 0

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.name = redact(dsn)
        self.total_changes = 0
        self._pending: list[str] = []    # control statements to send with the next round trip
        self._savepoints = 0
        self._blocks: list[str | None] = []     # open nested blocks: savepoint name, None when shared
        self._op_fresh = False           # "SAVEPOINT op" queued, nothing run since (__enter__)
        self._open_tx = False            # a BEGIN was sent or is pending
        self.round_trips = 0             # the bench reads this
        self.txid: int | None = None     # the open transaction's id, once note_txid() got it
        self._id_tables: set[str] = set()     # tables known to have an id column (lastrowid)
        self._no_id_tables: set[str] = set()
        self.connect_timeout = connect_timeout
        self._pg = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        pg = _open(self.dsn, self.connect_timeout, client_side=True)
        pg.row_factory = _row_factory
        return pg

    def _ensure(self) -> None:
        """A connection the server dropped (restart, failover) is replaced at the next
        statement, unless a transaction had reached the server on it: that transaction is
        gone, and the statement fails (DatabaseUnreachable) for its owner to see. While the
        server is away, connecting again raises DatabaseUnreachable."""
        if not (self._pg.closed or self._pg.broken):
            return
        if self._open_tx and "BEGIN" not in self._pending:
            return
        with contextlib.suppress(Exception):
            self._pg.close()
        self._pg = self._connect()

    # ---- statements ------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        if _CONTROL.match(sql) or sql.strip().upper() in ("COMMIT", "ROLLBACK", "BEGIN IMMEDIATE"):
            self._control(sql.strip())
            return PgCursor(self._pg.cursor(), -1)
        query, order = translate(sql)
        m = _INSERT.match(query)
        if m and not _RETURNING.search(query) and self._has_id(m.group(1).lower()):
            cur = self._send(query + " RETURNING id", list(_params(order, params)))
            row = cur.fetchone()
            cur.lastrowid = None if row is None else int(row[0])
            return cur
        return self._send(query, list(_params(order, params)))

    def _has_id(self, table: str) -> bool:
        if table in self._id_tables:
            return True
        if table in self._no_id_tables:
            return False
        # read once per table (tables only ever gain columns; a migration may create it later)
        found = self._send("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
                           " AND table_name = %s AND column_name = 'id'", [table]).fetchone()
        (self._id_tables if found else self._no_id_tables).add(table)
        return found is not None

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        query, order = translate(sql)
        self._flush_pending()
        self._op_fresh = False
        self._ensure()
        cur = self._pg.cursor()
        try:
            cur.executemany(query, [_params(order, p) for p in seq])
        except psycopg.Error as exc:
            self._after_error()
            raise _translate_error(exc, self._pg) from exc
        self.round_trips += 1
        PgConnection.all_round_trips += 1
        n = max(cur.rowcount, 0)
        self.total_changes += n
        return PgCursor(cur, n)

    def run_statements(self, stmts: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[int, list[Any]]]:
        """Several statements (SQLite's placeholders) in one round trip, in order, each seeing
        the ones before; each one's rowcount and rows (none for a command). Their parameters
        are merged on the client as every statement's are (module doc), so they go as one
        text. The first that fails stops the rest and is raised as :meth:`execute` raises it;
        the caller rolls back (a savepoint: the journal writer, DbWriter.submit ``statement``).
        Never sent twice: not even a lost connection outside a transaction sends it again."""
        queries: list[str] = []
        params: list[Any] = []
        for sql, p in stmts:
            query, order = translate(sql)
            queries.append(query)
            params += _params(order, p)
        cur = self._send("; ".join(queries), params, resend=False)._cur
        out: list[tuple[int, list[Any]]] = []
        for k in range(-len(queries), 0):
            cur.set_result(k)
            res = cur.pgresult
            rows = cur.fetchall() if res is not None and res.status == pq.ExecStatus.TUPLES_OK else []
            n = cur.rowcount
            if k != -1 and n > 0 and cur.statusmessage and cur.statusmessage.split()[0] in ("INSERT", "UPDATE",
                                                                                           "DELETE"):
                self.total_changes += n       # the last one's counted by _send
            out.append((n, rows))
        return out

    def _send(self, query: str, params: list[Any], *, resend: bool = True) -> PgCursor:
        self._op_fresh = False
        self._ensure()
        outside_tx = not self._open_tx
        prefix = self._pending
        if prefix:
            self._pending = []
            query = "; ".join([*prefix, query])
        cur = self._pg.cursor()
        try:
            cur.execute(query, params)
            self._skip_to_last(cur)
        except psycopg.Error as exc:
            self._after_error()
            err = _translate_error(exc, self._pg)
            if not (resend and isinstance(err, DatabaseUnreachable) and outside_tx and _safe_to_resend(query, exc)):
                raise err from exc
            # the server dropped this idle connection (a restart): the statement did not run,
            # or only read; once more on a new connection (DatabaseUnreachable if still away)
            self._ensure()
            cur = self._pg.cursor()
            try:
                cur.execute(query, params)
            except psycopg.Error as again:
                self._after_error()
                raise _translate_error(again, self._pg) from again
        self.round_trips += 1
        PgConnection.all_round_trips += 1
        n = cur.rowcount
        if n > 0 and cur.statusmessage and cur.statusmessage.split()[0] in ("INSERT", "UPDATE", "DELETE"):
            self.total_changes += n
        return PgCursor(cur, n)

    def _skip_to_last(self, cur: psycopg.Cursor[Any]) -> None:
        """The deferred control statements' results come first: keep the last one, noting a
        transaction id asked for on the way (note_txid)."""
        while True:
            names = _field_names(cur)
            noted = names == ["txid_current"]
            if noted:
                row = cur.fetchone()
                self.txid = None if row is None else int(row[0])
            if not cur.nextset():
                if noted:
                    cur.scroll(0, mode="absolute")    # the caller's own result: read it again
                return

    def note_txid(self) -> None:
        """Ask for the transaction's id with the next round trip (``txid``); the journal
        writer uses it to tell, after a lost connection, whether its COMMIT made it."""
        self.txid = None
        self._pending.append("SELECT txid_current()")

    def current_txid(self) -> int:
        """The open transaction's id, sending what is pending first if it is not known yet."""
        if self.txid is None:
            self._flush_pending()
        if self.txid is None:
            self.txid = int(self._send("SELECT txid_current()", []).fetchone()[0])
        return self.txid

    def _flush_pending(self) -> None:
        if self._pending:
            self._send("SELECT 1", [])

    def _after_error(self) -> None:
        if self._pg.closed or self._pg.broken:
            # the server dropped the connection: its transaction is gone with it
            self._pending, self._savepoints, self._open_tx, self._blocks = [], 0, False, []

    @contextlib.contextmanager
    def copy_in(self, table: str, columns: Sequence[str]) -> Iterator[psycopg.Copy]:
        """``COPY table (columns) FROM STDIN``: ``copy.write_row(values)`` streams rows (``db
        copy``). ``table`` and ``columns`` are our schema's names, never input."""
        self._flush_pending()
        cur = self._pg.cursor()
        try:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                yield copy
        except psycopg.Error as exc:
            self._after_error()
            raise _translate_error(exc, self._pg) from exc
        self.round_trips += 1
        PgConnection.all_round_trips += 1

    # ---- transactions ----------------------------------------------------------------
    def _control(self, stmt: str) -> None:
        up = " ".join(stmt.upper().split())
        if up in ("BEGIN", "BEGIN IMMEDIATE"):
            self._pending.append("BEGIN")
            self._open_tx = True
        elif up in ("COMMIT", "ROLLBACK"):
            pending, self._pending = self._pending, []
            self._open_tx, self._savepoints, self._blocks = False, 0, []
            if "BEGIN" in pending:
                return              # the transaction never reached the server: nothing to end
            if up == "ROLLBACK":
                pending = []        # nothing queued needs to reach a transaction being thrown away
            self._run_now("; ".join([*pending, up]))
        else:                       # SAVEPOINT / RELEASE / ROLLBACK TO: joins the next round trip
            self._pending.append(stmt)
            self._op_fresh = self._open_tx and up == "SAVEPOINT OP"
            return
        self._op_fresh = False

    def _run_now(self, stmt: str) -> None:
        self._op_fresh = False
        try:
            self._skip_to_last(self._pg.execute(stmt))   # no parameters: sent as is
        except psycopg.Error as exc:
            self._after_error()
            raise _translate_error(exc, self._pg) from exc
        self.round_trips += 1
        PgConnection.all_round_trips += 1

    @property
    def in_transaction(self) -> bool:
        return self._open_tx

    def __enter__(self) -> PgConnection:
        if self._open_tx:
            if self._op_fresh:
                # the journal writer's "SAVEPOINT op" was just queued and nothing ran since: the
                # block shares it (as the writer's SQLite connection does, BatchConnection): on
                # failure "ROLLBACK TO op" undoes exactly the block; on success there is nothing
                # to release. Most operations are one such block (every journal step): two
                # statements and a subtransaction less each on the server
                self._op_fresh = False
                self._blocks.append(None)
                return self
            self._savepoints += 1
            self._blocks.append(f"w{self._savepoints}")
            self._pending.append(f"SAVEPOINT w{self._savepoints}")
        else:
            self._control("BEGIN")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        if self._blocks:
            name = self._blocks.pop()
            if name is None:
                if exc_type is not None and not (self._pg.closed or self._pg.broken):
                    self._pending.append("ROLLBACK TO op")
                return False
            self._savepoints -= 1
            if exc_type is None:
                self._pending.append(f"RELEASE {name}")
            elif not (self._pg.closed or self._pg.broken):
                self._pending += [f"ROLLBACK TO {name}", f"RELEASE {name}"]
            return False
        if not self._open_tx:       # the connection was lost inside the block: nothing to end
            return False
        if exc_type is None:
            self._control("COMMIT")
        else:
            try:
                self._control("ROLLBACK")
            except sqlite3.Error:
                pass                # the original error matters more
        return False

    def commit(self) -> None:
        if self._open_tx:
            self._control("COMMIT")

    # ---- the rest ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._pg.closed

    @property
    def broken(self) -> bool:
        """The server went away: a new connection is needed."""
        return self._pg.closed or self._pg.broken or self._pg.info.transaction_status == pq.TransactionStatus.UNKNOWN

    def close(self) -> None:
        self._pg.close()

    def __del__(self) -> None:
        pg = getattr(self, "_pg", None)
        if pg is not None and not pg.closed:
            pg.close()


class PreparedReader:
    """A connection for reads sent again and again (a campaign line's rules read at the dial:
    ``CallJournal.dial_facts`` urgent), used by one thread at a time.

    Parameters are bound on the server (not merged on the client as :class:`PgConnection`
    does), so a statement of one shape (one ``Compliance.dial_facts_many`` shape) is prepared
    on the server after its first few runs (psycopg's ``prepare_threshold``) and no longer
    parsed and planned each time. Read-only statements only: one lost with the connection is
    sent once more on a new one (a server restart), else ``DatabaseUnreachable``; a server
    away raises it as PgConnection does."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.round_trips = 0
        self._pg: psycopg.Connection[Any] | None = None

    def connect(self) -> None:
        """Open the connection now, if it is not open (else the first read opens it)."""
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._pg = _open(self.dsn, self.connect_timeout, client_side=False)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement (SQLite's placeholders, as everywhere in the store)."""
        query, order = translate(sql)
        args = list(_params(order, params))
        for again in (False, True):
            pg = self._pg
            if pg is None or pg.closed or pg.broken:
                pg = self._pg = _open(self.dsn, self.connect_timeout, client_side=False)
            try:
                rows = pg.execute(query, args).fetchall()
            except psycopg.Error as exc:
                err = _translate_error(exc, pg)
                if again or not isinstance(err, DatabaseUnreachable):
                    raise err from exc
                continue    # a dropped idle connection (server restart): once more on a new one
            self.round_trips += 1
            PgConnection.all_round_trips += 1
            return rows
        raise AssertionError("unreachable")

    def close(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None and not pg.closed:
            with contextlib.suppress(Exception):
                pg.pgconn.finish()


# Campaign changes, told to every box at once (PostgreSQL's LISTEN/NOTIFY): the channel is the
# database's; the payload is the schema, so that boxes of another schema of the same database
# (the tests' throw-away schemas) ignore them.
CAMPAIGNS_CHANNEL = "modem_dialer_campaigns"
NOTIFY_CAMPAIGNS = f"SELECT pg_notify('{CAMPAIGNS_CHANNEL}', current_schema())"
# the listener's wait between two looks at its stop flag, and before connecting again
LISTEN_POLL_S = 0.5
LISTEN_RETRY_S = 2.0


def listen_campaign_changes(dsn: str, on_change: Callable[[], None], *, name: str = "campaign-listen",
                            listening: threading.Event | None = None) -> Callable[[], None]:
    """Call ``on_change()`` (in a thread of its own) each time a campaign of this database and
    schema changes (``Campaigns.update_campaign`` notifies, at its commit), so that a box joins
    a campaign another box started at once instead of at its next poll. Best effort: while
    the server is away it tries again every LISTEN_RETRY_S (the caller keeps polling).
    Returns the function that stops it (at once: the thread ends, and closes its connection,
    within LISTEN_POLL_S; a stopping service does not wait for it). ``listening`` is set while
    the thread listens (a caller may then look less often), and ``on_change()`` is called
    each time it starts to (what changed while it did not listen is looked at)."""
    _load_psycopg()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = None if row is None else row[0]
                    conn.execute(f"LISTEN {CAMPAIGNS_CHANNEL}")
                    if listening is not None:
                        listening.set()
                    on_change()
                    while not stop.is_set():
                        for n in conn.notifies(timeout=LISTEN_POLL_S):
                            if n.payload == schema:
                                on_change()
            except psycopg.Error:
                pass
            if listening is not None:
                listening.clear()
            stop.wait(LISTEN_RETRY_S)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    return stop.set


# A number's dial records changed (docs/scale-out.md "Armed next call"): the triggers of schema
# step 7 (migrations.DIAL_FACTS_NOTIFY_PG) notify this channel at the commit of a suppression,
# a refusal, or a call outside any campaign (a campaign's call to a number is written only by a
# claim, refused while another call to the number is open); the payload: "SCHEMA NUMBER".
FACTS_CHANNEL = "modem_dialer_facts"
# how far back a watch vouches for a number (a mark older than this: read again)
FACTS_HORIZON_S = 120.0


class FactsWatch:
    """What a box has heard of changes to numbers' dial records since a moment (LISTEN on
    FACTS_CHANNEL, in a thread of its own with its own connection).

    ``mark()`` is taken just before a number's records are read; ``unchanged(number, mark)``
    later says whether the watch, listening without a break since before that mark, heard no
    change to the number since: the records read then still hold. A change is heard after
    its commit (the notification's delivery, a few milliseconds); the watch knows nothing of
    what it did not hear, so while it is not listening (starting, the server away, a
    connection lost) ``mark()`` is None and nothing is vouched for."""

    def __init__(self, dsn: str, *, name: str = "facts-listen") -> None:
        self.dsn, self.name = dsn, name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listening: tuple[int, float] | None = None   # (generation, since): connected and LISTENing
        self._generation = 0
        self._heard: dict[str, float] = {}                 # number -> when its last change was heard
        self._pruned = 0.0
        self.ready = threading.Event()                     # set once listening (tests wait for it)
        self._thread: threading.Thread | None = None

    def start(self) -> FactsWatch:
        _load_psycopg()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """At once: the thread ends, and closes its connection, within LISTEN_POLL_S."""
        self._stop.set()
        with self._lock:
            self._listening = None

    def mark(self) -> tuple[int, float] | None:
        """This moment, if the watch is listening (else None: nothing can be vouched for)."""
        with self._lock:
            if self._listening is None:
                return None
            return self._listening[0], time.monotonic()

    def unchanged(self, number: str, mark: tuple[int, float] | None) -> bool:
        """No change to ``number`` heard since ``mark``, listening all along since before it."""
        if mark is None:
            return False
        generation, at = mark
        with self._lock:
            return (self._listening is not None and self._listening[0] == generation
                    and self._listening[1] <= at and time.monotonic() - at < FACTS_HORIZON_S
                    and self._heard.get(number, -math.inf) < at)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    row = conn.execute("SELECT current_schema()").fetchone()
                    prefix = f"{None if row is None else row[0]} "
                    conn.execute(f"LISTEN {FACTS_CHANNEL}")
                    with self._lock:
                        self._generation += 1
                        self._listening = (self._generation, time.monotonic())
                    self.ready.set()
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=LISTEN_POLL_S):
                            if n.payload.startswith(prefix):
                                now = time.monotonic()
                                with self._lock:
                                    self._heard[n.payload[len(prefix):]] = now
                        self._prune()
            except psycopg.Error:
                pass
            with self._lock:        # not listening: nothing heard meanwhile can be vouched for
                self._listening = None
            self.ready.clear()
            self._stop.wait(LISTEN_RETRY_S)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < FACTS_HORIZON_S:
            return
        self._pruned = now
        with self._lock:
            self._heard = {k: t for k, t in self._heard.items() if now - t < FACTS_HORIZON_S}
