"""The order xdist hands the tests out in (tests/conftest.py): keep both cores busy.

Most long tests wait (a 10 s database outage, calls played in real time) and use little CPU;
a few compute (3,000 contacts on three boxes, 100,000 rows validated). Longest-first alone
started all the computing ones together, after collection: the two cores were saturated for
the first ~50 s (every test there, timing-sensitive ones too, ran two to three times slower)
and idle behind waiting tests later. So the order is built by replaying the run on a simple
model of this machine: each test needs ``cpu`` seconds of CPU spread over ``wall`` seconds
(both measured by a previous run), the cores are shared evenly when asked for more than
there is. Whenever a worker takes its next test, a test that computes is chosen if the
running ones leave CPU unused, else one that waits; the longest first within each kind, so
that no long test starts late. Only an optimisation: a wrong guess costs time, never a test.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

# a test no run has timed: a typical short one (most of the suite: < 30 ms of CPU, < 0.2 s)
UNKNOWN = (0.1, 0.03)
CORES = 2.0
# the model leaves out what it does not see (the PostgreSQL servers, the controller, the
# slowing of everything when the cores are shared): asking it to fill 1.6 cores fills 2
TARGET_CORES = 1.6
# a test that keeps a quarter of a core busy on average computes; below that it mostly waits
COMPUTES = 0.25


def plan(ids: Sequence[str], known: dict[str, tuple[float, float]], workers: int,
         realtime: Collection[str] = ()) -> list[int]:
    """The indices of ``ids`` in the order to hand them out to ``workers`` xdist workers, each
    of which is given two tests at first and then one more at each test it finishes (the
    one it will run after its current next). ``known``: nodeid -> (wall s, CPU s).
    ``realtime``: tests that a starved CPU can fail (audio heard in real time): handed out one
    at a time in the second half of the run, spread over it by the model's clock so that the
    last one still ends before the others (handed out by their count, they came last: a 5 s
    test alone at the end of every run), and no test that computes is handed out while one is
    running or queued."""
    n = len(ids)
    if workers < 2 or n < 2 * workers:          # one process, or a handful of tests: longest first
        return sorted(range(n), key=lambda k: (-known.get(ids[k], UNKNOWN)[0], k))
    rt = [k for k in range(n) if ids[k] in set(realtime)]
    if not rt:
        return _hand_out(ids, known, workers, [], [])[0]
    # the run without them first: how long the rest takes, in the model's seconds
    rest = [k for k in range(n) if k not in set(rt)]
    _, makespan = _hand_out([ids[k] for k in rest], known, workers, [], [])
    wall_rt = [max(known.get(ids[k], UNKNOWN)[0], 1e-3) for k in rt]
    # one at a time from the middle on (on a loaded machine the long tests of the first half,
    # a multibox campaign, Chromium, run much longer than modelled, and a key test beside
    # them failed), the last due early enough to end, with its wait behind a running test,
    # before the rest does
    first_due = makespan / 2
    last_due = makespan - 2 * max(wall_rt)
    gap = max((last_due - first_due) / max(len(rt) - 1, 1), 0.0)
    due = [first_due + j * gap for j in range(len(rt))]
    return _hand_out(ids, known, workers, rt, due)[0]


def _hand_out(ids: Sequence[str], known: dict[str, tuple[float, float]], workers: int,
              rt: list[int], due: list[float]) -> tuple[list[int], float]:
    """The order (indices of ``ids``) and the model's makespan; the realtime tests ``rt``
    (indices, longest first) each handed out at its ``due`` time or after."""
    n = len(ids)
    wall = [max(known.get(i, UNKNOWN)[0], 1e-3) for i in ids]
    cpu = [min(max(known.get(i, UNKNOWN)[1], 0.0), wall[k] * 4) for k, i in enumerate(ids)]
    rate = [cpu[k] / wall[k] for k in range(n)]
    longest = sorted(range(n), key=lambda k: (-wall[k], k))
    is_rt = set(rt)
    timed = sorted(rt, key=lambda k: (-wall[k], k))
    computing = [k for k in longest if rate[k] >= COMPUTES and k not in is_rt]
    waiting = [k for k in longest if rate[k] < COMPUTES and k not in is_rt]
    taken = [False] * n
    heads = {"c": 0, "w": 0, "r": 0}
    now = [0.0]
    rt_given = [0]
    order: list[int] = []

    def first(kind: str, among: list[int]) -> int | None:
        h = heads[kind]
        while h < len(among) and taken[among[h]]:
            h += 1
        heads[kind] = h
        return among[h] if h < len(among) else None

    def pick(demand: float, quiet_wanted: bool) -> int | None:
        k = None
        # the next realtime test, once due, where the model sees the cores not full, none
        # running or queued; once one is due, no test that computes is handed out before it
        due_now = rt_given[0] < len(timed) and now[0] >= due[rt_given[0]]
        if due_now and demand <= TARGET_CORES and not quiet_wanted:
            k = first("r", timed)
            rt_given[0] += 1
        if k is None and demand < TARGET_CORES and not quiet_wanted and not due_now:
            k = first("c", computing)
        if k is None:
            k = first("w", waiting)
        if k is None:
            k = first("c", computing)
        if k is None:
            k = first("r", timed)
            rt_given[0] += k is not None
        if k is not None:
            taken[k] = True
            order.append(k)
        return k

    def pick_for(slots: list[list]) -> int | None:
        held = [k for s in slots for k in (s[0], s[2]) if k is not None]
        return pick(sum(rate[s[0]] for s in slots if s[0] is not None), any(k in is_rt for k in held))

    # per worker: [running test, its wall-seconds left, queued test]
    slots: list[list] = []
    for _ in range(workers):
        a = pick_for(slots)
        slots.append([a, wall[a] if a is not None else 0.0, None])
    for s in slots:
        s[2] = pick_for(slots)
    # Every running test slows down alike when the cores are shared, so which test ends next
    # does not depend on how much they are shared: only on the wall-seconds each has left.
    while any(s[0] is not None for s in slots):
        live = [s for s in slots if s[0] is not None]
        step = min(s[1] for s in live)
        now[0] += step
        for s in live:
            s[1] = max(s[1] - step, 0.0)
        done = min((s for s in live if s[1] <= 1e-9), key=lambda s: s[0])
        # the worker goes on with its queued test and is given the next one
        done[0], done[2] = done[2], None
        if done[0] is not None:
            done[1] = wall[done[0]]
            done[2] = pick_for(slots)
    # xdist's first hand-out: two consecutive tests to each worker in turn
    order[:2 * workers] = [k for pair in zip(order[:workers], order[workers:2 * workers], strict=True) for k in pair]
    assert sorted(order) == list(range(n)), "every test exactly once"
    return order, now[0]
