"""YAML files with line numbers, and pydantic errors turned into one line.

Every user-written YAML file (config, campaign, flow) goes through here so that a
mistake is reported as ``file:line: key.path: what is wrong``.

Files come from outside (a path in an API request, too), so the loader reads only regular
files (a FIFO would block, ``/dev/zero`` never ends), at most ``MAX_YAML_BYTES``, and
refuses YAML aliases: nested aliases expand exponentially ("billion laughs"; a 300-byte
file took seconds), and no file of ours needs them.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError

M = TypeVar("M", bound=BaseModel)
# Keys whose value an error message never repeats (it may end up in a log or a ticket).
SECRET_KEYS = frozenset({"pin", "token", "password", "secret", "api_key"})


class Strict(BaseModel):
    """Base of every user-file model: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_YAML_BYTES = 4 * 1024 * 1024     # far above any real config, campaign or flow file


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (lines are recorded by ``_walk`` on the node tree)."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed: write the value out",
                event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[arg-type]  # a key node, an int or None; the stub says int


def open_regular(path: str | Path, what: str = "file") -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file ``path`` and its stat; UserError naming it
    for anything else (missing, a directory, a FIFO, a device)."""
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then refuses it)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{p}: {what} not found") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"{p}: {what} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{p}: {what} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_user_file(path: str | Path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; UserError naming it otherwise."""
    p = Path(path)
    cap = MAX_YAML_BYTES if max_bytes is None else max_bytes
    fd, st = open_regular(p, what)
    try:
        if st.st_size > cap:
            raise UserError(f"{p}: {what} is {st.st_size} bytes, more than {cap}")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:         # grew while we read it
                raise UserError(f"{p}: {what} is more than {cap} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise UserError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, key_node.value)
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines)
            # the key's own line wins over the value's (a nested mapping starts below it)
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


class YamlDoc:
    """A parsed YAML document with a map from key path to line number."""

    def __init__(self, path: Path, data: Any, lines: dict[tuple, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line_of(self, loc: Iterable) -> int | None:
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())

    def where(self, loc: Iterable = ()) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def load_yaml(path: str | Path, what: str = "file") -> YamlDoc:
    """Read and parse a YAML file; any problem is a one-line UserError."""
    p = Path(path)
    try:
        text = read_user_file(p, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: cannot read {what}: {exc}") from None
    loader = _LineLoader(text)
    try:
        # one parse: the node tree gives the lines, the same tree gives the data
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{p}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlDoc(p, data, lines)


def format_loc(loc: Iterable) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validate(doc: YamlDoc, model: type[M], context: dict | None = None) -> M:
    """Validate ``doc.data`` against ``model``; the first error becomes a one-line UserError."""
    if doc.data is None:
        data: Any = {}
    else:
        data = doc.data
    if not isinstance(data, dict):
        raise UserError(f"{doc.where()}: expected a mapping at the top level")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, doc)) from None


def describe_validation_error(exc: ValidationError, doc: YamlDoc | None = None) -> str:
    errors = exc.errors()
    # an unknown key usually explains the "missing" error next to it (a typo): report it first
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    # pydantic adds union/function tags to loc; keep only real keys and indices
    loc = [p for p in err["loc"] if isinstance(p, int) or not str(p).startswith(("function-", "tagged-union"))]
    key = format_loc(loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    value = err.get("input")
    shown = ""
    # the value helps find a typo, but not under a key nobody expects (`db_password: ...`) nor a secret's
    secret = err["type"] == "extra_forbidden" or any(str(p).lower() in SECRET_KEYS for p in loc[-1:])
    if err["type"] != "missing" and not secret and isinstance(value, (str, int, float)) \
            and not isinstance(value, bool):
        if isinstance(value, str):
            # a URL's password (database: postgresql://user:pw@host/db) is not echoed either
            value = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", value)
        shown = f" (got {value!r})"
    where = doc.where(loc) if doc else ""
    extra = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where + ': ' if where else ''}{key}: {msg}{shown}{extra}"
