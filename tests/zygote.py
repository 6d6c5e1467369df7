"""A fork server for the tests' ``modem-dialer`` processes (issue 15: the suite's CPU).

Each ``python -m modem_dialer.cli serve`` a test started paid ~0.8 s of CPU importing the
package and its libraries (aiohttp, numpy, pydantic, psycopg …) before doing anything: with
~60 such processes in a run (serve, ``campaign run``, ``call``, ``sim``) that was ~35 s of the
suite's ~175 s of CPU on two cores. Here one process per test worker (the zygote) imports them
once, then forks a child per command; the child sets the command's argv, environment, working
directory and standard streams and runs ``modem_dialer.cli`` as ``python -m`` does (runpy, as
``__main__``). It is a real process of its own: its own pid, signals, exit code and clean exit
(atexit, threads), nothing of ours mocked; only the imports were done before the fork, in a
fresh interpreter that ran nothing else (no test's patches or state reach it).

The zygote reaps its children and tells the worker each one's exit status and CPU time
(``wait4``), so that a test's CPU figure still counts them (conftest.py). Setting
``MODEM_DIALER_TEST_EXEC=1`` starts every command the old way (a fresh interpreter), and a
zygote that fails to start falls back to that too. A few tests keep starting real
interpreters on purpose (test_service_serve, test_cli_call, test_cli_modems …): the start-up
path of the installed command stays tested.

Run as a script, this file is the zygote: ``python zygote.py FD`` with FD a SOCK_SEQPACKET
socket to the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# What the zygote imports before it forks: what `serve`, `campaign run`, `call` and `sim`
# import (a command that needs less gets more modules than it would have loaded: none of them
# does anything at import but define things).
PRELOAD = ("modem_dialer.cli", "modem_dialer.service.service", "modem_dialer.service.logs",
           "modem_dialer.campaign.launcher", "modem_dialer.campaign.spec", "modem_dialer.campaign.follow",
           "modem_dialer.campaign.view", "modem_dialer.service.client", "modem_dialer.store.lock",
           "modem_dialer.call.message", "modem_dialer.call.flow", "modem_dialer.sim.sim_bank",
           "modem_dialer.sim.control", "modem_dialer.audio.source", "modem_dialer.store.pg", "psycopg")
_MAX_MSG = 1 << 20


# ---- the zygote (its own process) ------------------------------------------------------------
def _serve(owner: socket.socket, listener: socket.socket | None) -> None:
    """Fork a command for each request on a connection (``owner``, or one accepted on
    ``listener``: the run's xdist workers share one zygote), tell its requester its pid, then
    its end. The owner's end ends the zygote; a worker's end kills the commands it started."""
    import gc
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):      # psycopg missing: the PostgreSQL tests say so
            importlib.import_module(name)
    # what was imported out of the children's collector's reach (as audio/path.freeze_heap does
    # in a command once audio starts): a child's full collection does not walk the modules it
    # would not have imported itself (a longer GIL hold in an audio path), nor copies their pages
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)     # only to be woken (the wakeup fd)
    # a Ctrl-C at the terminal reaches us too (the controller's process group): it is for the
    # tests and their commands; we end when the controller ends us (its end of ``owner``),
    # without a KeyboardInterrupt traceback in the middle of the run's output
    signal.signal(signal.SIGINT, lambda *_: None)
    hello = json.dumps({"ready": os.getpid()}).encode()
    owner.send(hello)
    conns = {owner}
    owned: dict[int, socket.socket] = {}        # a child's pid: the connection that asked for it

    def tell(conn: socket.socket, m: dict) -> None:
        with contextlib.suppress(OSError):      # (a worker gone meanwhile)
            conn.send(json.dumps(m).encode())
    while True:
        ready, _, _ = select.select([*conns, wake_r, *([listener] if listener else [])], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        while owned:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            tell(owned.pop(pid), {"exit": pid, "code": os.waitstatus_to_exitcode(status),
                                  "cpu": ru.ru_utime + ru.ru_stime})
        if listener is not None and listener in ready:
            conn, _ = listener.accept()
            conns.add(conn)
            tell(conn, {"ready": os.getpid()})
        for conn in [c for c in conns if c in ready]:
            try:
                msg, fds, _, _ = socket.recv_fds(conn, _MAX_MSG, 3)
            except OSError:
                msg, fds = b"", []
            if not msg:                     # its worker is gone: so are the commands it started
                conns.discard(conn)
                for pid in [p for p, c in owned.items() if c is conn or conn is owner]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if conn is owner:            # reaped (their CPU counted with ours), for 5 s at most
                    give_up = time.monotonic() + 5
                    while owned and time.monotonic() < give_up:
                        try:
                            pid, _ = os.waitpid(-1, os.WNOHANG)
                        except ChildProcessError:
                            break
                        if pid:
                            owned.pop(pid, None)
                        else:
                            time.sleep(0.01)
                    return
                conn.close()
                continue
            req = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                ours = [c.fileno() for c in conns] + [wake_r, wake_w] + ([listener.fileno()] if listener else [])
                _become(req, fds, ours)      # never returns
            for fd in fds:
                os.close(fd)
            owned[pid] = conn
            tell(conn, {"pid": pid})


def take_over(fds: list[int], cwd: str, env: dict[str, str]) -> None:
    """In a child just forked for a request (here, and tests/worker_zygote.py's workers): the
    requester's standard streams (``fds``, passed over the socket), working directory and
    environment."""
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)

def _become(req: dict, fds: list[int], ours: list[int]) -> None:
    """In the forked child: be ``python -m modem_dialer.cli ARGS`` started as the request says.
    Ends the process (SystemExit through the zygote's frames to the interpreter's own exit)."""
    import runpy

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)    # a command's Ctrl-C, as when fresh
    for fd in ours:
        os.close(fd)
    if req.get("new_session"):
        os.setsid()
    take_over(fds, req["cwd"], req["env"])
    sys.path[0] = os.getcwd()               # as `python -m` puts the working directory first
    sys.argv = ["-m", *req["args"]]
    runpy.run_module("modem_dialer.cli", run_name="__main__", alter_sys=True)
    raise SystemExit(0)


# ---- the worker's side ---------------------------------------------------------------------
class _Child:
    """What the zygote told of one child: its exit code and CPU time once it ended."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.ended = threading.Event()
        self._callbacks: list[Callable[[int], None]] = []
        self._lock = threading.Lock()

    def on_exit(self, fn: Callable[[int], None]) -> None:
        with self._lock:
            if self.returncode is None:
                self._callbacks.append(fn)
                return
        fn(self.returncode)

    def _exited(self, code: int) -> None:
        with self._lock:
            self.returncode = code
            callbacks, self._callbacks = self._callbacks, []
        self.ended.set()
        for fn in callbacks:
            fn(code)

    def signal(self, sig: int) -> None:
        if self.returncode is None:         # (a reaped pid may already belong to another process)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


class _Zygote:
    def __init__(self, shared: str | None = None) -> None:
        self.proc: subprocess.Popen | None = None
        if shared is not None:              # the run's zygote (started by the xdist controller)
            here = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            for _ in range(100):            # (it binds its socket within its first ~50 ms)
                try:
                    here.connect(shared)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.1)
            else:
                here.connect(shared)
        else:                               # one of our own, our child
            here, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.proc = _start_zygote(theirs)
        self.sock = here
        self.children: dict[int, _Child] = {}
        self.early: dict[int, tuple[int, float]] = {}     # exits read before the pid's reply (none expected)
        self.cpu = 0.0                      # CPU seconds of the children that ended
        self._replies: list[int] = []
        self._reply = threading.Condition()
        self._spawning = threading.Lock()
        self._alive = True
        here.settimeout(120)                # its imports, on a loaded machine
        hello = json.loads(here.recv(_MAX_MSG) or b"{}")
        here.settimeout(None)
        if "ready" not in hello:
            raise RuntimeError("the zygote did not start")
        threading.Thread(target=self._read, name="zygote reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(_MAX_MSG)
            except OSError:
                msg = b""
            if not msg:
                break
            m = json.loads(msg)
            if "pid" in m:
                with self._reply:
                    self._replies.append(m["pid"])
                    self._reply.notify_all()
            elif "exit" in m:
                with self._reply:           # (with spawn's look at self.early)
                    self.cpu += m["cpu"]
                    child = self.children.get(m["exit"])
                    if child is None:
                        self.early[m["exit"]] = (m["code"], m["cpu"])
                if child is not None:
                    child._exited(m["code"])
        self._alive = False                 # the zygote died: its children's ends are lost
        with self._reply:
            self._reply.notify_all()
        for child in list(self.children.values()):
            if child.returncode is None:
                child._exited(-signal.SIGKILL)

    def spawn(self, args: Sequence[str], env: dict[str, str], cwd: str, fds: tuple[int, int, int],
              new_session: bool = False) -> _Child:
        req = json.dumps({"args": list(args), "env": env, "cwd": cwd, "new_session": new_session}).encode()
        with self._spawning:
            if not self._alive:
                raise RuntimeError("the zygote is gone")
            with self._reply:
                socket.send_fds(self.sock, [req], list(fds))
                while not self._replies and self._alive:
                    self._reply.wait(60)
                if not self._replies:
                    raise RuntimeError("the zygote is gone")
                pid = self._replies.pop(0)
                child = self.children[pid] = _Child(pid)
                early = self.early.pop(pid, None)
        if early is not None:
            child._exited(early[0])
        return child

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)     # (a close alone leaves the reader's recv blocked)
            self.sock.close()
        if self.proc is None:               # the run's zygote: the controller ends it
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_zygote(theirs: socket.socket, path: str | None = None) -> subprocess.Popen:
    # OpenBLAS (numpy's) starts a thread per core at import unless told not to: the zygote
    # forks, and a fork is only safe in a process with no other thread
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(theirs.fileno()), *([path] if path else [])],
                            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                            # (its children's sys.stdout then buffers as a fresh process's on a
                            # pipe would, not line by line as on the terminal of the test run)
                            stdout=subprocess.DEVNULL, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    theirs.close()
    return proc


