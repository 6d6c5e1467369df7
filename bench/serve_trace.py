"""``modem-dialer`` with a bench's instruments in the process: where a box's line time and CPU go.

bench/multibox.py ``utilisation --trace DIR`` starts each box's ``serve`` as
``python bench/serve_trace.py OUT --config CFG serve``: the product's own CLI, with its
methods wrapped from outside (nothing in the product knows of this). At exit (the bench
stops each serve with SIGTERM) it writes OUT.json: per line, the monotonic marks of each
call's steps (bench/campaign_utilisation.py's Timeline, with the service's steps between two
calls: the worker's turn, the bank's lease, the armed row awaited, the rules checked again
at the dial), and the CPU seconds of each thread of the process; and OUT.prof, a cProfile
(thread CPU time) of the event loop's thread.
"""

from __future__ import annotations

import atexit
import contextlib
import cProfile
import functools
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign_utilisation import Timeline


class ThreadCpu:
    """CPU seconds (user + system) of each thread of this process, sampled every 0.2 s (a
    thread that ended keeps its last sample); ``between(t0, t1)``: by thread name, between
    the samples nearest two monotonic times."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        threading.Thread(target=self._run, name="bench-sampler", daemon=True).start()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        seen: dict[int, tuple[str, float]] = {}
        while True:
            names = {t.native_id: t.name for t in threading.enumerate()}
            for t in Path("/proc/self/task").iterdir():
                try:
                    name = names.get(int(t.name)) or (t / "comm").read_text().strip()
                    f = (t / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                seen[int(t.name)] = (name, (int(f[11]) + int(f[12])) / tick)
            self.samples.append((time.monotonic(), dict(seen)))
            time.sleep(0.2)

    def between(self, t0: float, t1: float) -> dict[str, float]:
        def at(t: float) -> dict[int, tuple[str, float]]:
            return min(self.samples, key=lambda s: abs(s[0] - t))[1]
        a, b = at(t0), at(t1)
        out: dict[str, float] = {}
        for tid, (name, cpu) in b.items():
            out[name] = out.get(name, 0.0) + cpu - a.get(tid, (name, 0.0))[1]
        return out


commands: list[tuple[float, str]] = []      # AT commands sent: (monotonic time, verb)
statements: Counter[str] = Counter()    # PostgreSQL round trips, by thread and statement
starts: list[tuple[float, str]] = []    # a campaign's start on this box: (wall time, step), each step's first
_started: set[str] = set()


def start_mark(step: str) -> None:
    """The first time ``step`` happens in this process (wall clock: the boxes' marks compared)."""
    if step not in _started:
        _started.add(step)
        starts.append((time.time(), step))


def install_start() -> None:
    """Marks of a campaign's start on this box: joined, controller started, lines opened, first
    due read, first rules read asked/answered, first claim queued/committed, first ATD."""
    from modem_dialer.campaign.controller import Controller
    from modem_dialer.service.campaign_lines import BankSource
    from modem_dialer.service.campaigns import CampaignRunner

    def wrap_sync(cls: Any, name: str, before: str | None, after: str | None = None) -> None:
        f = getattr(cls, name)

        @functools.wraps(f)
        def w(*a: Any, **kw: Any) -> Any:
            if before:
                start_mark(before)
            try:
                return f(*a, **kw)
            finally:
                if after:
                    start_mark(after)
        setattr(cls, name, w)

    def wrap_async(cls: Any, name: str, before: str | None, after: str | None = None) -> None:
        f = getattr(cls, name)

        @functools.wraps(f)
        async def w(*a: Any, **kw: Any) -> Any:
            if before:
                start_mark(before)
            try:
                return await f(*a, **kw)
            finally:
                if after:
                    start_mark(after)
        setattr(cls, name, w)
    wrap_async(CampaignRunner, "submit", "runner.submit", "runner.submit done")
    wrap_async(CampaignRunner, "_join", "runner._join", "runner._join done")
    wrap_sync(CampaignRunner, "_start", "runner._start", "runner._start done")
    wrap_async(Controller, "run", "ctrl.run")
    wrap_async(BankSource, "open", "source.open", "source.open done")
    wrap_sync(Controller, "_fill_now", "first due read", "first due read done")
    wrap_async(Controller, "_decide_soon", "first decide", "first decide done")
    wrap_sync(Controller, "_arm", "first claim queued")
    wrap_async(Controller, "_call", "first _call")


def install(tl: Timeline) -> None:
    """The service's steps between a line's call end and its next ATD, on the previous call's marks."""
    from modem_dialer.campaign.controller import Controller
    from modem_dialer.service.campaign_lines import BankSource

    turn, recheck, call = BankSource.turn, Controller._recheck, Controller._call

    def last(line: str, step: str) -> None:
        calls = tl.calls.get(line)
        if calls:
            calls[-1].setdefault(step, time.monotonic())

    @contextlib.asynccontextmanager
    async def turn_w(self, index, now) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
        armed = self.ctrl._armed.get(index)
        if armed is not None:
            last(armed.modem, "turn")
        async with turn(self, index, now) as got:
            if got[0] is not None:
                last(got[0].name, "leased")
            yield got

    async def recheck_w(self, armed, call_id, slot):  # type: ignore[no-untyped-def]
        last(slot.name, "row_awaited")
        try:
            return await recheck(self, armed, call_id, slot)
        finally:
            last(slot.name, "rechecked")

    prefetch = Controller._prefetch_recheck

    def prefetch_w(self, index):  # type: ignore[no-untyped-def]
        armed = self._armed.get(index)
        had = armed is not None and armed.facts is not None
        prefetch(self, index)
        if armed is not None and not had and armed.facts is not None:
            # the dial's rules read asked ahead (as the call's end is handled) and its answer back
            last(armed.modem, "read_asked")
            armed.facts.add_done_callback(lambda _f: last(armed.modem, "read_back"))

    @functools.wraps(call)
    async def call_w(self, index, slot, armed):  # type: ignore[no-untyped-def]
        last(slot.name, "call")
        return await call(self, index, slot, armed)

    from modem_dialer.at.channel import ATChannel

    run = ATChannel._run

    async def run_w(self, command, *a, **kw):  # type: ignore[no-untyped-def]
        if command.startswith("ATD"):
            start_mark("first ATD")
        commands.append((time.monotonic(), command.split("=")[0].split("?")[0][:12]))
        return await run(self, command, *a, **kw)
    ATChannel._run = run_w  # type: ignore[method-assign]
    from modem_dialer.store import pg

    send, run_now = pg.PgConnection._send, pg.PgConnection._run_now

    def send_w(self, query, params, **kw):  # type: ignore[no-untyped-def]
        statements[f"{threading.current_thread().name}: {' '.join(query.split()[:4])[:40]}"] += 1
        return send(self, query, params, **kw)

    def run_now_w(self, stmt):  # type: ignore[no-untyped-def]
        statements[f"{threading.current_thread().name}: {stmt.split(';')[-1].strip()}"] += 1
        return run_now(self, stmt)
    fetch = pg.PreparedReader.fetchall

    def fetch_w(self, sql, params=()):  # type: ignore[no-untyped-def]
        # the urgent reads (CallJournal.dial_facts urgent, suppressed_now), server-side parameters
        statements[f"{threading.current_thread().name}: {' '.join(sql.split()[:4])[:40]}"] += 1
        return fetch(self, sql, params)
    pg.PreparedReader.fetchall = fetch_w  # type: ignore[method-assign]
    pg.PgConnection._send = send_w  # type: ignore[method-assign]
    pg.PgConnection._run_now = run_now_w  # type: ignore[method-assign]
    BankSource.turn = turn_w  # type: ignore[method-assign,assignment]
    Controller._recheck = recheck_w  # type: ignore[method-assign]
    Controller._call = call_w  # type: ignore[method-assign]
    Controller._prefetch_recheck = prefetch_w  # type: ignore[method-assign]


def main() -> None:
    out = Path(sys.argv.pop(1))
    tl = Timeline()
    tl.install()
    install(tl)
    install_start()
    # the profiler's own cost roughly doubles the loop thread's CPU: only when asked
    prof = cProfile.Profile(time.thread_time) if os.environ.get("BENCH_SERVE_PROFILE") else None
    cpu = ThreadCpu()

    def dump() -> None:
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(out) + ".prof")
        marks = [m for calls in tl.calls.values() for c in calls for m in c.values()]
        # the campaign's part of the run: from the first mark to the last
        threads = cpu.between(min(marks), max(marks)) if marks else {}
        during = Counter(v for t, v in commands if marks and min(marks) <= t <= max(marks))
        Path(str(out) + ".json").write_text(json.dumps({"calls": tl.calls, "thread_cpu": threads,
                                                           "commands": during,
                                                           "statements": statements, "starts": starts}))
    atexit.register(dump)
    if prof is not None:
        prof.enable()
        from campaign_utilisation import profile_threads

        profile_threads(str(out))     # OUT.journal, OUT.pcm: the writer threads' own profiles
    from modem_dialer.cli import main as cli

    sys.argv[0] = "modem-dialer"
    cli()


if __name__ == "__main__":
    main()
