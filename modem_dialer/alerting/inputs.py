"""Checks on what callers send the service, made when the request arrives (a 4xx then),
not when the alert runs (where a failure would call nobody).

Prompts: ``audio`` names a WAV inside ``alerting.prompt_dirs``. Symlinks are resolved
first, so neither ``..``, an absolute path nor a link leads outside; a file outside, a
missing file and a forbidden one get the same answer, so the API reveals nothing about the
rest of the host. Call recordings (under a ``recordings`` folder, or the cache) are never
prompts, even in a prompt folder: they hold other people's voices and their names are
predictable. Size is capped before anything is read.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from ..errors import UserError
from .settings import LoadedAlertConfig

# C0/C1 controls but tab, LF, CR, plus DEL and the Unicode line/paragraph separators:
# they corrupt logs, terminals, TTS input and SMS, and no alert needs them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


class TooMany(UserError):
    """A cap on live work is reached: the API answers 429 (try again later)."""


def check_text(text: str, where: str) -> str:
    m = _CONTROL.search(text)
    if m:
        raise UserError(f"{where}: control character {m.group()!r} at position {m.start()} "
                        "(letters, punctuation, spaces and new lines only)")
    return text


def one_line(text: str, where: str) -> str:
    """A text for speech and SMS from a monitoring system: refused with controls, its
    new lines and tabs (common in Alertmanager descriptions) folded into spaces."""
    check_text(text, where)
    return " ".join(text.split())


def prompt_roots(loaded: LoadedAlertConfig) -> list[Path]:
    return [loaded.resolve(d).resolve() for d in loaded.config.alerting.prompt_dirs]


def find_prompt(loaded: LoadedAlertConfig, audio: str) -> Path:
    """The real path of the prompt ``audio`` (a name or path inside a prompt folder), size
    checked. Blocking (stat calls): run it in a thread. UserError otherwise."""
    al = loaded.config.alerting
    hidden = UserError(f"'audio': {audio!r} is not a WAV file in the prompt folders (alerting.prompt_dirs)")
    if not audio or "\0" in audio:
        raise hidden
    roots = prompt_roots(loaded)
    cache = loaded.resolve(loaded.config.cache_dir).resolve()
    given = Path(audio).expanduser()
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for cand in candidates:
        try:
            real = cand.resolve(strict=True)
        except (OSError, RuntimeError):      # missing, a loop of links, no permission
            continue
        if not any(real.is_relative_to(root) for root in roots) or real.is_relative_to(cache) \
                or "recordings" in real.parts:
            continue
        try:
            st = real.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):     # a FIFO or device would block or never end
            continue
        if st.st_size > al.max_prompt_bytes:
            raise UserError(f"'audio': {audio!r} is {st.st_size} bytes, more than alerting.max_prompt_bytes "
                            f"({al.max_prompt_bytes})")
        return real
    raise hidden


def load_checked_prompt(loaded: LoadedAlertConfig, audio: str):  # -> np.ndarray (numpy stays a lazy import)
    """Find and decode the prompt (a bad WAV is a UserError naming it). Blocking: in a thread."""
    from ..audio.source import message_samples

    return message_samples(message=find_prompt(loaded, audio))
