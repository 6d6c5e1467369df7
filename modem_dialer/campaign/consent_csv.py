"""Reading a consent CSV: the one parser and row checks of ``consent import`` and the console's import.

Columns number, scope, source, given_at (ISO 8601) and optionally proof_ref, name, text_shown,
collector, time_slot, tz. A wrong header raises ``UserError`` naming ``file:1``; a bad row is
handed to ``bad`` as the line the CLI prints (``file:LINE: …``) and skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO

from ..errors import UserError
from ..numbers import InvalidNumber, parse_number
from .rules import Window
from .terms import CONSENT_SCOPES

CONSENT_COLUMNS = ("number", "scope", "source", "given_at", "proof_ref", "name", "text_shown", "collector",
                   "time_slot", "tz")
REQUIRED = ("number", "scope", "source", "given_at")


@dataclass(frozen=True)
class ConsentRow:
    number: str
    scope: str
    source: str
    given_at: datetime
    proof_ref: str | None = None
    name: str | None = None
    text_shown: str | None = None
    collector: str | None = None
    time_slot: str | None = None
    tz: str | None = None


def parse_when(value: str, where: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{where}: given_at: not an ISO 8601 date/time: {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def check_scope(scope: str) -> str:
    """``scope`` stripped, or a UserError (``scope: …``) naming the closed set."""
    scope = scope.strip()
    if scope not in CONSENT_SCOPES:
        raise UserError(f"scope: unknown consent scope {scope!r} (one of {', '.join(CONSENT_SCOPES)})")
    return scope


def read_consent(f: TextIO, file: str, region: str, bad: Callable[[str], None]) -> Iterator[ConsentRow]:
    """The good rows of the consent CSV ``f`` (shown as ``file``); each bad row's message to ``bad``."""
    from ..textfile import sniff_dialect

    first = f.readline()
    f.seek(0)
    reader = csv.DictReader(f, dialect=sniff_dialect(first))
    cols = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise UserError(f"{file}:1: missing column(s): {', '.join(missing)}")
    unknown = [c for c in cols if c not in CONSENT_COLUMNS]
    if unknown:
        raise UserError(f"{file}:1: unknown column(s): {', '.join(unknown)}")
    reader.fieldnames = cols
    for row in reader:
        where = f"{file}:{reader.line_num}"
        try:
            number = parse_number(row["number"] or "", region)
            if not (row["scope"] or "").strip() or not (row["source"] or "").strip():
                raise UserError(f"{where}: scope and source are required")
            scope = check_scope(row["scope"])
            given = parse_when(row["given_at"] or "", where)
            if row.get("time_slot"):
                for w in row["time_slot"].split(","):
                    Window.parse(w)
        except (InvalidNumber, UserError, ValueError) as exc:
            msg = str(exc)
            bad(msg if msg.startswith(file) else f"{where}: {msg}")
            continue
        yield ConsentRow(number, scope, row["source"].strip(), given, row.get("proof_ref") or None,
                         name=row.get("name") or None, text_shown=row.get("text_shown") or None,
                         collector=row.get("collector") or None, time_slot=row.get("time_slot") or None,
                         tz=row.get("tz") or None)
