"""IVR flow files: the YAML model and the checks run when a flow is loaded.

A flow is a set of named nodes and a start node; each node does one thing (play, menu,
input, record, transfer, optout, sms, set, branch, hangup) and names the node that comes
next. ``load_flow`` refuses a flow with an unknown or unreachable node, a missing prompt
file, a node with no exit, or a ``{placeholder}`` that names no known field, with an error
``file:line: node NAME: …`` — a flow with a mistake never starts a call.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from ..modems.keys import DTMF_KEYS
from ..yamlfile import Strict, YamlDoc, describe_validation_error, load_yaml, validate

# Placeholders every call can use besides the contact's fields and the flow's own answers.
BUILTIN_FIELDS = frozenset({"number", "campaign"})


def _key(v: object) -> str:
    # YAML reads an unquoted 1 as an int; a key is always one DTMF character
    s = str(v)
    if s not in DTMF_KEYS:
        raise ValueError(f"not a phone key: {v!r} (one of 0-9 * # A-D; quote * and #)")
    return s


class PromptItem(Strict):
    """One piece of a prompt: spoken text, a WAV file, a pause or a plain tone."""

    say: str | None = None
    wav: str | None = None
    silence_ms: int | None = Field(default=None, ge=0, le=60000)
    tone_hz: float | None = Field(default=None, ge=100, le=3500)
    tone_ms: int = Field(default=200, ge=10, le=10000)

    @model_validator(mode="after")
    def _one(self) -> PromptItem:
        given = [k for k in ("say", "wav", "silence_ms", "tone_hz") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a prompt item needs exactly one of say, wav, silence_ms, tone_hz")
        return self


class Prompted(Strict):
    """Fields shared by everything that plays a prompt: ``say:``, ``wav:`` or ``prompts:``."""

    say: str | None = None
    wav: str | None = None
    prompts: list[PromptItem] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Prompted:
        if sum(x is not None for x in (self.say, self.wav, self.prompts)) > 1:
            raise ValueError("give only one of say, wav, prompts")
        return self

    def items(self) -> list[PromptItem]:
        if self.prompts is not None:
            return list(self.prompts)
        if self.say is not None:
            return [PromptItem(say=self.say)]
        if self.wav is not None:
            return [PromptItem(wav=self.wav)]
        return []


class PromptSpec(Prompted):
    """A prompt on its own (menu retry messages, voicemail, opt-out confirmation)."""


class _Node(Prompted):
    barge_in: bool = True                  # a key stops the node's prompt

    def exits(self) -> dict[str, str | None]:
        """Exit name -> target node (None: not given)."""
        return {}

    terminal: ClassVar[bool] = False


class PlayNode(_Node):
    type: Literal["play"]
    barge_in: bool = False
    next: str | None = None

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next}


class MenuNode(_Node):
    type: Literal["menu"]
    choices: dict[str, str]                # key -> node
    values: dict[str, str] = Field(default_factory=dict)   # key -> answer value (default: the key)
    answer: str | None = None             # store the choice under this name
    timeout: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=2, ge=0, le=10)
    invalid: PromptSpec | None = None     # played after a key that is not a choice, then retry
    no_input: PromptSpec | None = None    # played after the timeout, then retry
    on_invalid: str | None = None         # go there at once instead of retrying
    on_no_input: str | None = None
    on_fail: str | None = None            # after the retries

    @field_validator("choices", "values", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        return {_key(k): str(t) for k, t in v.items()} if isinstance(v, dict) else v

    def exits(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {f"choices.{k}": t for k, t in self.choices.items()}
        out.update(on_invalid=self.on_invalid, on_no_input=self.on_no_input, on_fail=self.on_fail)
        return out


class InputNode(_Node):
    type: Literal["input"]
    answer: str
    min_digits: int = Field(default=1, ge=1, le=32)
    max_digits: int = Field(default=16, ge=1, le=32)
    end_key: str | None = "#"             # ends the entry early; never part of the value
    timeout: float = Field(default=6.0, gt=0, le=120)              # for the first digit
    inter_digit_timeout: float = Field(default=3.0, gt=0, le=60)
    pattern: str | None = None            # full match on the digits
    range: tuple[float, float] | None = None   # numeric bounds, inclusive
    retries: int = Field(default=2, ge=0, le=10)
    invalid: PromptSpec | None = None
    next: str | None = None
    on_fail: str | None = None

    @field_validator("end_key", mode="before")
    @classmethod
    def _end(cls, v: Any) -> Any:
        return None if v is None else _key(v)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _lengths(self) -> InputNode:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is larger than max_digits")
        return self

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next, "on_fail": self.on_fail}


class RecordNode(_Node):
    type: Literal["record"]
    answer: str                            # the WAV path is stored under this name
    max_seconds: float = Field(default=60, gt=0, le=600)
    silence_seconds: float = Field(default=3, gt=0, le=60)
    beep: bool = True
    next: str | None = None

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next}


class TransferNode(_Node):
    type: Literal["transfer"]
    barge_in: bool = False
    strategy: Literal["bridge", "ect"] | list[Literal["bridge", "ect"]] = "bridge"
    group: str | None = None              # advisors group (config.yaml advisors:)
    whisper: str | None = None            # said to the advisor, who accepts with accept_key
    accept_key: str = "1"
    hold: str | None = None               # text said to the callee while waiting (else hold music)
    timeout: float = Field(default=20, gt=0, le=120)   # ring time per advisor
    max_advisors: int = Field(default=3, ge=1, le=20)
    next: str | None = None               # after the conversation (default: the call ends)
    fallback: str | None = None           # nobody answered

    @field_validator("accept_key", mode="before")
    @classmethod
    def _accept(cls, v: Any) -> Any:
        return _key(v)

    @property
    def strategies(self) -> list[str]:
        return [self.strategy] if isinstance(self.strategy, str) else list(self.strategy)

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next, "fallback": self.fallback}


class OptoutNode(_Node):
    type: Literal["optout"]
    barge_in: bool = False
    terminal: ClassVar[bool] = True


class SmsNode(_Node):
    type: Literal["sms"]
    text: str
    next: str | None = None

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next}


class SetNode(_Node):
    type: Literal["set"]
    set: dict[str, str]                    # name -> value (placeholders allowed)
    answer: bool = False                   # also store them as answers
    next: str | None = None

    @field_validator("set", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    def exits(self) -> dict[str, str | None]:
        return {"next": self.next}


_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)$")


class BranchNode(_Node):
    type: Literal["branch"]
    var: str                               # an answer, a set value or a contact field ("on:" is YAML for true)
    cases: dict[str, str]                  # "value" or "lo..hi" -> node
    default: str | None = None

    @field_validator("cases", mode="before")
    @classmethod
    def _cases(cls, v: Any) -> Any:
        return {str(k): str(t) for k, t in v.items()} if isinstance(v, dict) else v

    def pick(self, value: Any) -> str | None:
        text = "" if value is None else str(value)
        if text in self.cases:
            return self.cases[text]
        for case, target in self.cases.items():
            m = _RANGE.match(case)
            if m:
                try:
                    if float(m.group(1)) <= float(text) <= float(m.group(2)):
                        return target
                except ValueError:
                    continue
        return self.default

    def exits(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {f"cases.{k}": t for k, t in self.cases.items()}
        out["default"] = self.default
        return out


class HangupNode(_Node):
    type: Literal["hangup"]
    barge_in: bool = False
    terminal: ClassVar[bool] = True


Node = Annotated[
    PlayNode | MenuNode | InputNode | RecordNode | TransferNode | OptoutNode | SmsNode | SetNode
    | BranchNode | HangupNode,
    Field(discriminator="type"),
]


class OptOutSpec(Strict):
    key: str | None = None                # off unless given (here or by the campaign)
    say: str = "You will not be called again. Goodbye."

    @field_validator("key", mode="before")
    @classmethod
    def _k(cls, v: Any) -> Any:
        return None if v is None else _key(v)


class MachineSpec(Strict):
    mode: Literal["off", "replay", "skip"] = "off"
    voicemail: PromptSpec | None = None    # played once after the greeting (replay)
    max_wait_s: float = Field(default=30, gt=0, le=120)   # for the beep / end of greeting


class FlowDoc(Strict):
    name: str | None = None
    start: str
    voice: str | None = None
    fields: list[str] | None = None        # contact fields the flow may use (checked if given)
    opt_out: OptOutSpec = Field(default_factory=OptOutSpec)
    machine: MachineSpec = Field(default_factory=MachineSpec)
    nodes: dict[str, Node]


@dataclass
class Flow:
    """A checked flow: its document, where it came from (for error lines and prompt files)."""

    path: Path
    doc: FlowDoc
    ydoc: YamlDoc | None = None
    answers: set[str] = field(default_factory=set)   # names a flow stores (answers and set:)

    @property
    def name(self) -> str:
        return self.doc.name or self.path.stem

    @property
    def base(self) -> Path:
        return self.path.parent

    def node(self, name: str) -> Any:
        return self.doc.nodes[name]

    def where(self, *loc: Any) -> str:
        return self.ydoc.where(loc) if self.ydoc else str(self.path)

    def resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q


def placeholders(text: str) -> list[str]:
    """Field names used as ``{name}`` in ``text``; ValueError on a broken template."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(text):
        if name is None:
            continue
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or spec or conv:
            raise ValueError(f"bad placeholder {{{name}}}: use {{field_name}} only (double braces for a literal)")
        names.append(name)
    return names


