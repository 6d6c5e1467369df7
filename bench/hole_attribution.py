"""Who opened each hole in a call's downlink: the dialer, the listener, or the host.

A hole is a gap of more than HOLE_MS between two reads of a PCM port by the bench's tap
(bench/pcm_tap.py: the modem's view). Three records, all stamped with CLOCK_MONOTONIC
(shared by every process of the machine), take it apart:

- the dialer's writes (``MODEM_DIALER_PCM_TRACE``, modem_dialer/audio/writer_trace.py):
  when each write to the port went and how many bytes it carried, and each tick of its
  writer thread (deadline, wake-up, the thread's run-queue wait);
- the tap's reads (``tap_reads``): when each read returned and how many bytes;
- the host's steal time per CPU (``/proc/stat``), sampled every 20 ms by a small process
  of its own (``StealSampler``).

Byte offsets pair the hole's two reads with the writes that sent their bytes: the last
byte read before the hole was sent at ``S_a``, the first byte read after it at ``S_b``.
The hole (``b - a``) is then ``(S_b - S_a)``, the dialer's gap between the two writes,
plus ``(b - S_b)``, how late the tap read the frame after it was written, minus
``(a - S_a)``. The larger share names the culprit:

- **dialer**: its writer sent nothing for that long. Why, from its trace: ``mid-tick``
  when the late write came long after its tick woke (the tick gave the GIL up midway and
  waited to get it back: a lock, or a post to the loop), ``capture`` when the tick before
  overran in its capture phase (reads, DTMF, posts to the loop); ``host`` before those when
  the host stole both CPUs for half the stall or more; else the tick woke late: the thread's run-queue wait meanwhile (a CPU was busy: ``cpu``), the steal
  time on each CPU meanwhile (``host``: the machine's virtual CPUs were not run; ``host
  1cpu`` when one CPU only: e.g. the one running the thread that held the GIL), else it
  waited for the GIL held by another thread of the dialer: ``gil+cpu`` when the dialer's
  other threads waited for a CPU meanwhile (the holder was preempted: machine load),
  ``gil+run`` when they ran (a long hold), ``?`` when neither shows; ``gcN`` (N: the
  generation) before all of these but ``host`` when garbage collections of the dialer
  took a quarter of the stall or more (a collection keeps the GIL from start to end);
- **reader**: the frames left on time and the tap read them late (its process was not
  run: steal, or a CPU busy): the measurement's hole, not the dialer's.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLER = r"""
import os, signal, sys, time
out = sys.argv[1]
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
except (OSError, AttributeError):
    pass
hz = os.sysconf("SC_CLK_TCK")
rows = []
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
fd = os.open("/proc/stat", os.O_RDONLY)
while not stop:
    t = time.monotonic()
    text = os.pread(fd, 65536, 0).decode()
    steal = [int(line.split()[8]) / hz for line in text.splitlines()
             if line.startswith("cpu") and line[3:4].isdigit()]
    rows.append(" ".join([repr(t)] + [repr(s) for s in steal]))
    time.sleep(0.02)
with open(out, "w") as f:
    f.write("\n".join(rows))
