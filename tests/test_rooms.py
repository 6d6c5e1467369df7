"""The house's rooms, read from the source (AST), not by running it.

store/ is the only package that speaks SQL (issue 14 step 1): every module under
modem_dialer/ outside store/ must not import sqlite3, call ``.execute``/``.executemany``/
``.executescript`` on anything, or hold SQL in a string literal. Upper layers call
intent-named store methods and get typed results, so a second backend (PostgreSQL) only
touches store/.

AT is spoken in modems/ (and at/, the channel) alone (issue 15 room 1): a module anywhere
else fails when it holds an AT command literal (``"AT+CHLD=2"``, ``f"ATD{number};"``,
``"ATH"``, ``b"AT\\r"`` …), touches a driver's AT channel (``driver.ch``, ``….ch.command``)
or imports the channel (``at.channel``); upper layers use the drivers' typed operations.
``sim/`` is the modem's side of the line (it answers AT) and is exempt. Docstrings may name
commands (they explain what a driver does); code may not. Only upper case is looked for:
``"ATE0"`` is a command, ``"ate"`` is English.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "modem_dialer"
SQL_ROOM = "store"
DRIVER_MODULES = {"sqlite3", "psycopg", "psycopg_pool", "asyncpg"}
EXECUTE = {"execute", "executemany", "executescript"}
# Upper-case keywords with their companion word, as SQL is written here; prose ("select
# a modem from the list") is lower case and does not match.
SQL = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
                 r"|\bDELETE\s+FROM\b|\bCREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\b")


def parse(source: str, name: str = "<unknown>") -> ast.Module:
    """``ast.parse``, again if CPython says "AST constructor recursion depth mismatch": a
    spurious SystemError of 3.11 seen in threaded programs (python/cpython#106905; pytest
    itself hits it, hence --tb=native in scripts/test.sh). A full run at load 15-40 failed
    both tests of this module with it; the source parses the next time."""
    for _ in range(2):
        try:
            return ast.parse(source, name)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc):
                raise
    return ast.parse(source, name)


def problems_in(source: str, name: str) -> list[str]:
    """What in this module's source speaks SQL (one line each: file:line: what)."""
    out: list[str] = []
    for node in ast.walk(parse(source, name)):
        if isinstance(node, ast.Import):
            out += [f"{name}:{node.lineno}: imports {a.name}" for a in node.names
                    if a.name.split(".")[0] in DRIVER_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in DRIVER_MODULES:
            out.append(f"{name}:{node.lineno}: imports from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTE:
            out.append(f"{name}:{node.lineno}: calls .{node.func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            out.append(f"{name}:{node.lineno}: SQL in a string: {node.value.strip()[:60]!r}")
    return out


def _modules(package: Path, rooms: tuple[str, ...]) -> list[tuple[str, str]]:
    """(source, path relative to the package) of every module outside ``rooms``."""
    return [(path.read_text(encoding="utf-8"), str(path.relative_to(package)))
            for path in sorted(package.rglob("*.py")) if path.relative_to(package).parts[0] not in rooms]


def problems(package: Path = PACKAGE) -> list[str]:
    return [p for source, name in _modules(package, (SQL_ROOM,)) for p in problems_in(source, name)]


def test_only_store_speaks_sql() -> None:
    found = problems()
    assert not found, "SQL outside store/ (move it into an intent-named store method):\n" + "\n".join(found)


def test_the_guard_sees_each_kind(tmp_path: Path) -> None:
    """The guard can fail: a module with each kind of SQL use is reported, prose is not."""
    pkg = tmp_path / "modem_dialer"
    (pkg / "campaign").mkdir(parents=True)
    (pkg / "store").mkdir()
    (pkg / "campaign" / "bad.py").write_text(
        "import sqlite3\n"
        "from psycopg import sql\n"
        "def f(conn, w):\n"
        "    conn.execute('SELECT 1')\n"
        "    w.executemany(q, [])\n"
        "    q = ('SELECT id FROM contacts'\n"
        "         ' WHERE campaign_id = ?')\n"
        "    u = f'UPDATE contacts SET status = {w}'\n"
        "    return 'INSERT OR IGNORE INTO seen VALUES (1)', 'DELETE FROM calls'\n")
    (pkg / "campaign" / "fine.py").write_text(
        '"""Select the next contact from the list; update its status and insert a row into the log."""\n'
        "def f(store):\n"
        "    return store.claim(1)\n")
    (pkg / "store" / "ok.py").write_text("import sqlite3\ndef f(c):\n    return c.execute('SELECT 1 FROM t')\n")
    found = problems(pkg)
    text = "\n".join(found)
    assert all(line.startswith("campaign/bad.py:") for line in found), text
    for what in ("imports sqlite3", "imports from psycopg", "calls .execute()", "calls .executemany()",
                 "'SELECT id FROM contacts", "'UPDATE contacts SET", "'INSERT OR IGNORE INTO", "'DELETE FROM calls"):
        assert what in text, f"{what!r} not reported:\n{text}"


# --- room 1 of issue 15: AT in modems/ alone ---------------------------------------------

AT_ROOMS = ("modems", "at", "sim")

# "AT" alone (the wake-up), an extended command (AT+ AT^ AT$ AT% AT& AT* AT# AT\), a dial
# (ATD…, including the "ATD" before an f-string's number), or a basic one-letter command
# with its digit, "=", "?" or nothing after it (ATE0, ATH, ATA, ATZ, ATI, ATS0=0, ATV1 …)
AT_COMMAND = re.compile(r"AT(?:$|\r|[+^$%&*#\\][A-Z0-9]|D(?:$|[0-9+*#>;LPTIi])|[AEHILMOQSVXZ](?:$|\r|[0-9=?]))")


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _literal(node: ast.AST) -> str | None:
    """The text a literal starts with (an f-string: its leading constant part)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        v = node.value
        return v.decode("latin-1") if isinstance(v, bytes) else v
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def leaks_in(source: str, name: str) -> list[str]:
    """Where ``source`` speaks AT outside the rooms: ``name:line: what``."""
    tree = parse(source, name)
    docs = _docstrings(tree)
    inside_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if id(node) in docs or id(node) in inside_fstring:
            continue
        text = _literal(node)
        if text is not None and AT_COMMAND.match(text.lstrip()):
            out.append((line, f"AT command literal {text[:30]!r}"))
        elif isinstance(node, ast.Attribute) and node.attr == "ch":
            out.append((line, "uses a driver's AT channel (.ch)"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("at.channel"):
            out.append((line, "imports the AT channel"))
    return [f"{name}:{line}: {what}" for line, what in sorted(out)]


def at_leaks(package: Path = PACKAGE) -> list[str]:
    """Every AT leak in the package at ``package`` (the modem_dialer directory)."""
    return [p for source, name in _modules(package, AT_ROOMS) for p in leaks_in(source, name)]


def test_no_module_outside_modems_speaks_at() -> None:
    leaks = at_leaks()
    assert not leaks, "AT belongs in modems/ (give the driver a typed operation):\n" + "\n".join(leaks)


# The guard must be able to fail: what call/transfer.py did before the driver had multiparty
# operations (issue 15), and the other shapes of the same leak.
OLD_TRANSFER = '''
async def ect(run, number):
    """Hold with AT+CHLD=2, then ATD: naming commands in a docstring is fine."""
    driver = run.call.line.driver
    ch = driver.ch
    await ch.command("AT+CHLD=2", timeout=5)
    await ch.command(f"ATD{dial_string(number)};", timeout=10)
    calls = (await ch.command("AT+CLCC", timeout=5)).lines
    await ch.command(f"AT+CHLD=1{calls[0]}", timeout=5)
'''


def test_the_guard_finds_the_old_transfer_module() -> None:
    assert leaks_in(OLD_TRANSFER, "call/transfer.py") == [
        "call/transfer.py:5: uses a driver's AT channel (.ch)",
        "call/transfer.py:6: AT command literal 'AT+CHLD=2'",
        "call/transfer.py:7: AT command literal 'ATD'",
        "call/transfer.py:8: AT command literal 'AT+CLCC'",
        "call/transfer.py:9: AT command literal 'AT+CHLD=1'",
    ]


def test_commands_are_told_from_words() -> None:
    commands = ["AT", "AT\r", "ATE0", "ATH", "ATA", "ATZ", "ATI", "ATS0=0", "ATD+3361;", "ATD", "ATDT112",
                "AT+CMGF=0", "AT^CVOICE?", "AT&F", "AT$QCRCIND=1", 'AT+QCFG="ims"']
    words = ["ATD has been sent", "ATTENTION", "At the end", "ATM cash", "AT command", "Atlantic", "ATAN",
             "AUTO", "at+cmgf"]
    assert [c for c in commands if not AT_COMMAND.match(c)] == []
    assert [w for w in words if AT_COMMAND.match(w)] == []
    for src, n in [('x = b"AT\\r"', 1), ("from modem_dialer.at.channel import ATChannel", 1),
                   ("from ..at.errors import ATError", 0), ('log.info("%s: ATD refused", name)', 0),
                   ("slot.line.driver.is_open", 0), ("self.ch.command(c)", 1)]:
        assert len(leaks_in(src, "x.py")) == n, src


# store/ holds no code for tests alone (issue 15 room 4: "several store methods are used only
# by tests"): each public function and method of store/ is named somewhere in the package
# outside its own definition (a call, an attribute read, an import or a name handed on) —
# store/__init__.py's re-exports aside, which name everything. Tests set their scenes
# through what the dialer itself calls (tests/store_steps.py). By name: a method sharing its
# name with a used one elsewhere in store/ is not seen.
def unused_in_store(package: Path = PACKAGE) -> list[str]:
    store = package / SQL_ROOM
    defined: dict[str, list[str]] = {}
    for path in sorted(store.rglob("*.py")):
        rel = str(path.relative_to(package))
        for node in parse(path.read_text(encoding="utf-8"), rel).body:
            bodies = [(None, node)] if not isinstance(node, ast.ClassDef) else [(node.name, f) for f in node.body]
            for cls, f in bodies:
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and not f.name.startswith("_"):
                    defined.setdefault(f.name, []).append(f"{rel}:{f.lineno}: {cls + '.' if cls else ''}{f.name}")
    named: set[str] = set()
    for path in package.rglob("*.py"):
        if path == store / "__init__.py":
            continue
        for node in ast.walk(parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute):
                named.add(node.attr)
            elif isinstance(node, ast.Name):
                named.add(node.id)
            elif isinstance(node, ast.alias):
                named.add(node.name.rsplit(".", 1)[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                named.add(node.value)       # getattr(obj, "name"), a table of method names
    return sorted(w for name, where in defined.items() if name not in named for w in where)


def test_store_has_no_method_for_tests_alone() -> None:
    unused = unused_in_store()
    assert not unused, ("store/ functions no part of modem_dialer uses (remove them; tests go through what the "
                        "dialer calls, tests/store_steps.py):\n" + "\n".join(unused))


def test_the_store_guard_sees_a_method_for_tests(tmp_path: Path) -> None:
    pkg = tmp_path / "modem_dialer"
    (pkg / "store").mkdir(parents=True)
    (pkg / "store" / "__init__.py").write_text("from .campaigns import Campaigns\n__all__ = ['Campaigns']\n")
    (pkg / "store" / "campaigns.py").write_text(
        "class Campaigns:\n    def counts(self):\n        return self.total()\n\n"
        "    def total(self):\n        return 1\n\n    def set_contact_status(self, status):\n        pass\n"
        "\n\ndef helper_for_tests():\n    pass\n")
    (pkg / "report.py").write_text("from .store import Campaigns\n\nprint(Campaigns().counts())\n")
    assert unused_in_store(pkg) == ["store/campaigns.py:12: helper_for_tests",
                                    "store/campaigns.py:8: Campaigns.set_contact_status"]