SHARED_ENV = "MODEM_DIALER_TEST_ZYGOTE"
_run_zygote: tuple[subprocess.Popen, socket.socket, str] | None = None


def start_for_run() -> None:
    """In the xdist controller: one zygote for the whole run, its socket's path in the
    environment the workers inherit (its imports paid once per run, not once per worker)."""
    global _run_zygote
    if os.environ.get("MODEM_DIALER_TEST_EXEC") or os.environ.get("MODEM_DIALER_TEST_PROFILE"):
        return
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="md-zygote-"), "sock")
    here, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _run_zygote = (_start_zygote(theirs, path), here, path)
    os.environ[SHARED_ENV] = path


def stop_for_run() -> None:
    """In the controller, once the workers are gone: the zygote ends (what it still ran is
    killed and reaped), reaped here: its CPU and its children's counted in the run's."""
    global _run_zygote
    if _run_zygote is None:
        return
    proc, here, path = _run_zygote
    _run_zygote = None
    os.environ.pop(SHARED_ENV, None)
    t0 = time.monotonic()
    with contextlib.suppress(OSError):
        here.shutdown(socket.SHUT_RDWR)
        here.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if time.monotonic() - t0 > 2:
        print(f"zygote: took {time.monotonic() - t0:.1f} s to end", file=sys.stderr)
    import shutil

    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


