"""Shared fixtures: a simulated modem bank on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Cache compiled bytecode (and pytest's rewritten test modules) in __pycache__ even where the
# environment sets PYTHONDONTWRITEBYTECODE, as scripts/test.sh does: else every run, each xdist
# worker and each `modem-dialer` process a test starts compiles the package from source again
# (collection alone: about 6 s of CPU per worker instead of 2.5). Set before the package and
# the helpers are imported (by the test modules) so that they are cached too; the environment,
# for the xdist workers and the processes that tests start.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# A test run started in the background by a script (`bash -c '…' &`, some CI runners) has
# SIGINT ignored, and an ignored signal stays ignored in every process the tests start: the
# tests that stop a child with SIGINT then wait for their kill timeout (15 s per simulator in
# a teardown). A handler (not SIG_IGN) is reset to the default at exec, so children get
# Python's usual Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if TYPE_CHECKING:
    from modem_dialer.modems.options import ModemConfig
    from modem_dialer.sim.callee import Scenario
    from modem_dialer.sim.sim_bank import SimBank, SimSpec

# Shared helpers live in helpers.py; test modules long imported them from here, and still may
# (``from conftest import run_cli``): looked up on first use, not imported with this file.
# helpers.py imports the service, aiohttp and the config (~0.9 s of CPU): the xdist
# controller, which loads this file but runs no test, had that on its path before it started
# the workers. The workers import them with the first test module that needs them.
_FROM_HELPERS = ("run_cli", "run_cli_process", "start_cli", "wait_until")


def __getattr__(name: str) -> object:
    if name in _FROM_HELPERS:
        import helpers

        return getattr(helpers, name)
    raise AttributeError(f"module 'conftest' has no attribute {name!r}")

FAMILIES = ["quectel", "simcom", "sim800", "huawei", "generic"]


def _children() -> set[int]:
    """PIDs whose parent is this test process (read from /proc: no psutil needed). Twice a
    test: from the kernel's list of each thread's children where it keeps one (0.1 ms), else
    by reading every process's stat (~9 ms with the ~120 processes of a full run: 17 s of CPU
    over the suite)."""
    me, found = os.getpid(), set()
    if os.path.exists(f"/proc/self/task/{me}/children"):    # (not there: CONFIG_PROC_CHILDREN off)
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    found.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                pass             # a thread that ended meanwhile: its children went to another one
        return found
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


# ---- the order the tests are handed out in ------------------------------------------------
# xdist hands the tests out in collection order, one at a time (two queued per worker at
# first). tests/schedule.py orders them from what each test took in a previous run, its wall
# time and its CPU time with its child processes': the long ones early (none left to run alone
# at the end), and the ones that compute spread between the ones that wait (the two cores
# neither saturated at the start nor idle later). Timings: the last run here (pytest's cache),
# else tests/durations.json (a fresh clone has no cache); a test timed in neither counts as a
# short one, or a long one if marked `slow`. To refresh the file after a full run:
#   cp .pytest_cache/v/modem-dialer/timings tests/durations.json
_TIMINGS_KEY = "modem-dialer/timings"
_KNOWN_DURATIONS = Path(__file__).with_name("durations.json")
_SLOW_UNTIMED = (10.0, 1.0)


def _timings(raw: object) -> dict[str, tuple[float, float]]:
    """{nodeid: (wall s, CPU s)} from the file's or the cache's JSON; an entry of an older
    format (the wall time alone) counts as a test that waits."""
    out: dict[str, tuple[float, float]] = {}
    for k, v in (raw.items() if isinstance(raw, dict) else ()):
        try:
            out[str(k)] = (float(v[0]), float(v[1])) if isinstance(v, list) else (float(v), 0.1 * float(v))
        except (TypeError, ValueError, IndexError):
            continue             # a broken entry: the order is only an optimisation
    return out


def _known_timings() -> dict[str, tuple[float, float]]:
    try:
        return _timings(json.loads(_KNOWN_DURATIONS.read_text()))
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from schedule import plan

    cache = getattr(config, "cache", None)
    known = _known_timings()
    known.update(_timings(cache.get(_TIMINGS_KEY, {})) if cache is not None else {})
    for it in items:
        if it.nodeid not in known and it.get_closest_marker("slow") is not None:
            known[it.nodeid] = _SLOW_UNTIMED
    n = int(getattr(config, "workerinput", {}).get("workercount", 0))
    realtime = [it.nodeid for it in items if it.get_closest_marker("realtime") is not None]
    order = plan([it.nodeid for it in items], known, n, realtime)
    items[:] = [items[k] for k in order]


_cpu_at_start = pytest.StashKey[float]()
_timed: dict[str, list[float]] = {}


def _cpu_now() -> float:
    """CPU seconds of this process and of its children that have ended (a test's `serve`,
    simulators, `campaign run`, Chromium: they are reaped within the test)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    zy = sys.modules.get("zygote")      # and the commands the zygote forked (its children)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + (zy.children_cpu() if zy else 0.0)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    item.stash[_cpu_at_start] = _cpu_now()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # in the controller too, where xdist replays the workers' reports
    t = _timed.setdefault(report.nodeid, [0.0, 0.0])
    t[0] += report.duration
    for name, value in report.user_properties:
        if name == "cpu_s":
            t[1] = float(value)


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _timed:
        return
    # the tests that count (a short one is taken for one), merged with what this run did not run
    kept = {k: v for k, v in cache.get(_TIMINGS_KEY, {}).items() if k not in _timed}
    kept.update({k: [round(w, 2), round(c, 2)] for k, (w, c) in _timed.items() if w >= 0.5 or c >= 0.25})
    cache.set(_TIMINGS_KEY, kept)


