"""Wall-clock bounds that still mean something on a loaded machine.

A test that bounds how long something took in this process sees two kinds of time: what the
code did (ran, or waited for what it waits for: a timer, a reply, the modem's clock), and what
the OS made it wait for a CPU that other processes held. Only the first is the code's doing;
on CI's 2 cores shared by 6 test workers the second reaches hundreds of milliseconds.

Linux counts the second, per thread: ``run_delay`` in ``/proc/self/task/*/schedstat``, the
time the thread spent runnable on a run queue without running. A thread that sleeps (on a
timer, a select, a lock, the GIL) is not on a run queue, so a fixed sleep in the code under
test still counts in full against a bound: subtracting the run delay removes the machine's
load, not the code's waiting. The sum is taken over all of this process's threads because a
thread waiting for the GIL is stalled by the holder's run delay, not its own; where several
threads wait at once the sum counts more than the stall (the bound gets looser by that much,
never stricter than the machine allows). Quiet machine: ~0, the bound is the one written.
Where the kernel does not report it (no schedstat), 0: the bound stays as strict as written.
"""

from __future__ import annotations

import os

_TASKS = "/proc/self/task"


def cpu_wait() -> dict[int, int]:
    """Nanoseconds each of this process's threads has waited for a CPU so far (see module doc);
    empty where the kernel does not say."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{_TASKS}/{tid}/schedstat", "rb") as f:
                out[int(tid)] = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue                      # the thread ended meanwhile
    return out


def waited_for_cpu(before: dict[int, int], after: dict[int, int]) -> float:
    """Seconds this process's threads waited for a CPU between two ``cpu_wait()`` snapshots.
    A thread that ended in between counts for nothing (its share is unknown): never more than
    was waited."""
    return sum(max(0, ns - before.get(tid, 0)) for tid, ns in after.items()) / 1e9
