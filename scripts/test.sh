#!/usr/bin/env bash
# One command: install what the tests need, lint, type-check, and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy modem_dialer   # settings in pyproject.toml [tool.mypy]
exec .venv/bin/python -m pytest -q "$@"