# ---- randomised tests: the seed is printed with a failure ----------------------------------
SEED_ENV = "MODEM_DIALER_TEST_SEED"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A ``random.Random`` for a randomised test: seeded from $MODEM_DIALER_TEST_SEED (to replay a
    failure) or afresh; a failing test shows its seed (hypothesis prints its own)."""
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 30))
    request.node.stash[_seed_key] = seed
    return random.Random(seed)


_seed_key = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "teardown" and _cpu_at_start in item.stash:
        # the test's CPU time, setup to teardown, for the order of the next run (see above)
        report.user_properties.append(("cpu_s", round(_cpu_now() - item.stash[_cpu_at_start], 3)))
    seed = item.stash.get(_seed_key, None)
    if seed is not None and report.failed:
        report.sections.append(("random seed", f"replay with {SEED_ENV}={seed}"))
    return report


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """A test that fails or times out must not leave its `serve`, `call` or simulator running:
    orphans keep modems busy and, on an unpaced ALSA file PCM, grow without bound."""
    before = _children()
    zy = sys.modules.get("zygote")              # (tests/zygote.py, once a test used it)
    forked = {c.pid for c in zy.live_children()} if zy is not None else set()
    yield
    zy = sys.modules.get("zygote")
    if zy is not None:
        # the commands the zygote forked are its children, not ours; the zygote itself stays
        before.add(zy.zygote_pid())
        for c in zy.live_children():
            if c.pid not in forked:
                c.signal(signal.SIGKILL)
                c.ended.wait(15)
    for pid in _children() - before:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture(autouse=True)
def _this_box_restored():
    """The box a process writes as (store/boxes.this_box) is process-wide: a real `serve` or
    `campaign run` sets it once from its config. In a test worker, in-process commands and
    services set it too, and it stayed: a later test wrote or recovered rows as another box
    (test_store_crash's recovery left its children's calls open, run after a multibox test)."""
    from modem_dialer.store import boxes

    saved = boxes.this_box()
    yield
    boxes.set_this_box(saved)


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
    from modem_dialer.sim.sim_bank import SimBank

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


_RUN_ENV = "MODEM_DIALER_TEST_RUN"     # the xdist controller's pid, set by it for its workers


def _test_run(config: pytest.Config) -> int:
    """The process that leads this test run: the xdist controller, or this one. (A worker's
    parent is the controller only when the worker is a fresh interpreter, not one forked by
    tests/worker_zygote.py.)"""
    if not hasattr(config, "workerinput"):
        return os.getpid()
    return int(os.environ.get(_RUN_ENV) or os.getppid())


@pytest.fixture(scope="session")
def pg(request: pytest.FixtureRequest):
    """A throw-away PostgreSQL cluster (tests/pgcluster.py), one per xdist worker (its tests
    may stop and restart it), copied from the run's one initdb; stopped and removed at the end
    of the session whatever the tests did. Its server is not a child of this process (pg_ctl
    detaches it), so _no_leftover_processes leaves it alone."""
    from pgcluster import pg_cluster, template_data

    with pg_cluster(template=template_data(_test_run(request.config))) as cluster:
        yield cluster


_template_maker: threading.Thread | None = None
_worker_python: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _template_maker, _worker_python
    if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no":
        return
    os.environ[_RUN_ENV] = str(os.getpid())
    # The run's PostgreSQL template (one initdb, tests/pgcluster.py) is made here while the
    # workers start and collect, rather than by the first worker to need it: the longest tests
    # start first, and four of them wait on it (30 s of setup at the busy start of a run at load 18).
    # If the tests need no PostgreSQL, that is ~1.3 s of CPU spent for nothing.
    _template_maker = threading.Thread(target=_make_template, args=(os.getpid(),), daemon=True,
                                       name="pg template")
    _template_maker.start()
    _rewrite_test_modules(config)
    _compile_package()
    # the run's zygote (tests/zygote.py), which forks the workers' `modem-dialer` commands: its
    # imports (~1.2 s of CPU) are done once while the workers start, not by each worker
    import zygote

    zygote.start_for_run()
    # and the process the workers are forked from (tests/worker_zygote.py: their imports, ~1.1 s
    # of CPU each, done once: a run ~13 core-s less); started after the zygote's variable is
    # set, which they inherit (the server's environment must be theirs)
    if not config.option.collectonly:       # (xdist starts no worker then)
        import worker_zygote

        _worker_python = worker_zygote.start_for_run()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list) -> None:
    """The workers xdist starts (and those it starts again for one that crashed) forked by
    tests/worker_zygote.py's server: execnet runs the spec's "python" as ``PYTHON -u -c …``."""
    if _worker_python is None:
        return
    for spec in specs:
        if spec.popen and not spec.python and not spec.via:
            spec.python = _worker_python


def _make_template(run: int) -> None:
    from pgcluster import template_data

    with contextlib.suppress(Exception):     # no server installed: the tests that need one say so
        template_data(run)


def _rewrite_test_modules(config: pytest.Config) -> None:
    """On a fresh clone, every xdist worker rewrote the asserts of the same ~100 test modules
    at once (about 2 s of CPU each: 12 s on six workers, all at the start): the controller
    does it once, before the workers start, into the same cache files pytest's own import
    hook reads (``__pycache__/*-pytest-*.pyc``). Only an optimisation: pytest's internals
    changing shape leaves the workers to do it as they did."""
    try:
        from _pytest.assertion import rewrite as rw

        state = config.stash[rw.assertstate_key]
        here = Path(__file__).parent
        for fn in [here / "conftest.py", *sorted(here.glob("test_*.py"))]:
            cache_dir = rw.get_cache_dir(fn)
            pyc = cache_dir / (fn.name[:-3] + rw.PYC_TAIL)
            if rw._read_pyc(fn, pyc, state.trace) is not None or not rw.try_makedirs(cache_dir):
                continue
            source_hash, co = rw._rewrite_test(fn, config)
            rw._write_pyc(state, co, source_hash, pyc)
    except Exception:                   # see above: the workers rewrite as before
        return


def _compile_package() -> None:
    """Likewise for the bytecode of the package and of the helper modules here: on a fresh
    clone the six workers each compiled the same ~170 modules at once as they imported them
    (~3 s of CPU over a run, at its busiest). Once here instead; a file whose bytecode is
    up to date is only stat'ed (a few ms in all)."""
    import compileall

    import modem_dialer

    with contextlib.suppress(Exception):        # an optimisation only
        compileall.compile_dir(Path(modem_dialer.__file__).parent, quiet=1)
        for fn in Path(__file__).parent.glob("*.py"):
            if not fn.name.startswith("test_") and fn.name != "conftest.py":
                compileall.compile_file(fn, quiet=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    zy = sys.modules.get("zygote")
    if zy is not None:
        zy.shutdown()           # a worker's own zygote: reaped, its CPU counted in the run's
        zy.stop_for_run()       # the controller's (the workers are gone by now)
    wz = sys.modules.get("worker_zygote")
    if wz is not None:
        wz.stop_for_run()       # the workers' server, likewise
    # the xdist controller (or the only process): the workers are gone, remove the run's template
    if not hasattr(config, "workerinput"):
        from pgcluster import remove_template

        if _template_maker is not None:
            _template_maker.join()
        remove_template(os.getpid())


@pytest.fixture
def pg_schema(pg):
    """A fresh schema on the test cluster (its DSN); requested before the fixtures that start
    boxes on it, so that they (and their connections) are stopped before it is dropped."""
    dsn = pg.new_schema()
    yield dsn
    pg.drop_schema(dsn)


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
    from modem_dialer.modems.options import ModemConfig

    entry = bank.modems_config()[i]
    entry.update(over)
    return ModemConfig(**entry)
