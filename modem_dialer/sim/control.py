"""Control a running simulated bank: one JSON object per line on a Unix socket.

Generic on purpose: a command is a name and its handler in :data:`COMMANDS`; the reply is
one JSON line (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). Each sim feature
adds its commands to the one table: incoming calls (``call``, ``calls``) and incoming SMS and
delivery reports (``sms``, ``report``, ``sms_log``).

``modem-dialer sim … --control PATH`` listens; ``modem-dialer sim-ctl PATH call --from …`` or
``sim-ctl PATH sms --from … --text …`` (or ``socat``/``nc -U``) talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .callee import InboundCall
from .sms import InboundSms

Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]
MAX_LINE = 64 * 1024
MAX_REPLY = 64 * 1024 * 1024


def cmd_call(bank: Any, req: dict[str, Any]) -> dict[str, Any]:
    """Someone calls a SIM now: ``{"cmd": "call", "from": "+33…" | null, "modem": NAME,
    "keys": [[s, key], …], "hangup_after": s, "ring_for": s}``."""
    body = {k: v for k, v in req.items() if k != "cmd"}
    call = InboundCall.from_dict(body)
    modem = bank.start_inbound(call)
    return {"modem": modem.name, "placed": modem.call is not None and modem.call.direction == "in"}


def cmd_calls(bank: Any, req: dict[str, Any]) -> dict[str, Any]:
    """What each SIM has seen: calls (direction, number, state, keys sent, who ended it), and
    when each was dialed and ended (``dialed_at``, ``ended_at``: the machine's monotonic clock,
    CLOCK_MONOTONIC, the same in every process of the machine, so that the calls of several
    simulators can be set side by side; ``ended_at`` null while the call is up)."""
    return {"modems": {m.name: [{"direction": c.direction, "number": c.number, "state": c.state,
                                  "keys": c.keys_sent, "ended_by": c.ended_by,
                                  "dialed_at": c.dialed_at, "ended_at": c.ended_at} for c in m.calls]
                       for m in bank.modems}}


def cmd_sms(bank: Any, req: dict[str, Any]) -> dict[str, Any]:
    """A message for a SIM now: ``{"cmd": "sms", "from": "+33…" | "", "text": "STOP", "modem": NAME,
    "encoding": "ucs2", "ref_bits": 16, "pdu": "…hex…"}`` (sim/sms.InboundSms)."""
    sms = InboundSms.from_dict({k: v for k, v in req.items() if k != "cmd"})
    modem = bank.send_sms(sms)
    return {"modem": modem.name, "parts": len(sms.pdus())}


def cmd_report(bank: Any, req: dict[str, Any]) -> dict[str, Any]:
    """A delivery report for the last SMS a SIM sent: ``{"cmd": "report", "modem": NAME, "status": 0}``."""
    modem = bank.modem_for(req.get("modem"))
    if not modem.sms:
        raise ValueError(f"{modem.name} has sent no SMS to report on")
    from .sms import recipient_of

    status = int(req.get("status", 0))
    modem.status_report(modem.sms_mr, recipient_of(modem.sms[-1][1]), status)
    return {"modem": modem.name, "reference": modem.sms_mr, "status": status}


def cmd_sms_sent(bank: Any, req: dict[str, Any]) -> dict[str, Any]:
    """What each SIM has sent (hex PDUs) and received."""
    return {"modems": {m.name: {"sent": [pdu for _, pdu in m.sms], "received": m.inbound} for m in bank.modems}}


COMMANDS: dict[str, Handler] = {"call": cmd_call, "calls": cmd_calls,
                                "sms": cmd_sms, "report": cmd_report, "sms_log": cmd_sms_sent}


def handle(bank: Any, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        return {"ok": False, "error": "send an object with a 'cmd' (one of " + ", ".join(COMMANDS) + ")"}
    handler = COMMANDS.get(req["cmd"])
    if handler is None:
        return {"ok": False, "error": f"unknown cmd {req['cmd']!r} (one of {', '.join(COMMANDS)})"}
    try:
        return {"ok": True, **handler(bank, req)}
    except (ValueError, TypeError, KeyError) as exc:
        return {"ok": False, "error": str(exc)}


class ControlServer:
    def __init__(self, bank: Any, path: str | Path) -> None:
        self.bank = bank
        self.path = Path(path)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> ControlServer:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        self.path.chmod(0o600)       # whoever can write here can make the SIMs ring or receive anything
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(handle(self.bank, line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def send(path: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request to a running sim's control socket; its reply."""
    # a reply may be long (``calls`` after thousands of calls); requests stay capped by MAX_LINE
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=MAX_REPLY), timeout)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), timeout))
    finally:
        writer.close()
