"""The simplest script: play a message N times, keys collected meanwhile, then hang up."""

from __future__ import annotations

import numpy as np

from ..audio.prompts import silence
from .session import ActiveCall, Script

GAP_MS = 700   # pause between repetitions


def message_script(samples: np.ndarray, repeat: int = 1, name: str = "message",
                   stop_on_key: bool = False) -> Script:
    """``stop_on_key``: the first key ends the message (used for "press 1 to acknowledge")."""

    async def run(call: ActiveCall) -> None:
        for i in range(repeat):
            if i:
                await call.play(silence(GAP_MS), name="gap", barge_in=stop_on_key)
            if not (stop_on_key and call.keys):
                await call.play(samples, name=name, barge_in=stop_on_key)
            if stop_on_key and call.keys:
                return
    return run