def _texts(flow: Flow) -> Iterator[tuple[tuple, str]]:
    """Every text with placeholders, with its key path in the file."""
    doc = flow.doc

    def of_prompted(loc: tuple, p: Prompted | None) -> Iterator[tuple[tuple, str]]:
        if p is None:
            return
        if p.say is not None:
            yield (*loc, "say"), p.say
        for i, item in enumerate(p.prompts or []):
            if item.say is not None:
                yield (*loc, "prompts", i, "say"), item.say

    yield ("opt_out", "say"), doc.opt_out.say
    yield from of_prompted(("machine", "voicemail"), doc.machine.voicemail)
    for name, node in doc.nodes.items():
        loc = ("nodes", name)
        yield from of_prompted(loc, node)
        for extra in ("invalid", "no_input"):
            yield from of_prompted((*loc, extra), getattr(node, extra, None))
        for attr in ("text", "whisper", "hold"):
            v = getattr(node, attr, None)
            if isinstance(v, str):
                yield (*loc, attr), v
        if isinstance(node, SetNode):
            for k, v in node.set.items():
                yield (*loc, "set", k), v


def _wavs(flow: Flow) -> Iterator[tuple[tuple, str]]:
    doc = flow.doc
    groups: list[tuple[tuple, Prompted | None]] = [(("machine", "voicemail"), doc.machine.voicemail)]
    for name, node in doc.nodes.items():
        groups.append((("nodes", name), node))
        for extra in ("invalid", "no_input"):
            groups.append((("nodes", name, extra), getattr(node, extra, None)))
    for loc, p in groups:
        if p is None:
            continue
        if p.wav is not None:
            yield (*loc, "wav"), p.wav
        for i, item in enumerate(p.prompts or []):
            if item.wav is not None:
                yield (*loc, "prompts", i, "wav"), item.wav


