"""pyproject.toml is what a build tool reads: its promises must hold for the versions it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")   # Python 3.11+; the checks are about the file, not the runtime

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _min_version(requirement: str) -> tuple[int, ...]:
    m = re.search(r">=\s*([\d.]+)", requirement)
    assert m, f"no lower bound in {requirement!r}"
    return tuple(int(x) for x in m.group(1).split("."))


def test_spdx_license_string_needs_setuptools_77() -> None:
    # setuptools before 77 rejects `license = "GPL-3.0-or-later"` (it wants a table): the build fails
    assert isinstance(PROJECT["project"]["license"], str)
    setuptools = next(r for r in PROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    assert _min_version(setuptools) >= (77,)


def test_typed_package_ships_its_marker() -> None:
    assert (ROOT / "modem_dialer" / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["modem_dialer"]
    assert "Typing :: Typed" in PROJECT["project"]["classifiers"]


def test_the_test_command_type_checks() -> None:
    assert any(r.startswith("mypy") for r in PROJECT["project"]["optional-dependencies"]["test"])
    assert "mypy modem_dialer" in (ROOT / "scripts" / "test.sh").read_text()
    assert PROJECT["tool"]["mypy"]["check_untyped_defs"] is True