_zygote: _Zygote | None = None
_zygote_failed = False
_start_lock = threading.Lock()


def _get() -> _Zygote | None:
    global _zygote, _zygote_failed
    if os.environ.get("MODEM_DIALER_TEST_EXEC") or os.environ.get("MODEM_DIALER_TEST_PROFILE"):
        return None
    with _start_lock:
        if _zygote is None and not _zygote_failed:
            try:
                _zygote = _Zygote(os.environ.get(SHARED_ENV))
            except (OSError, RuntimeError, ValueError) as exc:
                print(f"zygote: not started ({exc}): commands start fresh interpreters", file=sys.stderr)
                _zygote_failed = True
        return _zygote


def shutdown() -> None:
    """End the zygote (its children killed) and reap it: its CPU, and its children's, is then
    in this worker's RUSAGE_CHILDREN, so in the test run's time."""
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None


def zygote_pid() -> int | None:
    """The zygote's pid when it is a child of this worker (lives across tests)."""
    return _zygote.proc.pid if _zygote is not None and _zygote.proc is not None else None


def children_cpu() -> float:
    """CPU seconds of the commands the zygote started that ended (not in this process's
    RUSAGE_CHILDREN until the zygote itself ends)."""
    return _zygote.cpu if _zygote is not None else 0.0


