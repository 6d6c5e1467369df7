"""Frame pacing of many SerialPcm paths at once, against pseudo-terminals.

Each path plays prompts back to back while its fake modem sends 20 ms frames of the
callee's audio, which go through a DTMF detector: the load of a full modem bank on one
event loop. Prints how late each frame left relative to its deadline and how far the
gaps between frames stray from 20 ms.

    .venv/bin/python bench/pacing.py [paths=32] [seconds=10]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tty
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem_dialer.audio.dtmf import DtmfDetector, generate_sequence
from modem_dialer.audio.serial_pcm import SerialPcm


async def run(n_paths: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    ptys = []
    for _ in range(n_paths):
        m, s = os.openpty()
        tty.setraw(s)
        os.set_blocking(m, False)
        loop.add_reader(m, lambda m=m: os.read(m, 65536))
        ptys.append((m, s))
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

    tasks = [asyncio.create_task(keep_playing(p)) for p in paths]
    tasks += [asyncio.create_task(modem_sends(m)) for m, _ in ptys]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    for p in paths:
        await p.close()
    for m, s in ptys:
        loop.remove_reader(m)
        os.close(m)
        os.close(s)

    late, gaps = [], []
    for t in ticks:
        a = np.array(t[5:])  # skip start-up
        offset = a - 0.020 * np.arange(len(a))
        late.append(offset - offset.min())  # schedule anchored on the most punctual frame
        gaps.append(np.abs(np.diff(a) - 0.020))
    lateness = np.concatenate(late) * 1000
    jitter = np.concatenate(gaps) * 1000
    sent = sum(p.frames_sent for p in paths)
    print(
        f"{n_paths} paths, {seconds:.0f} s, {sent} frames sent ({sent / n_paths / seconds:.1f}/s per path), "
        f"{sum(p.frames_captured for p in paths)} captured, {sum(p.late_frames for p in paths)} skipped late"
    )
    print(
        f"lateness vs absolute deadline: p50 {np.percentile(lateness, 50):.2f} ms  "
        f"p99 {np.percentile(lateness, 99):.2f} ms  max {lateness.max():.2f} ms"
    )
    print(
        f"|gap - 20 ms| between frames:  p50 {np.percentile(jitter, 50):.2f} ms  "
        f"p99 {np.percentile(jitter, 99):.2f} ms  max {jitter.max():.2f} ms"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    asyncio.run(run(n, secs))
