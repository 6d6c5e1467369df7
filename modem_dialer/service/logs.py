"""Structured logs for the service: one JSON object per line on stderr (journald keeps each line).

Fields: ``level``, ``logger``, ``msg``, plus whatever the call passed in ``extra=``
(``alert``, ``modem``, ``policy`` …). No timestamp when running under systemd (journald
stamps every line; ``JOURNAL_STREAM`` is set then), else an ISO time first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
from datetime import datetime, timezone

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, with_time: bool = True) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {}
        if self.with_time:
            out["time"] = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        out.update(level=record.levelname.lower(), logger=record.name, msg=record.getMessage())
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """Control characters and line/paragraph separators as visible escapes (``\\n``, ``\\x1b``):
    a request path or header with ``%0A`` must not start a forged log line, nor ESC
    sequences rewrite the operator's terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


class TextFormatter(logging.Formatter):
    """One line per record: the message (built from outside data too) is escaped; a traceback,
    our own text, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def log_handler(fmt: str = "json") -> logging.Handler:
    """The service's stderr handler: ``json`` (one object per line) or ``text``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(with_time="JOURNAL_STREAM" not in os.environ))
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler
