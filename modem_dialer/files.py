"""Files that hold personal data (exports, recordings): readable by the dialer's user only.

The process umask usually gives 0644/0755, which lets every local account read numbers,
answers and voices; these helpers create 0600 files and 0700 folders whatever the umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple, TextIO

FILE_MODE = 0o600
DIR_MODE = 0o700


def open_private(path: str | Path) -> TextIO:
    """``path`` opened for writing text (``newline=""``, for csv), created or truncated 0600.

    An existing regular file is tightened too (it is about to hold the new data); a device
    such as /dev/stdout is written as it is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def private_dir(path: str | Path) -> Path:
    """``path`` (and missing parents) created; the folder itself 0700."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(p.stat().st_mode) != DIR_MODE:
        p.chmod(DIR_MODE)
    return p


def make_private(path: str | Path) -> None:
    """A file just written by a library that does not take a mode (wave, soundfile)."""
    os.chmod(path, FILE_MODE)


class Removal(NamedTuple):
    removed: int            # files removed
    problems: list[str]     # one line per file left in place: its path and why
    stuck: int              # files that should have gone and could not be removed (a rerun may)


def remove_recordings(recordings: list[tuple[int, str]]) -> Removal:
    """Remove the recording files of a purge or an erasure: ``(call id, path)`` pairs read from
    the journal. Only a regular file named as the dialer names a recording of that call
    (``call<id>-<node>.wav``, call/flow_runner.py) is removed: a journal row altered to name
    another file (or a symlink) removes nothing. A file already gone is not a problem."""
    removed, stuck, problems = 0, 0, []
    for call_id, raw in recordings:
        path = Path(raw)
        if not (path.name.startswith(f"call{call_id}-") and path.suffix == ".wav"):
            problems.append(f"{raw}: not a recording of call {call_id}; left in place")
            continue
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                problems.append(f"{raw}: not a regular file; left in place")
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{raw}: cannot remove: {exc.strerror or exc}")
            stuck += 1
    return Removal(removed, problems, stuck)
