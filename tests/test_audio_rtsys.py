"""The PCM writer's system calls (audio/rtsys.py): through libc with the GIL kept, or through
os (``KEEP_GIL = False``), the same results on a real pseudo-terminal."""

from __future__ import annotations

import os
import select
import tty
from collections.abc import Iterator

import pytest

from modem_dialer.audio import rtsys
from modem_dialer.audio.rtsys import RtSys


@pytest.fixture(params=[True, False], ids=["libc", "os"])
def keep_gil(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    monkeypatch.setattr(rtsys, "KEEP_GIL", request.param)
    yield request.param


def _pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    os.set_blocking(slave, False)
    return master, slave


def test_libc_is_used_on_linux() -> None:
    import sys
    if sys.platform.startswith("linux"):
        assert rtsys._libc is not None


def test_write_read_poll_outq(keep_gil: bool) -> None:
    rt = RtSys()
    master, slave = _pty()
    try:
        rt.watch([master, slave])
        assert rt.readable() == []
        assert rt.read(master) is None                 # nothing yet: not an error
        frame = bytes(range(256)) + bytes(64)
        assert rt.write(slave, frame) == len(frame)
        assert rt.outq(slave) >= 0
        # a pty passes the bytes on through a kernel worker: wait for them (the event, no sleep)
        assert select.select([master], [], [], 30)[0]
        assert rt.readable() == [master]
        got = b""
        while len(got) < len(frame):
            assert select.select([master], [], [], 30)[0]
            got += rt.read(master) or b""
        assert got == frame
        rt.watch([slave])
        assert rt.readable() == []
    finally:
        os.close(master)
        os.close(slave)


def test_full_tty_and_closed_descriptor(keep_gil: bool) -> None:
    rt = RtSys()
    master, slave = _pty()
    try:
        # nobody reads: the tty fills up and a write takes nothing (EAGAIN is 0, not an error);
        # a moment later it may take more again (the pty's kernel worker moves bytes on)
        total = 0
        while (n := rt.write(slave, bytes(4096))) > 0:
            total += n
        assert n == 0 and total > 0
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(OSError):
        rt.write(slave, b"x")
    with pytest.raises(OSError):
        rt.read(slave)
    assert rt.outq(slave) == 0


def test_hung_up_peer_is_readable_and_ends(keep_gil: bool) -> None:
    rt = RtSys()
    master, slave = _pty()
    rt.watch([slave])
    os.close(master)
    try:
        assert rt.readable() == [slave]               # POLLHUP: reported, so the port is found lost
        # Linux gives EIO (an OSError) on a pty whose other side is gone; end of file (b"")
        # is the other way a lost port shows (SerialPcm._capture treats both as lost)
        try:
            got: bytes | None = rt.read(slave)
        except OSError:
            got = b""
        assert got == b""
    finally:
        os.close(slave)
