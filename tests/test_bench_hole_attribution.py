"""bench/hole_attribution.py names who opened a hole in a call's downlink (issue 10: the
dialer's writer late, or the bench's reader late), from the dialer's trace of its writes
and the reader's stamps: checked on records made up with a known culprit."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import hole_attribution as ha

PORT = "/dev/pts/77"


def _records(tmp_path: Path) -> tuple[ha.DialerTrace, dict[str, list[tuple[float, int]]]]:
    # the writer sends a frame every 20 ms from t=1.0 to 3.0, except between 1.5 and 1.6 (its
    # tick woke 80 ms late, 75 ms of it waiting for a CPU); the reader reads each frame 0.5 ms
    # after it was written, except from 2.5 to 2.58, when it read nothing and then 4 frames at once
    sends = [1.0 + 0.02 * i for i in range(101) if not 1.5 < 1.0 + 0.02 * i < 1.6 - 1e-9]
    deadline = list(sends)
    woke = list(sends)
    wait_ns = [0] * len(sends)
    k = next(i for i, t in enumerate(sends) if t > 1.59)
    deadline[k] = 1.52
    for i in range(k + 1, len(sends)):   # schedstat is sampled before each tick's sleep: sample
        wait_ns[i] = 75_000_000          # k+1 follows tick k's work (75 ms waited over it)
    doc = {"pid": 1, "gc": [],
           "ticks": {"deadline": deadline, "woke": woke, "written": woke, "done": woke,
                     "run_ns": [1000 * i for i in range(len(sends))], "wait_ns": wait_ns,
                     "others_run_ns": [0] * len(sends), "others_wait_ns": [0] * len(sends)},
           "writes": {PORT: {"sent_at": sends, "n": [320] * len(sends)}}}
    (tmp_path / "pcm-writer-1.json").write_text(json.dumps(doc))
    reads: list[tuple[float, int]] = []
    for t in sends:
        if 2.5 < t < 2.58:
            continue
        if abs(t - 2.58) < 1e-9:
            reads.append((t + 0.0005, 4 * 320))
        else:
            reads.append((t + 0.0005, 320))
    return ha.DialerTrace(tmp_path), {PORT: reads}


def test_each_hole_is_blamed_on_who_made_it(tmp_path: Path) -> None:
    dialer, reads = _records(tmp_path)
    times = [t for t, _ in reads[PORT]]
    holes = [(PORT, a, b) for a, b in itertools.pairwise(times) if b - a > 0.06]
    assert len(holes) == 2
    blamed = ha.attribute(holes, reads, dialer, ha.Steal([]))
    writer_late, reader_late = blamed
    assert (writer_late.who, writer_late.why) == ("dialer", "cpu")
    assert writer_late.dialer_ms == pytest.approx(100, abs=0.1) and writer_late.reader_ms == pytest.approx(0.5)
    assert writer_late.writer_late_ms == pytest.approx(80, abs=0.1)
    assert reader_late.who == "reader"
    assert reader_late.dialer_ms == pytest.approx(20, abs=0.1)     # the writer kept its pace
    assert reader_late.reader_ms == pytest.approx(60.5, abs=0.1)    # the first frame after the hole, read late
    # ... and the host's steal, when it covers the writer's stall on both CPUs, is named instead
    steal = ha.Steal([(1.45, [0.0, 0.0]), (1.65, [0.09, 0.1])])
    assert ha.attribute(holes[:1], reads, dialer, steal)[0].why == "host"
