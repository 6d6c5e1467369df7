"""Port utilisation: N simulated modems, M short scripted calls through the real controller.

The simulated bank runs in its own process (``modem-dialer sim``), so this process's CPU
time is the dialer's alone: controller + call layer + AT channel. Every callee answers
after ``--answer`` s and hangs up ``--hold`` s later; the script just listens, so a call
lasts (answer + hold) by the script and the lower bound of the makespan is
ceil(M / N) · (answer + hold). Audio paths are left out of the config (64 paced PCM
streams would measure the audio layer, not the scheduler).

Realistic mode (``--realistic``, issue 10): what alerting and reminders do. Audio on
(serial PCM, 64 streams paced by the writer thread), the dialer plays a ``--message`` s
prompt and hangs up after it, the callee answers ``--answer`` s after ATD and never hangs
up. The simulator (a child process) plays the downlink at the real rate, so a hang-up
before the message has played shows as cut audio. The port-time bound is
ceil(M / N) · (answer + message). In the same run, on the same simulated bank,
python-gsmmodem-new is driven the same way: one thread per modem, dial, wait for the
answer, wait ``--message`` s, hang up (no audio: it has no audio path).

Usage: .venv/bin/python bench/campaign_utilisation.py [--modems 64] [--calls 5000]
       .venv/bin/python bench/campaign_utilisation.py --realistic [--modems 64] [--calls 2000]
       .venv/bin/python bench/campaign_utilisation.py --realistic --repeat 3 [--peer-procs 8]
(``--repeat N``: both N times in turns, with median and min; the peer's run-to-run spread
and its failed calls are explained in docs/audio.md, "The peer on the same bench")
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))     # pcm_tap, in the simulator's process
import itertools

from modem_dialer.call.line import open_lines
from modem_dialer.call.session import ActiveCall
from modem_dialer.campaign.controller import Controller
from modem_dialer.campaign.limits import LimitsConfig
from modem_dialer.campaign.spec import CampaignSpec
from modem_dialer.campaign.view import PlainView
from modem_dialer.modems.options import ModemConfig
from modem_dialer.store import Campaigns, open_db


async def listen(call: ActiveCall) -> None:
    while True:                      # until the callee hangs up (CallEnded / cancellation)
        await call.get_key(None)


class QuietView(PlainView):
    def event(self, kind: str, text: str) -> None:
        if kind not in ("dial", "call", "rule"):
            super().event(kind, text)


def breakdown(conn, per_call: float) -> None:  # type: ignore[no-untyped-def]
    """Where the time beyond the bound goes: between calls on a line (dispatch: outcome, rules,
    claim, next contact) vs inside a call (ATD round trip, playout, end detection, hang-up)."""
    from statistics import mean, median

    from modem_dialer.store import from_ts
    # started_at (the ATD's time): a row is written (created_at) while the line's previous call plays
    rows = conn.execute("SELECT modem, COALESCE(started_at, created_at), answered_at, ended_at FROM calls"
                        " ORDER BY modem, id").fetchall()
    gaps = [(from_ts(b[1]) - from_ts(a[3])).total_seconds() * 1000
            for a, b in itertools.pairwise(rows) if a[0] == b[0]]
    inside = [(from_ts(r[3]) - from_ts(r[1])).total_seconds() * 1000 - per_call * 1000 for r in rows]
    to_answer = [(from_ts(r[2]) - from_ts(r[1])).total_seconds() * 1000 for r in rows if r[2]]
    print(f"between calls on a line: median {median(gaps):.1f} ms, mean {mean(gaps):.1f} ms; "
          f"in-call overhead beyond the script: median {median(inside):.1f} ms, mean {mean(inside):.1f} ms; "
          f"row -> answered median {median(to_answer):.1f} ms")


def start_sim(d: Path, modems: int, answer: float, hold: float) -> tuple[subprocess.Popen, Path]:
    sc = d / "scenario.yaml"
    sc.write_text(yaml.safe_dump({"default": {"outcome": "answer", "answer_after": answer, "hangup_after": hold,
                                              "ring_after": 0.02}}))
    cfg = d / "sim-config.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "modem_dialer.cli", "sim", "--modems", str(modems),
                             "--scenario", str(sc), "--write-config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if cfg.exists() and cfg.stat().st_size:
            return proc, cfg
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("simulator did not start")


def campaign(args: argparse.Namespace, d: Path, cfg_path: Path, audio: bool,  # type: ignore[no-untyped-def]
             margin: float | None = None):
    """The modem configs, the database and a campaign of ``args.calls`` contacts.
    ``margin``: every line's ``audio.playout_margin`` (None: the family's default)."""
    data = yaml.safe_load(cfg_path.read_text())
    if margin is not None:
        for m in data["modems"]:
            if m.get("audio"):
                m["audio"]["playout_margin"] = margin
    cfgs = [ModemConfig(**{k: v for k, v in m.items() if audio or k != "audio"}) for m in data["modems"]]
    conn = open_db(d / "bench.db")
    store = Campaigns(conn)
    cid = store.create_campaign("bench")
    store.import_contacts(cid, ((i + 2, f"+3361{i:07d}0", {}) for i in range(args.calls)))
    spec = CampaignSpec.model_validate({"name": "bench", "contacts": "x.csv", "say": "-", "purpose": "informational",
                                        "rules": "none"})
    return cfgs, conn, cid, spec


async def run(args: argparse.Namespace, d: Path, cfg_path: Path) -> None:
    cfgs, conn, cid, spec = campaign(args, d, cfg_path, audio=False)
    t = time.perf_counter()
    lines, errors = await open_lines(cfgs)
    print(f"opened {len(lines)} lines in {time.perf_counter() - t:.1f} s; errors: {errors or 'none'}")
    ctrl = Controller(conn, cid, spec, lines, LimitsConfig(), lambda c: listen, view=QuietView(), poll=0.2)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = await ctrl.run()
    makespan = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await asyncio.gather(*(line.close() for line in lines))
    n = conn.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'answered'").fetchone()[0]
    per_line = math.ceil(args.calls / len(lines))
    bound = per_line * (args.answer + args.hold)
    print(f"result={result}  answered calls={n:,}/{args.calls:,}  lines={len(lines)}")
    print(f"makespan {makespan:.1f} s  lower bound {bound:.1f} s  ({per_line} calls per line × "
          f"{args.answer + args.hold:g} s)  utilisation {bound / makespan:.1%}")
    print(f"dialer CPU {cpu:.1f} s = {cpu / args.calls * 1000:.2f} ms per call (controller + call layer + AT); "
          f"controller alone {ctrl.cpu / args.calls * 1000:.3f} ms per call")
    breakdown(conn, args.answer + args.hold)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


# ---- realistic mode -------------------------------------------------------------------

def sim_child(modems: int, family: str, answer: float, cfg_path: str, conn) -> None:  # type: ignore[no-untyped-def]
    """The simulated bank, in its own process: serves until told, then reports what the
    callees heard (cut audio, downlink gaps) per call. The downlink is stamped by a tap
    process per port (bench/pcm_tap.py): the simulator's own reader threads share its GIL
    with its event loop, and on a loaded machine stamped frames late that came on time."""
    import pcm_tap

    from modem_dialer.sim.callee import Callee, Scenario
    from modem_dialer.sim.sim_bank import SimBank

    pcm_tap.install()
    from modem_dialer.sim.audio_port import SimAudioPort

    # per modem, each call's (first audible byte's stamp, when its audio is played out, when
    # the call ended here): set against the dialer's own figures for the same call, they
    # show where a cut comes from
    ends: dict[str, list[tuple[float | None, float, float]]] = {}
    call_ended = SimAudioPort.call_ended

    def call_ended_w(self: SimAudioPort) -> None:
        with self._lock:
            mark = (self.first_audio_at, self.audible_until, time.monotonic())
        call_ended(self)
        ends.setdefault(self.modem.name, []).append(mark)
    SimAudioPort.call_ended = call_ended_w  # type: ignore[method-assign]

    async def serve() -> None:
        bank = await SimBank.of(modems, family, Scenario(Callee(answer_after=answer, ring_after=0.02))).start()
        Path(cfg_path).write_text(bank.config_yaml())
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            stats = {"cut_ms": [], "max_gap_ms": [], "calls": 0, "ends": dict(ends)}
            ends.clear()
            for m in bank.modems:
                stats["calls"] += len(m.calls)
                if m.audio is not None:
                    stats["cut_ms"] += m.audio.per_call_cut_ms
                    stats["max_gap_ms"] += m.audio.per_call_max_gap_ms
                    m.audio.per_call.clear()   # memory: the bench only needs the figures
                    m.audio.per_call_cut_ms.clear()
                    m.audio.per_call_max_gap_ms.clear()
                m.calls.clear()
            conn.send(stats)
            if cmd == "stop":
                break
        await bank.stop()

    asyncio.run(serve())


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name
    (Linux /proc; empty elsewhere): where the dialer's CPU goes (loop, PCM writer, journal)."""
    import threading
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = re.sub(r"[ _-]?\d+$", "", t.name.split(" ")[0])   # "Thread-3" -> "Thread"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        out[name + " (sys)"] = out.get(name + " (sys)", 0.0) + int(fields[12]) / tick
    return out


