"""One simulated modem on the master side of a pseudo-terminal pair.

The program under test opens the slave path (``/dev/pts/N``) with pyserial exactly as it
would open ``/dev/ttyUSB2``. This module does the generic 27.007 part (echo, CMEE, PIN,
identity, registration, SMS, the call timeline driven by a scripted callee); the family's
dialect (sim/dialects.py) decides which URCs announce each step and when audio flows.
It imports nothing from the dialer's own at/ or modems/ layers on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import tty
from dataclasses import dataclass, field
from typing import cast

from .audio_port import SimAudioPort
from .callee import CAUSES, Callee, Key, Scenario
from .sms import SmsMixin, recipient_of

log = logging.getLogger("modem_dialer.sim")


def with_luhn(digits14: str) -> str:
    """A 14-digit TAC+serial plus its Luhn check digit: a well-formed IMEI (TS 23.003)."""
    total = 0
    for i, c in enumerate(reversed(digits14)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits14 + str((10 - total % 10) % 10)


def commands_of(line: str) -> list[str]:
    """The commands of one command line (V.250): extended commands separated by ``;``
    (``AT+QPCMV=0;+QPCMV=1,0;D+33612345678;``), each as ``AT…``; a dial takes the rest of the
    line. A line of one command (``ATD+336…;`` included) is ``[line]``."""
    body, parts = line[2:], []
    while body[:1] in ("+", "^", "$") and ";" in body:
        head, rest = body.split(";", 1)
        if '"' in head or not rest:
            break                       # a quoted ';', or the line's trailing one
        parts.append("AT" + head)
        body = rest
    if not parts or body[:1].upper() not in ("+", "^", "$", "D"):
        return [line]
    return [*parts, "AT" + body]


@dataclass
class SimCall:
    number: str
    callee: Callee
    index: int
    state: str = "dialing"            # dialing | alerting | active | held | ended
    dialed_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None
    ended_by: str | None = None       # "dialer" | "callee" | "network"
    keys_sent: list[str] = field(default_factory=list)
    key_times: list[float] = field(default_factory=list)   # monotonic time each key left the sim
    direction: str = "out"            # "in": someone calls the SIM (SimModem.incoming_call)
    withheld: bool = False            # incoming: caller ID withheld

    @property
    def duration(self) -> int:
        if self.answered_at is None:
            return 0
        return round((self.ended_at or time.monotonic()) - self.answered_at)


class SimModem(SmsMixin):
    def __init__(self, dialect, name: str = "sim0", *, scenario: Scenario | None = None,
                 imei: str = "867698041234561", iccid: str = "89330123456789012345",
                 imsi: str = "208011234567890", operator: str = "Orange F", pin: str | None = None,
                 audio: bool = True, noise: bool = False) -> None:
        self.dialect = dialect
        dialect.modem = self
        self.name = name
        self.scenario = scenario or Scenario()
        self.imei, self.iccid, self.imsi, self.operator = imei, iccid, imsi, operator
        self.pin = pin
        self.pin_ok = pin is None
        self.echo = True                 # real modems start with echo on
        self.cmee = 0
        self.reg_stat = 1                # 1 home, 5 roaming, 2 searching, 3 denied, 0 not registered
        self.act = 7                     # 0 GSM, 2 UTRAN, 7 E-UTRAN
        self.rssi = 20
        self.silent = False              # a hung modem: reads commands, answers nothing
        self.clip = False                # AT+CLIP=1: caller ID on incoming calls
        self.crc = False                 # AT+CRC=1: "+CRING: VOICE" instead of "RING"
        self.refused: list[str] = []     # incoming callers who found the line busy
        self.noise = noise
        self._call: SimCall | None = None     # see the ``call`` property
        self.held: SimCall | None = None     # put on hold by AT+CHLD=2 (a second call may follow)
        self.transfers: list[tuple[str, str]] = []   # (held number, other number) joined by AT+CHLD=4
        self.calls: list[SimCall] = []
        self.commands: list[str] = []
        self.sms: list[tuple[int, str]] = []   # (tpdu_len, hex pdu) received by AT+CMGS
        self.sms_mr = 0
        # Seconds after AT+CMGS when a +CDS delivery report arrives (None: the network sends none).
        self.delivery_report_after: float | None = None
        self.delivery_status = 0         # TP-ST in that report (0 delivered, 0x40+ failed)
        # The SIM answers "+CME ERROR: 14" (SIM busy) until this monotonic time (after plug-in).
        self.sim_busy_until = 0.0
        # command prefix -> unsolicited lines printed just before that command's reply, once
        # (a boot burst arriving while the dialer asks something: see inject_before)
        self.injections: list[tuple[str, list[str]]] = []
        self._buf = b""
        self._sms_len: int | None = None
        self.sms_init()                  # incoming SMS and reports (sim/sms.py)
        self._tasks: set[asyncio.Task] = set()
        self.master = self.slave = -1
        self._held: list[int] = []       # slave sides of unplugged ports, closed by stop()
        self.path = ""
        self.plugged = False
        self.audio = SimAudioPort(self) if (audio and dialect.audio_port) else None

    @property
    def call(self) -> SimCall | None:
        """The call in the foreground (dialing, ringing, active), None when the line is free."""
        return self._call

    @call.setter
    def call(self, value: SimCall | None) -> None:
        self._call = value
        if value is not None and self.audio is not None:
            self.audio.wake()        # its uplink clock sleeps while the line is free

    # ---- life --------------------------------------------------------------------
    async def start(self) -> SimModem:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)   # else the pty echoes what we write before the client opens it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        asyncio.get_running_loop().add_reader(self.master, self._readable)
        self.plugged = True
        if self.audio:
            await self.audio.start()
        if self.noise:
            self._spawn(self._noise_loop())
        return self

    def unplug(self) -> None:
        """Pull the USB stick: both ports vanish at once.

        Only the master sides are closed: that removes the ``/dev/pts/N`` nodes and hangs up
        whoever has them open, as an unplug does. The slave descriptors are kept until
        :meth:`stop`, so that the pty numbers are not handed out again meanwhile: another
        process still retrying the old path (a supervisor polling for the modem, another test
        run's dialer on the same machine) would otherwise open a stranger's new modem, lock it
        and talk to it."""
        if not self.plugged:
            return
        self.plugged = False
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self._held.append(self.slave)
        if self.audio:
            self.audio.close()
            self._held.append(self.audio.slave)
        for t in list(self._tasks):
            t.cancel()

    async def stop(self) -> None:
        self.unplug()
        while self._held:
            with contextlib.suppress(OSError):
                os.close(self._held.pop())
        await asyncio.sleep(0)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- bytes in and out --------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.plugged:
            return
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):
            pass  # nobody reads the port: a real modem drops too

    def send(self, line: str, crcrlf: bool = False) -> None:
        eol = b"\r\r\n" if crcrlf else b"\r\n"
        self.write(eol + line.encode() + eol)

    def urc(self, line: str, crcrlf: bool = False) -> None:
        self.send(line, crcrlf)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.unplug()
            return
        if not data:
            return
        self._buf += data
        while True:
            if self._sms_len is not None:
                if b"\x1a" not in self._buf and b"\x1b" not in self._buf:
                    return
                end = min(i for i in (self._buf.find(b"\x1a"), self._buf.find(b"\x1b")) if i >= 0)
                pdu, cancel = self._buf[:end], self._buf[end:end + 1] == b"\x1b"
                self._buf = self._buf[end + 1:]
                self._sms_done(pdu.decode(errors="replace").strip(), cancel)
                continue
            if b"\r" not in self._buf:
                return
            raw, self._buf = self._buf.split(b"\r", 1)
            cmd = raw.strip(b"\n").decode(errors="replace").strip()
            if not cmd:
                continue
            if self.echo:
                self.write(raw.strip(b"\n") + b"\r")
            self.commands.append(cmd)
            if self.silent:
                continue
            self._command(cmd)

    # ---- commands ----------------------------------------------------------------
    def error(self, text: str = "ERROR", code: int = 100) -> list[str]:
        if self.cmee == 2:
            return [f"+CME ERROR: {text}"]
        if self.cmee == 1:
            return [f"+CME ERROR: {code}"]
        return ["ERROR"]

    def inject_before(self, command: str, lines: list[str]) -> None:
        """Print ``lines`` unasked right before the reply to the next command starting with
        ``command`` (e.g. an EG25-G's boot burst RDY, +CPIN: READY, … during AT+CGSN)."""
        self.injections.append((command.upper(), list(lines)))

    def sim_busy_for(self, seconds: float) -> None:
        """The SIM is still starting: SIM commands answer +CME ERROR: 14 for ``seconds``."""
        self.sim_busy_until = time.monotonic() + seconds

    def _command(self, cmd: str) -> None:
        up = cmd.upper()
        for i, (prefix, lines) in enumerate(self.injections):
            if up.startswith(prefix):
                del self.injections[i]
                for line in lines:
                    self.urc(line)
                break
        if not up.startswith("AT"):
            self._reply(self.dialect.unknown())
            return
        if time.monotonic() < self.sim_busy_until and (
                up.startswith(("AT+CPIN", "AT+CIMI", "AT+CCID", "AT+QCCID", "AT+CICCID", "AT+CRSM"))):
            self._reply(self.error("SIM busy", 14))
            return
        parts = commands_of(cmd)
        if len(parts) > 1:
            self._reply(self._line_of(parts))
            return
        self._reply(self._respond(cmd, up))

    def _respond(self, cmd: str, up: str) -> list[str]:
        out = self.dialect.handle(cmd, up)
        if out is None:
            out = self._generic(cmd, up)
        if out is None:
            out = self.dialect.unknown()
        return out

    def _line_of(self, parts: list[str]) -> list[str]:
        """Commands sent in one line (V.250): run in order, each one's information lines kept,
        one final result: the first that does not end in OK stops the line and is its answer."""
        out: list[str] = []
        for part in parts:
            res = self._respond(part, part.upper())
            if not res or res[-1] != "OK":
                return out + res
            out += res[:-1]
        return [*out, "OK"]

    def _reply(self, lines: list[str]) -> None:
        for line in lines:
            self.send(line)

    def _generic(self, cmd: str, up: str) -> list[str] | None:
        d = self.dialect
        if up in ("AT", "ATZ"):
            return ["OK"]
        if up in ("ATE0", "ATE1"):
            self.echo = up == "ATE1"
            return ["OK"]
        if m := re.fullmatch(r"AT\+CMEE=(\d)", up):
            self.cmee = int(m.group(1))
            return ["OK"]
        if up == "AT+CPIN?":
            return [f"+CPIN: {'READY' if self.pin_ok else 'SIM PIN'}", "OK"]
        if m := re.fullmatch(r'AT\+CPIN="?(\d+)"?', up):
            if self.pin_ok:
                return self.error("operation not allowed", 3)
            if m.group(1) == self.pin:
                self.pin_ok = True
                return ["OK"]
            return self.error("incorrect password", 16)
        if not self.pin_ok and not up.startswith(("AT+CGM", "AT+CGSN", "ATE", "AT+CMEE", "ATI")):
            return self.error("SIM PIN required", 11)
        if up == "AT+CGMI":
            return [d.manufacturer, "OK"]
        if up == "AT+CGMM":
            return [d.model, "OK"]
        if up == "AT+CGMR":
            return [d.revision, "OK"]
        if up in ("AT+CGSN", "AT+GSN"):
            return [self.imei, "OK"]
        if up == "AT+CIMI":
            return [self.imsi, "OK"]
        if up == "AT+CSQ":
            return [f"+CSQ: {self.rssi},99", "OK"]
        if m := re.fullmatch(r"AT\+(CLIP|CRC)=([01])", up):
            setattr(self, m.group(1).lower(), m.group(2) == "1")
            return ["OK"]
        if up == "ATA":
            return self._answer()
        if (sms := self.sms_command(up)) is not None:
            return sms
        if up.startswith(("AT+CREG=", "AT+CEREG=", "AT+CGREG=", "AT+COPS=", "AT+CLIP=", "AT+CRC=",
                          "AT+CMGF=", "AT+CSCS=", "AT+CNMI=", "AT+CSMP=", "AT+CLVL=", "AT+CLIR=")):
            return ["OK"]
        if up in ("AT+CREG?", "AT+CEREG?", "AT+CGREG?"):
            name = up[2:-1]
            return [f"{name}: 2,{self.reg_stat},\"1A2B\",\"01C3D4E5\",{self.act}", "OK"]
        if up == "AT+COPS?":
            if self.reg_stat not in (1, 5):
                return ["+COPS: 0", "OK"]
            return [f'+COPS: 0,0,"{self.operator}",{self.act}', "OK"]
        # what python-gsmmodem's connect() asks (the peer in bench/at_channel.py)
        if up == "AT+CLAC":
            return ["AT+CGMI,AT+CGMM,AT+CGSN,AT+CIMI,AT+CLCC,AT+CMGS,AT+CSQ,AT+VTS", "OK"]
        if up == "AT+CSCA?":
            return ['+CSCA: "+33609001390",145', "OK"]
        if up == "AT+CPMS=?":
            return ['+CPMS: ("ME","SM"),("ME","SM"),("ME","SM")', "OK"]
        if up.startswith("AT+CPMS="):
            return ["+CPMS: 0,10,0,10,0,10", "OK"]
        if up.startswith(("AT+CSMP=", "AT+CVHU=")):
            return ["OK"]
        if up.startswith("AT+CRSM=176,12258"):
            swapped = "".join(self.iccid[i + 1] + self.iccid[i] for i in range(0, 20, 2))
            return [f'+CRSM: 144,0,"{swapped}"', "OK"]
        if up == "AT+CLCC":
            return [*d.clcc_lines(), "OK"]
        if up == "AT+CEER":
            cause = self.calls[-1].cause if self.calls else None
            text = CAUSES.get(cause or 16, "Normal, unspecified")
            return [d.ceer(cause, text), "OK"]
        if m := re.fullmatch(r"ATD([+0-9*#]+)([Ii]?);", cmd):
            return self._dial(m.group(1))
        if up.startswith("ATD"):
            return self.error("invalid characters in dial string", 25)
        if up in ("AT+CHUP", "ATH", "ATH0"):
            return d.hangup(up)
        if m := re.fullmatch(r'AT\+VTS="?([0-9*#A-D])"?(,\d+)?', up):
            return ["OK"] if self.call and self.call.state == "active" else self.error("operation not allowed", 3)
        if m := re.fullmatch(r"AT\+CHLD=(\d+)", up):
            return self._chld(m.group(1))
        if m := re.fullmatch(r"AT\+CMGS=(\d+)", up):
            self._sms_len = int(m.group(1))
            self.write(b"\r\n> ")
            return []
        if up.startswith("AT+CFUN=1,1"):
            self._spawn(self._reset())
            return ["OK"]
        if up.startswith("AT+CFUN"):
            return ["+CFUN: 1", "OK"] if up.endswith("?") else ["OK"]
        return None

    def _sms_done(self, pdu: str, cancel: bool) -> None:
        length, self._sms_len = self._sms_len, None
        if cancel:
            self._reply(["OK"])
            return
        self.sms.append((length or 0, pdu))
        self.sms_mr = (self.sms_mr + 1) % 256
        self._reply([f"+CMGS: {self.sms_mr}", "OK"])
        if self.delivery_report_after is not None:
            self._spawn(self._delivery_report(self.sms_mr, pdu))

    async def _delivery_report(self, mr: int, submit_pdu: str) -> None:
        """The network's SMS-STATUS-REPORT, as AT+CNMI's ds asked (sim/sms.py)."""
        await asyncio.sleep(self.delivery_report_after or 0)
        self.status_report(mr, recipient_of(submit_pdu), self.delivery_status)

    async def _reset(self) -> None:
        await asyncio.sleep(0.05)
        self.echo = True
        self.silent = False
        self.dialect.reset()
        for line in self.dialect.BOOT_LINES:       # RDY, +CPIN: READY … as the real module does
            self.urc(line)

    # ---- the call timeline -------------------------------------------------------
    def _dial(self, number: str) -> list[str]:
        if self.reg_stat not in (1, 5):
            return ["NO CARRIER"] if self.dialect.dial_fails_with_result else self.error("no network service", 30)
        if self.call is not None:
            return self.error("operation not allowed", 3)
        callee = self.scenario.callee_for(number)
        if callee.rings_in_on_dial:
            caller, callee.rings_in_on_dial = callee.rings_in_on_dial, None
            self.incoming_call(caller, ring_for=3.0, hangup_after=1.0)   # first ring before the error
            return self.error("operation not allowed", 3)
        index = self.dialect.call_index if self.held is None else self.held.index + 1
        self.call = SimCall(number, callee, index=index)
        self.calls.append(self.call)
        self._spawn(self._run_call(self.call))
        return ["OK"]

    async def _run_call(self, call: SimCall) -> None:
        # Every step is due at a fixed offset from the ATD (as the callee script says), so the
        # lateness of one sleep under load never adds to the next: the sim adds no time of its own.
        d, c = self.dialect, call.callee
        if c.unplug_after is not None:
            self.get_loop().call_later(c.unplug_after, self.unplug)
        # this task first runs after ATD's OK is written: the dialing URC follows the OK at once
        d.dialing(call)
        if c.outcome == "invalid":
            await self._until(call.dialed_at + min(c.end_after, 0.05))
            return self.end_call(call, 1 if len(call.number) < 6 else 28, "network")
        if c.outcome == "unreachable":
            await self._until(call.dialed_at + c.end_after)
            return self.end_call(call, 27, "network")
        await self._until(call.dialed_at + c.ring_after)
        call.state = "alerting"
        d.alerting(call)
        if c.outcome in ("busy", "rejected", "no_answer"):
            await self._until(call.dialed_at + max(c.end_after, c.ring_after))
            cause = {"busy": 17, "rejected": 21, "no_answer": 19}[c.outcome]
            return self.end_call(call, cause, "callee" if c.outcome == "rejected" else "network")
        answer_due = call.dialed_at + max(c.answer_after, c.ring_after)
        await self._until(answer_due)
        call.state = "active"
        call.answered_at = time.monotonic()
        d.connected(call)
        if self.audio:
            self.audio.call_started(call)
            if c.greeting:
                from .voice import greeting
                self.audio.send_audio(greeting(c.greeting, seed=len(self.calls)))
            for at, secs, hz in c.tones:
                self._spawn(self._talk(call, at, secs, hz))
        for at, key in sorted(c.keys):
            self._spawn(self._press(call, at, key))
        if c.hangup_after is not None:
            await self._until(answer_due + c.hangup_after)
            self.end_call(call, 16, "callee")

    # ---- incoming calls (someone calls the SIM) ----------------------------------------
    RING_INTERVAL = 1.0          # s between two rings (real networks: 3-6 s; the driver copes)

    def incoming_call(self, number: str | None, *, keys: list[tuple[float, str]] | None = None,
                      hangup_after: float | None = None, ring_for: float = 30.0, inband: bool = False) -> SimCall | None:
        """Someone calls this SIM now: it rings in the family's dialect until answered (ATA),
        rejected (CHUP/ATH) or ``ring_for`` s pass. ``keys``: (s after answer, key) the caller
        presses; ``hangup_after``: s after answer when the caller hangs up. None when the line
        is busy (the caller hears busy; no call waiting is simulated)."""
        if self.call is not None or not self.plugged:
            self.refused.append(number or "")
            return None
        callee = Callee(keys=[(t, cast(Key, k)) for t, k in keys or []], hangup_after=hangup_after, inband=inband)
        call = SimCall(number or "", callee, index=self.dialect.call_index, state="incoming",
                       direction="in", withheld=not number)
        self.call = call
        self.calls.append(call)
        self._spawn(self._ring(call, ring_for))
        return call

    async def _ring(self, call: SimCall, ring_for: float) -> None:
        first = True
        while call.state == "incoming" and time.monotonic() - call.dialed_at < ring_for:
            self.dialect.incoming_ring(call, first)
            first = False
            await asyncio.sleep(self.RING_INTERVAL)
        if call.state == "incoming":        # the caller gives up
            self.end_call(call, 16, "callee")

    def _answer(self) -> list[str]:
        call = self.call
        if call is None or call.direction != "in" or call.state != "incoming":
            return ["NO CARRIER"]
        call.state = "active"
        call.answered_at = time.monotonic()
        self._reply(self.dialect.incoming_answered(call))
        if self.audio:
            self.audio.call_started(call)
        for at, key in sorted(call.callee.keys):
            self._spawn(self._press(call, at, key))
        if call.callee.hangup_after is not None:
            self._spawn(self._caller_hangs_up(call, call.answered_at + call.callee.hangup_after))
        return []

    async def _caller_hangs_up(self, call: SimCall, due: float) -> None:
        await self._until(due)
        self.end_call(call, 16, "callee")

    @staticmethod
    async def _until(due: float) -> None:
        """Sleep until monotonic time ``due`` (at once if it has passed)."""
        await asyncio.sleep(max(0.0, due - time.monotonic()))

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def _press(self, call: SimCall, at: float, key: str) -> None:
        await asyncio.sleep(at)
        if self.call is not call or call.state != "active":
            return
        call.keys_sent.append(key)
        call.key_times.append(time.monotonic())
        if call.callee.inband and self.audio:
            self.audio.send_tone(key, call.callee.key_ms)
        else:
            self.dialect.key(key)

    def press(self, key: str) -> bool:
        """The callee presses ``key`` now (interactive ``flow try``); False if no call is up."""
        call = self.call
        if call is None or call.state != "active":
            return False
        call.keys_sent.append(key)
        if call.callee.inband and self.audio:
            self.audio.send_tone(key, call.callee.key_ms)
        else:
            self.dialect.key(key)
        return True

    async def _talk(self, call: SimCall, at: float, secs: float, hz: float) -> None:
        from .voice import sine
        await asyncio.sleep(at)
        if self.call is call and call.state == "active" and self.audio:
            self.audio.send_audio(sine(hz, int(secs * 1000)))

    # ---- hold and explicit call transfer (27.007 +CHLD, 22.030) ---------------------
    def _chld(self, n: str) -> list[str]:
        active, held = self.call, self.held
        if active is not None and active.state != "active":
            active = None
        if n == "2":                      # hold the active call / retrieve (swap with) the held one
            if active is None and held is None:
                return self.error("operation not allowed", 3)
            if active is not None:
                active.state = "held"
            if held is not None:
                held.state = "active"
            self.call, self.held = held, active
            if self.call is None and self.held is not None and self.audio:
                self.audio.call_ended()   # the held call's downlink so far (audio stops while held)
            return ["OK"]
        if n == "4":                      # ECT: join the held and the active call, drop out
            if active is None or held is None:
                return self.error("operation not allowed", 3)
            self.transfers.append((held.number, active.number))
            self._reply(["OK"])
            for c in (held, active):
                c.ended_by = "transfer"
                self.end_call(c, 16, "transfer", local=True)
            return []
        if n in ("0", "1") or (n.startswith("1") and len(n) == 2):
            if n == "0":
                victims = [held] if held else []
            elif n == "1":
                victims = [active] if active else []
            else:
                victims = [c for c in (self.call, held) if c is not None and c.index == int(n[1])]
            self._reply(["OK"])
            for c in victims:
                c.ended_by = "dialer"
                self.end_call(c, 16, "dialer", local=True)
            return []
        return self.error("operation not supported", 4)

    def end_call(self, call: SimCall, cause: int, by: str, *, local: bool = False) -> None:
        """End ``call`` (idempotent). ``local``: the dialer hung up (the dialect has replied)."""
        if call.state == "ended":
            return
        was_active = call.state == "active"
        call.state = "ended"
        call.ended_at = time.monotonic()
        call.cause = cause
        call.ended_by = by
        if self.held is call:
            self.held = None
            self.dialect.ended(call, True, local)
            return
        if self.call is call:
            self.call = None
        if self.audio:
            self.audio.call_ended()
        self.dialect.ended(call, was_active, local)

    def local_hangup(self) -> SimCall | None:
        call = self.call or self.held
        if call is not None:
            call.ended_by = "dialer"
        return call

    # ---- noise -------------------------------------------------------------------
    async def _noise_loop(self) -> None:
        while self.plugged:
            await asyncio.sleep(0.15)
            for line in self.dialect.noise_lines():
                self.urc(line)
