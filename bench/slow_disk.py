"""A slow disk must not break the calls' audio nor slow the campaign (issue 10).

16 simulated modems with audio; a campaign whose callees press keys (every key is a
journal row). The dialer (`modem-dialer campaign run`, a subprocess) runs under strace,
which delays every fsync/fdatasync it makes by 0, 40 or 200 ms — what an SD card does.
The simulated bank runs in *this* process, not under strace.

Where the downlink is timestamped matters. The simulator's reader thread shares this
process's GIL with its event loop (16 modems' AT dialogue, uplink clocks); on a loaded
machine the OS may not run the loop thread for 50-150 ms while it holds the GIL, and the
reader then stamps frames late that reached the modem on time: holes that no modem would
hear. So each PCM port is read by a *tap*: a tiny process of its own (one thread, real-time
priority when allowed) that reads the port, stamps each read and hands it to the simulator.
Its stamps are the modem's view, whatever this process does. The gaps as the simulator's own
thread saw them are printed too (``sim thread``), to show the difference.

Prints per delay: campaign time (makespan, first ATD to last end, and wall time of the
process), downlink arrival gaps p99/max, holes (gaps over 60 ms) per call, keys journaled.
Goal: 0 gaps over 60 ms at every delay, makespan within 5 % of the 0 ms one.

Then who opened each hole (hole_attribution.py): the dialer records its writer's ticks and
writes (MODEM_DIALER_PCM_TRACE, audio/writer_trace.py), a small process samples the host's
steal time per CPU, and byte offsets pair each hole's reads with the writes that sent them:
the dialer's writer late (and why: host steal, a CPU, the GIL, a stall inside a tick), or
the tap late reading frames that left on time. Also printed: the tap's read lag after each
write, the simulator's thread's lag after the tap, the writer's late ticks, steal per
second, and what the callee hears: the simulated DSP running dry mid-call (an arrival gap
is not heard while the frames written ahead still play: ``--lead``, audio.lead_frames).

Usage: .venv/bin/python bench/slow_disk.py [--modems 16] [--calls 48] [--delays 0,40,200]
       [--message 3] [--answer 0.3] [--lead N] [--show 12]
Needs strace (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hole_attribution as ha
import pcm_tap

from modem_dialer.sim.audio_port import SimAudioPort
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sim_bank import SimBank
from modem_dialer.sim.voice import write_tone_wav

HOLE_MS = 60.0

# --shim: the slow disk without strace. strace stops the traced thread at each fsync (and at
# each thread creation, -f) until strace itself gets a CPU; this shim only makes the calling
# thread wait in fsync/fdatasync, as a slow disk does, and nothing else (LD_PRELOAD).
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static long delay_us = -1;
static void slow(void) {
    if (delay_us < 0) { const char *e = getenv("SLOW_FSYNC_US"); delay_us = e ? atol(e) : 0; }
    if (delay_us > 0) {
        struct timespec t = {delay_us / 1000000, (delay_us % 1000000) * 1000};
        while (nanosleep(&t, &t)) {}
    }
}
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); slow(); return real(fd); }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); slow(); return real(fd); }
"""


def build_shim(work: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--shim needs a C compiler (cc or gcc)")
    src, so = work / "slow_fsync.c", work / "slow_fsync.so"
    src.write_text(SHIM_C)
    import subprocess
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(src), "-ldl"], check=True)
    return so

# --- downlink arrival times -----------------------------------------------------------------
# Each simulated PCM port is read by a tap process (see the module doc), which stamps every
# read; the simulator's thread gets (stamp, bytes) from it and plays them at those times. A
# call's stamps, and the times the simulator's thread handled them, are kept when it ends.
_per_call: list[list[float]] = []         # tap stamps (the modem's view)
_per_call_sim: list[list[float]] = []     # when the simulator's thread handled each read
_per_call_port: list[str] = []            # the PCM port of each
_per_call_dry: list[list[float]] = []     # ms of silence the simulated DSP played, having run dry

_orig_started = SimAudioPort.call_started
_orig_ended = SimAudioPort.call_ended


def _started(self: SimAudioPort, call) -> None:  # type: ignore[no-untyped-def]
    _orig_started(self, call)
    with self._lock:
        self._sim_times = []  # type: ignore[attr-defined]


def _ended(self: SimAudioPort) -> None:
    with self._lock:
        _per_call.append([t for t, _ in self.arrivals])
        _per_call_sim.append(list(getattr(self, "_sim_times", [])))
        _per_call_port.append(self.path)
        _per_call_dry.append([1000 * x for x in self.dry])
    _orig_ended(self)


pcm_tap.install()
SimAudioPort.call_started = _started  # type: ignore[method-assign]
SimAudioPort.call_ended = _ended  # type: ignore[method-assign]


