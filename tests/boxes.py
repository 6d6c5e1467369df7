"""Several boxes on one database, as users run them: per box a simulated bank in its own
process (``modem-dialer sim --control``) and a ``modem-dialer serve`` on it, all on one
database. Used by tests/test_multibox.py and bench/multibox.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
import zygote
from ports import free_port

TOKEN = "s3cret-token"
CACHE = Path("/tmp/modem-dialer-test-tts-cache")     # shared with the other service tests


@dataclass
class Box:
    name: str
    dir: Path
    sim: subprocess.Popen
    control: Path
    config: Path
    port: int
    serve: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def req(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.request(
                method, self.base + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    def sim_calls(self) -> list[dict]:
        """Every call the box's simulated SIMs saw: the ``calls`` request of ``sim-ctl SOCK calls``
        sent on the simulator's control socket from this process (the sim-ctl command itself is
        tested in test_sim_control.py; an interpreter per question cost ~0.4 s of CPU)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.control))
            s.sendall(b'{"cmd": "calls"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                assert chunk, f"the simulator of {self.name} closed its control socket"
                data += chunk
        reply = json.loads(data)
        assert reply.get("ok"), reply
        return [c | {"modem": m} for m, calls in reply["modems"].items() for c in calls]


@dataclass
class Bank:
    """The boxes of one test, and their shared database."""
    dir: Path
    database: str
    boxes: list[Box] = field(default_factory=list)
    _pg: Any = None                     # PostgreSQL: the connection rows() keeps (close())
    _pg_lock: threading.Lock = field(default_factory=threading.Lock)

    def box(self, name: str) -> Box:
        return next(b for b in self.boxes if b.name == name)

    def rows(self, sql: str, *args: Any) -> list[dict]:
        """A query on the shared database, whichever its backend (store.open_db opens both).
        On PostgreSQL on one connection kept until :meth:`close`: a connection a query cost
        the server ~7 ms of CPU (a backend forked and set up) and this process ~0.9 ms, against
        ~0.15 ms in all, and the tests poll every 0.05-0.5 s (about a core's quarter, polling
        every 0.1 s); after a server restart it connects again by itself (store/pg.py)."""
        from modem_dialer.store import open_db
        from modem_dialer.store.pg import is_postgres

        if is_postgres(self.database):
            with self._pg_lock:
                if self._pg is None:
                    self._pg = open_db(self.database, migrate=False)
                return [dict(r) for r in self._pg.execute(sql, args)]
        conn = open_db(self.database, migrate=False)
        try:
            return [dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()

    def close(self) -> None:
        with self._pg_lock:
            if self._pg is not None:
                self._pg.close()
                self._pg = None


def profiled(name: str) -> list[str]:
    """A cProfile of the process's CPU time (not its wall: a box mostly waits) into DIR/NAME.prof
    when MODEM_DIALER_TEST_PROFILE=DIR, written when the process exits normally: where a box's
    processes spend their CPU. Used as ``python *profiled(name) -m modem_dialer.cli ...``."""
    d = os.environ.get("MODEM_DIALER_TEST_PROFILE")
    if not d:
        return []
    code = ("import atexit, cProfile, runpy, sys, time; p = cProfile.Profile(time.process_time); "
            f"atexit.register(lambda: (p.disable(), p.dump_stats({f'{d}/{name}-{os.getpid()}.prof'!r}))); "
            "sys.argv = sys.argv[2:]; p.enable(); runpy.run_module(sys.argv[0], run_name='__main__')")
    return ["-c", code]


def start_sim(d: Path, modems: int, scenario: dict) -> tuple[subprocess.Popen, Path, Path]:
    sc, cfg, ctl = d / "scenario.yaml", d / "sim-config.yaml", d / "sim.sock"
    sc.write_text(yaml.safe_dump(scenario))
    args = ["sim", "--modems", str(modems), "--scenario", str(sc), "--write-config", str(cfg), "--control", str(ctl)]
    if profiled("sim"):
        proc = subprocess.Popen([sys.executable, *profiled(f"sim-{d.name}"), "-m", "modem_dialer.cli", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:       # forked by the worker's zygote (tests/zygote.py: the imports done once)
        proc = zygote.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # type: ignore[assignment]
    return proc, cfg, ctl


async def wait_until(pred, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


async def start_bank(d: Path, names: list[str], modems: int, scenario: dict, *, database: str | None = None,
                     lease: str = "5s", extra: dict | None = None) -> Bank:
    """One simulator and one config per box (not yet serving: :func:`serve`)."""
    bank = Bank(d, database or str(d / "bank.db"))
    sims = []
    for name in names:
        bd = d / name
        bd.mkdir()
        sims.append((name, bd, *start_sim(bd, modems, scenario)))
    for name, bd, proc, cfg, ctl in sims:
        await wait_until(lambda c=cfg, p=proc: (c.exists() and c.stat().st_size > 0) or p.poll() is not None,
                         60, f"simulator of {name}")
        assert proc.poll() is None, f"simulator of {name} exited {proc.returncode}"
        doc = yaml.safe_load(cfg.read_text())
        port = free_port()
        doc.update({"database": bank.database, "box": name, "box_lease": lease, "cache_dir": str(CACHE),
                    "alerting": {"api": {"port": port, "token": TOKEN}, **((extra or {}).get("alerting", {}))},
                    **{k: v for k, v in (extra or {}).items() if k != "alerting"}})
        config = bd / "config.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        bank.boxes.append(Box(name, bd, proc, ctl, config, port))
    return bank


def spawn_serve(box: Box) -> None:
    box.log = box.dir / "serve.log"
    with box.log.open("ab") as log:
        args = ["--config", str(box.config), "serve"]
        if profiled("serve"):
            box.serve = subprocess.Popen([sys.executable, *profiled(f"serve-{box.name}"), "-m", "modem_dialer.cli",
                                          *args], stdout=log, stderr=subprocess.STDOUT)
        else:   # forked by the worker's zygote (tests/zygote.py)
            box.serve = zygote.popen(args, stdout=log, stderr=subprocess.STDOUT)  # type: ignore[assignment]


async def serve(box: Box, timeout: float = 60) -> None:
    """Start the box's ``serve`` and wait until its API answers."""
    spawn_serve(box)

    async def up() -> bool:
        assert box.serve is not None
        if box.serve.poll() is not None:
            raise AssertionError(f"serve of {box.name} exited {box.serve.returncode}: {box.log.read_text()[-2000:]}")
        try:
            status, _ = await box.req("GET", "/healthz")
        except aiohttp.ClientError:
            return False
        return status == 200
    await wait_until(up, timeout, f"serve of {box.name}", every=0.2)


# how long a serve has to exit after SIGTERM before it is killed (its stacks printed first)
STOP_WAIT_S = float(os.environ.get("MODEM_DIALER_TEST_STOP_WAIT", "30"))


def dump_stuck_serve(box: Box) -> str:
    """A serve that did not exit on SIGTERM: its thread stacks (SIGUSR1, faulthandler) and its
    asyncio tasks (SIGUSR2) into its log, and the log's tail on this test's stderr (returned)."""
    assert box.serve is not None and box.log is not None
    size = box.log.stat().st_size
    box.serve.send_signal(signal.SIGUSR2)
    time.sleep(1)
    box.serve.send_signal(signal.SIGUSR1)
    time.sleep(1)
    text = box.log.read_text(errors="replace")
    said = (f"--- serve of {box.name} (pid {box.serve.pid}) did not exit {STOP_WAIT_S:g} s after SIGTERM; "
            f"its log from before the stop, then its tasks and threads:\n{text[max(0, size - 6000):]}")
    print(said, file=sys.stderr)
    return said


def stop_bank(bank: Bank) -> None:
    """SIGTERM every serve (then kill after STOP_WAIT_S, stacks printed), then the simulators,
    and the bank's own connection (Bank.rows). A serve stuck at its stop fails the test
    (AssertionError, once all is stopped): a user's `systemctl stop` would hang the same way."""
    bank.close()
    stuck: list[str] = []
    for b in bank.boxes:
        if b.serve is not None and b.serve.poll() is None:
            b.serve.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    for b in bank.boxes:
        if b.serve is not None:
            try:
                b.serve.wait(max(0.0, t0 + STOP_WAIT_S - time.monotonic()))
            except subprocess.TimeoutExpired:
                stuck.append(dump_stuck_serve(b))
                b.serve.kill()
                b.serve.wait()
            else:
                if time.monotonic() - t0 > 2:
                    print(f"--- serve of {b.name}: exited {time.monotonic() - t0:.1f} s after SIGTERM", file=sys.stderr)
    for b in bank.boxes:
        if b.sim.poll() is None:
            b.sim.send_signal(signal.SIGINT)
    for b in bank.boxes:
        try:
            b.sim.wait(15)
        except subprocess.TimeoutExpired:
            b.sim.kill()
            b.sim.wait()
    assert not stuck, "\n".join(stuck)


async def bank_maker(d: Path, **defaults: Any) -> AsyncIterator[Callable[..., Awaitable[Bank]]]:
    """Body of a fixture that starts banks of boxes (``make(names, modems, scenario, **kw)``,
    ``defaults`` passed to each) and stops every one of them at the end."""
    banks: list[Bank] = []

    async def make(names: list[str], modems: int, scenario: dict, **kw: Any) -> Bank:
        b = await start_bank(d, names, modems, scenario, **defaults, **kw)
        banks.append(b)
        return b

    try:
        yield make
    finally:
        stuck: list[AssertionError] = []
        for b in banks:     # every bank stopped, even after one with a stuck serve
            try:
                await asyncio.to_thread(stop_bank, b)
            except AssertionError as exc:
                stuck.append(exc)
        if stuck:
            raise stuck[0]


def outgoing(bank: Bank) -> Counter[str]:
    """Calls per number as the simulated SIMs of every box saw them."""
    return Counter(c["number"] for b in bank.boxes for c in b.sim_calls() if c["direction"] == "out")


def in_two_calls_at_once(bank: Bank) -> list[str]:
    """Numbers whose outgoing calls overlapped in time, as the simulated SIMs of every box saw
    them (each call's dial and end on the machine's monotonic clock, shared by the simulators'
    processes; a call still up counts as not ended): a number is never in two calls at once."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for b in bank.boxes:
        for c in b.sim_calls():
            if c["direction"] == "out":
                end = c["ended_at"] if c["ended_at"] is not None else float("inf")
                spans.setdefault(c["number"], []).append((c["dialed_at"], end))
    return sorted(n for n, s in spans.items()
                  if any(b[0] < a[1] for a, b in zip(sorted(s), sorted(s)[1:], strict=False)))


def write_campaign(d: Path, numbers: list[str], *, message_s: float, extra: str = "") -> Path:
    """A campaign file, its contacts and its message, on the path every box reads (shared)."""
    from test_campaign_run import wav

    wav(d / "hello.wav", message_s)
    (d / "contacts.csv").write_text("number\n" + "".join(f"{n}\n" for n in numbers))
    camp = d / "camp.yaml"
    camp.write_text("name: multi\ncontacts: contacts.csv\nmessage: hello.wav\npurpose: informational\nrules: none\n"
                    + extra)
    return camp


def run_cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return zygote.run(["--config", str(config), *args], timeout=timeout, env={**os.environ})