def thread_switches() -> dict[str, int]:
    """Context switches (voluntary + involuntary) of each live thread, by thread name (Linux
    /proc; empty elsewhere): how often each thread sleeps or waits (the GIL included)."""
    import threading
    out: dict[str, int] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/status") as f:
                n = sum(int(line.split(":", 1)[1]) for line in f if "ctxt_switches" in line)
        except (OSError, ValueError, IndexError):
            continue
        name = re.sub(r"[ _-]?\d+$", "", t.name.split(" ")[0])
        out[name] = out.get(name, 0) + n
    return out


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    x = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16)
    x[x == 0] = 1      # audible to its last sample: the simulator can tell a cut
    return x


class Timeline:
    """Per-line timestamps of each call's steps (monotonic), taken by wrapping the dialer's
    own methods from outside: where a line's time goes between two ATDs. A call's row is
    usually written while the line's previous call still plays (the controller's armed next
    call): its marks wait in ``armed`` until that call's ATD."""

    STEPS = ("row", "row_ok", "atd", "atd_ok", "answered", "first_frame", "hangup", "end", "freed")

    def __init__(self) -> None:
        self.calls: dict[str, list[dict[str, float]]] = {}
        self.armed: dict[str, dict[str, float]] = {}

    def mark(self, line: str, step: str, new: bool = False) -> None:
        calls = self.calls.setdefault(line, [])
        if new or not calls:
            calls.append(self.armed.pop(line, {}))
        calls[-1].setdefault(step, time.monotonic())

    def install(self) -> None:
        import functools

        from modem_dialer.call import session
        from modem_dialer.modems.driver import ModemDriver
        from modem_dialer.store.call_journal import CallJournal

        tl = self
        start_soon, dial, answered = CallJournal.start_call_soon, ModemDriver.dial, ModemDriver.call_answered
        hangup, ended, drive = ModemDriver.hangup, ModemDriver.call_ended, session.drive
        self._saved = (start_soon, dial, answered, hangup, ended, drive)

        @functools.wraps(start_soon)
        def start_soon_w(self, number, modem, *a, **kw):  # type: ignore[no-untyped-def]
            marks = tl.armed[modem] = {"row": time.monotonic()}
            fut = start_soon(self, number, modem, *a, **kw)
            fut.add_done_callback(lambda _: marks.setdefault("row_ok", time.monotonic()))
            return fut

        async def dial_w(self, number):  # type: ignore[no-untyped-def]
            tl.mark(self.name, "atd", new=True)
            await dial(self, number)
            tl.mark(self.name, "atd_ok")

        def answered_w(self, *a, **kw):  # type: ignore[no-untyped-def]
            tl.mark(self.name, "answered")
            answered(self, *a, **kw)

        async def hangup_w(self):  # type: ignore[no-untyped-def]
            tl.mark(self.name, "hangup")
            await hangup(self)

        def ended_w(self, *a, **kw):  # type: ignore[no-untyped-def]
            tl.mark(self.name, "end")
            ended(self, *a, **kw)

        async def drive_w(call, **kw):  # type: ignore[no-untyped-def]
            try:
                return await drive(call, **kw)
            finally:
                tl.mark(call.line.name, "freed")
                a = call.line.audio
                if a is not None and a.first_frame_sent_at is not None:
                    tl.calls[call.line.name][-1]["first_frame"] = a.first_frame_sent_at
                    tl.calls[call.line.name][-1]["played_until"] = a.prompt_played_until
        CallJournal.start_call_soon = start_soon_w  # type: ignore[method-assign]
        ModemDriver.dial = dial_w  # type: ignore[method-assign]
        ModemDriver.call_answered = answered_w  # type: ignore[method-assign]
        ModemDriver.hangup = hangup_w  # type: ignore[method-assign]
        ModemDriver.call_ended = ended_w  # type: ignore[method-assign]
        session.drive = drive_w

    def uninstall(self) -> None:
        from modem_dialer.call import session
        from modem_dialer.modems.driver import ModemDriver
        from modem_dialer.store.call_journal import CallJournal

        (CallJournal.start_call_soon, ModemDriver.dial, ModemDriver.call_answered,  # type: ignore[method-assign]
         ModemDriver.hangup, ModemDriver.call_ended, session.drive) = self._saved

    def report(self, answer: float, message: float) -> None:
        from statistics import median
        seg: dict[str, list[float]] = {}

        def add(name: str, a: dict[str, float], x: str, b: dict[str, float], y: str) -> None:
            if x in a and y in b:
                seg.setdefault(name, []).append((b[y] - a[x]) * 1000)
        for calls in self.calls.values():
            for i, c in enumerate(calls):
                add("row queued -> committed", c, "row", c, "row_ok")
                add("committed -> ATD", c, "row_ok", c, "atd")
                add("ATD -> OK", c, "atd", c, "atd_ok")
                add(f"ATD -> answered (callee: {answer * 1000:g})", c, "atd", c, "answered")
                add("answered -> first frame", c, "answered", c, "first_frame")
                add(f"first frame -> hang-up (message: {message * 1000:g})", c, "first_frame", c, "hangup")
                # of which: the writer's model of the modem's playout, then the wait for it (+ margin)
                add("  first frame -> model's playout end", c, "first_frame", c, "played_until")
                add("  model's playout end -> hang-up", c, "played_until", c, "hangup")
                add("hang-up -> end URC", c, "hangup", c, "end")
                add("end URC -> line freed", c, "end", c, "freed")
                if i + 1 < len(calls):
                    # negative: the next call's row was queued (armed) while this call played
                    add("line freed -> next row queued", c, "freed", calls[i + 1], "row")
                    add("line freed -> next row committed", c, "freed", calls[i + 1], "row_ok")
                    add("line freed -> next ATD", c, "freed", calls[i + 1], "atd")
                    add("ATD -> next ATD (cycle)", c, "atd", calls[i + 1], "atd")
        print("where a line's time goes (median / p90 ms):")
        for name, xs in seg.items():
            xs.sort()
            print(f"  {name:44} {median(xs):7.1f} {xs[int(0.9 * (len(xs) - 1))]:7.1f}")
        # the lines keep the phase they started with: their k-th dials all fall within this
        # span, so the loop (and the simulator) handle the lines' ends and dials in bursts
        spans = []
        for k in range(min(len(c) for c in self.calls.values())):
            atds = [c[k]["atd"] for c in self.calls.values() if "atd" in c[k]]
            if len(atds) == len(self.calls):
                spans.append((max(atds) - min(atds)) * 1000)
        if spans:
            print(f"  the lines' k-th ATDs span (median over k) {median(spans):.0f} ms of the cycle")


