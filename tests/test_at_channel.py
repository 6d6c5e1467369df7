"""The AT channel over a real pty with pyserial-asyncio: framing, finals, URCs, timeouts, unplug."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import wait_until
from rawfake import RawFake

from modem_dialer.at.channel import ATChannel
from modem_dialer.at.errors import (
    ATCommandError,
    CMEError,
    CMSError,
    CommandTimeout,
    NotSupported,
    PortLost,
    PortOpenError,
)


async def open_fake(reply):
    fake = RawFake(reply)
    ch = await ATChannel.open(fake.path, name="t")
    return fake, ch


async def test_simple_command_and_echo_tolerated():
    fake, ch = await open_fake(lambda c: (c.encode() + b"\r\r\n867698041234560\r\n\r\nOK\r\n") if c == "AT+CGSN" else b"\r\nOK\r\n")
    r = await ch.command("AT+CGSN")
    assert r.lines == ["867698041234560"] and r.final == "OK"
    await ch.close()
    fake.unplug()


async def test_urc_in_the_middle_of_a_response_is_delivered_not_mixed():
    def reply(c):
        if c == "AT+CLCC":
            return (b'\r\n+CLCC: 1,0,0,1,0,"",128\r\n\r\n+QTONEDET: 49\r\n'
                    b'\r\n+CLCC: 2,0,0,0,0,"+15551234567",145\r\n\r\nOK\r\n')
        return b"\r\nOK\r\n"
    fake, ch = await open_fake(reply)
    got: list[str] = []
    ch.subscribe("+QTONEDET:", got.append)
    r = await ch.command("AT+CLCC")
    assert r.lines == ['+CLCC: 1,0,0,1,0,"",128', '+CLCC: 2,0,0,0,0,"+15551234567",145']
    assert got == ["+QTONEDET: 49"]
    await ch.close()
    fake.unplug()


async def test_back_to_back_urcs_in_one_write_are_each_delivered():
    fake, ch = await open_fake(lambda c: b"\r\nOK\r\n")
    got: list[str] = []
    ch.subscribe(("^ORIG", "^CONF", "^CONN", "^CEND"), got.append)
    fake.write(b"\r\nOK\r\n\r\n^ORIG:1,0\r\n\r\n^CONF:1\r\n\r\n^CONN:1,0\r\n\r\n^CEND:1,5,29,16\r\n")
    await wait_until(lambda: len(got) >= 4, 10)  # the pty hands the bytes over when the OS gets to it
    await asyncio.sleep(0.05)                    # (a fifth, were one made up, would come now)
    assert got == ["^ORIG:1,0", "^CONF:1", "^CONN:1,0", "^CEND:1,5,29,16"]
    await ch.close()
    fake.unplug()


async def test_the_same_urc_again_reaches_whoever_subscribes_meanwhile():
    """A URC's subscribers are remembered per line text (a call's URCs repeat on every call):
    subscribing or unsubscribing between two identical lines changes who gets the second."""
    fake, ch = await open_fake(lambda c: b"\r\nOK\r\n")
    first: list[str] = []
    second: list[str] = []
    remove = ch.subscribe("^CONN:", first.append)
    fake.write(b"\r\n^CONN:1,0\r\n")
    await wait_until(lambda: len(first) == 1, 10)
    ch.subscribe(("^CONF:", "^CONN:"), second.append)
    remove()
    fake.write(b"\r\n^CONN:1,0\r\n")
    await wait_until(lambda: len(second) == 1, 10)
    await ch.command("AT")      # answered after the line: nothing else was on its way
    assert first == ["^CONN:1,0"] and second == ["^CONN:1,0"]
    await ch.close()
    fake.unplug()


@pytest.mark.parametrize(("final", "kind"), [
    (b"ERROR", ATCommandError), (b"+CME ERROR: SIM not inserted", CMEError),
    (b"+CMS ERROR: 500", CMSError), (b"COMMAND NOT SUPPORT", NotSupported),
])
async def test_error_finals_are_typed(final, kind):
    fake, ch = await open_fake(lambda c: b"\r\n" + final + b"\r\n")
    with pytest.raises(kind) as info:
        await ch.command("AT+CPIN?")
    assert info.value.final == final.decode()
    r = await ch.command("AT+CPIN?", check=False)
    assert r.final == final.decode()
    await ch.close()
    fake.unplug()


async def test_call_results_end_atd_but_are_urcs_otherwise():
    fake, ch = await open_fake(lambda c: b"\r\nBUSY\r\n" if c.startswith("ATD") else b"\r\nNO CARRIER\r\n\r\nOK\r\n")
    seen: list[str] = []
    ch.subscribe(("NO CARRIER", "BUSY"), seen.append)
    with pytest.raises(ATCommandError) as info:
        await ch.command("ATD+33612345678;")
    assert info.value.final == "BUSY"
    r = await ch.command("AT+CSQ")           # NO CARRIER before its OK is a URC
    assert r.final == "OK" and seen == ["NO CARRIER"]
    await ch.close()
    fake.unplug()


async def test_one_command_in_flight_queue_keeps_order():
    fake, ch = await open_fake(lambda c: f"\r\n{c[2:]}\r\n\r\nOK\r\n".encode())
    results = await asyncio.gather(*(ch.command(f"AT+X{i}", prefix="") for i in range(20)))
    assert [r.lines for r in results] == [[f"+X{i}"] for i in range(20)]
    assert fake.received == [f"AT+X{i}" for i in range(20)]
    await ch.close()
    fake.unplug()


async def test_timeout_is_typed_and_channel_stays_usable():
    fake, ch = await open_fake(lambda c: None if c == "AT+SLOW" else b"\r\nOK\r\n")
    t = time.monotonic()
    with pytest.raises(CommandTimeout, match="AT\\+SLOW"):
        await ch.command("AT+SLOW", timeout=0.2)
    assert time.monotonic() - t < 0.5
    assert (await ch.command("AT")).final == "OK"
    await ch.close()
    fake.unplug()


async def test_sms_prompt():
    def reply(c):
        if c.startswith("AT+CMGS"):
            return b"\r\n> "
        if c.endswith("\x1a") or "\x1a" in c:
            return b"\r\n+CMGS: 7\r\n\r\nOK\r\n"
        return None
    fake = RawFake(reply)
    # the payload ends with Ctrl-Z, not CR: answer when it arrives
    orig = fake._read

    def read():
        orig()
        if b"\x1a" in fake.buf:
            fake.buf = b""
            fake.write(b"\r\n+CMGS: 7\r\n\r\nOK\r\n")
    asyncio.get_running_loop().remove_reader(fake.master)
    asyncio.get_running_loop().add_reader(fake.master, read)
    ch = await ATChannel.open(fake.path)
    r = await ch.command_with_prompt("AT+CMGS=18", b"0011000B913316325476F80000AA05C8329BFD06")
    assert r.first("+CMGS:") == "7"
    await ch.close()
    fake.unplug()


async def test_unplug_during_command_raises_port_lost_at_once_and_fires_event():
    fake, ch = await open_fake(lambda c: None)
    lost: list = []
    ch.on_lost(lost.append)
    task = asyncio.create_task(ch.command("AT+CSQ", timeout=30))
    await asyncio.sleep(0.05)
    t = time.monotonic()
    fake.unplug()
    with pytest.raises(PortLost):
        await task
    assert time.monotonic() - t < 1.0
    assert ch.lost.is_set() and len(lost) == 1
    with pytest.raises(PortLost):
        await ch.command("AT")


async def test_control_characters_never_reach_the_port():
    fake, ch = await open_fake(lambda c: b"\r\nOK\r\n")
    for bad in ("AT\rATH", "AT+CMGS\x1a", "AT\nX"):
        with pytest.raises(ValueError):
            await ch.command(bad)
    assert fake.received == []
    await ch.close()
    fake.unplug()


async def test_open_errors_name_the_port(tmp_path):
    with pytest.raises(PortOpenError, match="/dev/ttyNOPE9: no such port"):
        await ATChannel.open("/dev/ttyNOPE9")
    fake = RawFake(lambda c: b"\r\nOK\r\n")
    ch = await ATChannel.open(fake.path)
    with pytest.raises(PortOpenError, match=f"{fake.path}: port is busy"):
        await ATChannel.open(fake.path)
    await ch.close()
    fake.unplug()


async def test_garbage_between_lines_does_not_break_the_channel():
    fake, ch = await open_fake(lambda c: b"\xff\xfe\x00junk\r\n\r\nOK\r\n")
    r = await ch.command("AT+CSQ", check=False)
    assert r.final == "OK"
    await ch.close()
    fake.unplug()


async def test_a_cancelled_commands_late_final_is_never_the_next_commands():
    """Issue 10: a command cancelled after it was written (a call torn down while its audio
    was being routed) is still answered by the modem, in order, before the next command. Its
    late ``OK`` used to complete the next command (AT+CHUP, AT+QPCMV?) with the wrong answer,
    and that command's own lines and final were then left unclaimed."""
    def reply(c: str) -> bytes | None:
        if c == "AT+QPCMV=0":
            return None                  # still working on it when the next command comes
        if c == "AT+QPCMV?":             # the late answer to the first, then this one's
            return b"\r\nOK\r\n\r\n+QPCMV: 1,0\r\n\r\nOK\r\n"
        return b"\r\nOK\r\n"
    fake, ch = await open_fake(reply)
    first = asyncio.create_task(ch.command("AT+QPCMV=0"))
    await wait_until(lambda: "AT+QPCMV=0" in fake.received, 10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    r = await ch.command("AT+QPCMV?", timeout=10)
    assert (r.lines, r.final) == (["+QPCMV: 1,0"], "OK")
    assert ch.unsolicited == []
    assert (await ch.command("AT")).final == "OK"
    await ch.close()
    fake.unplug()


async def test_a_cancelled_command_never_answered_stops_counting_at_its_timeout():
    fake, ch = await open_fake(lambda c: None if c == "AT+SLOW" else b"\r\nOK\r\n")
    first = asyncio.create_task(ch.command("AT+SLOW", timeout=0.2))
    await wait_until(lambda: "AT+SLOW" in fake.received, 10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # the orphan is dropped at its own timeout, not kept: the next command gets its answer
    await wait_until(lambda: ch._orphan is None, 10)
    assert (await ch.command("AT", timeout=10)).final == "OK"
    await ch.close()
    fake.unplug()