def live_children() -> list[_Child]:
    return [c for c in _zygote.children.values() if c.returncode is None] if _zygote is not None else []


def _fd(spec: Any, i: int, mode: int, opened: list[int]) -> int:
    """An fd for a child's stream ``i``: ours (None: inherited), DEVNULL, an fd or a file object."""
    if spec is None:
        return i
    if spec == subprocess.DEVNULL:
        fd = os.open(os.devnull, mode)
        opened.append(fd)
        return fd
    return spec if isinstance(spec, int) else spec.fileno()


def _start(args: Sequence[str], env: dict[str, str] | None, cwd: str | None, stdin: Any, stdout: Any,
           stderr: Any) -> tuple[_Child, dict[str, int]] | None:
    """Fork ``modem-dialer ARGS``; PIPE streams come back as our ends ({"stdin": fd, …})."""
    z = _get()
    if z is None:
        return None
    opened: list[int] = []          # our copies of what the child gets, closed once it has them
    ours: dict[str, int] = {}
    fds = []
    for i, (name, spec, mode) in enumerate((("stdin", stdin, os.O_RDONLY), ("stdout", stdout, os.O_WRONLY),
                                            ("stderr", stderr, os.O_WRONLY))):
        if spec == subprocess.PIPE:
            r, w = os.pipe()
            child_end, our_end = (r, w) if name == "stdin" else (w, r)
            opened.append(child_end)
            ours[name] = our_end
            fds.append(child_end)
        elif spec == subprocess.STDOUT:
            fds.append(fds[1])
        else:
            fds.append(_fd(spec, i, mode, opened))
    try:
        child = z.spawn(args, dict(os.environ if env is None else env), cwd or os.getcwd(),
                        (fds[0], fds[1], fds[2]))
    except (OSError, RuntimeError):
        for fd in ours.values():
            os.close(fd)
        return None
    finally:
        for fd in opened:
            os.close(fd)
    return child, ours


class _Signalled:
    """What both kinds of process below do alike: their exit code, and signals to them."""

    _child: _Child

    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    def send_signal(self, sig: int) -> None:
        self._child.signal(sig)

    def terminate(self) -> None:
        self._child.signal(signal.SIGTERM)

    def kill(self) -> None:
        self._child.signal(signal.SIGKILL)


