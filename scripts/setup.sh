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
[ -x .venv/bin/python ] || python3 -m venv .venv
# pip resolves the dependencies again at each run (7 s of CPU): skip it while pyproject.toml is
# the one last installed (the editable install follows the source tree by itself)
stamp=.venv/.installed-pyproject.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  # setuptools warns about editable installs on stderr at every run: keep the output to what matters
  if ! out=$(PYTHONWARNINGS=ignore .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1); then
    echo "$out" >&2
    echo "setup: pip install failed" >&2
    exit 1
  fi
  echo "$out" | grep -v "^WARNING: Location" | grep . || true
  sha256sum pyproject.toml > "$stamp"
fi
