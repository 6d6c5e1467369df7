"""libc's functions through ctypes with the GIL kept during the call (``ctypes.PyDLL``), for
the system calls of microseconds on non-blocking descriptors made on the real-time paths
(audio/rtsys.py: the PCM writer's; precise_timer.py: the hang-up's timerfd). A blocking
call made through it would stop every Python thread of the process."""

from __future__ import annotations

import ctypes
import sys
from typing import Any


def load(signatures: dict[str, tuple[list[Any], Any]]) -> ctypes.PyDLL | None:
    """libc with each ``name: (argtypes, restype)`` declared; None elsewhere than Linux or
    when libc (or one of the functions) cannot be had: the callers then use their fallback."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        for name, (argtypes, restype) in signatures.items():
            fn = getattr(libc, name)
            fn.argtypes = argtypes
            fn.restype = restype
    except (OSError, AttributeError):
        return None
    return libc
