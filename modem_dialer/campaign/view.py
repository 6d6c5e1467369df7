"""What the operator sees while a campaign runs: a rich live view on a terminal, a plain
line-per-event log otherwise (pipes, journald, tests)."""

from __future__ import annotations

import sys
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich is imported lazily at run time (start-up speed of the plain view)
    from rich.console import RenderableType
    from rich.live import Live


class PlainView:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def event(self, kind: str, text: str) -> None:
        self.out.write(f"{datetime.now():%H:%M:%S} {kind:6} {text}\n")
        self.out.flush()

    def start(self, snapshot: Any) -> None:
        pass

    def stop(self) -> None:
        pass


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class LiveView:
    """Progress bar, ETA, counts by outcome and one line per modem, redrawn 4 times a second."""

    def __init__(self, name: str) -> None:
        from rich.console import Console

        self.name = name
        self.console = Console()
        self.events: deque[str] = deque(maxlen=6)
        self.live: Live | None = None
        self.snapshot: Any = None
        self.t0 = time.monotonic()

    def event(self, kind: str, text: str) -> None:
        if kind != "dial":
            self.events.append(f"{datetime.now():%H:%M:%S} {text}")

    def start(self, snapshot: Any) -> None:
        from rich.live import Live

        self.snapshot = snapshot
        self.live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self.snapshot()
        total, done = s["total"], s["finished"]
        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(ratio=1)
        head.add_column(width=40)
        state = "paused" if s["paused"] else "stopping" if s["stopping"] else "running"
        head.add_row(Text(f"{self.name}  {done}/{total} contacts  ETA {_eta(s['eta_s'])}  [{state}]"),
                     ProgressBar(total=max(total, 1), completed=done, width=40))
        outcomes = "  ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()) if v) or "no calls yet"
        statuses = "  ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items()) if v > 0)
        lines: list[RenderableType] = [head, Text(f"calls: {outcomes}"), Text(f"contacts: {statuses}")]
        if s["waiting_until"]:
            lines.append(Text(f"only deferred contacts left: waiting until "
                              f"{s['waiting_until'].astimezone():%Y-%m-%d %H:%M}", style="yellow"))
        table = Table("modem", "state", "number", "calls today", "signal", box=None, padding=(0, 2))
        for m in s["slots"]:
            st = m["state"] + (f" ({m['reason']})" if m["reason"] else "")
            table.add_row(m["name"], st, m["current"] or "-", str(m["calls_today"]),
                          f"{m['signal_dbm']} dBm" if m["signal_dbm"] is not None else "-")
        lines.append(table)
        lines.extend(Text(e, style="dim") for e in self.events)
        return Group(*lines)


def make_view(name: str, tty: bool | None = None) -> PlainView | LiveView:
    if tty is None:
        tty = sys.stdout.isatty()
    return LiveView(name) if tty else PlainView()
