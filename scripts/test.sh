#!/usr/bin/env bash
# One command: install what the tests need, lint, type-check, and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Compiled bytecode (and pytest's rewritten test modules) is cached in __pycache__ even where the
# environment says not to: else each worker and each `modem-dialer` subprocess compiles the whole
# package from source again (about 17 s of CPU per worker at collection alone).
unset PYTHONDONTWRITEBYTECODE
# The tests' temporary files (tmp_path, the PostgreSQL clusters, the simulators' sockets) in memory
# where /dev/shm is a tmpfs with room: ext4's inode allocation for the ~100,000 files a run makes
# and deletes, and the SQLite journals' fsyncs, cost ~6-10 % of the run's CPU (a whole-machine
# `perf record -a` showed the bitmap scans; in turns, 145-148 core-s against 155-165). A TMPDIR
# set by the user is kept; durability is what the crash tests kill processes for, not the disk.
# (not where it is mounted noexec: a test runs a script it wrote there, test_doctor's timedatectl)
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
   [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -ge 2097152 ] 2>/dev/null &&
   ! awk '$2 == "/dev/shm" && $4 ~ /(^|,)noexec(,|$)/ {found = 1} END {exit !found}' /proc/mounts; then
  export TMPDIR=/dev/shm
fi
.venv/bin/ruff check .
# The type check runs beside the tests, at the lowest priority: it takes ~7 s of CPU on a fresh
# clone (14 before holidays' country modules were left out, pyproject.toml), which the tests
# leave idle now and then, instead of 7-30 s of wall before them (issue 15). Its verdict and exit status still decide the command's, after the tests.
mypy_log=$(mktemp)
# (on an interrupted run: the type check does not outlive it; || true: under set -e a failed kill
# in the trap, the check already reaped, would become the command's exit status)
trap 'kill "${mypy_pid:-}" 2>/dev/null || true; rm -f "$mypy_log"' EXIT
nice -n 19 .venv/bin/mypy modem_dialer >"$mypy_log" 2>&1 &   # settings in pyproject.toml [tool.mypy]
mypy_pid=$!
# eight workers: the tests wait more than they compute (on this 2-core machine, quiet: -n 4 180 s on a
# fresh clone, -n 6 140 s with the same tests; later, 1,063 tests in turns at load 3-5: -n 6 91.1 and
# 89.2 s, -n 8 73.3 and 78.3 s, -n 10 80.7 s); the slowest are listed
# --tb=native: on CPython 3.11.7 pytest's own traceback formatting can die in ast.parse
# ("AST constructor recursion depth mismatch") and take the whole xdist run down with it
rc=0
.venv/bin/python -m pytest -q -n 8 --tb=native --durations=10 "$@" || rc=$?
mypy_rc=0
wait "$mypy_pid" || mypy_rc=$?
echo "mypy: $(tail -n 1 "$mypy_log")"
if [ "$mypy_rc" -ne 0 ]; then
  cat "$mypy_log" >&2
  echo "test: mypy found type errors (above)" >&2
  [ "$rc" -ne 0 ] || rc=$mypy_rc
fi
exit "$rc"
