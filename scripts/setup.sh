#!/usr/bin/env bash
# Installs everything modem-dialer needs on a Debian/Ubuntu machine into ./.venv.
# System packages: PortAudio (uac audio path), espeak-ng (--say), alsa-utils and sox (tests, tools),
# udev (udevadm checks the generated rules), strace (bench/slow_disk.py delays fsync with it),
# chromium (the console's browser tests, driven by playwright), PulseAudio + the ALSA pulse plugin
# (the uac path tested through real-time paced null sinks).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libportaudio2 alsa-utils espeak-ng sox udev python3-venv strace chromium
      pulseaudio pulseaudio-utils libasound2-plugins postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The venv's interpreter: the distribution's python3 where it has one (>= 3.10), else the first
# python3 on PATH; MODEM_DIALER_PYTHON=/path/to/python3 picks another. Debian builds its python3
# with PGO and LTO: the suite's Python costs ~20 % less CPU on it than on a plain ./configure
# build such as pyenv's default, which may come first on PATH (issue 15). A .venv made on
# another interpreter is built again (once).
py=${MODEM_DIALER_PYTHON:-}
if [ -z "$py" ]; then
  py=python3
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    py=/usr/bin/python3
  fi
fi
want=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))')" != "$want" ]; then
  echo "setup: building .venv again on $want"
  rm -rf .venv
fi
# The venv without pip: seeding pip into it (ensurepip) took 3-4 s of a fresh clone's test command
# (issue 15), for an installer only needed to install uv, which the interpreter's own pip can do
# (`pip --python`, pip >= 22.3); pip is seeded after all where that cannot be done (below).
[ -x .venv/bin/python ] || "$py" -m venv --without-pip .venv
venv_pip() {    # pip inside the venv, for the fallbacks
  [ -x .venv/bin/pip ] || .venv/bin/python -m ensurepip --default-pip >/dev/null
}
# pip resolves the dependencies again at each run (7 s of CPU): skip it while pyproject.toml is
# the one last installed (the editable install follows the source tree by itself)
stamp=.venv/.installed-pyproject.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  # uv resolves and installs the dependencies in ~9 s where pip takes ~50 s (most of a fresh
  # clone's test command, issue 15); pip stays the fallback where uv cannot be had or cannot
  # reach an index pip can (pip.conf's find-links and extra indexes are pip's alone)
  out="" installer=""
  if .venv/bin/uv --version >/dev/null 2>&1 ||
     PYTHONWARNINGS=ignore "$py" -m pip --python .venv/bin/python install -q --disable-pip-version-check "uv>=0.4" >/dev/null 2>&1 ||
     { venv_pip && PYTHONWARNINGS=ignore .venv/bin/pip install -q --disable-pip-version-check "uv>=0.4" >/dev/null 2>&1; }; then
    if out=$(.venv/bin/uv pip install -q --python .venv/bin/python -e ".[test]" 2>&1); then
      installer=uv
    fi
  fi
  if [ "${installer:-}" != uv ]; then
    echo "setup: uv could not install the dependencies ($(printf '%s\n' "${out:-uv not installed}" | head -1)); pip installs them" >&2
    installer=pip
    venv_pip
  fi
  # setuptools warns about editable installs on stderr at every run: keep the output to what matters
  if [ "$installer" = pip ] && ! out=$(PYTHONWARNINGS=ignore .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1); then
    echo "$out" >&2
    echo "setup: pip install failed" >&2
    exit 1
  fi
  echo "$out" | grep -v "^WARNING: Location" | grep . || true
  # Bytecode, as pip compiles it, for what the tests import (scripts/compile_deps.py says what
  # and why). PYTHONWARNINGS: the dependencies' own SyntaxWarnings, 98 lines not ours to fix.
  PYTHONWARNINGS=ignore .venv/bin/python scripts/compile_deps.py \
    "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null 2>&1 || true
  sha256sum pyproject.toml > "$stamp"
fi
