"""tests/worker_zygote.py: a worker forked by the server starts as execnet's fresh
``python -u -c BOOTSTRAP`` would (its streams, working directory, environment, process group),
ends as it does (its exit status, its signal), dies with its client, and a worker the server
cannot serve is a fresh interpreter after all. The server here preloads nothing: what is
tested is the fork, not the imports."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time

import pytest
import worker_zygote

BOOT = "import sys;exec(eval(sys.stdin.readline()))"    # execnet's popen_bootstrapline
# what the worker says of itself
FACTS = ("import json, os, sys; print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'pgid': os.getpgrp(),"
         " 'cwd': os.getcwd(), 'argv': sys.argv, 'path0': sys.path[0], 'main': __name__, 'env': dict(os.environ)}),"
         " flush=True)")
READ = "; line = sys.stdin.readline()"     # then the next line of its stdin (the bootstrap's, read on)


@pytest.fixture
def env() -> dict[str, str]:
    """The environment of the server and of its clients (not this process's, which pytest
    changes from a test's setup to its call: PYTEST_CURRENT_TEST)."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture
def server(env):
    s = worker_zygote.Server(preload=False, env=env)
    yield s
    s.stop()


def client(server: worker_zygote.Server, code: str, env: dict[str, str], **kw) -> subprocess.Popen:
    """A worker started as xdist starts one through the server; CODE is what execnet sends it."""
    p = subprocess.Popen([*shlex.split(server.command), "-u", "-c", BOOT], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)
    assert p.stdin is not None
    p.stdin.write((repr(code) + "\n").encode())
    p.stdin.flush()
    return p


def facts(p: subprocess.Popen) -> dict:
    assert p.stdout is not None
    return json.loads(p.stdout.readline())


def gone(pid: int, timeout: float = 30) -> bool:
    """Has process PID ended (within TIMEOUT s: a bound for a hang)?"""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:      # (ended and reaped)
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_a_forked_worker_is_started_and_ends_as_a_fresh_one(server, env, tmp_path):
    p = client(server, FACTS + READ + "; print('read', repr(line), flush=True); sys.exit(3)", env, cwd=tmp_path)
    me = facts(p)
    assert me["ppid"] == server.proc.pid != p.pid      # forked by the server, not exec'd by the client
    assert me["pgid"] == os.getpgrp()                   # in its client's process group
    assert me["cwd"] == str(tmp_path)
    assert (me["argv"], me["path0"], me["main"]) == (["-c"], "", "__main__")
    assert me["env"] == env
    out, err = p.communicate(b"hello\n", timeout=60)    # (its stdin: the bootstrap's, read on)
    assert out == b"read 'hello\\n'\n", err
    assert p.returncode == 3


def test_a_signal_to_the_client_reaches_the_worker_which_dies_of_it_and_so_does_the_client(server, env):
    p = client(server, FACTS + READ, env)
    me = facts(p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == -signal.SIGTERM
    assert gone(me["pid"])


def test_a_worker_killed_its_client_ends_likewise(server, env):
    p = client(server, FACTS + "; os.kill(os.getpid(), 9)", env)
    facts(p)
    _, err = p.communicate(b"\n", timeout=60)
    assert p.returncode == -signal.SIGKILL, err


def test_the_worker_dies_with_its_client(server, env):
    p = client(server, FACTS + READ, env)
    me = facts(p)
    p.kill()                        # as execnet kills a worker that does not end
    p.wait(60)
    assert gone(me["pid"])


def test_the_worker_s_end_is_the_end_of_its_output_whatever_its_client_does(server, env):
    """xdist sees a worker's crash as the end of its output: the client keeps no copy of it."""
    p = client(server, FACTS + READ + "; os._exit(0)", env)
    facts(p)
    # the client lets go of its copy once told the worker's pid (which may come after the
    # worker's first words): stopped before, it would hold it
    deadline = time.monotonic() + 30
    while os.readlink(f"/proc/{p.pid}/fd/1") != os.devnull:
        assert time.monotonic() < deadline, "the client kept its stdout for 30 s"
        time.sleep(0.01)
    p.send_signal(signal.SIGSTOP)   # the client, stopped, can neither close nor exit
    try:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(b"\n")
        p.stdin.flush()
        assert select.select([p.stdout], [], [], 30)[0], "no end of the output in 30 s"
        assert p.stdout.read() == b""
    finally:
        p.send_signal(signal.SIGCONT)
    assert p.wait(60) == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Popen's process_group is Python 3.11's")
def test_a_ctrl_c_at_the_terminal_reaches_the_worker(server, env):
    """The terminal signals the whole foreground group: the worker is in it (and the client,
    which then does not pass the SIGINT on too); the worker ends as it chose to."""
    p = client(server, "import sys\ntry:\n    " + FACTS + READ + "\nexcept KeyboardInterrupt:\n"
               "    import time; time.sleep(0.5); print('interrupted', flush=True); sys.exit(5)",
               env, process_group=0)
    me = facts(p)
    assert me["pgid"] == p.pid
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (5, b"interrupted\n"), err


def test_a_worker_whose_environment_differs_from_the_server_s_is_a_fresh_interpreter(server, env):
    p = client(server, FACTS + READ + "; sys.exit(3)", {**env, "MODEM_DIALER_TEST_OTHER": "1"})
    me = facts(p)
    assert me["pid"] == p.pid and me["ppid"] == os.getpid()       # the client became the interpreter
    assert me["env"]["MODEM_DIALER_TEST_OTHER"] == "1"
    _, err = p.communicate(b"\n", timeout=60)
    assert b"a fresh interpreter (its environment differs from the server's in ['MODEM_DIALER_TEST_OTHER'])" in err
    assert p.returncode == 3


def test_no_server_a_fresh_interpreter(server, env):
    server.stop()
    p = client(server, FACTS + READ, env)
    me = facts(p)
    assert me["pid"] == p.pid
    p.communicate(b"\n", timeout=60)
    assert p.returncode == 0
