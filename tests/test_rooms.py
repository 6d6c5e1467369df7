"""The house's rooms: store/ is the only package that speaks SQL (issue 14 step 1).

Read from the source (AST), not by running it: every module under modem_dialer/ outside
store/ must not import sqlite3, call ``.execute``/``.executemany``/``.executescript`` on
anything, or hold SQL in a string literal. Upper layers call intent-named store methods
and get typed results, so a second backend (PostgreSQL) only touches store/.
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


def problems_in(source: str, name: str) -> list[str]:
    """What in this module's source speaks SQL (one line each: file:line: what)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
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


def problems(package: Path = PACKAGE) -> list[str]:
    out: list[str] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == SQL_ROOM:
            continue
        out += problems_in(path.read_text(encoding="utf-8"), str(rel))
    return out


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
