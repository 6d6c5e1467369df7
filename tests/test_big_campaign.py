"""A campaign's size does not show in the memory of the commands run on it (issue 14 bench:
10,000,000 contacts, every process ≤ 200 MB peak; bench/big_campaign.py measures that size).

Each command runs in a child process (forked from this one, so without the start-up cost of
a new interpreter) on a real CSV and a real SQLite file, once on a small campaign and once on
a bigger one; the child's peak RSS (``os.wait4``) may grow by at most ``MAX_GROWTH_MB``
between the two. Keeping a set of the numbers, a list of the rows or a whole-table
``fetchall`` costs ≥ 80 bytes a contact, i.e. more than that over the 50,000 rows added
(``report --format json`` streams the same rows as ``--format csv``).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import pytest
from helpers import invoke_cli

from modem_dialer.cli import main
from modem_dialer.sim.voice import write_tone_wav
from modem_dialer.store import Campaigns, open_db

# SQLite's page caches (2 MB each: the journal's and the duplicates' table) and phonenumbers'
# metadata fill up over the first ~25,000 rows: the smaller size starts past that
MAX_GROWTH_MB = 3.0
IMPORT_SIZES = (25_000, 75_000)     # validated rows (~2 µs of CPU a row in E.164, 35-60 in full)
REPORT_SIZES = (20_000, 80_000)
# Both tests are CPU-bound (100,000 rows validated, 100,000 reported): 116 s of wall time at
# load 40 against pytest's 120 s default, which a run at that load then exceeded. A hang still
# fails, within CI's budget.
SLOW_LIMIT_S = 600


def number(i: int) -> str:
    # distinct valid French mobiles in a scattered order (7919 is coprime with 10**7)
    return f"+336{i * 7919 % 10**7 + 10**7:08d}"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("number,name,ref,city\n")
        for i in range(rows):
            n = "+33 1 23" if i % 1000 == 999 else number(i - 7 if i % 500 == 499 else i)   # bad and duplicate rows
            f.write(f"{n},Contact {i},R{i:08d},Lyon\n")


def peak_mb(config: Path, *args: str) -> float:
    """Run ``modem-dialer ARGS`` in a forked child; its peak RSS in MB (it must exit 0)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                # the child: the CLI, then exit without cleanup
        code = 1
        try:
            main.main(["--config", str(config), *args], standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, ru = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"modem-dialer {' '.join(args)} failed"
    return ru.ru_maxrss / 1024


def warm(config: Path, *args: str) -> None:
    """Run ``modem-dialer ARGS`` once in this process (click's runner), on a small campaign,
    before the measured runs: what the command imports (the config's schemas, the campaign
    code, rich: ~0.4 s of CPU) is then imported once here rather than again in each forked
    child, and is in the memory of both the smaller and the bigger run (the growth between
    them is what is measured)."""
    rc, out, err = invoke_cli("--config", str(config), *args)
    assert rc == 0, out + err


def box(d: Path) -> Path:
    d.mkdir()
    (d / "config.yaml").write_text("database: calls.db\ndefault_region: FR\nmodems:\n  - {name: gsm0, port: /dev/null}\n")
    write_tone_wav(d / "hello.wav", 0.2)
    (d / "camp.yaml").write_text("name: big\ncontacts: contacts.csv\nmessage: hello.wav\npurpose: informational\n"
                                 "rules: none\n")
    return d / "config.yaml"


@pytest.mark.timeout(SLOW_LIMIT_S)
def test_import_memory_does_not_grow_with_the_contacts(tmp_path: Path) -> None:
    small = box(tmp_path / "warm")
    write_csv(small.parent / "contacts.csv", 10)
    warm(small, "campaign", "import", str(small.parent / "camp.yaml"))
    peaks = []
    for rows in IMPORT_SIZES:
        config = box(tmp_path / f"n{rows}")
        write_csv(config.parent / "contacts.csv", rows)
        peaks.append(peak_mb(config, "campaign", "import", str(config.parent / "camp.yaml")))
        conn = open_db(config.parent / "calls.db")
        store = Campaigns(conn)
        c = store.get_campaign("big")
        assert c is not None
        imported = store.counts(c["id"]).get("pending", 0)
        assert rows * 0.99 < imported < rows            # all but the bad and duplicate rows
        conn.close()
    assert peaks[1] - peaks[0] <= MAX_GROWTH_MB, \
        f"campaign import: peak RSS {peaks[0]:.1f} MB at {IMPORT_SIZES[0]:,} rows, {peaks[1]:.1f} MB at {IMPORT_SIZES[1]:,}"


@pytest.mark.timeout(SLOW_LIMIT_S)
def test_status_and_report_memory_does_not_grow_with_the_contacts(tmp_path: Path) -> None:
    config = box(tmp_path / "box")
    conn = open_db(config.parent / "calls.db")
    store = Campaigns(conn)
    for rows in REPORT_SIZES:
        cid = store.create_campaign(f"c{rows}")
        # the store's own import (already-valid numbers): the campaign is the fixture here
        store.import_contacts(cid, ((i + 2, number(i), {"name": f"Contact {i}", "ref": f"R{i:08d}"})
                                    for i in range(rows)))
    conn.close()
    out = config.parent / "out"
    commands = {
        "campaign status": lambda name: ["campaign", "status", name],
        "report csv": lambda name: ["report", name, "--format", "csv", "-o", str(out)],
        "report table": lambda name: ["report", name, "-o", str(out)],
    }
    small = box(tmp_path / "warm")
    conn = open_db(small.parent / "calls.db")
    Campaigns(conn).import_contacts(Campaigns(conn).create_campaign("small"), [(2, number(0), {"name": "A"})])
    conn.close()
    for argv in commands.values():
        warm(small, *(a if a != str(out) else str(small.parent / "out") for a in argv("small")))
    for what, argv in commands.items():
        peaks = []
        for rows in REPORT_SIZES:
            peaks.append(peak_mb(config, *argv(f"c{rows}")))
            if what.startswith("report"):
                assert out.stat().st_size > rows * 20       # every contact was written
                out.unlink()
        assert peaks[1] - peaks[0] <= MAX_GROWTH_MB, \
            f"{what}: peak RSS {peaks[0]:.1f} MB at {REPORT_SIZES[0]:,} contacts, {peaks[1]:.1f} MB at {REPORT_SIZES[1]:,}"
