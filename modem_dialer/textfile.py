"""User text files (CSV of contacts, suppression lists, consent records) in whatever encoding
and separator the tool that saved them chose: Excel writes cp1252 and ``;`` in much of Europe.

The encoding is the one given (``encoding:`` in a campaign file), else UTF-8 when the start
of the file reads as UTF-8, else the one charset-normalizer finds most likely. Every
problem is a one-line UserError naming the file.
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path
from typing import Any, TextIO

from .errors import UserError

SAMPLE = 1 << 20          # bytes read to guess the encoding (a whole file may be millions of rows)
# When several encodings read a sample equally well (same chaos and language coherence: short
# files, few accents), the one Excel uses for "CSV" on Western European and American Windows
# wins; a file it misreads needs `encoding:`.
PREFERRED = "cp1252"
DELIMITERS = ",;\t|"


def check_encoding(name: str) -> str:
    """The codec's canonical name; ValueError naming the value when Python has no such codec."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, cp1252, latin-1)") from None


def check_delimiter(value: str) -> str:
    if len(value) != 1 or value not in DELIMITERS:
        raise ValueError(f"delimiter {value!r}: one of , ; | or a tab")
    return value


def detect_encoding(sample: bytes, at_eof: bool) -> str | None:
    """The encoding of ``sample`` (the start of a file), or None when nothing fits."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # final=False: the sample may end inside a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=at_eof)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        return None
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    pick = next((m for m in tied if m.encoding == PREFERRED), best)
    return str(pick.encoding)


def open_text(path: str | Path, what: str, encoding: str | None = None) -> tuple[TextIO, str]:
    """``(file, encoding)``: ``path`` opened for reading as text (``newline=""``, for csv)."""
    p = Path(path)
    try:
        with p.open("rb") as raw:
            sample = raw.read(SAMPLE)
            at_eof = not raw.read(1)
    except FileNotFoundError:
        raise UserError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{p}: {what} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    if encoding is None:
        encoding = detect_encoding(sample, at_eof)
        if encoding is None:
            raise UserError(f"{p}: {what} is not text in any encoding found (a binary file?); "
                            "save it as UTF-8 if it is text")
    else:
        try:
            sample.decode(encoding) if at_eof else codecs.getincrementaldecoder(encoding)().decode(sample)
        except UnicodeDecodeError as exc:
            raise UserError(f"{p}: {what} is not {encoding} text (byte {exc.start}: "
                            f"{sample[exc.start:exc.start + 1]!r})") from None
    return p.open(encoding=encoding, newline=""), encoding


def sniff_dialect(first_line: str, delimiter: str | None = None) -> Any:
    """The csv dialect of a header line: ``delimiter`` when given, else sniffed among , ; tab |."""
    if delimiter is not None:
        class Given(csv.excel):
            pass
        Given.delimiter = delimiter
        return Given
    try:
        return csv.Sniffer().sniff(first_line, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel
