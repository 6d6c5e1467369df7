#!/usr/bin/env bash
# One command: install, then run the demo on simulated modems (no hardware needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/modem-dialer demo "$@"
