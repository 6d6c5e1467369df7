"""The xdist workers forked from one process that imported their libraries (issue 15: CPU).

Each of the run's eight workers used to be a fresh interpreter that spent ~2.2 s of CPU before
its first test, ~1 s of it importing the same modules as the seven others: pytest, numpy,
aiohttp, pydantic, psycopg, phonenumbers, holidays, click, yaml, the package and tests/helpers.py.
Here the xdist controller starts one process (the server) that imports them once, and the
workers are forked from it: execnet starts a popen gateway as ``PYTHON -u -c BOOTSTRAP``
(execnet.gateway_io.popen_args), and conftest.py's pytest_xdist_setupnodes makes PYTHON this
file's client (``python -I -S worker_zygote.py client SOCKET``). The client passes its argv, its
standard streams (SCM_RIGHTS), its working directory and its environment to the server, which
forks a child that takes them and runs BOOTSTRAP as ``python -u -c`` would; the client waits
for that child's end, forwarding the signals it gets, and exits as it did. Measured in turns
(`bash scripts/test.sh`, 1,072 tests, quiet 2-core machine): a worker's CPU up to its first test
1.6-1.8 s fresh, 0.5-0.65 s forked; the run's CPU (its process tree) 100.7 and 100.9 s fresh,
87.4 and 88.7 s forked (the server's ~1.5 s of imports included); wall 78 and 76 s, 69 and 71 s.

What is not preloaded: what pytest rewrites the asserts of when it imports it (the plugins of
the distributions with a ``pytest11`` entry point: xdist, pytest_asyncio, pytest_timeout,
hypothesis; conftest.py and the test modules): imported here, pytest would warn that it
cannot rewrite them. tests/helpers.py is neither (no register_assert_rewrite, not a test_*.py).

A forked worker is a process of its own, as a fresh one was: its own pid; the environment,
streams and working directory its client had; the process group of its client (the
controller's: a Ctrl-C reaches the workers from the terminal as before); Python's ``random``
reseeded (by the interpreter at fork) and numpy's global generator too. What it shares with
the server: the modules' state after import (none runs anything at import), the hash seed of
str (one per run instead of one per worker), and OpenBLAS limited to one thread (the server
must have no thread when it forks; eight workers on two cores gain nothing from more).

Falls back to a fresh interpreter (the client execs ``python -u -c BOOTSTRAP`` itself, its
stdin still unread) when the server is not there or refuses: an environment that differs from
the server's (the controller's when it started it), arguments other than execnet's.
``MODEM_DIALER_TEST_EXEC=1`` starts no server (every worker and command a fresh interpreter);
``MODEM_DIALER_TEST_FRESH_WORKERS=1`` none either, the commands still forked (to compare).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

_MAX_MSG = 1 << 20
# What the server imports before it forks: what a worker imports up to its first test (its
# plugins and test modules excepted, see above): pytest and its default plugins, the
# libraries, the package (all of it, below) and the test helpers. A module that fails to
# import is left to the worker, which then fails as it would have.
PRELOAD = ("pytest", "_pytest.pytester", "_pytest.python_api", "execnet", "execnet.gateway_base",
           "asyncio", "sqlite3", "ctypes", "unittest", "difflib", "tomllib", "gzip", "configparser",
           "faulthandler", "xml.etree.ElementTree", "numpy", "numpy.random", "aiohttp", "pydantic",
           "psycopg", "psycopg.rows", "phonenumbers", "holidays", "click", "click.testing", "yaml",
           "serial", "gsmmodem", "rich.console", "rich.table", "sortedcontainers",
           "helpers", "boxes", "pgcluster", "schedule", "zygote", "pulse", "rawfake", "replay",
           "store_steps", "sysfs_builder", "timing")
# The server's environment is the controller's, as the workers' is (the C library's, with
# what readline put there at pytest's start: COLUMNS, LINES): a module that reads it at import
# (boxes.py, audio/tts.py) saw what it would have seen in the worker. A worker whose
# environment differs is started fresh.


# ---- the server (its own process) ----------------------------------------------------------
def _preload() -> None:
    import importlib
    import pkgutil

    from _pytest.config import default_plugins

    for name in (*PRELOAD, *(f"_pytest.{p}" for p in default_plugins)):
        try:
            importlib.import_module(name)
        except Exception:                   # (psycopg missing: the PostgreSQL tests say so)
            continue
    # every module of the package the tests import, but for its `python -m` entry points
    import modem_dialer

    for m in pkgutil.walk_packages(modem_dialer.__path__, "modem_dialer."):
        if not m.name.endswith("__main__"):
            try:
                importlib.import_module(m.name)
            except Exception:
                continue


def _refusal(req: dict) -> str | None:
    """Why this request cannot be served by a fork (None: it can)."""
    args = req.get("args", [])
    if args[:1] != ["-u"] or args[-2:-1] != ["-c"] or any(a not in ("-u", "-B") for a in args[:-2]):
        return f"arguments {args[:-1]} are not execnet's '-u [-B] -c'"
    ours, theirs = _started_env, req.get("env", {})
    if ours != theirs:
        return f"its environment differs from the server's in {sorted({k for k, _ in set(ours.items()) ^ set(theirs.items())})}"
    return None


_started_env: dict[str, str] = {}


def serve(listener: socket.socket, owner: socket.socket, preload: bool = True) -> None:
    """Fork a worker for each client that connects; tell it the worker's pid, then its wait
    status. A client gone: its worker is killed. The owner (the controller) gone: all are."""
    import gc
    import select

    # in a process group of its own: a Ctrl-C at the terminal is for the controller and the
    # workers (which join their clients' group), not for this one, which the controller ends
    os.setpgid(0, 0)
    _started_env.update(os.environ)         # (before a library we import changes it)
    # OpenBLAS (numpy's) starts a thread per core when it loads unless told not to: a fork is
    # only safe in a process with no other thread (checked below)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if preload:
        _preload()
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    # what was imported, out of the workers' collector's reach: a full collection in a worker
    # neither walks the ~100,000 objects it shares with us nor, by touching their headers,
    # copies the pages that hold them into each worker
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)      # only to be woken (the wakeup fd)
    conns: set[socket.socket] = set()
    owned: dict[int, socket.socket | None] = {}     # a worker's pid: its client's connection

    def tell(conn: socket.socket, m: dict) -> None:
        try:
            conn.send(json.dumps(m).encode())
        except OSError:                      # (its client gone meanwhile)
            pass
    while True:
        ready, _, _ = select.select([listener, owner, wake_r, *conns], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        while owned:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = owned.pop(pid, None)
            if conn is not None:
                tell(conn, {"status": status})
        if owner in ready:                  # the controller is done (or gone): so are we
            for pid in owned:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        if listener in ready:
            conn, _ = listener.accept()
            conns.add(conn)
        for conn in [c for c in conns if c in ready and c is not listener]:
            try:
                msg, fds, _, _ = socket.recv_fds(conn, _MAX_MSG, 3)
            except OSError:
                msg, fds = b"", []
            if not msg or len(fds) != 3:    # the client is gone: so is its worker
                conns.discard(conn)
                for pid in [p for p, c in owned.items() if c is conn]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    owned[pid] = None       # (reaped later; no one to tell)
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            req = json.loads(msg)
            why = _refusal(req) or (f"{threads} threads in the server (a fork copies one)" if threads > 1 else None)
            if why is not None:
                tell(conn, {"refused": why})
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                for s in (listener, owner, *conns):
                    os.close(s.detach())    # (detached: their objects must not close the fd
                                            # numbers again when this frame unwinds at exit)
                signal.set_wakeup_fd(-1)
                os.close(wake_r)
                os.close(wake_w)
                _become(req, fds)           # never returns
            for fd in fds:
                os.close(fd)
            owned[pid] = conn
            tell(conn, {"pid": pid})


def _become(req: dict, fds: list[int]) -> None:
    """In the forked child: be ``python -u -c BOOTSTRAP`` as its client was started. Ends the
    process (SystemExit through the server's frames to the interpreter's own exit)."""
    import io
    import types

    from zygote import take_over  # (preloaded: _preload)

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        os.setpgid(0, req["pgid"])          # the client's group, where a fresh worker would be
    except OSError:
        pass                                # (another session: the client forwards a Ctrl-C)
    take_over(fds, req["cwd"], req["env"])
    sys.dont_write_bytecode = "-B" in req["args"] or bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    # the standard streams as `-u` makes them: stdout and stderr unbuffered, stdin buffered
    enc, errs = sys.__stdout__.encoding, sys.__stdout__.errors     # type: ignore[union-attr]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "rb", closefd=False)),
                                                 encoding=sys.__stdin__.encoding,  # type: ignore[union-attr]
                                                 errors=sys.__stdin__.errors)      # type: ignore[union-attr]
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "wb", closefd=False), encoding=enc,  # type: ignore[arg-type]
                                                   errors=errs, write_through=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "wb", closefd=False), encoding=enc,  # type: ignore[arg-type]
                                                   errors="backslashreplace", write_through=True)
    if "numpy" in sys.modules:              # its global generator, seeded once at import: ours
        sys.modules["numpy"].random.seed()
    sys.argv = ["-c"]
    sys.path[0] = ""                        # as `-c` puts the working directory first
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    exec(compile(req["args"][-1], "<string>", "exec"), main.__dict__)
    raise SystemExit(0)


# ---- the client (execnet's "python") -------------------------------------------------------
def client(path: str, args: list[str]) -> None:
    """Have the server fork a worker with our streams, cwd and environment; wait for its end
    and end as it did. Anything wrong before the fork: be the fresh interpreter ourselves."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = 0
    forward = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

    def relay(sig: int, _frame: object) -> None:
        if not pid:
            return
        try:
            # a Ctrl-C at the terminal reached the worker itself when it is in our group
            if sig in (signal.SIGINT, signal.SIGQUIT) and os.getpgid(pid) == os.getpgrp():
                return
            os.kill(pid, sig)
        except OSError:
            pass
    # before the request: a signal between the fork and the pid's reply is not lost (it is
    # forwarded once the pid is known, below)
    pending: list[int] = []
    for s in forward:
        signal.signal(s, lambda sig, f: pending.append(sig))
    try:
        sock.connect(path)
        req = {"args": args, "cwd": os.getcwd(), "env": dict(os.environ), "pgid": os.getpgrp()}
        socket.send_fds(sock, [json.dumps(req).encode()], [0, 1, 2])
        sock.settimeout(120)                # the server's imports, on a loaded machine
        reply = json.loads(sock.recv(_MAX_MSG) or b"{}")
        sock.settimeout(None)
    except (OSError, ValueError) as exc:
        reply = {"refused": str(exc)}
    if "pid" not in reply:
        print(f"worker_zygote: a fresh interpreter ({reply.get('refused', 'no server')})", file=sys.stderr)
        for s in forward:
            signal.signal(s, signal.SIG_DFL)
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *args])
    pid = reply["pid"]
    # our copies of the pipes to the controller: it must see their end when the worker's ends
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for s in forward:
        signal.signal(s, relay)
    for s in pending:
        relay(s, None)
    try:
        m = json.loads(sock.recv(_MAX_MSG) or b"{}")
    except (OSError, ValueError):
        m = {}
    if "status" not in m:                   # the server died: its worker's end is unknown
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        print("worker_zygote: the server is gone", file=sys.stderr)
        os._exit(1)
    code = os.waitstatus_to_exitcode(m["status"])
    if code < 0:                            # killed by a signal: so are we
        if -code != signal.SIGKILL:         # (whose handler cannot be set)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


