"""Shared fixtures: a simulated modem bank on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

# shared helpers live in helpers.py; test modules long imported them from here
from helpers import run_cli, run_cli_process, start_cli, wait_until  # noqa: F401

from modem_dialer.modems.options import ModemConfig
from modem_dialer.sim.callee import Scenario
from modem_dialer.sim.sim_bank import SimBank, SimSpec

FAMILIES = ["quectel", "simcom", "sim800", "huawei", "generic"]


def _children() -> set[int]:
    """PIDs whose parent is this test process (read from /proc: no psutil needed)."""
    me, found = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(d.name))
    return found


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """A test that fails or times out must not leave its `serve`, `call` or simulator running:
    orphans keep modems busy and, on an unpaced ALSA file PCM, grow without bound."""
    before = _children()
    yield
    for pid in _children() - before:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
async def make_bank():
    """``await make_bank(specs_or_family, scenario)`` → a started SimBank, stopped at teardown."""
    banks: list[SimBank] = []

    async def make(specs: list[SimSpec] | str = "quectel", scenario: Scenario | None = None, n: int = 1) -> SimBank:
        if isinstance(specs, str):
            bank = SimBank.of(n, specs, scenario)
        else:
            bank = SimBank(specs, scenario)
        banks.append(bank)
        return await bank.start()

    yield make
    for b in banks:
        await b.stop()
    await asyncio.sleep(0)


@pytest.fixture
def journal(tmp_path):
    """A CallJournal (the journal writer) on a fresh database file."""
    from modem_dialer.store import open_db
    from modem_dialer.store.call_journal import CallJournal

    conn = open_db(tmp_path / "j.db")
    j = CallJournal(conn)
    yield j
    j.close()
    conn.close()


def modem_config(bank: SimBank, i: int = 0, **over) -> ModemConfig:
    entry = bank.modems_config()[i]
    entry.update(over)
    return ModemConfig(**entry)
