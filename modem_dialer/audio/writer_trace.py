"""A record of what the PCM writer did, tick by tick and write by write (diagnostics).

Why: a hole in a call's audio may be the dialer's (its writer thread woke late: it waited
for a CPU, for the GIL, or the host did not run the machine) or the listener's (the
simulator, or whatever reads the port, was late reading frames that left on time). Only
the writer's own stamps tell the two apart, and a bench that reads the port from another
process can compare them with its own (CLOCK_MONOTONIC is shared by every process).
``bench/slow_disk.py`` does, and attributes each hole.

Set ``MODEM_DIALER_PCM_TRACE`` to a directory: the writer of that process then records

- each tick: its deadline, when the thread woke from its sleep (with the GIL), when its
  writes were done and when its capture was (a tick that gives the GIL up midway, e.g. to
  wake the loop, may wait for it there), and the
  thread's CPU time and run-queue wait so far (``/proc/thread-self/schedstat``, read just
  before each sleep, where the thread gives the GIL up anyway), and the same summed over
  the process's other threads (the event loop, the journal writer...): a writer that woke
  late while neither it nor the machine waited for a CPU was waiting for the GIL, and the
  others' run-queue wait then tells whether the thread holding it was itself kept off a
  CPU (machine load) or running (a long hold);
- each write to a port: when it went (the stamp taken just before the write, as
  ``on_tick``) and how many bytes the port took;

- each garbage collection: when it started and ended, and its generation (a collection
  holds the GIL from start to end: the writer cannot wake meanwhile);

and writes them as JSON to ``<dir>/pcm-writer-<pid>.json`` when the writer thread stops
(no port left) and at exit. Unset (the default), nothing is recorded and the writer pays
one ``is None`` test per tick and per frame.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import threading
import time
from array import array
from pathlib import Path

ENV = "MODEM_DIALER_PCM_TRACE"


class WriterTrace:
    """Filled by the writer thread only (and by ``play()``'s first frame, under the
    writer's lock); dumped from the writer thread or at exit."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"pcm-writer-{os.getpid()}.json"
        self.deadline = array("d")
        self.woke = array("d")
        self.written = array("d")
        self.done = array("d")
        self.run_ns = array("q")       # the writer thread's CPU time, before the tick's sleep
        self.wait_ns = array("q")      # its time runnable but not running (waiting for a CPU)
        self.others_run_ns = array("q")   # the same, summed over the process's other threads
        self.others_wait_ns = array("q")
        self._others: dict[int, tuple[int, int, int]] = {}   # tid -> (fd, run, wait) last read
        self._others_run = self._others_wait = 0
        self._ticks_to_refresh = 0
        self.writes: dict[str, tuple[array, array]] = {}   # port -> (sent_at, bytes taken)
        self._schedstat = -1
        self._tid = 0
        self._lock = threading.Lock()  # dump() from the writer thread and from atexit
        self.gc: list[tuple[float, float, int]] = []   # (start, end, generation)
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)
        atexit.register(self.dump)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.monotonic()
        else:
            self.gc.append((self._gc_start, time.monotonic(), int(info.get("generation", -1))))

    @classmethod
    def from_env(cls) -> WriterTrace | None:
        d = os.environ.get(ENV)
        if not d:
            return None
        directory = Path(d)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory)

    def close(self) -> None:
        """Stop recording collections and dumping at exit (tests)."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        atexit.unregister(self.dump)
        self.thread_stopped()

    def before_sleep(self) -> None:
        """On the writer thread, before each sleep."""
        tid = threading.get_native_id()
        if tid != self._tid:     # a new writer thread: its own schedstat (the file names the opener)
            self.thread_stopped(dump=False)
            self._tid = tid
            with contextlib.suppress(OSError):
                self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            self._ticks_to_refresh = 0
        run = wait = -1
        if self._schedstat >= 0:
            with contextlib.suppress(OSError, ValueError):
                f = os.pread(self._schedstat, 100, 0).split()
                run, wait = int(f[0]), int(f[1])
        self.run_ns.append(run)
        self.wait_ns.append(wait)
        self._read_others()
        self.others_run_ns.append(self._others_run)
        self.others_wait_ns.append(self._others_wait)

    def _read_others(self) -> None:
        """Add the other threads' CPU time and run-queue wait since the last reading (threads
        come and go: the set is listed again every 50 ticks)."""
        if self._ticks_to_refresh <= 0:
            self._ticks_to_refresh = 50
            me = threading.get_native_id()
            try:
                tids = {int(t) for t in os.listdir("/proc/self/task")} - {me}
            except OSError:
                tids = set()
            for tid in set(self._others) - tids:
                with contextlib.suppress(OSError):
                    os.close(self._others.pop(tid)[0])
            for tid in tids - set(self._others):
                with contextlib.suppress(OSError):
                    self._others[tid] = (os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY), -1, -1)
        self._ticks_to_refresh -= 1
        for tid, (fd, run0, wait0) in list(self._others.items()):
            try:
                f = os.pread(fd, 100, 0).split()
                run, wait = int(f[0]), int(f[1])
            except (OSError, ValueError, IndexError):
                continue
            if run0 >= 0:
                self._others_run += run - run0
                self._others_wait += wait - wait0
            self._others[tid] = (fd, run, wait)

    def tick(self, deadline: float, woke: float) -> None:
        self.deadline.append(deadline)
        self.woke.append(woke)

    def tick_done(self, written: float, done: float) -> None:
        self.written.append(written)
        self.done.append(done)

    def wrote(self, port: str, sent_at: float, n: int) -> None:
        rec = self.writes.get(port)
        if rec is None:
            rec = self.writes[port] = (array("d"), array("i"))
        rec[0].append(sent_at)
        rec[1].append(n)

    def thread_stopped(self, dump: bool = True) -> None:
        if self._schedstat >= 0:
            with contextlib.suppress(OSError):
                os.close(self._schedstat)
            self._schedstat = -1
        for fd, _, _ in self._others.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._others.clear()
        self._tid = 0
        if dump:
            self.dump()

    def dump(self) -> None:
        with self._lock:
            doc = {
                "pid": os.getpid(),
                "ticks": {"deadline": self.deadline.tolist(), "woke": self.woke.tolist(),
                          "written": self.written.tolist(), "done": self.done.tolist(),
                          "run_ns": self.run_ns.tolist(), "wait_ns": self.wait_ns.tolist(),
                "others_run_ns": self.others_run_ns.tolist(), "others_wait_ns": self.others_wait_ns.tolist()},
                "gc": self.gc,
                "writes": {p: {"sent_at": t.tolist(), "n": n.tolist()} for p, (t, n) in self.writes.items()},
            }
            tmp = self.path.with_suffix(".tmp")
            with contextlib.suppress(OSError):
                tmp.write_text(json.dumps(doc))
                tmp.replace(self.path)
