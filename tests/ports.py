"""A TCP port for a service a test starts (``serve``'s API, a webhook receiver).

Not the kernel's pick (``bind`` to port 0, then close and hand the number over): that port is
one of the ephemeral range's, which every outgoing connection of every process on the machine
also draws from, and in the gap until the service binds it another process took it now and
then (three suites at once: a box's ``serve`` failed with "address already in use" and its
test's health check was answered by another test's service). Here the port comes from below
that range, where no connection is ever given one, at random (tests of another run at the
same time pick among ~12,000), and is checked free by binding it.
"""

from __future__ import annotations

import random
import socket

_LOWEST = 20000
_pick = random.SystemRandom()       # not the tests' seeded ``random``: two workers never in step


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    start = _ephemeral_start()
    if start - _LOWEST >= 2000:
        for _ in range(100):
            port = _pick.randrange(_LOWEST, start)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue                # in use (or in TIME_WAIT): another one
                return port
    # an unusual ephemeral range (or none free below it): the kernel's pick, as before
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
