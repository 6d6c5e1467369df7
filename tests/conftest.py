"""Shared fixtures: a simulated modem bank on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from modem_dialer.modems.options import ModemConfig
from modem_dialer.sim.callee import Scenario
from modem_dialer.sim.sim_bank import SimBank, SimSpec

FAMILIES = ["quectel", "simcom", "sim800", "huawei", "generic"]


def _children() -> set[int]:
    """PIDs whose parent is this test process (read from /proc: no psutil needed)."""
    me, found = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(d.name))
    return found


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """A test that fails or times out must not leave its `serve`, `call` or simulator running:
    orphans keep modems busy and, on an unpaced ALSA file PCM, grow without bound."""
    before = _children()
    yield
    for pid in _children() - before:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def query_plan(conn, query: str) -> list[str]:
    """How the database would run ``query``, one line per step, on either backend. On
    PostgreSQL sequential scans are disabled first: a test's tiny table is read faster
    without an index, and the question is whether the index *can* serve the query."""
    if getattr(conn, "dialect", None) is not None:
        conn.execute("SET enable_seqscan = off")
        return [r[0] for r in conn.execute("EXPLAIN " + query).fetchall()]
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + query).fetchall()]


def is_sorted_in_plan(plan: list[str]) -> bool:
    """Does the plan sort rows itself (rather than read them in index order)?"""
    return any("TEMP B-TREE" in p or p.strip().startswith("Sort") or "->  Sort" in p for p in plan)


@pytest.fixture
async def make_bank():
    """``await make_bank(specs_or_family, scenario)`` → a started SimBank, stopped at teardown."""
    banks: list[SimBank] = []

    async def make(specs: list[SimSpec] | str = "quectel", scenario: Scenario | None = None, n: int = 1) -> SimBank:
        if isinstance(specs, str):
            bank = SimBank.of(n, specs, scenario)
        else:
            bank = SimBank(specs, scenario)
        banks.append(bank)
        return await bank.start()

    yield make
    for b in banks:
        await b.stop()
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def pg():
    """A throw-away PostgreSQL cluster (tests/pgcluster.py), one per xdist worker, stopped and
    removed at the end of the session whatever the tests did. Its server is not a child of
    this process (pg_ctl detaches it), so _no_leftover_processes leaves it alone."""
    from pgcluster import pg_cluster

    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    """What ``database:`` would say, once per backend: a SQLite file, or a fresh empty schema
    on the test cluster (the store's tests run against both)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    cluster = request.getfixturevalue("pg")
    dsn = cluster.new_schema()
    yield dsn
    cluster.drop_schema(dsn)


@pytest.fixture
def journal(tmp_path):
    """A CallJournal (the journal writer) on a fresh database file."""
    from modem_dialer.store import open_db
    from modem_dialer.store.call_journal import CallJournal

    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    yield j
    j.close()
    conn.close()


def modem_config(bank: SimBank, i: int = 0, **over) -> ModemConfig:
    entry = bank.modems_config()[i]
    entry.update(over)
    return ModemConfig(**entry)


async def run_cli(*args: str, env: dict | None = None, stdin: str | None = None,
                  timeout: float = 40) -> tuple[int, str, str]:
    """Run ``modem-dialer ARGS`` as a user would, in a subprocess, while the test's event loop
    keeps serving the simulated bank. Returns (exit code, stdout, stderr)."""
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modem_dialer.cli", *args, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    finally:
        # A test that times out or fails must not leave the command running: an orphaned `call` on an
        # unpaced ALSA file PCM grows without bound and an orphaned `serve` keeps its modems busy.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


async def wait_until(pred, timeout: float = 15.0) -> None:
    """Poll ``pred`` every 20 ms until it is true (a test waits on the state it needs, not a
    fixed sleep); fails the test after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)
