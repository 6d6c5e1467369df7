"""A service's stop is never held by a worker that lost its cancel (``serve`` not exiting on
SIGTERM, seen in the multi-box tests on PostgreSQL: the campaign-join worker's wait_for
swallowed the stop's cancel when a campaign change was heard in the same instant).

modem_dialer/waits.py's wait_set, whatever the event does in the cancel's instant, and the
service's stop, whatever a worker does with its cancel."""

from __future__ import annotations

import asyncio
import logging

from helpers import write_config

from modem_dialer.service import service as service_mod
from modem_dialer.service.service import Service
from modem_dialer.sim.callee import Scenario
from modem_dialer.waits import wait_set


async def test_a_cancel_in_the_instant_the_event_is_set_ends_a_loop_waiting_on_it():
    kick = asyncio.Event()
    rounds = 0

    async def worker() -> None:      # as a service worker: a loop that only a cancel ends
        nonlocal rounds
        while True:
            await wait_set(kick, 60)
            kick.clear()
            rounds += 1

    task = asyncio.get_running_loop().create_task(worker())
    for _ in range(3):
        await asyncio.sleep(0)      # the worker and its waiter parked on the event
    kick.set()
    task.cancel()                   # the same instant: asyncio.wait_for (Python 3.11) lost it here
    done, _ = await asyncio.wait({task}, timeout=10)     # not a race: 10 s stands for "forever"
    assert task in done and task.cancelled(), f"the cancel was lost; the loop went round {rounds} time(s)"


async def test_wait_set_says_whether_the_event_was_set():
    ev = asyncio.Event()
    assert await wait_set(ev, 0.01) is False
    asyncio.get_running_loop().call_soon(ev.set)
    assert await wait_set(ev, 60) is True
    assert await wait_set(ev, 0) is True        # set already: at once


async def test_a_worker_that_swallows_the_stops_cancel_is_cancelled_again(make_bank, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(service_mod, "WORKER_CANCEL_WAIT_S", 0.2)
    bank = await make_bank("quectel", Scenario())
    svc = Service(write_config(bank, tmp_path), port=0)
    await svc.start()
    cancels = 0
    parked = asyncio.Event()

    async def stubborn(_svc: Service) -> None:
        nonlocal cancels
        while True:
            try:
                parked.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise

    svc.add_worker("stubborn", stubborn)
    await parked.wait()
    with caplog.at_level(logging.WARNING, logger="modem_dialer.service"):
        try:
            await asyncio.wait_for(svc.stop(), 60)      # before the fix: forever
        finally:
            if not svc.stopped.is_set():
                for t in svc._worker_tasks:
                    t.cancel()
    assert cancels == 2 and svc.stopped.is_set()
    assert "worker-stubborn still running" in caplog.text
