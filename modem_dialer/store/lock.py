"""One dialing process per database: start-up recovery closes every open call, so a second
runner on the same journal would close the first one's live calls."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import UserError


class DialerLock:
    def __init__(self, database: Path) -> None:
        self.path = Path(str(database) + ".dialer.lock")
        self._f: IO[str] | None = None

    def acquire(self) -> DialerLock:
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "?"
            f.close()
            raise UserError(f"{self.path}: another dialing process (pid {who}) is using this database") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self) -> DialerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