class Popen(_Signalled):
    """The part of ``subprocess.Popen`` the tests use, for a forked ``modem-dialer ARGS``."""

    def __init__(self, child: _Child, args: Sequence[str], ours: dict[str, int]) -> None:
        self._child, self.args, self.pid = child, list(args), child.pid
        self.stdout = os.fdopen(ours["stdout"], "rb") if "stdout" in ours else None
        self.stderr = os.fdopen(ours["stderr"], "rb") if "stderr" in ours else None
        self.stdin = os.fdopen(ours["stdin"], "wb") if "stdin" in ours else None

    def poll(self) -> int | None:
        return self._child.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._child.ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self._child.returncode is not None
        return self._child.returncode

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        out: dict[str, bytes] = {}

        def drain(name: str, f: Any) -> None:
            out[name] = f.read() if f is not None else b""
        readers = [threading.Thread(target=drain, args=(n, f), daemon=True)
                   for n, f in (("out", self.stdout), ("err", self.stderr))]
        for t in readers:
            t.start()
        self.wait(timeout)
        for t in readers:
            t.join(timeout)
        return out.get("out", b""), out.get("err", b"")


def popen(args: Sequence[str], *, stdin: Any = None, stdout: Any = None, stderr: Any = None,
          env: dict[str, str] | None = None, cwd: str | None = None) -> Popen | subprocess.Popen:
    """``subprocess.Popen([python, -m, modem_dialer.cli, *ARGS], …)``, forked by the zygote when
    it runs (a fresh interpreter otherwise)."""
    started = _start(args, env, cwd, stdin, stdout, stderr)
    if started is None:
        return subprocess.Popen([sys.executable, "-m", "modem_dialer.cli", *args], stdin=stdin,
                                stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    child, ours = started
    return Popen(child, args, ours)


def run(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(…, capture_output=True, text=True)`` of ``modem-dialer ARGS``."""
    p = popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    assert p.returncode is not None
    return subprocess.CompletedProcess(list(args), p.returncode, out.decode(), err.decode())


class Process(_Signalled):
    """The part of ``asyncio.subprocess.Process`` the tests use, for a forked command."""

    def __init__(self, child: _Child, ours: dict[str, int]) -> None:
        self._child, self.pid = child, child.pid
        self._ours = ours
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._transports: list[asyncio.BaseTransport] = []

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for name in ("stdout", "stderr"):
            if name in self._ours:
                reader = asyncio.StreamReader(loop=loop)
                t, _ = await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),
                                                    os.fdopen(self._ours[name], "rb", 0))
                self._transports.append(t)
                setattr(self, name, reader)
        if "stdin" in self._ours:
            t, proto = await loop.connect_write_pipe(lambda: asyncio.streams.FlowControlMixin(loop=loop),
                                                     os.fdopen(self._ours["stdin"], "wb", 0))
            self._transports.append(t)
            self.stdin = asyncio.StreamWriter(t, proto, None, loop)

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()

        def done(code: int) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(code))
        self._child.on_exit(done)
        return await fut

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        async def feed() -> None:
            if self.stdin is not None:
                if input:
                    self.stdin.write(input)
                    with contextlib.suppress(ConnectionError):
                        await self.stdin.drain()
                self.stdin.close()

        async def read(r: asyncio.StreamReader | None) -> bytes:
            return await r.read() if r is not None else b""
        _, out, err, _ = await asyncio.gather(feed(), read(self.stdout), read(self.stderr), self.wait())
        return out, err


async def create_process(args: Sequence[str], *, env: dict[str, str] | None = None, stdin: Any = None,
                         stdout: Any = None, stderr: Any = None) -> Process | asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec(python, -m, modem_dialer.cli, *ARGS, …)``, forked by the
    zygote when it runs."""
    started = await asyncio.to_thread(_start, args, env, None, stdin, stdout, stderr) \
        if _zygote is None else _start(args, env, None, stdin, stdout, stderr)
    if started is None:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "modem_dialer.cli", *args, env=env,
                                                    stdin=stdin, stdout=stdout, stderr=stderr)
    proc = Process(*started)
    await proc._connect()
    return proc


if __name__ == "__main__":
    _listener = None
    if len(sys.argv) > 2:           # the run's shared zygote: workers connect to this path
        _listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _listener.bind(sys.argv[2])
        _listener.listen(64)
    _serve(socket.socket(fileno=int(sys.argv[1])), _listener)
