"""Helpers shared by test modules (fixtures stay in conftest.py): the command line run
in-process or as a real process, and waiting on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from click.testing import CliRunner

# One in-process command at a time: click's runner swaps sys.stdin/stdout/stderr and
# os.environ for the whole process while a command runs. A second one waits its turn; a
# command that must run while another one is running is started as a process (start_cli).
_CLI_LOCK = threading.Lock()


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
    if r.exc_info is not None and not isinstance(r.exception, SystemExit):
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


async def start_cli(*args: str, env: dict | None = None,
                    stdin: int | None = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    """``modem-dialer ARGS`` as a real process (for signals, kill -9, several at once), stdout
    and stderr piped."""
    return await asyncio.create_subprocess_exec(
        *cli_command(*args), env={**os.environ, **(env or {})}, stdin=stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def run_cli_process(*args: str, env: dict | None = None, stdin: str | None = None,
                          timeout: float = 40) -> tuple[int, str, str]:
    """Run ``modem-dialer ARGS`` as a user would, in a subprocess, while the test's event loop
    keeps serving the simulated bank. Returns (exit code, stdout, stderr)."""
    proc = await start_cli(*args, env=env,
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


async def wait_until(pred: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``pred`` every 20 ms until it is true (a test waits on the state it needs, not a
    fixed sleep); fails the test after ``timeout`` s, a bound for a machine under heavy load
    (eight test suites at once on 2 cores), never a wait when things go well."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)
