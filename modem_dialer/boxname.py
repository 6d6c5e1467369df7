"""A box's name (docs/scale-out.md): shared by the config (``box:``) and the store (rows
record their box). One bottom module so that neither imports the other."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

BOX_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
# How long other boxes wait for a silent box before taking its work over (config box_lease)
DEFAULT_LEASE = timedelta(seconds=30)


def default_box() -> str:
    """The host name's first label, cut to a valid box name ('box' if nothing is left)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0])[:32]
    return name or "box"


def check_box_name(name: str) -> str:
    """The name, or ValueError (the config loader turns it into a one-line error)."""
    if not BOX_NAME.match(name):
        raise ValueError("box name must be 1-32 letters, digits, '_', '.' or '-'")
    return name
