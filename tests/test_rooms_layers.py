"""The rooms of the house: packages import only downwards (issue 15, docs/architecture.md).

The order, bottom to top::

    shared bottom (errors, numbers, yamlfile, …)   store/   sim/
    at/ -> modems/ -> audio/ -> call/ -> campaign/ -> alerting/ -> config/ -> service/ -> cli/

``config/`` is the loader that assembles every layer's section of config.yaml, so it sits
just below its users (the service and the commands); each layer owns its own section's
schema. The import graph is read from the source (every ``import``, the lazy ones inside
functions included), so the test needs no import side effects and names the culprit line.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rooms import parse

PKG = Path(__file__).resolve().parent.parent / "modem_dialer"

# Rank of each room; a module may import from its own room and from lower ranks only.
ORDER = ["at", "modems", "audio", "call", "campaign", "alerting", "config", "service", "cli"]
RANK = {room: i + 1 for i, room in enumerate(ORDER)}
LOW = {"store", "sim"}        # rank 0, like the shared bottom modules
# What the bottom of the stack must never load, even indirectly: the sections of the upper
# layers (alert policies, IVR advisors, campaign limits) and the loader that assembles them.
# The old flat modules are listed too, so the test names them on a tree that still has them.
UPPER_SCHEMAS = {
    "modem_dialer.alerting", "modem_dialer.call.advisors", "modem_dialer.campaign.limits",
    "modem_dialer.config",
    "modem_dialer.config_alerting", "modem_dialer.config_ivr", "modem_dialer.config_campaign",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if _is_package(mod) else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_parents(name: str) -> Iterator[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = name.split(".")
    for i in range(2, len(parts) + 1):
        yield ".".join(parts[:i])


def imports_of(mod: str) -> list[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in ``mod``, each once."""
    return _imports(mod, MODULES[mod])


@functools.cache
def _imports(mod: str, path: Path) -> list[tuple[str, int]]:
    tree = parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node)
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        for t in targets:
            for name in _with_parents(t):
                if name in MODULES and name != mod and all(name != o for o, _ in out):
                    out.append((name, node.lineno))
    return out


def room_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank_of(mod: str) -> int:
    return RANK.get(room_of(mod), 0)      # store/, sim/ and the shared bottom modules: 0


def upward_imports() -> list[str]:
    bad = []
    for mod in MODULES:
        for target, line in imports_of(mod):
            if room_of(target) != room_of(mod) and rank_of(target) > rank_of(mod):
                bad.append(f"{MODULES[mod].relative_to(PKG.parent)}:{line}: {mod} imports {target} "
                           f"({room_of(target)}/ is above {room_of(mod) or 'the bottom'})")
    return bad


def test_every_room_is_known() -> None:
    rooms = {room_of(m) for m in MODULES if _is_package(m) and m.count(".") == 1}
    assert rooms <= set(ORDER) | LOW, f"a new package needs its place in ORDER: {rooms - set(ORDER) - LOW}"


def test_no_upward_import() -> None:
    assert upward_imports() == []


def _closure(start: str) -> dict[str, str]:
    """Every module ``start`` loads, each with the module that imports it first (for the message)."""
    seen = {start: ""}
    todo = [start]
    while todo:
        mod = todo.pop()
        for target, _ in imports_of(mod):
            if target not in seen:
                seen[target] = mod
                todo.append(target)
    return seen


def _chain(seen: dict[str, str], end: str) -> str:
    chain = [end]
    while seen[chain[-1]]:
        chain.append(seen[chain[-1]])
    return " <- ".join(chain)


@pytest.mark.parametrize("room", ["at", "modems"])
def test_the_bottom_does_not_load_upper_schemas(room: str) -> None:
    """The modem driver must not load alert policies, IVR advisors or campaign limits."""
    bad = []
    for mod in (m for m in MODULES if room_of(m) == room):
        seen = _closure(mod)
        for loaded in seen:
            if any(loaded == s or loaded.startswith(s + ".") for s in UPPER_SCHEMAS):
                bad.append(_chain(seen, loaded))
    assert bad == []


def test_sim_shares_no_code_with_the_drivers() -> None:
    """A simulator importing the driver's code would agree with it whatever real modems say."""
    bad = [f"{m} imports {t}" for m in MODULES for t, _ in imports_of(m)
           if {room_of(m), room_of(t)} in ({"sim", "at"}, {"sim", "modems"})]
    assert bad == []


def test_the_guard_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a lazy import from the top inside a function is caught."""
    fake = PKG / "modems" / "driver.py"
    source = fake.read_text(encoding="utf-8") + "\n\ndef _x() -> None:\n    from ..service import bank\n"
    tree_mod = "modem_dialer.modems.driver"
    real = MODULES[tree_mod]
    probe = tmp_path / "driver.py"
    probe.write_text(source, encoding="utf-8")
    MODULES[tree_mod] = probe
    try:
        assert any("modem_dialer.service.bank" in b for b in upward_imports_for(tree_mod))
    finally:
        MODULES[tree_mod] = real


def upward_imports_for(mod: str) -> list[str]:
    return [t for t, _ in imports_of(mod) if room_of(t) != room_of(mod) and rank_of(t) > rank_of(mod)]