def _fail(flow: Flow, loc: Iterable, msg: str) -> UserError:
    loc = tuple(loc)
    node = f"node {loc[1]}: " if len(loc) >= 2 and loc[0] == "nodes" else ""
    return UserError(f"{flow.where(*loc)}: {node}{msg}")


def check_flow(flow: Flow, fields: Iterable[str] | None = None) -> None:
    """Structural checks; ``fields``: the contact fields known for this use (else the flow's
    own ``fields:`` list; with neither, placeholders are not checked against fields)."""
    doc = flow.doc
    nodes = doc.nodes
    if not nodes:
        raise _fail(flow, ("nodes",), "a flow needs at least one node")
    if doc.start not in nodes:
        raise _fail(flow, ("start",), f"start node {doc.start!r} is not defined")
    # references and exits
    for name, node in nodes.items():
        exits = node.exits()
        for exit_name, target in exits.items():
            if target is not None and target not in nodes:
                raise _fail(flow, ("nodes", name, *exit_name.split(".")), f"{exit_name} goes to unknown node {target!r}")
        if not node.terminal and not any(exits.values()):
            raise _fail(flow, ("nodes", name), f"no exit ({node.type} needs next: or similar; end with a hangup node)")
        if isinstance(node, (PlayNode, SmsNode, SetNode, RecordNode)) and node.next is None:
            raise _fail(flow, ("nodes", name), "no exit: add next:")
        if isinstance(node, MenuNode):
            if not node.choices:
                raise _fail(flow, ("nodes", name, "choices"), "a menu needs at least one choice")
            if node.on_fail is None:
                raise _fail(flow, ("nodes", name), "a menu needs on_fail: (where to go after the retries)")
            for k in node.values:
                if k not in node.choices:
                    raise _fail(flow, ("nodes", name, "values", k), f"value for key {k!r} which is not a choice")
            if doc.opt_out.key and doc.opt_out.key in node.choices:
                raise _fail(flow, ("nodes", name, "choices", doc.opt_out.key),
                            f"key {doc.opt_out.key!r} is the opt-out key")
        if isinstance(node, InputNode) and (node.next is None or node.on_fail is None):
            raise _fail(flow, ("nodes", name), "an input needs next: and on_fail:")
        if isinstance(node, TransferNode) and node.fallback is None:
            raise _fail(flow, ("nodes", name), "a transfer needs fallback: (when no advisor answers)")
        if isinstance(node, BranchNode) and node.default is None:
            raise _fail(flow, ("nodes", name), "a branch needs default:")
    # reachability from the start node
    seen, todo = set(), [doc.start]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(t for t in nodes[n].exits().values() if t is not None)
    for name in nodes:
        if name not in seen:
            raise _fail(flow, ("nodes", name), f"unreachable from the start node {doc.start!r}")
    # machine handling
    if doc.machine.mode == "replay" and (doc.machine.voicemail is None or not doc.machine.voicemail.items()):
        raise _fail(flow, ("machine",), "mode replay needs a voicemail: prompt")
    # prompt files
    for loc, wav in _wavs(flow):
        if not flow.resolve(wav).is_file():
            raise _fail(flow, loc, f"prompt file not found: {wav}")
    # placeholders
    names: set[str] = set()
    for node in nodes.values():
        answer = getattr(node, "answer", None)   # a bool on a record node, a name elsewhere
        if answer and isinstance(answer, str):
            names.add(answer)
        if isinstance(node, SetNode):
            names.update(node.set)
    flow.answers = names
    known = set(fields) if fields is not None else (set(doc.fields) if doc.fields is not None else None)
    for loc, text in _texts(flow):
        try:
            used = placeholders(text)
        except ValueError as exc:
            raise _fail(flow, loc, str(exc)) from None
        if known is None:
            continue
        for p in used:
            if p not in known and p not in names and p not in BUILTIN_FIELDS:
                raise _fail(flow, loc, f"placeholder {{{p}}} is not a contact field "
                                       f"(known: {', '.join(sorted(known)) or 'none'})")
    for name, node in nodes.items():
        if isinstance(node, BranchNode) and known is not None:
            if node.var not in known and node.var not in names and node.var not in BUILTIN_FIELDS:
                raise _fail(flow, ("nodes", name, "var"), f"branches on {node.var!r}, which is neither an answer "
                                                         "nor a contact field")


