"""The AT channel: one serial port, one command in flight, URCs split off by prefix.

Built on a pyserial-asyncio Protocol so every received chunk is split into lines and
dispatched synchronously: a URC that arrives in the middle of a command's response goes
to its subscribers and never into the response, and several URCs in one read are each
delivered (python-gsmmodem merges them and loses all but the first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import serial
import serial_asyncio

from .errors import (
    ATCommandError,
    CMEError,
    CMSError,
    CommandTimeout,
    NotSupported,
    PortLost,
    PortOpenError,
)
from .line_splitter import CALL_RESULTS, LineSplitter, is_final, looks_unsolicited, response_prefix
from .options import SerialOptions

log = logging.getLogger("modem_dialer.at")
# Every line to and from each modem, at DEBUG (`-vv`): "gsm0 > AT+CGSN", "gsm0 < OK". Guarded
# by isEnabledFor (a cached lookup) so nothing is formatted when it is off.
traffic = logging.getLogger("modem_dialer.at.traffic")


def _shown(text: str) -> str:
    """Control characters escaped: a line from a modem (or an SMS text) cannot forge log lines."""
    return text.encode("unicode_escape").decode("ascii")

UrcCallback = Callable[[str], None]
# How many distinct lines ATChannel remembers the subscribers of (then it starts afresh).
_SUBS_MEMO = 256
# the last command of a line of commands is a dial (AT+QPCMV=0;+QPCMV=1,0;D+336…;)
_ENDS_WITH_DIAL = re.compile(r";D[^;]*;?$")


def _direct_read(fd: int) -> Callable[[int], bytes]:
    """What the transport calls when the port is readable, instead of pyserial's ``read``:
    one ``read`` on the (non-blocking) descriptor. pyserial's does a ``select`` first and
    builds a timeout object and a bytearray, on every line burst of every modem. Same
    contract: nothing available gives b"", a vanished device raises SerialException (the
    transport then reports the port lost)."""

    def read(size: int) -> bytes:
        try:
            data = os.read(fd, size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise serial.SerialException(f"read failed: {exc}") from None
        if not data:
            raise serial.SerialException("device reports readiness to read but returned no data "
                                         "(device disconnected or multiple access on port?)")
        return data
    return read


@dataclass
class ATResponse:
    command: str
    lines: list[str]
    final: str

    def first(self, prefix: str) -> str | None:
        """The value after ``prefix`` on the first line that starts with it."""
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return None


@dataclass
class _Pending:
    command: str
    prefix: str | None
    call_results: bool
    future: asyncio.Future
    lines: list[str] = field(default_factory=list)
    prompt: asyncio.Future | None = None
    expiry: asyncio.TimerHandle | None = None   # set while it is an orphan (see _orphan)


def holders_of(port: str) -> list[str]:
    """Processes that have ``port`` open, as ``name[pid]`` (best effort, Linux /proc)."""
    try:
        target = os.path.realpath(port)
    except OSError:
        return []
    found = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                if os.path.realpath(os.path.join(fd_dir, fd)) == target:
                    with open(f"/proc/{pid}/comm") as f:
                        found.append(f"{f.read().strip()}[{pid}]")
                    break
        except OSError:
            continue
    return found


class ATChannel(asyncio.Protocol):
    """One modem's AT port."""

    def __init__(self, port: str, name: str | None = None) -> None:
        self.port = port
        self.name = name or port
        self.transport: asyncio.Transport | None = None
        self._splitter = LineSplitter()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        # A command cancelled after it was written (its caller's task was cancelled: a call
        # torn down, a campaign stopping). The modem still answers it, in order, before the
        # next command: its final (and its prefixed lines, its echo) are taken here so that
        # they are never matched to the next command, until its own timeout runs out.
        self._orphan: _Pending | None = None
        self._subs: list[tuple[tuple[str, ...], UrcCallback]] = []
        self._all_prefixes: tuple[str, ...] = ()      # every subscription's prefixes, together
        # line -> its subscribers, for the lines seen since the subscriptions last changed: a
        # call's URCs are the same few lines on every call (^ORIG:1,0, ^CONF:1, ^CONN:1,0 …),
        # so each is matched against every subscription once, not on every call
        self._subs_of: dict[str, list[UrcCallback]] = {}
        self._lost_callbacks: list[Callable[[Exception | None], None]] = []
        self.lost: asyncio.Event = asyncio.Event()
        self.lost_error: Exception | None = None
        self.unsolicited: list[str] = []   # recent lines nobody claimed (for diagnostics)
        self.commands_sent = 0
        self._connected = asyncio.Event()

    # ---- opening and closing -------------------------------------------------------
    @classmethod
    async def open(cls, port: str, baudrate: int = 115200, *, name: str | None = None,
                   exclusive: bool = True) -> ATChannel:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await serial_asyncio.create_serial_connection(
                loop, lambda: cls(port, name), port, baudrate=baudrate, exclusive=exclusive)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortOpenError(cls._open_message(port, exc), port=port) from None
        # connection_made runs on the next loop iteration: wait for it
        await asyncio.wait_for(proto._connected.wait(), 5)
        return proto

    @classmethod
    async def connect(cls, opts: SerialOptions, *, name: str | None = None) -> ATChannel:
        """Open the port of a ``modems:`` entry: all the AT layer reads of the config file."""
        return await cls.open(opts.port, opts.baudrate, name=name)

    @staticmethod
    def _open_message(port: str, exc: Exception) -> str:
        text = str(exc)
        if not os.path.exists(port):
            return f"{port}: no such port"
        if "lock" in text.lower() or "busy" in text.lower():
            who = holders_of(port)
            held = f" (held by {', '.join(who)})" if who else ""
            return f"{port}: port is busy{held}"
        if "ermission" in text:
            return f"{port}: permission denied (add the user to the port's group, e.g. dialout)"
        return f"{port}: cannot open: {text}"

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        await asyncio.sleep(0)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.lost.is_set()

    # ---- asyncio.Protocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ser = getattr(transport, "serial", None)
        fd = getattr(ser, "fd", None)
        if isinstance(fd, int):
            ser.read = _direct_read(fd)  # type: ignore[union-attr]
        self._connected.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_error = exc
        self.lost.set()
        pending = self._pending
        if pending is not None:
            error = PortLost(f"{self.port}: port lost during {pending.command}"
                             + (f": {exc}" if exc else ""), port=self.port, command=pending.command)
            for fut in (pending.future, pending.prompt):
                if fut is not None and not fut.done():
                    fut.set_exception(error)
        for cb in list(self._lost_callbacks):
            try:
                cb(exc)
            except Exception:  # a subscriber bug must not hide the loss from the others
                log.exception("%s: lost-callback failed", self.name)

    def data_received(self, data: bytes) -> None:
        logging_on = traffic.isEnabledFor(logging.DEBUG)
        for line in self._splitter.feed(data):
            if logging_on:
                traffic.debug("%s < %s", self.name, _shown(line), extra={"modem": self.name})
            self._line(line)
        pending = self._pending
        if pending is not None and pending.prompt is not None and not pending.prompt.done():
            if self._splitter.partial.strip(b"\r\n").startswith(b">"):
                self._splitter.buf = b""
                if logging_on:
                    traffic.debug("%s < > (prompt)", self.name, extra={"modem": self.name})
                pending.prompt.set_result(None)

    # ---- dispatch ------------------------------------------------------------------
    def _urc_subscribers(self, line: str) -> list[UrcCallback]:
        # one C-level test against every subscribed prefix first: most lines (finals, answers)
        # match none, and a URC is then matched against each subscription (once per line
        # text, see _subs_of; the list returned is shared: callers only iterate it)
        if not line.startswith(self._all_prefixes):
            return []
        subs = self._subs_of.get(line)
        if subs is None:
            subs = [cb for prefixes, cb in self._subs if line.startswith(prefixes)]
            if len(self._subs_of) >= _SUBS_MEMO:
                self._subs_of.clear()        # lines that vary (a duration, a level): bounded
            self._subs_of[line] = subs
        return subs

    def _line(self, line: str) -> None:
        orphan = self._orphan
        if orphan is not None and self._orphan_line(orphan, line):
            return
        pending = self._pending
        if pending is not None:
            if line == pending.command or (pending.command.startswith("AT") and line == pending.command.rstrip()):
                return  # echo of our own command (echo still on)
            if pending.prefix and line.startswith(pending.prefix):
                pending.lines.append(line)
                return
            if is_final(line, call_results=pending.call_results):
                self._pending = None
                if not pending.future.done():
                    pending.future.set_result((pending.lines, line))
                return
        subs = self._urc_subscribers(line)
        if subs:
            for cb in subs:
                try:
                    cb(line)
                except Exception:  # a driver bug costs one URC, never the channel
                    log.exception("%s: URC handler failed for %r", self.name, line)
            return
        if pending is not None and line not in CALL_RESULTS and not looks_unsolicited(line):
            pending.lines.append(line)
            return
        self.unsolicited.append(line)
        del self.unsolicited[:-50]
        log.debug("%s: unclaimed line %r", self.name, line)

    def _orphan_line(self, orphan: _Pending, line: str) -> bool:
        """Whether ``line`` was the cancelled command's (and is dropped)."""
        if line == orphan.command or line == orphan.command.rstrip():
            return True
        if orphan.prefix and line.startswith(orphan.prefix):
            return True
        if is_final(line, call_results=orphan.call_results):
            self._drop_orphan()
            log.debug("%s: %r was the final of the cancelled %s", self.name, line, orphan.command)
            # a cancelled ATD's NO CARRIER/BUSY still tells the driver how the call went
            return line not in CALL_RESULTS
        return False

    def _drop_orphan(self) -> None:
        orphan, self._orphan = self._orphan, None
        if orphan is not None and orphan.expiry is not None:
            orphan.expiry.cancel()

    def subscribe(self, prefixes: str | Iterable[str], callback: UrcCallback) -> Callable[[], None]:
        """Deliver every line starting with one of ``prefixes`` to ``callback``.

        Returns a function that removes the subscription.
        """
        key = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        entry = (key, callback)
        self._subs.append(entry)
        self._subscriptions_changed()

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
                self._subscriptions_changed()
        return unsubscribe

    def _subscriptions_changed(self) -> None:
        self._all_prefixes = tuple({p for prefixes, _ in self._subs for p in prefixes})
        self._subs_of = {}       # a new dict: a dispatch under way keeps the list it took

    def on_lost(self, callback: Callable[[Exception | None], None]) -> None:
        self._lost_callbacks.append(callback)

    # ---- commands ------------------------------------------------------------------
    async def command(self, command: str, timeout: float = 5.0, *, prefix: str | None = None,
                      check: bool = True) -> ATResponse:
        """Send ``command`` and wait for its final result.

        Raises CMEError/CMSError/NotSupported/ATCommandError for failing finals (unless
        ``check`` is false), CommandTimeout, PortLost.
        """
        return await self._run(command, timeout, prefix, check, payload=None)

    async def command_with_prompt(self, command: str, payload: bytes, timeout: float = 30.0) -> ATResponse:
        """``AT+CMGS=…`` style: send the command, wait for ``> ``, send payload + Ctrl-Z."""
        return await self._run(command, timeout, None, True, payload=payload)

    async def _run(self, command: str, timeout: float, prefix: str | None, check: bool,
                   payload: bytes | None) -> ATResponse:
        if "\r" in command or "\n" in command or "\x1a" in command:
            raise ValueError(f"control character in AT command {command!r}")
        async with self._lock:
            if self.lost.is_set() or self.transport is None or self.transport.is_closing():
                raise PortLost(f"{self.port}: port is not open", port=self.port, command=command)
            loop = asyncio.get_running_loop()
            upper = command.upper()
            pending = _Pending(
                command=command,
                prefix=prefix if prefix is not None else response_prefix(command),
                # a dial, alone or last in a line of commands (ModemDriver.dial_setup)
                call_results=upper.startswith(("ATD", "ATA")) or _ENDS_WITH_DIAL.search(upper) is not None,
                future=loop.create_future(),
                prompt=loop.create_future() if payload is not None else None,
            )
            self._pending = pending
            self.commands_sent += 1
            # A timer instead of asyncio.wait_for: no extra task per command (it halves the
            # cost of a round trip, which matters when 64 modems are polled).
            timed_out = False

            def expire() -> None:
                nonlocal timed_out
                timed_out = True
                for fut in (pending.prompt, pending.future):
                    if fut is not None and not fut.done():
                        fut.cancel()

            timer = loop.call_later(timeout, expire)
            try:
                if traffic.isEnabledFor(logging.DEBUG):
                    traffic.debug("%s > %s", self.name, _shown(command), extra={"modem": self.name})
                self._write(command.encode("ascii") + b"\r")
                if pending.prompt is not None and payload is not None:
                    await pending.prompt
                    if traffic.isEnabledFor(logging.DEBUG):
                        traffic.debug("%s > %s<Ctrl-Z>", self.name, _shown(payload.decode("ascii", "replace")),
                                      extra={"modem": self.name})
                    self._write(payload + b"\x1a")
                lines, final = await pending.future
            except asyncio.CancelledError:
                if not timed_out:
                    if self._pending is pending and not self.lost.is_set():
                        # written and unanswered: its answer is still on its way
                        self._drop_orphan()
                        self._orphan = pending
                        pending.expiry = loop.call_at(timer.when(), self._expire_orphan, pending)
                    raise
                raise CommandTimeout(f"{self.port}: no answer to {command} within {timeout:g} s",
                                     port=self.port, command=command) from None
            finally:
                timer.cancel()
                if self._pending is pending:
                    self._pending = None
        if check and final != "OK":
            raise self._error(command, final, lines)
        return ATResponse(command, lines, final)

    def _expire_orphan(self, orphan: _Pending) -> None:
        if self._orphan is orphan:
            self._orphan = None
            log.debug("%s: no answer to the cancelled %s within its timeout", self.name, orphan.command)

    def _write(self, data: bytes) -> None:
        """Write now if nothing is queued, else queue behind what the transport holds.

        pyserial-asyncio's ``write`` always defers to a writer callback: one more loop turn
        (and two epoll_ctl calls) before each command leaves, which under load is paid by
        every call's critical path (ATD, AT+CEER). A short command fits the tty buffer.
        """
        transport = self.transport
        assert transport is not None
        ser = getattr(transport, "serial", None)
        fd = getattr(ser, "fd", None)
        if isinstance(fd, int) and transport.get_write_buffer_size() == 0:
            try:
                n = os.write(fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                n = 0                 # the transport's own write reports the failure
            data = data[n:]
            if not data:
                return
        transport.write(data)

    def _error(self, command: str, final: str, lines: list[str]) -> ATCommandError:
        kind: type[ATCommandError] = ATCommandError
        if final.startswith("+CME ERROR:"):
            kind = CMEError
        elif final.startswith("+CMS ERROR:"):
            kind = CMSError
        elif final == "COMMAND NOT SUPPORT":
            kind = NotSupported
        return kind(final, port=self.port, command=command, lines=lines)