# ---- the controller's side -----------------------------------------------------------------
class Server:
    """The server, started by (and a child of) this process; ``command`` is what runs a
    worker through it (execnet's "python")."""

    def __init__(self, preload: bool = True, env: dict[str, str] | None = None) -> None:
        import shlex
        import subprocess
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="md-workers-")
        path = os.path.join(self.dir, "sock")
        # bound and listening before the server starts: the workers' clients connect at once
        # (in the backlog until the server, done importing, accepts), none polls for the path
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        here, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            listener.bind(path)
            listener.listen(64)
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", str(listener.fileno()),
                                          str(theirs.fileno()), *([] if preload else ["bare"])],
                                         pass_fds=[listener.fileno(), theirs.fileno()],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        except OSError:
            here.close()
            self._remove()
            raise
        finally:
            listener.close()
            theirs.close()
        self._here = here
        self.command = f"{shlex.quote(sys.executable)} -I -S {shlex.quote(os.path.abspath(__file__))} client {shlex.quote(path)}"

    def stop(self) -> None:
        """The server ends (what it still ran is killed) and is reaped here: its CPU and its
        workers' counted in ours."""
        import subprocess

        self._here.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._remove()

    def _remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


_server: Server | None = None


def start_for_run() -> str | None:
    """In the xdist controller: start the server; the command that starts a worker through it,
    or None when there is none to use."""
    global _server
    if (os.environ.get("MODEM_DIALER_TEST_EXEC") or os.environ.get("MODEM_DIALER_TEST_FRESH_WORKERS")
            or not hasattr(os, "fork") or not hasattr(socket, "send_fds")):
        return None
    try:
        _server = Server()
    except OSError as exc:
        print(f"worker_zygote: not started ({exc}): the workers start fresh interpreters", file=sys.stderr)
        return None
    return _server.command


def stop_for_run() -> None:
    """In the controller, once the workers are gone."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None


if __name__ == "__main__":
    if sys.argv[1] == "serve":          # (bare: nothing preloaded, for test_worker_zygote)
        serve(socket.socket(fileno=int(sys.argv[2])), socket.socket(fileno=int(sys.argv[3])),
              preload=sys.argv[4:] != ["bare"])
    else:
        client(sys.argv[2], sys.argv[3:])