NODE_TYPES = ("play", "menu", "input", "record", "transfer", "optout", "sms", "set", "branch", "hangup")


def _validate(ydoc: YamlDoc) -> FlowDoc:
    """Like ``yamlfile.validate``, but errors inside a node name the node and drop pydantic's
    union tag (``nodes.menu.menu.choices`` -> ``node menu: choices``)."""
    if not isinstance(ydoc.data, dict):
        return validate(ydoc, FlowDoc)
    try:
        return FlowDoc.model_validate(ydoc.data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        loc = list(errors[0]["loc"])
        err = errors[0]
        if len(loc) < 2 or loc[0] != "nodes":
            raise UserError(describe_validation_error(exc, ydoc)) from None
        if len(loc) > 2 and loc[2] in NODE_TYPES:
            del loc[2]
        msg = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(err["type"], err["msg"])
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")
            msg = f"unknown or missing node type (one of {', '.join(NODE_TYPES)})"
        msg = msg.removeprefix("Value error, ")
        key = ".".join(str(p) for p in loc[2:]) or "type"
        raise UserError(f"{ydoc.where(loc)}: node {loc[1]}: {key}: {msg}") from None


def load_flow(path: str | Path, fields: Iterable[str] | None = None) -> Flow:
    """Read, validate and check a flow file. Raises UserError naming file:line and node."""
    ydoc = load_yaml(path, "flow file")
    doc = _validate(ydoc)
    flow = Flow(Path(path), doc, ydoc)
    check_flow(flow, fields)
    return flow