def _gaps(calls: list[list[float]]) -> tuple[list[float], list[int]]:
    gaps: list[float] = []
    holes: list[int] = []
    for times in calls:
        g = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
        gaps += g
        holes.append(sum(1 for x in g if x > HOLE_MS))
    return gaps, holes


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else 0.0


async def one_run(args: argparse.Namespace, delay_ms: int, work: Path, run: int = 0) -> dict:
    _per_call.clear()
    _per_call_sim.clear()
    _per_call_port.clear()
    _per_call_dry.clear()
    load0 = os.getloadavg()[0]
    keys = [(args.message * f, k) for f, k in ((0.25, "1"), (0.5, "2"), (0.75, "3"))]
    bank = SimBank.of(args.modems, "quectel", Scenario(default=Callee("answer", answer_after=args.answer,
                                                                          ring_after=0.05, keys=keys)))
    await bank.start()
    try:
        db = work / f"dialer-{run}-{delay_ms}.db"
        cfg = work / f"config-{run}-{delay_ms}.yaml"
        conf = yaml.safe_load(bank.config_yaml(database=str(db)))
        if args.lead:       # audio.lead_frames of every modem (the default: serial_pcm.LEAD_FRAMES)
            for m in conf["modems"]:
                m["audio"]["lead_frames"] = args.lead
        cfg.write_text(yaml.safe_dump(conf))
        (work / "contacts.csv").write_text("number\n" + "".join(f"+336{12000000 + i:08d}\n" for i in range(args.calls)))
        camp = work / "camp.yaml"
        camp.write_text(yaml.safe_dump({"name": f"slow{run}-{delay_ms}", "contacts": "contacts.csv", "message": "msg.wav",
                                        "purpose": "informational", "rules": "none"}))
        cmd = [sys.executable, "-m", "modem_dialer.cli", "--config", str(cfg), "campaign", "run", str(camp)]
        trace = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=fsync,fdatasync"]
        if delay_ms:
            trace += ["-e", f"inject=fsync,fdatasync:delay_enter={delay_ms * 1000}"]
        elif args.no_strace:    # the 0 ms run without strace at all: are its stops a cause?
            trace = []
        # the dialer records its writer's ticks and writes (audio/writer_trace.py)
        trace_dir = work / f"trace-{run}-{delay_ms}"
        env = {**os.environ, "MODEM_DIALER_PCM_TRACE": str(trace_dir)}
        if args.shim:           # the same delay without strace (SHIM_C)
            trace = []
            env |= {"LD_PRELOAD": str(args.shim), "SLOW_FSYNC_US": str(delay_ms * 1000)}
        sampler = ha.StealSampler(work / f"steal-{run}-{delay_ms}.txt")
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(*trace, *cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, cwd=work, env=env)
            out, err = await proc.communicate()
        finally:
            steal = ha.Steal(sampler.stop())
        wall = time.monotonic() - t0
        print(out.decode()[-600:], err.decode()[-600:])
        if proc.returncode != 0:
            raise SystemExit(f"campaign run exited {proc.returncode}:\n{out.decode()}{err.decode()}")
    finally:
        await bank.stop()
    tap_reads = {m.audio.path: list(getattr(m.audio, "tap_reads", [])) for m in bank.modems if m.audio}
    conn = sqlite3.connect(db)
    first, last = conn.execute("SELECT MIN(started_at), MAX(ended_at) FROM calls").fetchone()
    from modem_dialer.store import from_ts
    makespan = (from_ts(last) - from_ts(first)).total_seconds()
    answered = conn.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'answered'").fetchone()[0]
    n_keys = conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
    conn.close()
    gaps, holes_per_call = _gaps(_per_call)
    sim_gaps, sim_holes = _gaps(_per_call_sim)
    # each hole taken apart (hole_attribution.py): the dialer's writes against the tap's reads
    holes = [(port, a, b) for port, times in zip(_per_call_port, _per_call, strict=True)
             for a, b in itertools.pairwise(times) if (b - a) * 1000 > HOLE_MS]
    dialer = ha.DialerTrace(trace_dir)
    blamed = ha.attribute(holes, tap_reads, dialer, steal)
    lags = ha.read_lags(tap_reads, dialer)
    sim_lags = [1000 * (s - t) for times, sims in zip(_per_call, _per_call_sim, strict=True)
                for t, s in zip(times, sims, strict=False)]
    late = dialer.late_ticks(20.0)
    return {"delay": delay_ms, "makespan": makespan, "wall": wall, "answered": answered, "keys": n_keys,
            "p99": pct(gaps, 99), "max": max(gaps, default=0.0), "holes": sum(holes_per_call),
            "calls_with_holes": sum(1 for h in holes_per_call if h), "calls": len(holes_per_call),
            "sim_max": max(sim_gaps, default=0.0), "sim_holes": sum(sim_holes),
            "load": (load0 + os.getloadavg()[0]) / 2, "blamed": blamed, "t0": t0,
            "lag_p99": pct(lags, 99), "lag_max": max(lags, default=0.0),
            "sim_lag_p99": pct(sim_lags, 99), "sim_lag_max": max(sim_lags, default=0.0),
            "late_ticks": len(late), "late_max": max((x for _, x in late), default=0.0),
            "late_steal": sum(1 for d, x in late if sum(steal.between(d, d + x / 1000)) * 1000 >= 0.5 * x),
            "steal_s": [(s, ms) for s, ms in steal.per_second(t0)], "steal_total": 1000 * sum(steal.between(t0, t0 + wall)),
            "traced": dialer.ok,
            "dry20": sum(1 for c in _per_call_dry for x in c if x > 20),
            "dry40": sum(1 for c in _per_call_dry for x in c if x > HOLE_MS - 20),
            "dry_calls": sum(1 for c in _per_call_dry if any(x > 20 for x in c)),
            "dry_max": max((x for c in _per_call_dry for x in c), default=0.0)}


