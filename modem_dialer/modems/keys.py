"""The keys a phone can send as DTMF: the one list the drivers, flows and the CLI check against.

Apart from ``modems/events.py`` so that the command line can declare ``--opt-out-key``'s
choices without building the event model's dataclasses at every start (issue 15).
"""

from __future__ import annotations

DTMF_KEYS = frozenset("0123456789*#ABCD")
