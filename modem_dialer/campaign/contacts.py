"""Contacts CSV import: validate and normalise every row, import the good ones, report the bad.

A ``number`` column is required; other columns become the contact's fields (a
``timezone`` field overrides the callee's time zone for the calling rules). The file is
streamed: rows go to the store in batches, and duplicates are found with a temporary
on-disk table (store/seen.py), so a million rows import in bounded memory.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..numbers import InvalidNumber, parse_number
from ..store import Campaigns
from ..store.seen import SeenNumbers
from ..textfile import open_text, sniff_dialect
from .rules import zone

KEEP_BAD = 1000     # bad rows kept in the report (all are counted and passed to on_bad)
BATCH = 5000


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    bad_count: int = 0
    bad: list[BadRow] = field(default_factory=list)
    skipped_unchanged_file: bool = False

    @property
    def good(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
                "bad": self.bad_count, "file_unchanged": self.skipped_unchanged_file}


def file_fingerprint(path: Path, region: str, *settings: str | None) -> str:
    """Changes with the file's bytes and with whatever changes how they are read."""
    h = hashlib.sha256(repr((region, *settings)).encode() if settings else region.encode())
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _open_csv(path: Path, encoding: str | None, delimiter: str | None) -> tuple[Any, Any]:
    """The file as text in its encoding (given, else detected) and its csv dialect (the
    given delimiter, else sniffed from the header: Excel writes ``;`` in much of Europe)."""
    f, _ = open_text(path, "contacts file", encoding)
    try:
        header = f.readline()
        f.seek(0)
    except UnicodeDecodeError as exc:
        f.close()
        raise UserError(f"{path}:1: cannot read the header: {exc.reason}") from None
    return f, sniff_dialect(header, delimiter)


def read_rows(path: Path, region: str, on_bad: Callable[[BadRow], None], *, encoding: str | None = None,
              delimiter: str | None = None) -> Iterator[tuple[int, str, dict[str, str]]]:
    """``(line_no, e164, fields)`` for every good row; ``on_bad`` for every bad one.

    Duplicates of a number already seen earlier in the file are bad rows.
    """
    f, dialect = _open_csv(path, encoding, delimiter)
    seen = SeenNumbers()
    try:
        reader = csv.reader(f, dialect)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(f"{path}: contacts file is empty") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"{path}:1: cannot parse the header: {exc}") from None
        names = [h.strip() for h in header]
        if "number" not in names:
            raise UserError(f"{path}:1: no 'number' column in the header (have: {', '.join(names) or 'none'})")
        dup = sorted({n for n in names if names.count(n) > 1 and n})
        if dup:
            raise UserError(f"{path}:1: duplicate column name(s) in the header: {', '.join(dup)}")
        idx = names.index("number")
        width = len(names)
        has_tz = "timezone" in names

        def parsed() -> Iterator[tuple[int, str, dict[str, str]]]:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as exc:
                    on_bad(BadRow(reader.line_num, f"unreadable row: {exc}"))
                    continue
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < width:
                    on_bad(BadRow(line, f"missing column(s): {', '.join(names[len(row):])}"))
                    continue
                if len(row) > width:
                    on_bad(BadRow(line, f"{len(row)} fields but the header has {width}"))
                    continue
                raw = row[idx].strip()
                if not raw:
                    on_bad(BadRow(line, "missing number"))
                    continue
                try:
                    e164 = parse_number(raw, region)
                except InvalidNumber as exc:
                    on_bad(BadRow(line, f"invalid number: {exc}"))
                    continue
                fields = {n: v.strip() for n, v in zip(names, row, strict=True) if n and n != "number"}
                if has_tz and fields.get("timezone"):
                    try:
                        zone(fields["timezone"])
                    except ValueError as exc:
                        on_bad(BadRow(line, str(exc)))
                        continue
                yield line, e164, fields

        it = parsed()
        while batch := list(islice(it, BATCH)):
            first = seen.first_lines([(ln, n) for ln, n, _ in batch])
            for ln, n, flds in batch:
                if first.get(n) != ln:
                    on_bad(BadRow(ln, f"duplicate number {n} (first on line {first.get(n)})"))
                else:
                    yield ln, n, flds
    finally:
        seen.close()
        f.close()


def import_contacts(store: Campaigns, campaign_id: int, path: Path, region: str,
                    on_bad: Callable[[BadRow], None] | None = None, *, encoding: str | None = None,
                    delimiter: str | None = None) -> ImportReport:
    """Merge the CSV into the campaign (a number already there keeps its status and attempts)."""
    report = ImportReport()

    def bad(row: BadRow) -> None:
        report.bad_count += 1
        if len(report.bad) < KEEP_BAD:
            report.bad.append(row)
        if on_bad is not None:
            on_bad(row)

    result = store.import_contacts(campaign_id, read_rows(path, region, bad, encoding=encoding,
                                                          delimiter=delimiter))
    report.inserted, report.updated, report.unchanged = result.inserted, result.updated, result.unchanged
    return report