async def main_async(args: argparse.Namespace) -> None:
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed (apt install strace; scripts/setup.sh does it)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="slow-disk-") as d:
        work = Path(d)
        write_tone_wav(work / "msg.wav", args.message)
        if args.shim:
            args.shim = build_shim(work)
        for run, delay in enumerate(args.delays):
            r = await one_run(args, delay, work, run)
            rows.append(r)
            print(f"fsync +{delay:3d} ms: makespan {r['makespan']:6.2f} s  (process {r['wall']:6.2f} s)  "
                  f"answered {r['answered']}/{args.calls}  keys journaled {r['keys']}/{3 * args.calls}  "
                  f"downlink gaps p99 {r['p99']:5.1f} ms max {r['max']:6.1f} ms  "
                  f"holes>{HOLE_MS:g}ms {r['holes']} ({r['calls_with_holes']}/{r['calls']} calls, "
                  f"{r['holes'] / max(1, r['calls']):.2f} per call); as the sim thread saw them: max "
                  f"{r['sim_max']:6.1f} ms, holes {r['sim_holes']}  (load {r['load']:.1f})", flush=True)
            report(r, args.show)
    base = rows[0]["makespan"]
    for r in rows[1:]:
        print(f"fsync +{r['delay']} ms: makespan {100 * (r['makespan'] / base - 1):+.1f} % vs +{rows[0]['delay']} ms")


def report(r: dict, show: int) -> None:
    """Who opened the holes (hole_attribution.py), and what the three clocks saw."""
    if not r["traced"]:
        print("  (no trace from the dialer: MODEM_DIALER_PCM_TRACE not honoured?)")
    print(f"  holes by culprit: {ha.summary(r['blamed'])}")
    print(f"  heard by the callee (the simulated DSP ran dry mid-call): {r['dry40']} times > {HOLE_MS - 20:g} ms, "
          f"{r['dry20']} > 20 ms ({r['dry_calls']}/{r['calls']} calls), max {r['dry_max']:.0f} ms")
    print(f"  dialer's writer: {r['late_ticks']} ticks > 20 ms late (max {r['late_max']:.0f} ms; "
          f"{r['late_steal']} of them while the host stole at least half of it); tap's read after the "
          f"write p99 {r['lag_p99']:.1f} ms max {r['lag_max']:.1f} ms; the simulator's thread after the tap "
          f"p99 {r['sim_lag_p99']:.1f} ms max {r['sim_lag_max']:.1f} ms")
    steal = ", ".join(f"+{s}s {ms:.0f}" for s, ms in r["steal_s"]) or "none"
    print(f"  host steal (ms, both CPUs): total {r['steal_total']:.0f}; per second: {steal}")
    for h in r["blamed"][:show]:
        print(ha.describe(h, r["t0"]))
    if len(r["blamed"]) > show:
        print(f"  ... {len(r['blamed']) - show} more (--show N)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--calls", type=int, default=48)
    ap.add_argument("--delays", default="0,40,200", help="fsync delays in ms, comma-separated")
    ap.add_argument("--message", type=float, default=3.0, help="message length, s (keys at 1/4, 1/2, 3/4)")
    ap.add_argument("--answer", type=float, default=0.3, help="s from ATD to answer")
    ap.add_argument("--show", type=int, default=12, help="holes described one by one per delay")
    ap.add_argument("--no-strace", action="store_true", help="run the 0 ms delay without strace")
    ap.add_argument("--shim", action="store_true",
                    help="delay fsync with an LD_PRELOAD shim instead of strace (no ptrace stops; needs cc)")
    ap.add_argument("--lead", type=int, default=0, help="the modems' audio.lead_frames (0: the default)")
    args = ap.parse_args()
    args.delays = [int(x) for x in args.delays.split(",")]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
