"""Where a message comes from: a WAV file or text to synthesise; both end as 8 kHz prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .prompts import load_prompt, normalise
from .tts import synthesise

TELEPHONE_DBFS = -22.0


def message_samples(message: str | Path | None = None, say: str | None = None, *, voice: str = "en",
                    cache_dir: str | Path | None = None, level: bool = True) -> np.ndarray:
    """Exactly one of ``message`` (WAV path) or ``say`` (text) → int16 samples at telephone level."""
    if (message is None) == (say is None):
        raise UserError("give exactly one of a message WAV or a text to say")
    if message is not None:
        return load_prompt(message, TELEPHONE_DBFS if level else None).samples
    samples = synthesise(str(say), voice=voice, cache_dir=cache_dir)
    return normalise(samples, TELEPHONE_DBFS) if level else samples
