"""A private PulseAudio server with null sinks: real-time paced sound cards for the uac
path (feasibility.md §2b), started and stopped by the test itself (root, no D-Bus, no card).

``modem_spk`` is the modem's speaker direction (what the callee hears; record it from
``modem_spk.monitor``), ``modem_mic`` the microphone direction (feed it by playing into
``modem_mic_feed``). PortAudio reaches them through the ALSA pulse plugin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# norewinds=1: without it a null sink that has no client renders silence 2 s ahead (its
# largest block, module-null-sink's BLOCK_USEC) and then sleeps until that time. A stream
# that connects to its monitor afterwards gets nothing for up to 2 s: nothing plays into
# modem_mic_feed (no rewind brings the sink back to now), and PortAudio's playback on
# modem_spk stalled as long too (measured). During that wait PortAudio's ALSA capture
# thread spun at 100% of a CPU: the ALSA pulse plugin's poll descriptor is a pipe that
# stays readable until the plugin next looks at its stream (a transfer, a PulseAudio
# callback), while its poll_revents says "not ready" (less than a period readable), so
# PortAudio's poll() returned at once, again and again (strace: ~5500 polls a second;
# ~1.9 s of CPU per test, issue 15). With norewinds the sink renders at most 50 ms ahead
# (BLOCK_USEC_NOREWINDS, less if its clients ask for less): audio flows as soon as a
# stream connects, and the steady state is unchanged (the clients ask for 20-40 ms anyway).
# A real sound card's capture has no such 2 s hole, and its poll descriptor is the kernel's.
PA_SCRIPT = """
load-module module-native-protocol-unix auth-anonymous=1 socket={run}/native
load-module module-null-sink sink_name=modem_spk rate=8000 channels=1 format=s16le norewinds=1
load-module module-null-sink sink_name=modem_mic_feed rate=8000 channels=1 format=s16le norewinds=1
set-default-sink modem_spk
set-default-source modem_mic_feed.monitor
"""
ASOUNDRC = """
pcm.modem_spk { type pulse  device "modem_spk" }
pcm.modem_mic { type pulse  device "modem_mic_feed.monitor" }
"""
RAW = ["--raw", "--format=s16le", "--rate=8000", "--channels=1"]


@dataclass
class Pulse:
    dir: Path
    env: dict[str, str]

    def record(self, out: Path) -> subprocess.Popen[bytes]:
        """What the callee hears, from now on, into ``out`` (raw S16LE 8 kHz)."""
        return subprocess.Popen(["parec", "-d", "modem_spk.monitor", *RAW, "--latency-msec=20", str(out)],
                                env=self.env)

    def record_said(self, out: Path) -> subprocess.Popen[bytes]:
        """What the callee says (the microphone direction), from now on, into ``out``."""
        return subprocess.Popen(["parec", "-d", "modem_mic_feed.monitor", *RAW, "--latency-msec=20", str(out)],
                                env=self.env)

    def say(self, raw: Path) -> subprocess.Popen[bytes]:
        """The callee's side: play ``raw`` into the microphone direction, paced."""
        return subprocess.Popen(["pacat", "--playback", "-d", "modem_mic_feed", *RAW, "--latency-msec=20",
                                 str(raw)], env=self.env)


def available() -> bool:
    return (all(shutil.which(t) for t in ("pulseaudio", "parec", "pacat")) and Path(
        "/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists()) or bool(
        list(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")))


@contextlib.contextmanager
def pulse_server(d: Path) -> Iterator[Pulse]:
    run, home = d / "run", d / "home"
    run.mkdir(mode=0o700)
    home.mkdir()
    (d / "modem.pa").write_text(PA_SCRIPT.format(run=run))
    (d / "pulse.asoundrc").write_text(ASOUNDRC)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run), "HOME": str(home), "PULSE_SERVER": f"unix:{run}/native",
           "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{d / 'pulse.asoundrc'}"}
    proc = subprocess.Popen(["pulseaudio", "-n", "-F", str(d / "modem.pa"), "--daemonize=no",
                             "--exit-idle-time=-1", "--use-pid-file=no", "--realtime=yes", "--high-priority=yes", f"--log-target=file:{d / 'pa.log'}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (run / "native").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (d / "pa.log").read_text() if (d / "pa.log").exists() else ""
                raise RuntimeError(f"pulseaudio did not start (rc {proc.poll()}): {log[-500:]}")
            time.sleep(0.01)
        # The server plays the sound card: real hardware keeps its clock whatever the CPUs do.
        # Its sink threads ask for real-time (--realtime), but the main thread, which moves
        # the clients' audio, stays at normal priority (nice -11); on a loaded machine it came
        # late and the sinks played silence in the middle of what the callee said. Real-time
        # too where allowed (root, as CI); the null sinks are paced, nothing spins.
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(proc.pid, os.SCHED_FIFO, os.sched_param(1))
        yield Pulse(d, env)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
