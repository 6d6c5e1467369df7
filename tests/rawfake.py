"""A bare pty "modem" whose replies the test scripts byte by byte (for channel edge cases)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable


class RawFake:
    def __init__(self, reply: Callable[[str], bytes | None]) -> None:
        self.reply = reply
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.buf = b""
        self.received: list[str] = []
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            self.buf += os.read(self.master, 4096)
        except OSError:
            return
        while b"\r" in self.buf:
            line, self.buf = self.buf.split(b"\r", 1)
            cmd = line.decode(errors="replace").strip()
            self.received.append(cmd)
            out = self.reply(cmd)
            if out:
                os.write(self.master, out)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
