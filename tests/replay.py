"""Replay real modem transcripts (tests/transcripts/, copied from shared/reference/transcripts
with their source and licence headers) against the real AT channel and drivers over a pty.

Like a captured-packet test: fixture -> parse -> replay -> assert. A transcript is
``> command`` (host) and ``< line`` (modem) lines; everything else (headers, prose, timing
notes, ``=== section`` titles) is skipped. Two transcript spellings are understood:
- the Huawei E1550 trace joins a reply's lines with four spaces (``< E1550    OK``);
- byte-exact excerpts spell line ends as ``<CR>``/``<LF>`` (kept byte for byte, partial
  lines included, e.g. a burst cut off mid-"SMS DONE").

:class:`ReplayModem` answers each command with the modem lines that followed it in the
transcript (first unused match, then the last one again), falls back to a small table for
commands the transcript does not show (``ATE0``, ``AT+CMEE=2`` …), can print lines before a
given command's reply (a boot burst arriving mid-command), and can stream any slice of the
transcript's modem output (a call's URCs) into the port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rawfake import RawFake

HERE = Path(__file__).parent / "transcripts"

_FINAL = re.compile(r"(^|\n)(OK|ERROR|COMMAND NOT SUPPORT|NO CARRIER|BUSY|NO ANSWER|\+CM[ES] ERROR:[^\r]*)\r")
_NOTE = re.compile(r"\s{3,}[\[(].*$")          # "   [excerpt ends here]", "   (41 s call)"


@dataclass
class Step:
    host: bool              # True: a command the host sent; False: bytes the modem sent
    text: str               # the command, or the modem's bytes decoded as latin-1

    @property
    def data(self) -> bytes:
        return self.text.encode("latin-1")


def _modem_bytes(body: str) -> str | None:
    body = _NOTE.sub("", body)
    if "<CR>" in body or "<LF>" in body:
        body = re.sub(r"\.\.\.$", "", body.rstrip())    # "SMS DON..." = the excerpt ended there
        return body.replace("<CR>", "\r").replace("<LF>", "\n")
    lines = [p.strip() for p in body.split("    ") if p.strip()]
    if not lines:
        return None
    return "".join(f"\r\n{line}\r\n" for line in lines)


def parse(name: str, section: str | None = None) -> list[Step]:
    """The steps of transcript ``name`` (optionally only the ``=== …section…`` part)."""
    steps: list[Step] = []
    inside = section is None
    for raw in (HERE / name).read_text(encoding="utf-8").splitlines():
        if raw.startswith("=== "):
            inside = section is None or section in raw
            continue
        if not inside:
            continue
        if raw.startswith("> "):
            cmd = _NOTE.sub("", raw[2:]).replace("<CR>", "").strip()
            steps.append(Step(True, cmd))
        elif raw.startswith("< ") or raw == "<":
            text = _modem_bytes(raw[2:])
            if text:
                steps.append(Step(False, text))
    return steps


def modem_lines(steps: list[Step]) -> list[str]:
    """The modem's output as lines (for assertions and for streaming)."""
    out: list[str] = []
    for s in steps:
        if not s.host:
            out += [line for line in re.split(r"[\r\n]+", s.text) if line.strip()]
    return out


def after(steps: list[Step], command: str) -> list[Step]:
    """The steps that follow the first ``command`` (case-insensitive)."""
    for i, s in enumerate(steps):
        if s.host and s.text.upper() == command.upper():
            return steps[i + 1:]
    raise KeyError(command)


def until_host(steps: list[Step]) -> list[Step]:
    """``steps`` up to the next host command."""
    out = []
    for s in steps:
        if s.host:
            break
        out.append(s)
    return out


DEFAULTS: dict[str, list[str]] = {
    "AT+CPIN?": ["+CPIN: READY", "OK"],
    "AT^CVOICE?": ["^CVOICE:0,8000,16,20", "OK"],       # as in the E1550 trace
}


@dataclass
class ReplayModem:
    steps: list[Step]
    defaults: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULTS))

    def __post_init__(self) -> None:
        self.exchanges: list[tuple[str, str]] = []
        for i, s in enumerate(self.steps):
            if s.host:
                reply = ""
                for t in self.steps[i + 1:]:
                    if t.host:
                        break
                    reply += t.text
                if not _FINAL.search(reply):
                    # parser test tables and quoted replies often leave the final OK out
                    reply += "\r\nOK\r\n"
                self.exchanges.append((s.text.upper(), reply))
        self.used: set[int] = set()
        self.injections: list[tuple[str, str]] = []
        self.fake = RawFake(self._answer)          # the pty plumbing of the channel tests
        self.path = self.fake.path
        self.seen = self.fake.received

    def inject_before(self, command: str, steps_or_text: list[Step] | str) -> None:
        text = steps_or_text if isinstance(steps_or_text, str) else "".join(
            s.text for s in steps_or_text if not s.host)
        self.injections.append((command.upper(), text))

    def write(self, text: str) -> None:
        self.fake.write(text.encode("latin-1"))

    def stream(self, steps: list[Step]) -> None:
        """Write the modem's side of ``steps`` (host commands in between are not sent)."""
        for s in steps:
            if not s.host:
                self.write(s.text)

    def reply_for(self, cmd: str) -> str:
        up = cmd.upper()
        matches = [i for i, (c, _) in enumerate(self.exchanges) if c == up]
        fresh = [i for i in matches if i not in self.used]
        if fresh:
            self.used.add(fresh[0])
            return self.exchanges[fresh[0]][1]
        if matches:
            return self.exchanges[matches[-1]][1]
        lines = self.defaults.get(up, ["OK"])
        return "".join(f"\r\n{line}\r\n" for line in lines)

    def _answer(self, cmd: str) -> bytes:
        if not cmd:
            return b""
        out = ""
        for i, (prefix, text) in enumerate(self.injections):
            if cmd.upper().startswith(prefix):
                del self.injections[i]
                out = text
                break
        return (out + self.reply_for(cmd)).encode("latin-1")

    def close(self) -> None:
        self.fake.unplug()
