"""Compile the bytecode of the dependencies a fresh venv was given (scripts/setup.sh).

Else the six test workers each compile the same dependencies (numpy, aiohttp, pydantic...)
at their first import, at once. Not all of site-packages, as uv's --compile-bytecode did
(~12 s of CPU on a fresh clone, issue 15): not what is never imported, mypy's and mypyc's
sources (mypy runs its compiled modules), test suites, and phonenumbers' geocoder and
carrier data (3 s alone; only its metadata and time zones are used). Only an optimisation:
whatever is left out is compiled by the first process that imports it.

One task per top-level package, the biggest first, in one process per core: compileall's
own ``-j`` hands out one file per task and cost ~40 % more CPU in pickling and waking its
workers than a single process.

Usage: python compile_deps.py SITE-PACKAGES
"""

from __future__ import annotations

import compileall
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor

# Left out as well, as the suite's imports showed (a fresh venv without this script's bytecode,
# then what its collection and the zygote wrote): holidays' country and market modules (the
# first call for a country imports its one module: ~0.9 s of CPU for ~285 files), pygments'
# lexers and styles but the few pytest imports in every worker (~0.8 s), numpy's and pydantic's
# subpackages that nothing here imports, phonenumbers' short-number data (its loader only).
SKIP = re.compile(r"/tests?/|/phonenumbers/(geodata|carrierdata)/|/site-packages/mypyc?/"
                  r"|/holidays/(countries|financial)/"
                  r"|/pygments/lexers/(?!(__init__|_mapping|python|diff)\.py$)"
                  r"|/pygments/styles/(?!(__init__|_mapping)\.py$)"
                  r"|/numpy/(f2py|distutils|ma|polynomial|_pyinstaller|testing|doc)/"
                  r"|/numpy/typing/(?!__init__\.py$)|/phonenumbers/shortdata/(?!__init__\.py$)"
                  r"|/pydantic/(v1|deprecated|experimental)/|/hypothesis/extra/")


def compile_one(path: str) -> bool:
    if os.path.isdir(path):
        return compileall.compile_dir(path, quiet=2, rx=SKIP)
    return compileall.compile_file(path, quiet=2, rx=SKIP) if path.endswith(".py") else True


def source_size(path: str) -> int:
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
               if f.endswith(".py"))


def main(top: str) -> None:
    entries = [os.path.join(top, e) for e in os.listdir(top)]
    entries = [e for e in entries if not SKIP.search(e + "/")]
    entries.sort(key=source_size, reverse=True)     # the biggest first: the processes end together
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(compile_one, entries))


if __name__ == "__main__":
    main(sys.argv[1])