def profile_threads(prefix: str) -> None:
    """cProfile (CPU time) the journal writer and PCM writer threads too: PREFIX.journal, PREFIX.pcm."""
    import cProfile
    import functools

    from modem_dialer.audio.serial_pcm import PcmWriter
    from modem_dialer.store.writer import DbWriter

    def wrap(fn, name):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def run(self):  # type: ignore[no-untyped-def]
            prof = cProfile.Profile(time.thread_time)
            prof.enable()
            try:
                return fn(self)
            finally:
                prof.disable()
                prof.dump_stats(f"{prefix}.{name}")
        return run
    DbWriter._main = wrap(DbWriter._main, "journal")  # type: ignore[method-assign]
    PcmWriter._run = wrap(PcmWriter._run, "pcm")  # type: ignore[method-assign]


async def ours_realistic(args: argparse.Namespace, d: Path, cfg_path: Path, margin: float | None = None,
                         profile: str | None = None) -> dict:
    from modem_dialer.call.message import message_script

    if profile:
        profile_threads(profile)
    d.mkdir(exist_ok=True)
    cfgs, conn, cid, spec = campaign(args, d, cfg_path, audio=True, margin=margin)
    timeline = Timeline()
    timeline.install()
    lines, errors = await open_lines(cfgs)
    margins = sorted({line.playout_margin for line in lines})
    print(f"event loop: {type(asyncio.get_running_loop()).__module__}")
    assert not errors, errors
    script = message_script(tone(args.message))
    ctrl = Controller(conn, cid, spec, lines, LimitsConfig(), lambda c: script, view=QuietView(), poll=0.2,
                      arm_ahead=args.arm)
    th0, sw0 = thread_cpu(), thread_switches()
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile(time.thread_time)   # CPU time: waits for the GIL or the disk do not count
        prof.enable()
    load = os.getloadavg()[0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    m0 = time.monotonic()
    await ctrl.run()
    m1 = time.monotonic()
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    makespan = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    th1, sw1 = thread_cpu(), thread_switches()
    threads = {k: v - th0.get(k, 0.0) for k, v in th1.items()}
    threads["(threads that ended)"] = cpu - sum(v for k, v in threads.items() if not k.endswith("(sys)"))
    late = sum(getattr(line.audio, "late_frames", 0) for line in lines)
    await asyncio.gather(*(line.close() for line in lines))
    n = conn.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'answered' AND hangup_by = 'dialer'").fetchone()[0]
    breakdown(conn, args.answer + args.message)
    print(f"playout margin {'/'.join(f'{m * 1000:g}' for m in margins)} ms:")
    timeline.report(args.answer, args.message)
    atds = [c["atd"] for calls in timeline.calls.values() for c in calls if "atd" in c]
    freed = [c["freed"] for calls in timeline.calls.values() for c in calls if "freed" in c]
    firsts = [calls[0] for calls in timeline.calls.values()]
    print(f"one-off: run() start -> first row queued {(min(c['row'] for c in firsts if 'row' in c) - m0) * 1000:.0f} ms, "
          f"-> first row committed {(min(c['row_ok'] for c in firsts if 'row_ok' in c) - m0) * 1000:.0f} ms, "
          f"-> last line's first row queued {(max(c['row'] for c in firsts if 'row' in c) - m0) * 1000:.0f} ms")
    print(f"one-off: run() start -> first ATD {(min(atds) - m0) * 1000:.0f} ms, -> last line's first ATD "
          f"{(max(calls[0]['atd'] for calls in timeline.calls.values()) - m0) * 1000:.0f} ms; "
          f"last line freed -> run() returned {(m1 - max(freed)) * 1000:.0f} ms")
    await ctrl.close()
    w = ctrl.journal.writer
    print(f"journal writer: {w.ops_committed:,} writes in {w.commits:,} commits "
          f"({w.ops_committed / max(1, w.commits):.1f} per commit, {w.commits / args.calls:.2f} commits per call)")
    timeline.uninstall()
    return {"makespan": makespan, "cpu": cpu, "ctrl_cpu": ctrl.cpu, "answered": n, "lines": len(lines), "load": load,
            "late_frames": late, "threads": threads, "switches": {k: v - sw0.get(k, 0) for k, v in sw1.items()},
            "margins": margins, "timeline": timeline.calls}


# How long the peer's driver waits for the answered callback. The callee answers --answer s
# after ATD; a call the library has not reported answered by then has lost its ^CONN (see
# peer_realistic): it is hung up and counted failed. Its own demo (examples/dial_callback_demo.py)
# would wait for ever.
PEER_ANSWER_WAIT = 10.0


def peer_realistic(args: argparse.Namespace, cfg_path: Path) -> dict:
    """python-gsmmodem-new on the bank: in this process (``--peer-procs 1``, one interpreter
    for all its threads) or spread over ``--peer-procs`` processes, each driving its share of
    the modems (its examples drive one modem per program, and each interpreter has its own
    GIL), the calls taken from one shared count. See peer_drive for the driving."""
    ports = [m["port"] for m in yaml.safe_load(cfg_path.read_text())["modems"]]
    if args.peer_procs <= 1:
        todo = list(range(args.calls))
        lock = __import__("threading").Lock()

        def take() -> bool:
            with lock:
                if not todo:
                    return False
                todo.pop()
                return True
        load = os.getloadavg()[0]
        return {**peer_drive(ports, args.message, take), "load": load}
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    left = ctx.Value("i", args.calls)
    go = ctx.Event()
    shares = [ports[i::args.peer_procs] for i in range(args.peer_procs)]
    pipes, procs = [], []
    for share in shares:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=peer_child, args=(share, args.message, left, go, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        pipe.recv()                    # connected: the clock starts when all are
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    go.set()
    results = [pipe.recv() for pipe in pipes]
    makespan = max(r["end"] for r in results) - t0
    for proc in procs:
        proc.join(30)
    out: dict = {"makespan": makespan, "cpu": sum(r["cpu"] for r in results), "lines": len(ports), "load": load,
                 "answered": sum(r["answered"] for r in results), "failures": sum(r["failures"] for r in results),
                 "causes": {}, "crashes": {}, "traces": {}}
    for r in results:
        for k in ("causes", "crashes"):
            for key, v in r[k].items():
                out[k][key] = out[k].get(key, 0) + v
        out["traces"] = {**r["traces"], **out["traces"]}
    return out


def peer_child(ports: list[str], message: float, left, go, conn) -> None:  # type: ignore[no-untyped-def]
    """One process of the spread peer: its modems, calls taken from the shared count ``left``."""
    def take() -> bool:
        with left.get_lock():
            if left.value <= 0:
                return False
            left.value -= 1
            return True
    conn.send(peer_drive(ports, message, take, ready=lambda: (conn.send("ready"), go.wait())))


def peer_drive(ports: list[str], message: float, take, ready=None) -> dict:  # type: ignore[no-untyped-def]
    """python-gsmmodem-new as its examples/dial_callback_demo.py drives one modem: ``dial()``
    with a status callback, wait until it says answered, wait ``--message`` s,
    ``call.hangup()``; one thread per modem (a GsmModem object each). After a failed call the
    line is hung up (ATH) so that one failure costs one call, not the line.

    Why calls fail (observed from outside, the library is not changed; docs/audio.md has the
    figures): its reader thread (one byte per read() call) gathers the unsolicited lines
    waiting in the port into one batch, and ``__threadedHandleModemNotification`` handles the
    first matching line of a batch only: when it falls behind, ``^ORIG`` and ``^CONN`` (or the
    previous call's ``^CEND`` and ``^ORIG``) arrive together and the second is lost. Each batch
    is handled by a new thread (``_handleModemNotification``) and ``dial()`` registers the call
    only when its own thread wakes after ``^ORIG``: a ``^CONN`` handled before that, or after a
    lost ``^ORIG``, raises KeyError in ``_handleCallAnswered`` (modem.py
    ``self.activeCalls[callId].answered = True``). A late ``^CEND`` of the previous call (same
    id 1) deleting the new call would do the same; it is checked for too. All need the peer's
    threads to be starved, hence its run-to-run spread on a loaded machine; the simulator
    sends what the E1550 trace shows."""
    import collections
    import logging
    import threading
    import traceback

    logging.getLogger("gsmmodem").setLevel(logging.CRITICAL)
    import gsmmodem.modem as gm

    notes: dict[int, set[str]] = {}               # id(modem) -> what went wrong since its last dial
    crashes: collections.Counter[str] = collections.Counter()
    first_trace: dict[str, str] = {}
    ended, notify = gm.GsmModem._handleCallEnded, gm.GsmModem._GsmModem__threadedHandleModemNotification  # type: ignore[attr-defined]
    hangup = gm.Call.hangup

    def hangup_w(self):  # type: ignore[no-untyped-def]
        self._bench_hung_up = True
        return hangup(self)

    def ended_w(self, match, callId=None, filterUnanswered=False):  # type: ignore[no-untyped-def]
        c = self.activeCalls.get(int(match.group(1)) if match else callId)
        if c is not None and not getattr(c, "_bench_hung_up", False) and not c.answered:
            # the callee never hangs up in this bench: a ^CEND for a live unanswered call is
            # the previous call's, handled late
            notes.setdefault(id(self), set()).add("the previous call's ^CEND, handled late, deleted the new call")
        return ended(self, match, callId, filterUnanswered)

    def notify_w(self, lines):  # type: ignore[no-untyped-def]
        status = [x for x in lines if any(r.match(x) for r, _ in self._callStatusUpdates)]
        if len(status) > 1:
            notes.setdefault(id(self), set()).add(
                f"{' + '.join(x.split(':')[0] for x in status)} read as one batch: only the first handled")
        try:
            return notify(self, lines)
        except Exception as e:
            # the thread ends here either way; record it instead of a traceback on stderr
            if isinstance(e, KeyError) and not self.activeCalls:
                waiting = self._dialEvent               # dial() sets it None once it has woken
                notes.setdefault(id(self), set()).add(
                    "^CONN handled with no call registered" if waiting is None
                    else "^CONN handled before dial() woke after ^ORIG" if waiting.is_set()
                    else "^CONN handled while dial() still waited for ^ORIG")
            tb = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} {e} in {Path(tb.filename).name}:{tb.lineno} {tb.name}()"
            crashes[key] += 1
            first_trace.setdefault(key, "".join(traceback.format_exception(e)))
            notes.setdefault(id(self), set()).add(f"its notification thread died: {type(e).__name__} {e}")
            return None

    gm.Call.hangup = hangup_w  # type: ignore[method-assign]
    gm.GsmModem._handleCallEnded = ended_w  # type: ignore[method-assign]
    gm.GsmModem._GsmModem__threadedHandleModemNotification = notify_w  # type: ignore[attr-defined]
    modems = []
    for port in ports:
        m = gm.GsmModem(port, 115200)
        m.connect()
        modems.append(m)
    lock = threading.Lock()
    done = [0]
    failures: collections.Counter[str] = collections.Counter()

    def worker(m) -> None:  # type: ignore[no-untyped-def]
        answered = threading.Event()

        def status(call) -> None:  # type: ignore[no-untyped-def]
            if call.answered:
                answered.set()
        while take():
            answered.clear()
            notes.pop(id(m), None)
            call = None
            try:
                call = m.dial("+33612345678", callStatusUpdateCallbackFunc=status)
                if answered.wait(PEER_ANSWER_WAIT):
                    time.sleep(message)
                    call.hangup()
                    with lock:
                        done[0] += 1
                    continue
                what = f"not answered within {PEER_ANSWER_WAIT:g} s"
            except Exception as e:
                what = f"{type(e).__name__} {e}".strip()
            why = "; ".join(sorted(notes.pop(id(m), ()))) or "no cause seen"
            with lock:
                failures[f"{what} ({why})"] += 1
            with contextlib.suppress(Exception):
                if call is not None:
                    call.hangup()
                else:
                    m.write("ATH", parseError=False)     # a dial that raised may have left a call up

    threads = [threading.Thread(target=worker, args=(m,)) for m in modems]
    if ready is not None:
        ready()
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        makespan = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        end = time.monotonic()        # the spread peer's makespan: the last process's end (closing takes ~1 s)
        for m in modems:
            with contextlib.suppress(Exception):
                m.close()
        gm.Call.hangup = hangup  # type: ignore[method-assign]
        gm.GsmModem._handleCallEnded = ended  # type: ignore[method-assign]
        gm.GsmModem._GsmModem__threadedHandleModemNotification = notify  # type: ignore[attr-defined]
    return {"makespan": makespan, "end": end, "cpu": cpu, "answered": done[0], "failures": sum(failures.values()),
            "causes": dict(failures), "crashes": dict(crashes), "traces": first_trace, "lines": len(modems)}


def realistic(args: argparse.Namespace) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "sim-config.yaml"
        parent, child = ctx.Pipe()
        sim = ctx.Process(target=sim_child, args=(args.modems, args.family, args.answer, str(cfg), child))
        sim.start()
        try:
            for _ in range(600):
                if cfg.exists() and cfg.stat().st_size:
                    break
                time.sleep(0.05)
            runs: list[tuple[str, dict, dict]] = []
            peers: list[dict] = []

            def ours_run(label: str, margin: float | None, quiet: bool = False) -> None:
                go = ours_realistic(args, Path(d) / f"run{len(runs)}", cfg, margin,
                                    args.profile if not runs else None)
                with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                    if args.uvloop:
                        import uvloop
                        ours = uvloop.run(go)
                    else:
                        ours = asyncio.run(go)
                parent.send("stats")
                runs.append((label, ours, parent.recv()))

            def peer_run() -> None:
                peers.append(peer_realistic(args, cfg))
                parent.send("stats")      # the simulator forgets the peer's calls
                parent.recv()

            if args.repeat > 1:
                # ours and the peer in turns, the first of each pair alternating, so that a
                # change of the machine's load hits both alike; ours' step breakdown is
                # printed for its first run only
                for i in range(args.repeat):
                    for who in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                        if who == "ours":
                            ours_run(f" #{i + 1}", None, quiet=i > 0)
                        elif args.peer:
                            peer_run()
            else:
                # the default margins, then every line at 20 ms (the old default): nothing hidden
                # (--profile: one run; its thread profilers would stay on for the second)
                margin_row = args.margin_row and not args.profile
                for label, margin in (("", None), (", 20 ms margin", 0.02 if margin_row else None)):
                    if label and margin is None:
                        continue
                    ours_run(label, margin)
                if args.peer:
                    peer_run()
            parent.send("stop")
            parent.recv()
        finally:
            sim.join(30)
            if sim.is_alive():
                sim.kill()
    per_call = args.answer + args.message
    print(f"realistic: {args.calls:,} calls on {args.modems} simulated {args.family} modems, callee answers "
          f"{args.answer:g} s after ATD, the dialer hangs up after a {args.message:g} s message")
    print(f"{'':34} {'makespan':>9} {'bound':>7} {'utilisation':>11} {'CPU/call':>9} {'load':>5}  calls")
    rows = [(f"modem-dialer (audio{label})", r) for label, r, _ in runs]
    rows += [(f"python-gsmmodem-new{f' #{i + 1}' if len(peers) > 1 else ''}", r) for i, r in enumerate(peers)]

    def utilisation(r: dict) -> float:
        # the calls that ran the script (answered, message, hang-up): a failed dial that
        # returned at once would otherwise count as port time well used
        return math.ceil(r["answered"] / r["lines"]) * per_call / r["makespan"]
    for name, r in rows:
        print(f"{name:34} {r['makespan']:8.1f}s {math.ceil(r['answered'] / r['lines']) * per_call:6.1f}s "
              f"{utilisation(r):11.1%} {r['cpu'] / args.calls * 1000:7.2f}ms {r['load']:5.1f}  {r['answered']:,}" +
              (f" ({r['failures']} failed)" if r.get("failures") else ""))
    if args.repeat > 1:
        for name, rs in (("modem-dialer", [r for label, r, _ in runs]), ("python-gsmmodem-new", peers)):
            if rs:
                u = [utilisation(r) for r in rs]
                print(f"{name} over {len(rs)} runs: utilisation median {statistics.median(u):.1%}, min {min(u):.1%}, "
                      f"max {max(u):.1%}; CPU per call median "
                      f"{statistics.median(r['cpu'] for r in rs) / args.calls * 1000:.2f} ms; failed calls "
                      f"{[r.get('failures', 0) for r in rs]}")
    causes: dict[str, int] = {}
    crashes: dict[str, int] = {}
    traces: dict[str, str] = {}
    for r in peers:
        for k, v in r["causes"].items():
            causes[k] = causes.get(k, 0) + v
        for k, v in r["crashes"].items():
            crashes[k] = crashes.get(k, 0) + v
        traces = {**r["traces"], **traces}
    if causes:
        print("python-gsmmodem-new's failed calls, by what its driver saw and why (see peer_drive):")
        for k, v in sorted(causes.items(), key=lambda kv: -kv[1]):
            print(f"  {v:5} {k}")
    if crashes:
        print("its notification threads died with:")
        for k, v in sorted(crashes.items(), key=lambda kv: -kv[1]):
            print(f"  {v:5} {k}")
        print("  first of each:\n" + "\n".join("    " + t.rstrip().replace("\n", "\n    ") for t in traces.values()))
    for label, ours, heard in runs:
        print(f"modem-dialer{label or ''}: playout margin {'/'.join(f'{m * 1000:g}' for m in ours['margins'])} ms; "
              f"controller alone {ours['ctrl_cpu'] / args.calls * 1000:.3f} ms CPU per call; "
              f"writer ticks late: {ours['late_frames']}")
        print("  CPU per call by thread: " + ", ".join(
            f"{k} {v / args.calls * 1000:.2f} ms" for k, v in sorted(ours["threads"].items(), key=lambda kv: -kv[1])))
        print("  context switches per call by thread: " + ", ".join(
            f"{k} {v / args.calls:.1f}" for k, v in sorted(ours["switches"].items(), key=lambda kv: -kv[1])))
        cut = np.array(heard["cut_ms"] or [0.0])
        gaps = np.array(heard["max_gap_ms"] or [0.0])
        print(f"  what the callees heard ({len(heard['cut_ms'])} calls): calls with the message cut "
              f"{int((cut > 0).sum())}, max cut {cut.max():.1f} ms; downlink gap per call p99 "
              f"{np.percentile(gaps, 99):.1f} ms, max {gaps.max():.1f} ms, calls with a gap > 60 ms "
              f"{int((gaps > 60).sum())}")
        cuts = []     # the calls the simulator heard cut (a sample or more), against the dialer's view of them
        for name, sim_calls in heard["ends"].items():
            for ours_c, (first, audible, ended) in zip(ours["timeline"].get(name, []), sim_calls, strict=False):  # the k-th call of each
                if "first_frame" in ours_c and "played_until" in ours_c and first is not None and audible - ended >= 1 / 8000:
                    cuts.append((first - ours_c["first_frame"], audible - ours_c["played_until"],
                                 ended - ours_c.get("hangup", ended), audible - ended))
        if cuts:
            a = np.array(cuts) * 1000
            # a cut no longer than the simulator's playout is behind the dialer's model (its
            # stamps of the same writes came later): audio the bench's own delivery delayed
            unexplained = int((a[:, 3] > np.maximum(a[:, 1], 0) + 0.1).sum())
            print(f"  the cut calls, simulator vs dialer (max ms): first frame stamped {a[:, 0].max():.1f} later, "
                  f"played out {a[:, 1].max():.1f} later; hang-up seen at least {a[:, 2].min():.1f} later; "
                  f"cut by more than the simulator's playout was behind the dialer's model: {unexplained}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modems", type=int, default=64)
    ap.add_argument("--calls", type=int, default=None, help="default 5000, 2000 with --realistic")
    ap.add_argument("--answer", type=float, default=0.2)
    ap.add_argument("--hold", type=float, default=0.5)
    ap.add_argument("--realistic", action="store_true", help="audio on, the dialer hangs up after the message; "
                                                             "python-gsmmodem-new in the same run")
    ap.add_argument("--message", type=float, default=0.5, help="realistic: message length, s")
    ap.add_argument("--no-peer", dest="peer", action="store_false",
                    help="realistic: skip python-gsmmodem-new (quicker, for profiling)")
    ap.add_argument("--profile", metavar="FILE", help="realistic: cProfile the dialer's event loop thread into FILE")
    ap.add_argument("--no-arm", dest="arm", action="store_false",
                    help="realistic: no armed next call (each line waits for its call row's commit before ATD)")
    ap.add_argument("--no-margin-row", dest="margin_row", action="store_false",
                    help="realistic: skip the second run with every line's playout margin at 20 ms")
    ap.add_argument("--uvloop", action="store_true", help="realistic: uvloop as the dialer's event loop (needs uvloop installed; issue 10 "
                         "tried it: no gain in the loop thread's CPU beyond the run-to-run noise)")
    ap.add_argument("--pcm-os-calls", action="store_true",
                    help="realistic: the PCM writer's system calls through os (each gives the GIL up), "
                         "as before issue 10's round 5, for comparison (audio/rtsys.py)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="realistic: N runs of modem-dialer and N of the peer in turns, in one simulator, then "
                         "median and min of each (no 20 ms margin row)")
    ap.add_argument("--peer-procs", type=int, default=1, metavar="K",
                    help="realistic: spread python-gsmmodem-new's modems over K processes (default 1: all its "
                         "threads in one interpreter, as before)")
    ap.add_argument("--family", default="huawei", help="realistic: simulated family (the peer speaks Huawei)")
    args = ap.parse_args()
    if args.realistic:
        args.calls = args.calls or 2000
        if args.pcm_os_calls:
            from modem_dialer.audio import rtsys
            rtsys.KEEP_GIL = False
        realistic(args)
        return
    args.calls = args.calls or 5000
    with tempfile.TemporaryDirectory() as d:
        sim, cfg = start_sim(Path(d), args.modems, args.answer, args.hold)
        try:
            asyncio.run(run(args, Path(d), cfg))
        finally:
            os.kill(sim.pid, signal.SIGINT)
            sim.wait(10)


if __name__ == "__main__":
    main()
