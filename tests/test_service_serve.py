"""`modem-dialer serve` as systemd runs it: a subprocess with $NOTIFY_SOCKET and a watchdog,
its text log, a real HTTP server on localhost and the simulated bank over real ptys."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import aiohttp
from helpers import TOKEN, free_port, write_config


class NotifySocket:
    """What systemd's end of $NOTIFY_SOCKET sees: every datagram, in order."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def wait_for(self, line: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not any(line in m.split("\n") for m in self.messages):
            left = deadline - time.monotonic()
            assert left > 0, f"never got {line!r}: {self.messages}"
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), left)
            self.messages.append(data.decode())

    def close(self) -> None:
        self.sock.close()


async def start_serve(cfg: str, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modem_dialer.cli", "--config", cfg, "serve", *args,
        env={**os.environ, **env}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_serve_tells_systemd_ready_then_pings_the_watchdog(make_bank, tmp_path):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, api={"port": free_port()})
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    proc = await start_serve(str(loaded.path), env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                                      "WATCHDOG_USEC": "200000"})
    try:
        await ns.wait_for("READY=1")
        # READY only once the API answers: systemd orders dependent units on it
        port = loaded.config.alerting.api.port
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
        n = len(ns.messages)
        await ns.wait_for("WATCHDOG=1", timeout=10)
        ns.messages.clear()
        await ns.wait_for("WATCHDOG=1", timeout=10)       # and again: a ping every 0.1 s
        assert n >= 1
        proc.send_signal(signal.SIGTERM)
        await ns.wait_for("STOPPING=1", timeout=20)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        ns.close()


async def test_text_log_escapes_what_comes_from_outside(make_bank, tmp_path):
    bank = await make_bank("quectel")
    loaded = write_config(bank, tmp_path, api={"port": free_port(), "token": TOKEN})
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    proc = await start_serve(str(loaded.path), "--log-format", "text",
                             env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    try:
        await ns.wait_for("READY=1")
        port = loaded.config.alerting.api.port
        # no token: the 401 is logged with the request path, which must not forge a log line
        async with aiohttp.ClientSession() as s, s.get(
                f"http://127.0.0.1:{port}/v1/alerts%0A2026-01-01 00:00:00,000 INFO forged: admin logged in%1b[2J"
        ) as r:
            assert r.status == 401
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        ns.close()
    lines = err.decode().splitlines()
    assert not [ln for ln in lines if "forged" in ln and "unauthorised" not in ln], lines
    (hit,) = [ln for ln in lines if "unauthorised" in ln]
    assert "/v1/alerts\\n2026-01-01" in hit and "\x1b" not in hit and "\\x1b[2J" in hit, hit