"""


class StealSampler:
    """Steal time of each CPU (s, cumulative) every 20 ms, from a process of its own."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", SAMPLER, str(out)])

    def stop(self) -> list[tuple[float, list[float]]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        rows = []
        for line in self.out.read_text().splitlines():
            t, *steal = (float(x) for x in line.split())
            rows.append((t, steal))
        return rows


@dataclass
class Steal:
    rows: list[tuple[float, list[float]]]

    def between(self, t0: float, t1: float) -> list[float]:
        """Seconds stolen from each CPU between t0 and t1 (from the samples around them)."""
        if not self.rows:
            return []
        times = [t for t, _ in self.rows]
        i = max(0, bisect.bisect_right(times, t0) - 1)
        j = min(len(times) - 1, bisect.bisect_left(times, t1))
        return [b - a for a, b in zip(self.rows[i][1], self.rows[j][1], strict=True)]

    def per_second(self, t0: float) -> list[tuple[int, float]]:
        """(second since t0, ms stolen from all CPUs in it), for each second with any."""
        out = []
        if not self.rows:
            return out
        end = self.rows[-1][0]
        for s in itertools.count():
            if t0 + s >= end:
                break
            ms = 1000 * sum(self.between(t0 + s, t0 + s + 1))
            if ms >= 5:
                out.append((s, ms))
        return out


@dataclass
class Hole:
    port: str
    a: float              # tap stamp of the read before the hole
    b: float              # ... and after it
    dialer_ms: float      # gap between the writes that sent the last byte before and the first after
    reader_ms: float      # how late the tap read the first byte after the hole
    writer_late_ms: float  # the writer's latest tick in that gap: woke minus deadline
    runq_ms: float        # the writer thread's run-queue wait over that tick
    ran_ms: float         # ... and its CPU time
    into_ms: float        # from the wake-up of the tick that sent the first byte after, to its write
    capture_ms: float     # the capture phase of the tick before it
    others_wait_ms: float  # the dialer's other threads' run-queue wait over that tick
    others_run_ms: float   # ... and their CPU time
    steal_ms: list[float]  # per CPU, over the dialer's gap (dialer) or the read lag (reader)
    who: str
    why: str

    @property
    def ms(self) -> float:
        return 1000 * (self.b - self.a)


class DialerTrace:
    def __init__(self, directory: Path) -> None:
        files = sorted(directory.glob("pcm-writer-*.json"))
        self.ok = bool(files)
        self.deadline: list[float] = []
        self.woke: list[float] = []
        self.written: list[float] = []
        self.done: list[float] = []
        self.wait_ns: list[int] = []
        self.run_ns: list[int] = []
        self.others_run_ns: list[int] = []
        self.others_wait_ns: list[int] = []
        self.writes: dict[str, tuple[list[float], list[int]]] = {}
        self.gc: list[tuple[float, float, int]] = []
        for f in files:      # one dialer process per run here; several are merged
            doc = json.loads(f.read_text())
            t = doc["ticks"]
            self.deadline += t["deadline"]
            self.woke += t["woke"]
            self.written += t.get("written", [])
            self.done += t.get("done", [])
            self.wait_ns += t["wait_ns"]
            self.run_ns += t["run_ns"]
            self.others_run_ns += t.get("others_run_ns", [])
            self.others_wait_ns += t.get("others_wait_ns", [])
            self.gc += [tuple(g) for g in doc.get("gc", [])]
            for port, w in doc["writes"].items():
                times, ns = self.writes.setdefault(port, ([], []))
                times += w["sent_at"]
                ns += w["n"]
        self.cum = {p: list(itertools.accumulate(n)) for p, (_, n) in self.writes.items()}

    def sent_at(self, port: str, byte: int) -> float | None:
        """When the write that carried byte number ``byte`` (from 0) of the port went."""
        cum = self.cum.get(port)
        if not cum:
            return None
        j = bisect.bisect_right(cum, byte)
        return self.writes[port][0][j] if j < len(cum) else None

    def gc_overlap(self, t0: float, t1: float) -> tuple[float, int]:
        """ms of garbage collection within [t0, t1], and the highest generation collected."""
        ms, gen = 0.0, -1
        for a, b, g in self.gc:
            o = min(b, t1) - max(a, t0)
            if o > 0:
                ms += 1000 * o
                gen = max(gen, g)
        return ms, gen

    def late_ticks(self, threshold_ms: float) -> list[tuple[float, float]]:
        """(deadline, ms late) of the ticks that woke more than threshold_ms late."""
        return [(d, 1000 * (w - d)) for d, w in zip(self.deadline, self.woke, strict=True)
                if 1000 * (w - d) > threshold_ms]

    def tick_of(self, t: float) -> tuple[float, float, float]:
        """For the write at ``t``: ms from its tick's wake-up to it, and the tick before's
        capture phase (from its writes' end to its end) and overrun of this tick's deadline."""
        k = bisect.bisect_right(self.woke, t) - 1
        if k < 1 or k >= len(self.done):
            return 0.0, 0.0, 0.0
        into = 1000 * (t - self.woke[k])
        capture = 1000 * (self.done[k - 1] - self.written[k - 1])
        overrun = 1000 * (self.done[k - 1] - self.deadline[k])
        return into, capture, overrun

    def worst_tick(self, t0: float, t1: float) -> tuple[float, float, float, float, float]:
        """Of the latest tick that woke in [t0, t1]: ms late, and over that tick (from the
        schedstat sample before its sleep to the one after its work) the writer's run-queue
        wait, the other threads' run-queue wait and their CPU time, and the writer's CPU
        time, in ms."""
        i = bisect.bisect_left(self.woke, t0)
        j = bisect.bisect_right(self.woke, t1)
        best, runq, o_wait, o_run, ran = 0.0, 0.0, 0.0, 0.0, 0.0
        for k in range(i, j):
            late = 1000 * (self.woke[k] - self.deadline[k])
            if late > best:
                best = late
                if k + 1 < len(self.wait_ns) and self.wait_ns[k] >= 0:
                    runq = (self.wait_ns[k + 1] - self.wait_ns[k]) / 1e6
                    ran = (self.run_ns[k + 1] - self.run_ns[k]) / 1e6
                if k + 1 < len(self.others_wait_ns):
                    o_wait = (self.others_wait_ns[k + 1] - self.others_wait_ns[k]) / 1e6
                    o_run = (self.others_run_ns[k + 1] - self.others_run_ns[k]) / 1e6
        return best, runq, o_wait, o_run, ran


def attribute(holes: list[tuple[str, float, float]], tap_reads: dict[str, list[tuple[float, int]]],
              dialer: DialerTrace, steal: Steal) -> list[Hole]:
    out = []
    index = {}
    for port, reads in tap_reads.items():
        times = [t for t, _ in reads]
        cum = [0, *itertools.accumulate(n for _, n in reads)]   # bytes read before each read
        index[port] = (times, cum)
    for port, a, b in holes:
        times, cum = index.get(port, ([], [0]))
        i = bisect.bisect_left(times, b)
        if i >= len(times) or times[i] != b or not dialer.ok:
            out.append(Hole(port, a, b, float("nan"), float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, [], "?",
                            "no record"))
            continue
        k = cum[i]
        s_b = dialer.sent_at(port, k)
        s_a = dialer.sent_at(port, k - 1) if k > 0 else None
        if s_a is None or s_b is None:
            out.append(Hole(port, a, b, float("nan"), float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, [], "?",
                            "write not found"))
            continue
        d_ms, r_ms = 1000 * (s_b - s_a), 1000 * (b - s_b)
        late, runq, o_wait, o_run, ran = dialer.worst_tick(s_a, s_b + 0.005)
        into, capture, overrun = dialer.tick_of(s_b)
        # what each side added to the 20 ms between two frames (the reader's normal lag: ~1 ms)
        excess = max(1.0, 1000 * (b - a) - 20)
        if d_ms - 20 >= 2 / 3 * excess:
            who = "dialer"
            st = steal.between(s_a, s_b)
            stall = max(late, d_ms - 20)         # frames go every 20 ms: the rest is a stall
            st_ms = [1000 * x for x in st]
            gc_ms, gen = dialer.gc_overlap(s_a, s_b)
            if st_ms and min(st_ms) >= 0.5 * stall:
                why = "host"
            elif gc_ms >= 0.25 * stall:
                why = f"gc{gen}"
            elif into >= 0.5 * stall:
                why = "mid-tick"
            elif capture >= 0.5 * stall and overrun > 0:
                why = "capture"
            elif runq >= 0.5 * stall:
                why = "cpu"
            elif st_ms and max(st_ms) >= 0.5 * stall:
                why = "host 1cpu"
            elif o_wait >= 0.5 * stall:
                why = "gil+cpu"
            elif o_run >= 0.5 * stall:
                why = "gil+run"
            else:
                why = "?"
        elif r_ms >= 2 / 3 * excess:
            who = "reader"
            st_ms = [1000 * x for x in steal.between(s_b, b)]
            why = "host" if st_ms and min(st_ms) >= 0.5 * r_ms else (
                "host 1cpu" if st_ms and max(st_ms) >= 0.5 * r_ms else "cpu?")
        else:
            who, why = "both", f"dialer +{d_ms - 20:.0f} ms, reader +{r_ms:.0f} ms"
            st_ms = [1000 * x for x in steal.between(s_a, b)]
        out.append(Hole(port, a, b, d_ms, r_ms, late, runq, ran, into, capture, o_wait, o_run, st_ms, who, why))
    return out


def read_lags(tap_reads: dict[str, list[tuple[float, int]]], dialer: DialerTrace) -> list[float]:
    """For every tap read: ms from the write of its last byte to the read (the tap's
    wake-up lag, as far as the dialer's stamps tell it)."""
    lags = []
    for port, reads in tap_reads.items():
        done = 0
        for t, n in reads:
            done += n
            s = dialer.sent_at(port, done - 1)
            if s is not None:
                lags.append(1000 * (t - s))
    return lags


def summary(holes: list[Hole]) -> str:
    counts: dict[str, int] = {}
    for h in holes:
        key = h.who if h.who == "both" else f"{h.who}/{h.why}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def describe(h: Hole, t0: float) -> str:
    steal = "/".join(f"{x:.0f}" for x in h.steal_ms) or "-"
    return (f"  t+{h.a - t0:6.2f} s {os.path.basename(h.port):>4}: hole {h.ms:5.0f} ms = writes {h.dialer_ms:5.0f} ms"
            f" apart + read {h.reader_ms:5.1f} ms after its write; writer tick {h.writer_late_ms:5.1f} ms late,"
            f" write {h.into_ms:4.1f} ms into it, capture before {h.capture_ms:4.1f} ms, run-queue {h.runq_ms:5.1f} ms, ran {h.ran_ms:4.1f} ms (other threads: {h.others_wait_ms:5.1f} ms, ran {h.others_run_ms:5.1f} ms),"
            f" steal per CPU {steal} ms -> {h.who} ({h.why})")
