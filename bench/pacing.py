"""Frame pacing of many SerialPcm paths at once, against pseudo-terminals.

Each path plays prompts back to back while its fake modem sends 20 ms frames of the
callee's audio, which go through a DTMF detector: the load of a full modem bank on one
event loop. Prints how late each frame left relative to its deadline and how far the
gaps between frames stray from 20 ms.

With ``stall_ms`` > 0 the event loop is deliberately blocked (``time.sleep``, as a slow
fsync would) for that long once a second: the writer thread must not notice.
The fake modems read in a thread of their own, so arrival times at the modem (also
printed) are not delayed by the stall either.

    .venv/bin/python bench/pacing.py [paths=32] [seconds=10] [stall_ms=0]
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem_dialer.audio.dtmf import DtmfDetector, generate_sequence
from modem_dialer.audio.serial_pcm import WRITER, SerialPcm


def modem_reads(masters: list[int], arrivals: dict[int, list[float]], stop: threading.Event) -> None:
    """The modems' side: read every downlink in a thread, stamping arrivals."""
    while not stop.is_set():
        ready, _, _ = select.select(masters, [], [], 0.1)
        now = time.monotonic()
        for m in ready:
            try:
                n = len(os.read(m, 65536))
            except OSError:
                continue
            arrivals[m].extend([now] * (n // 320))


async def run(n_paths: int, seconds: float, stall_ms: float) -> None:
    ptys = []
    for _ in range(n_paths):
        m, s = os.openpty()
        tty.setraw(s)
        os.set_blocking(m, False)
        ptys.append((m, s))
    arrivals: dict[int, list[float]] = {m: [] for m, _ in ptys}
    stop = threading.Event()
    reader = threading.Thread(target=modem_reads, args=([m for m, _ in ptys], arrivals, stop), daemon=True)
    reader.start()
    prompt = generate_sequence("123", 200, 300)
    uplink = generate_sequence("4567890", 100, 100).tobytes()
    paths, ticks, detectors = [], [], []
    for _m, s in ptys:
        p = SerialPcm(os.ttyname(s))
        t: list[float] = []
        p.on_tick = t.append
        d = DtmfDetector()
        p.on_capture = d.feed
        await p.start()
        paths.append(p)
        ticks.append(t)
        detectors.append(d)

    async def keep_playing(p: SerialPcm) -> None:
        while p.running:
            await p.play(prompt)

    async def modem_sends(m: int) -> None:
        t0, k = time.monotonic(), 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
            off = (k * 320) % len(uplink)
            os.write(m, (uplink + uplink)[off : off + 320])

    async def stall() -> None:
        while True:
            await asyncio.sleep(1.0)
            time.sleep(stall_ms / 1000)  # noqa: ASYNC251 -- the loop stall under test

    tasks = [asyncio.create_task(keep_playing(p)) for p in paths]
    tasks += [asyncio.create_task(modem_sends(m)) for m, _ in ptys]
    if stall_ms > 0:
        tasks.append(asyncio.create_task(stall()))
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    for p in paths:
        await p.close()
    stop.set()
    reader.join()
    for m, s in ptys:
        os.close(m)
        os.close(s)

    arrival_gaps = np.concatenate([np.diff(np.array(a[5:])) for a in arrivals.values() if len(a) > 6]) * 1000
    late, gaps = [], []
    for t in ticks:
        a = np.array(t[5:])  # skip start-up
        offset = a - 0.020 * np.arange(len(a))
        late.append(offset - offset.min())  # schedule anchored on the most punctual frame
        gaps.append(np.abs(np.diff(a) - 0.020))
    lateness = np.concatenate(late) * 1000
    jitter = np.concatenate(gaps) * 1000
    sent = sum(p.frames_sent for p in paths)
    stalls = f", the loop blocked {stall_ms:g} ms once a second" if stall_ms > 0 else ""
    print(
        f"{n_paths} paths, {seconds:.0f} s{stalls}, {sent} frames sent ({sent / n_paths / seconds:.1f}/s per path), "
        f"{sum(p.frames_captured for p in paths)} captured, writer late (schedule moved) "
        f"{sum(p.late_frames for p in paths)} path-ticks; writer thread SCHED_FIFO: {WRITER.realtime}"
    )
    print(
        f"lateness vs absolute deadline: p50 {np.percentile(lateness, 50):.2f} ms  "
        f"p99 {np.percentile(lateness, 99):.2f} ms  max {lateness.max():.2f} ms"
    )
    print(
        f"|gap - 20 ms| between frames:  p50 {np.percentile(jitter, 50):.2f} ms  "
        f"p99 {np.percentile(jitter, 99):.2f} ms  max {jitter.max():.2f} ms"
    )
    print(
        f"gap between arrivals at the modems: p50 {np.percentile(arrival_gaps, 50):.1f} ms  "
        f"p99 {np.percentile(arrival_gaps, 99):.1f} ms  max {arrival_gaps.max():.1f} ms  "
        f"(> 60 ms: {int((arrival_gaps > 60).sum())})"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    stall = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    asyncio.run(run(n, secs, stall))
