"""Offline text-to-speech with espeak-ng, cached on disk.

espeak-ng is called as a separate program (argument list, never a shell), which also keeps
its GPL out of our process (rules_and_signals.md B.4.4). It writes 22 050 Hz mono 16-bit
with ``-w`` (``--stdout`` puts a bogus size in the header, feasibility.md §4); we resample
to 8 kHz and cache the 8 kHz result, keyed by a hash of (voice, speed, text). espeak-ng is
deterministic, so a cache hit is exactly what a fresh run would give.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from modem_dialer.audio.prompts import load_wav, save_wav
from modem_dialer.errors import UserError

ESPEAK = "espeak-ng"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modem-dialer" / "tts"


def cache_key(text: str, voice: str, speed: int) -> str:
    h = hashlib.sha256()
    for part in (ESPEAK, voice, str(speed), text):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()[:32]


def synthesise(
    text: str,
    voice: str = "en",
    cache_dir: str | Path | None = None,
    speed: int = 150,
) -> np.ndarray:
    """Speak ``text`` with espeak-ng voice ``voice`` at ``speed`` words/min -> 8 kHz mono int16."""
    if not text.strip():
        raise UserError("TTS text is empty")
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    cached = cache / f"{cache_key(text, voice, speed)}.wav"
    if cached.is_file():
        return load_wav(cached)
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise UserError("espeak-ng not installed: apt-get install espeak-ng")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{cache}: cannot create TTS cache directory ({exc.strerror})") from None
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        raw = Path(tmp) / "espeak.wav"
        # "--" ends options: a text starting with "-" is spoken, not parsed as a flag.
        cmd = [exe, "-v", voice, "-s", str(int(speed)), "-w", str(raw), "--", text]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not raw.is_file():
            err = (proc.stderr or proc.stdout).strip().splitlines()
            if any("voice does not exist" in line or "Failed to read voice" in line for line in err):
                raise UserError(f"espeak-ng: unknown voice {voice!r} (list them with: espeak-ng --voices)")
            detail = err[-1] if err else f"exit code {proc.returncode}"
            raise UserError(f"espeak-ng failed for voice {voice!r}: {detail}")
        samples = load_wav(raw)
        # Write under a temporary name then rename, so a concurrent reader never sees half a file.
        part = Path(tmp) / "out.wav"
        save_wav(part, samples)
        os.replace(part, cached)
    return samples
