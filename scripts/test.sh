#!/usr/bin/env bash
# One command: install what the tests need, lint, type-check, and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Compiled bytecode (and pytest's rewritten test modules) is cached in __pycache__ even where the
# environment says not to: else each worker and each `modem-dialer` subprocess compiles the whole
# package from source again (about 17 s of CPU per worker at collection alone).
unset PYTHONDONTWRITEBYTECODE
.venv/bin/ruff check .
.venv/bin/mypy modem_dialer   # settings in pyproject.toml [tool.mypy]
# six workers: the tests wait more than they compute (on this 2-core machine, quiet: -n 4 180 s on a
# fresh clone, -n 6 140 s with the same tests); the slowest are listed
# --tb=native: on CPython 3.11.7 pytest's own traceback formatting can die in ast.parse
# ("AST constructor recursion depth mismatch") and take the whole xdist run down with it
exec .venv/bin/python -m pytest -q -n 6 --tb=native --durations=10 "$@"
