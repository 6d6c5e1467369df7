"""Issue 11 item 7: user files never freeze the service. A campaign file that is a FIFO or
/dev/zero, a huge one, or a YAML "billion laughs" is refused at once with a one-line 400,
while /healthz keeps answering. Real HTTP server on localhost, simulated bank on ptys."""

from __future__ import annotations

import os
import threading
import time

import pytest
from helpers import Api, write_config
from test_service_alerts import services  # noqa: F401 (fixture)

from modem_dialer import yamlfile
from modem_dialer.config import load_config
from modem_dialer.errors import UserError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True))


async def test_campaign_files_that_would_block_or_blow_up_are_refused(make_bank, tmp_path, services,  # noqa: F811
                                                                     monkeypatch):
    bank = await make_bank("quectel")
    svc = await services(write_config(bank, tmp_path))
    api = Api(svc)
    fifo = tmp_path / "camp.yaml"
    os.mkfifo(fifo)
    # should the service open the FIFO and wait for a writer, a writer comes after 5 s,
    # so a regression fails on the timing below instead of hanging the test run
    unblock = threading.Timer(5.0, lambda: os.close(os.open(fifo, os.O_WRONLY)))
    unblock.start()
    try:
        t0 = time.monotonic()
        status, r = await api.req("POST", "/v1/campaigns", {"file": str(fifo)})
        assert time.monotonic() - t0 < 3.0
        assert status == 400 and r["error"] == f"{fifo}: campaign file is not a regular file", r
    finally:
        unblock.cancel()
    status, r = await api.req("POST", "/v1/campaigns", {"file": "/dev/zero"})
    assert status == 400 and r["error"] == "/dev/zero: campaign file is not a regular file", r
    (tmp_path / "bomb.yaml").write_text(BOMB)
    t0 = time.monotonic()
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(tmp_path / "bomb.yaml")})
    assert time.monotonic() - t0 < 2.0
    assert status == 400 and r["error"].startswith(f"{tmp_path / 'bomb.yaml'}:2: invalid YAML: YAML aliases"), r
    monkeypatch.setattr(yamlfile, "MAX_YAML_BYTES", 4096)
    (tmp_path / "big.yaml").write_text("name: x\n" + "# padding\n" * 1000)
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(tmp_path / "big.yaml")})
    assert status == 400 and "is 10008 bytes, more than 4096" in r["error"], r
    assert (await api.req("GET", "/healthz"))[0] == 200


def test_the_config_loader_refuses_aliases_and_special_files(tmp_path):
    (tmp_path / "c.yaml").write_text("database: &db j.db\ncache_dir: *db\n")
    with pytest.raises(UserError, match=r"c.yaml:2: invalid YAML: YAML aliases \(\*db\) are not allowed"):
        load_config(str(tmp_path / "c.yaml"))
    with pytest.raises(UserError, match="/dev/zero: config file is not a regular file"):
        load_config("/dev/zero")
    with pytest.raises(UserError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    # an anchor alone is harmless, and line numbers still point at the key
    (tmp_path / "ok.yaml").write_text("database: &db j.db\nmodems: []\ncolour: red\n")
    with pytest.raises(UserError, match=r"ok.yaml:3: colour: unknown key"):
        load_config(str(tmp_path / "ok.yaml"))
