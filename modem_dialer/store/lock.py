"""One dialing process per box and database: start-up recovery closes the box's open calls,
so a second runner of the same box would close the first one's live calls. Other boxes
(docs/scale-out.md) dial on the same database with locks of their own; on one machine they
need distinct ``box`` names."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import UserError


class DialerLock:
    def __init__(self, database: Path, box: str | None = None) -> None:
        from ..store.boxes import this_box

        self.box = box or this_box()
        # the box name is checked (letters, digits, '_', '.', '-'): safe in a file name
        self.path = Path(f"{database}.{self.box}.dialer.lock")
        self._f: IO[str] | None = None

    def acquire(self) -> DialerLock:
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "?"
            f.close()
            raise UserError(f"{self.path}: another dialing process of box {self.box!r} (pid {who}) is using "
                            "this database") from None
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
