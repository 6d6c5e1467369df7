"""Everything a user can reach is documented (modelled on sqlite-utils' tests/test_docs.py).

The names are read from the code, never listed here, so a new command, IVR node type,
calling-rule preset or modem family without its line in docs/ fails one test named after it:

- every CLI command and subcommand (the click tree of ``modem_dialer.cli.main``) appears in
  README.md's command table or in a docs/*.md page as ``modem-dialer NAME`` or as a code
  span starting with ``NAME``, a group's arguments allowed between the words (``sim-ctl SOCK
  call``; docs/exit-codes.md does not count: it only gives exit codes,
  and test_cli_errors.py already checks it names every command);
- every flow node type (the ``type`` literals of ``flow_model.Node``) has a row in the node
  table of docs/flows.md;
- every calling-rule preset (``campaign.terms.PRESETS``) has a row in the preset table of
  docs/campaigns.md;
- every modem family (the driver registry ``modems.detect.DRIVERS``, and the config's
  ``FAMILIES``) has a row in the family table of docs/modems.md (``auto``, which is no
  driver, is explained as ``family: auto``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import click
import pytest

from modem_dialer.call.flow_model import Node
from modem_dialer.campaign.terms import PRESETS
from modem_dialer.cli import main
from modem_dialer.modems.detect import DRIVERS
from modem_dialer.modems.options import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown text (up to the next ``## ``)."""
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"no '## {heading}' section"
    return m.group(1)


def _table_first_cells(text: str) -> set[str]:
    """The first cell of every table row, without backticks and any ``(…)`` remark."""
    cells = set()
    for line in text.splitlines():
        if line.startswith("|"):
            cell = line.split("|")[1].strip()
            cell = re.sub(r"\s*\(.*\)$", "", cell).strip("`").strip()
            cells.add(cell)
    return cells


# ---- the names, from the code -------------------------------------------------------------

def commands(group: click.Group = main, prefix: str = "", words: str = "") -> dict[str, str]:
    """Every command path of the CLI, groups included (``campaign``, ``campaign run``, …),
    with the regex of how it is typed: a group's own arguments come between its name and the
    subcommand's (``sim-ctl SOCK call``)."""
    out = {}
    for name, cmd in sorted(group.commands.items()):
        if cmd.hidden:
            continue
        typed = f"{words}{re.escape(name)}"
        out[f"{prefix}{name}"] = typed
        if isinstance(cmd, click.Group):
            args = sum(isinstance(p, click.Argument) for p in cmd.params)
            out.update(commands(cmd, f"{prefix}{name} ", typed + r"\s+" + r"\S+\s+" * args))
    return out


COMMANDS = commands()


def node_types() -> list[str]:
    union = get_args(Node)[0]               # Annotated[PlayNode | MenuNode | …, Field(...)]
    return [t for cls in get_args(union) for t in get_args(cls.model_fields["type"].annotation)]


def families() -> list[str]:
    return sorted(set(DRIVERS) | set(FAMILIES))


# ---- where users read about them ----------------------------------------------------------

def command_docs() -> list[str]:
    """README's command table and every docs page but the exit-code table."""
    texts = [_section(_read(ROOT / "README.md"), "Commands")]
    texts += [_read(p) for p in sorted(DOCS.glob("*.md")) if p.name != "exit-codes.md"]
    return texts


def command_documented(name: str, texts: list[str]) -> bool:
    typed = COMMANDS.get(name) or r"\s+".join(map(re.escape, name.split()))
    end = r"(?![\w-])"
    spoken = re.compile(rf"modem-dialer\s+{typed}{end}")          # modem-dialer flow check FILE
    span = re.compile(rf"`{typed}{end}[^`\n]*`")                  # `flow check FILE`, `oncall`
    return any(spoken.search(t) or span.search(t) for t in texts)


# ---- the tests ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_texts() -> list[str]:
    return command_docs()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_is_documented(name: str, cli_texts: list[str]) -> None:
    assert command_documented(name, cli_texts), (
        f"`modem-dialer {name}` is in no docs page nor README's command table: "
        f"add a line saying what it does")


@pytest.mark.parametrize("node_type", node_types())
def test_flow_node_type_is_documented(node_type: str) -> None:
    rows = _table_first_cells(_section(_read(DOCS / "flows.md"), "Nodes"))
    assert node_type in rows, f"flow node type {node_type!r} has no row in docs/flows.md, ## Nodes"


@pytest.mark.parametrize("preset", PRESETS)
def test_rules_preset_is_documented(preset: str) -> None:
    rows = _table_first_cells(_read(DOCS / "campaigns.md"))
    assert preset in rows, f"rules preset {preset!r} has no row in docs/campaigns.md's preset table"


@pytest.mark.parametrize("family", families())
def test_modem_family_is_documented(family: str) -> None:
    doc = _read(DOCS / "modems.md")
    if family in DRIVERS:
        rows = _table_first_cells(_section(doc, "Families"))
        assert family in rows, f"modem family {family!r} has no row in docs/modems.md, ## Families"
    else:                                   # a config value that picks no driver itself: auto
        assert f"family: {family}" in doc, f"`family: {family}` is not explained in docs/modems.md"


# ---- the checks can fail --------------------------------------------------------------------

def test_the_lists_come_from_the_code() -> None:
    """Non-empty and plausible: a refactor that empties a list must not pass silently."""
    assert {"call", "campaign run", "flow check"} <= set(COMMANDS)
    assert {"play", "menu", "hangup"} <= set(node_types())
    assert "none" in PRESETS
    assert {"generic", "auto"} <= set(families())


def test_an_undocumented_command_is_caught() -> None:
    texts = ["| `modem-dialer flow check FILE` · `flow try FILE` | … |", "run `oncall` then"]
    assert command_documented("flow check", texts)
    assert command_documented("flow try", texts)
    assert command_documented("oncall", texts)
    assert not command_documented("flow", ["`flowers`"])
    assert not command_documented("sim", ["`sim-ctl SOCK call`"])      # a prefix is not the name
    assert not command_documented("flow lint", texts)
    typed = ["modem-dialer sim-ctl /tmp/sim.sock sms-log", "`sim-ctl SOCK call --from N`"]
    assert command_documented("sim-ctl sms-log", typed)
    assert command_documented("sim-ctl call", typed)
    assert not command_documented("sim-ctl sms", typed)                # sms-log is another one
    assert not command_documented("sim-ctl calls", typed)


def test_table_rows_are_read_without_backticks_and_remarks() -> None:
    table = "| type | does |\n|---|---|\n| `play` | plays |\n| simcom (SIM7600) | … |\n"
    assert {"play", "simcom"} <= _table_first_cells(table)
