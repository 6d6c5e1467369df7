"""systemd's notify protocol (sd_notify(3)) for ``Type=notify`` and ``WatchdogSec=``.

A datagram to the socket named in ``$NOTIFY_SOCKET``: ``READY=1`` once the service serves,
``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from a task of the event loop (so a loop that
hangs stops the pings and systemd restarts the service), ``STOPPING=1`` on the way out.
Twenty lines of stdlib rather than a dependency; without ``$NOTIFY_SOCKET`` it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("modem_dialer.service")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket (a NUL first byte on the wire)
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # the watchdog is ours unless it names another process (a wrapper's)
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message.encode(), self.address)
        except OSError as exc:      # systemd gone or the socket not ours: the service still runs
            log.warning("sd_notify %s failed: %s", message.split("\n")[0], exc)

    async def watchdog(self) -> None:
        """Ping while the loop runs; cancelled at stop."""
        if self.watchdog_interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
