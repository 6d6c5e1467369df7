"""User text files (CSV of contacts, suppression lists, consent records) in whatever encoding
and separator the tool that saved them chose: Excel writes cp1252 and ``;`` in much of Europe.

The encoding is the one given (``encoding:`` in a campaign file), else UTF-8 when the start
of the file reads as UTF-8, else the one charset-normalizer finds most likely. Every
problem is a one-line UserError naming the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from pathlib import Path
from typing import Any, TextIO

from .errors import UserError
from .yamlfile import open_regular

SAMPLE = 1 << 20          # bytes read to guess the encoding (a whole file may be millions of rows)
# What Excel writes as "CSV" on Western European and American Windows: preferred when no
# other encoding reads the sample better (a file it misreads needs `encoding:`).
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

    # Contact files are mostly digits and ASCII with a few accented names: too little for a
    # sure guess (a two-accent Latin-1 line also reads as Big5). The encoding Excel writes
    # on Western Windows wins unless another reads the sample with less noise or as more
    # coherent language (Polish in cp1250 does).
    best = from_bytes(sample).best()
    western = from_bytes(sample, cp_isolation=[PREFERRED]).best()
    if western is not None and (best is None or (western.chaos <= best.chaos
                                                 and western.coherence >= best.coherence)):
        return PREFERRED
    return None if best is None else str(best.encoding)


def open_text(path: str | Path, what: str, encoding: str | None = None) -> tuple[TextIO, str]:
    """``(file, encoding)``: ``path`` opened for reading as text (``newline=""``, for csv)."""
    p = Path(path)
    fd, _ = open_regular(p, what)          # a FIFO, a folder or a device is refused without blocking
    raw = os.fdopen(fd, "rb")
    try:
        sample = raw.read(SAMPLE)
        at_eof = not raw.read(1)
        raw.seek(0)
    except OSError as exc:
        raw.close()
        raise UserError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    except BaseException:
        raw.close()
        raise
    if encoding is None:
        encoding = detect_encoding(sample, at_eof)
        if encoding is None:
            raw.close()
            raise UserError(f"{p}: {what} is not text in any encoding found (a binary file?); "
                            "save it as UTF-8 if it is text")
    else:
        try:
            sample.decode(encoding) if at_eof else codecs.getincrementaldecoder(encoding)().decode(sample)
        except UnicodeDecodeError as exc:
            raw.close()
            raise UserError(f"{p}: {what} is not {encoding} text (byte {exc.start}: "
                            f"{sample[exc.start:exc.start + 1]!r})") from None
    return io.TextIOWrapper(raw, encoding=encoding, newline=""), encoding


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
