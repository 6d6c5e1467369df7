"""Helpers shared by test modules (fixtures stay in conftest.py): the command line run
in-process or as a real process, waiting on a condition instead of sleeping, the alerting
service's config and API client, a campaign's files, a free port, a database locker."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import yaml
from click.testing import CliRunner
from ports import free_port  # noqa: F401  (imported from here by test modules)

from modem_dialer.config import LoadedConfig, load_config
from modem_dialer.service.service import Service
from modem_dialer.sim.voice import write_tone_wav as wav

# One in-process command at a time: click's runner swaps sys.stdin/stdout/stderr and
# os.environ for the whole process while a command runs. A second one waits its turn; a
# command that must run while another one is running is started as a process (start_cli).
_CLI_LOCK = threading.Lock()
T = TypeVar("T")


@contextlib.contextmanager
def _cwd(path: str | Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def invoke_cli(*args: str, env: dict | None = None, stdin: str | None = None,
               cwd: str | Path | None = None) -> tuple[int, str, str]:
    """Run ``modem-dialer ARGS`` in this process through click's runner, as the console script
    would (same group, same standalone handling of exits and usage errors). Returns (exit code,
    stdout, stderr). An exception no handler caught is printed on stderr as the interpreter
    would print it, so "never a traceback" assertions still see one if it happens."""
    from modem_dialer.cli import main

    with _CLI_LOCK, _cwd(cwd):
        r = CliRunner().invoke(main, list(args), input=stdin, env=env, prog_name="modem-dialer")
    err = r.stderr
    # (a command's sys.exit(0) leaves exc_info set and exception None: not an error either)
    if r.exc_info is not None and not isinstance(r.exc_info[1], SystemExit):
        err += "".join(traceback.format_exception(*r.exc_info))
    return r.exit_code, r.stdout, err


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread`` (as Ctrl-C would in a process): its asyncio.run
    cancels what is running and the command ends through its own clean-up."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


async def run_cli(*args: str, env: dict | None = None, stdin: str | None = None,
                  timeout: float = 40, cwd: str | Path | None = None) -> tuple[int, str, str]:
    """Run ``modem-dialer ARGS`` in-process, on a thread of its own (the command runs its own
    event loop) while the test's event loop keeps serving the simulated bank. Returns (exit
    code, stdout, stderr). Signals, kill -9 and the real entry point need a real process:
    :func:`run_cli_process` / :func:`start_cli`."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, str, str]] = loop.create_future()

    def settle(fn: Callable, value: object) -> None:
        if not done.done():
            fn(value)

    def work() -> None:
        try:
            res = invoke_cli(*args, env=env, stdin=stdin, cwd=cwd)
        except BaseException as exc:  # handed to the test
            with contextlib.suppress(RuntimeError):      # the test's loop is gone already
                loop.call_soon_threadsafe(settle, done.set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, done.set_result, res)

    thread = threading.Thread(target=work, name=f"cli {' '.join(args)[:60]}", daemon=True)
    thread.start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except (TimeoutError, asyncio.CancelledError):
        # a hung command must not keep its modems or the process's stdout: stop it as Ctrl-C would
        _interrupt(thread)
        await asyncio.to_thread(thread.join, 15)
        raise


def cli_command(*args: str) -> list[str]:
    """The argv of ``modem-dialer ARGS`` as a separate process."""
    return [sys.executable, "-m", "modem_dialer.cli", *args]


async def start_cli(*args: str, env: dict | None = None, stdin: int | None = asyncio.subprocess.DEVNULL,
                    fresh: bool = False) -> asyncio.subprocess.Process:
    """``modem-dialer ARGS`` as a real process (for signals, kill -9, several at once), stdout
    and stderr piped; forked by the run's zygote (tests/zygote.py: its imports done once), or
    a fresh interpreter if ``fresh`` (what only a process's start shows: ALSA's config …)."""
    from zygote import create_process

    if fresh:
        return await asyncio.create_subprocess_exec(
            *cli_command(*args), env={**os.environ, **(env or {})}, stdin=stdin,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    proc = await create_process(args, env={**os.environ, **(env or {})}, stdin=stdin,
                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return proc  # type: ignore[return-value]   # (the part of it the tests use)


async def run_cli_process(*args: str, env: dict | None = None, stdin: str | None = None,
                          timeout: float = 40, fresh: bool = False) -> tuple[int, str, str]:
    """Run ``modem-dialer ARGS`` as a user would, in a subprocess, while the test's event loop
    keeps serving the simulated bank. Returns (exit code, stdout, stderr)."""
    proc = await start_cli(*args, env=env, fresh=fresh,
                           stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    finally:
        # A test that times out or fails must not leave the command running: an orphaned `call` on an
        # unpaced ALSA file PCM grows without bound and an orphaned `serve` keeps its modems busy.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def load_factor() -> float:
    """How much slower than usual other processes may now be: the 1-minute load average per
    CPU, beyond 2 (CI's six workers alone give 1-3 per CPU; several suites at once on this
    2-CPU machine gave 20). A bound on waiting for another process (a ``campaign run`` to start
    its interpreter and dial, a ``serve`` to come back) stretches by it: at load 40 a start-up
    that takes 2 s of CPU took over 30 s of wall time."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1) / 2)
    except OSError:
        return 1.0


async def wait_until(pred: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``pred`` every 20 ms until it is true (a test waits on the state it needs, not a
    fixed sleep); fails the test after ``timeout`` s, a bound for a hang, never a wait when
    things go well. The seconds are counted on a quiet machine's scale: at a load factor of
    f (:func:`load_factor`) a second of waiting counts 1/f."""
    loop = asyncio.get_running_loop()
    used, last = 0.0, loop.time()
    while not pred():
        now = loop.time()
        used, last = used + (now - last) / load_factor(), now
        assert used < timeout, f"condition not met in {timeout} s (load-scaled)"
        await asyncio.sleep(0.02)


async def patiently(aw: Awaitable[T], timeout: float) -> T:
    """``asyncio.wait_for(aw, timeout)`` with the seconds counted as :func:`wait_until` does."""
    task = asyncio.ensure_future(aw)
    loop = asyncio.get_running_loop()
    used, last = 0.0, loop.time()
    while not task.done():
        await asyncio.wait({task}, timeout=0.2)
        now = loop.time()
        used, last = used + (now - last) / load_factor(), now
        if not task.done() and used >= timeout:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise TimeoutError(f"not done in {timeout} s (load-scaled)")
    return task.result()


# ---- a free port, another process's database lock ------------------------------------------
async def kill_while_server_away(pg, proc: asyncio.subprocess.Process,
                                 ready: Callable[[], Awaitable[object]],
                                 spooled: Callable[[], Awaitable[object]]) -> object:
    """Wait for ``ready`` (returned), stop the test cluster ``pg``, wait for ``spooled`` (the
    box kept its steps locally), SIGKILL the box ``proc`` before the server is back, start the
    server again. The box is killed whatever happens (a failed wait must not leave it running)."""
    import signal

    try:
        got = await ready()
        await asyncio.to_thread(pg.stop, "fast")
        try:
            await spooled()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            await asyncio.to_thread(pg.start)
        return got
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# another process holds the database's write lock: ``python -c LOCKER DB SECONDS`` prints
# "locked" once it holds it
LOCKER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO modem_state (name, status) VALUES ('locker', 'ready')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
"""


# ---- the alerting service: people, config, API client (were in test_service_alerts.py) ------
ALICE, BOB, CAROL = "+33612345601", "+33612345602", "+33612345603"
CACHE = Path("/tmp/modem-dialer-test-tts-cache")     # shared across tests: one TTS run per text
TOKEN = "s3cret-token"


def alerting(**over) -> dict:
    base = {
        "people": {"alice": ALICE, "bob": BOB, "carol": CAROL},
        "groups": {"dba": ["alice", "bob"]},
        "policies": {
            "default": {"steps": [{"to": "alice", "delay": 1.0}, {"to": "bob", "delay": 1.0}],
                        "message_repeat": 2, "sms_fallback": False},
        },
        "api": {"port": 0},
    }
    base.update(over)
    return base


def write_config(bank, tmp_path: Path, **alerting_over) -> LoadedConfig:
    doc = yaml.safe_load(bank.config_yaml(database=str(tmp_path / "j.db")))
    doc["cache_dir"] = str(CACHE)
    doc["alerting"] = alerting(**alerting_over)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return load_config(str(path))


class Api:
    def __init__(self, svc: Service, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{svc.port}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def req(self, method: str, path: str, body=None, *, headers=None, raw: bytes | None = None):
        h = {**self.headers, **(headers or {})}
        async with aiohttp.ClientSession() as s, s.request(
                method, self.base + path, json=body if raw is None else None, data=raw, headers=h) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def wait(self, path: str, pred, timeout: float = 15.0) -> dict:
        """GET ``path`` until ``pred(body)``; fails with the last body after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.req("GET", path)
            assert status == 200, body
            if pred(body):
                return body
            assert time.monotonic() < deadline, f"{path} never reached the expected state: {body}"
            await asyncio.sleep(0.1)

    async def wait_alert(self, alert_id: int, pred, timeout: float = 15.0) -> dict:
        return await self.wait(f"/v1/alerts/{alert_id}", pred, timeout)


def called(bank) -> list[str]:
    return [c.number for m in bank.modems for c in m.calls]


def acked(a: dict) -> bool:
    return a["status"] == "acknowledged"


def settled(n: int):
    """Acknowledged and the n-th attempt recorded (the ack lands before the call hangs up)."""
    return lambda a: acked(a) and len(a["history"]) >= n


def over(a: dict) -> bool:
    return a["status"] != "open" or a["result"] is not None


# ---- a campaign's files and its database (were in test_campaign_run.py) --------------------
def setup(tmp_path, bank, numbers: list[str], *, message_s: float = 0.3, extra: str = "", limits=None) -> tuple:
    """config.yaml on ``bank`` (database dialer.db), a ``message_s`` hello.wav, contacts.csv and
    camp.yaml (campaign "test") in ``tmp_path``; returns (config path, campaign path)."""
    cfg = tmp_path / "config.yaml"
    data = yaml.safe_load(bank.config_yaml(database=str(tmp_path / "dialer.db")))
    if limits:
        data["limits"] = limits
    cfg.write_text(yaml.safe_dump(data))
    wav(tmp_path / "hello.wav", message_s)
    (tmp_path / "contacts.csv").write_text("number,name\n" + "".join(f"{n},N{i}\n" for i, n in enumerate(numbers)))
    camp = tmp_path / "camp.yaml"
    camp.write_text("name: test\ncontacts: contacts.csv\nmessage: hello.wav\npurpose: informational\nrules: none\n"
                    + extra)
    return cfg, camp


def db(tmp_path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "dialer.db")
    conn.row_factory = sqlite3.Row
    return conn


def contacts(conn) -> dict[str, dict]:
    return {r["number"]: dict(r) for r in conn.execute("SELECT * FROM contacts")}
