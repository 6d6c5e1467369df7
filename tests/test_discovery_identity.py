"""probe_identity: IMEI and ICCID asked over a real pty through the real AT channel."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sysfs_builder import FakeSysfs, e1550, ec25, sim7600

from modem_dialer.modems.discovery import FoundModem, config_section, discover, probe_all, probe_identity


class FakeModem:
    """The master side of a pty answering a few AT commands like a modem would."""

    def __init__(self, answers: dict[str, str], echo: bool = False) -> None:
        self.answers = answers
        self.echo = echo
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.seen: list[str] = []
        self._buf = b""
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            self._buf += os.read(self.master, 1024)
        except OSError:
            return
        while b"\r" in self._buf:
            raw, self._buf = self._buf.split(b"\r", 1)
            cmd = raw.decode().strip()
            if not cmd:
                continue
            self.seen.append(cmd)
            out = (cmd + "\r" if self.echo else "")
            if cmd in self.answers:
                out += self.answers[cmd]
            os.write(self.master, out.encode())

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


def _ok(*lines: str) -> str:
    return "".join(f"\r\n{line}\r\n" for line in lines) + "\r\nOK\r\n"


@pytest.fixture
def found(tmp_path: Path) -> Iterator[list[FoundModem]]:
    fs = FakeSysfs(tmp_path)
    ec25(fs, "1-1.1", 0, (1, "Android"))
    sim7600(fs, "1-1.2", 4)
    yield discover(tmp_path)


async def test_quectel_imei_and_iccid(found: list[FoundModem]) -> None:
    fake = FakeModem({"AT+CGSN": _ok("866123456789018"), "AT+QCCID": _ok("+QCCID: 89860012345678901234")},
                     echo=True)
    try:
        m = await probe_identity(replace(found[0], at_tty=fake.port), timeout=3)
    finally:
        fake.close()
    assert (m.imei, m.iccid, m.identity_error) == ("866123456789018", "89860012345678901234", None)
    assert fake.seen == ["AT+CGSN", "AT+QCCID"]
    assert found[0].imei is None              # the input is not modified
    assert "IMEI 866123456789018, ICCID 89860012345678901234" in config_section([m])


async def test_simcom_falls_back_to_ccid(found: list[FoundModem]) -> None:
    fake = FakeModem({"AT+CGSN": _ok("867000000000002"), "AT+CICCID": "\r\nERROR\r\n",
                      "AT+CCID": _ok("8944110000000000000F")})
    try:
        m = await probe_identity(replace(found[1], at_tty=fake.port), timeout=3)
    finally:
        fake.close()
    assert (m.imei, m.iccid) == ("867000000000002", "8944110000000000000")   # F padding dropped, as drivers do
    assert fake.seen == ["AT+CGSN", "AT+CICCID", "AT+CCID"]


async def test_silent_and_missing_ports_are_reported_not_raised(found: list[FoundModem]) -> None:
    silent = FakeModem({})
    try:
        a, b = await probe_all([replace(found[0], at_tty=silent.port),
                                replace(found[1], at_tty="/dev/does-not-exist")], timeout=0.5)   # silent: any wait
    finally:
        silent.close()
    assert a.imei is None and a.identity_error is not None and silent.port in a.identity_error
    assert b.identity_error is not None and "no such port" in b.identity_error


async def test_probe_all_runs_modems_concurrently(found: list[FoundModem]) -> None:
    imeis = ["866123456789018", "866123456789026"]
    fakes = [FakeModem({"AT+CGSN": _ok(imeis[i]), "AT+QCCID": _ok(f"+QCCID: 8986001234567890123{i}")})
             for i in range(2)]
    try:
        out = await probe_all([replace(found[0], at_tty=f.port) for f in fakes], timeout=3)
    finally:
        for f in fakes:
            f.close()
    assert [m.imei for m in out] == imeis
    assert [m.iccid for m in out] == ["89860012345678901230", "89860012345678901231"]


async def test_huawei_e1550_iccid_by_crsm(tmp_path: Path) -> None:
    """Issue 11 item 20: the E1550 answers AT+CCID with COMMAND NOT SUPPORT; discover reads the
    ICCID the way the Huawei driver does (AT+CRSM=176,12258,0,0,10: EF_ICCID, swapped nibbles)."""
    fs = FakeSysfs(tmp_path)
    e1550(fs, "1-1.2", 0)
    [m] = discover(tmp_path)
    fake = FakeModem({"AT+CGSN": _ok("353142031234563"), "AT+CCID": "\r\nCOMMAND NOT SUPPORT\r\n",
                      "AT+CRSM=176,12258,0,0,10": _ok('+CRSM: 144,0,"98380050002131118533"')})
    try:
        got = await probe_identity(replace(m, at_tty=fake.port), timeout=3)
    finally:
        fake.close()
    assert (got.imei, got.iccid, got.identity_error) == ("353142031234563", "89830005001213115833", None)
    assert "AT+CRSM=176,12258,0,0,10" in fake.seen


async def test_boot_burst_is_not_taken_for_the_imei(found: list[FoundModem]) -> None:
    burst = "".join(f"\r\n{x}\r\n" for x in ("RDY", "+CPIN: READY", "+QUSIM: 1", "+CFUN: 1", "+QIND: SMS DONE"))
    fake = FakeModem({"AT+CGSN": burst + _ok("866123456789018"), "AT+QCCID": _ok("+QCCID: 89860012345678901234")})
    try:
        m = await probe_identity(replace(found[0], at_tty=fake.port), timeout=3)
    finally:
        fake.close()
    assert (m.imei, m.iccid) == ("866123456789018", "89860012345678901234")
