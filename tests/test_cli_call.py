"""`modem-dialer call` as a user runs it: a subprocess against a simulated bank."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys

import numpy as np
import pytest
import yaml
from conftest import run_cli, run_cli_process, wait_until
from pulse import available as pulse_available
from pulse import pulse_server

from modem_dialer.sim.callee import Callee, Scenario


def write_config(tmp_path, bank, **extra) -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(bank.config_yaml(database="calls.db", **extra))
    return str(cfg)


async def test_call_json_answered_with_keys(make_bank, tmp_path):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1, keys=[(0.3, "1")])))
    cfg = write_config(tmp_path, bank)
    rc, out, err = await run_cli("--config", cfg, "call", "06 12 34 56 78", "--say", "Hello, press one.", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["number"] == "+33612345678" and d["outcome"] == "answered" and d["modem"] == "gsm0"
    assert d["imei"] == bank.modems[0].imei and d["iccid"] == bank.modems[0].iccid
    assert [k["key"] for k in d["keys"]] == ["1"] and d["hangup_by"] == "dialer"
    for key in ("started_at", "answered_at", "ended_at", "duration_s", "cause"):
        assert key in d
    # the journal on disk says the same
    db = sqlite3.connect(tmp_path / "calls.db")
    assert db.execute("SELECT outcome, number FROM calls").fetchall() == [("answered", "+33612345678")]
    # the callee heard speech: a couple of seconds of non-silent audio
    heard = np.frombuffer(bytes(bank.modems[0].audio.per_call[-1]), "<i2")
    assert np.count_nonzero(heard) > 8000


async def test_busy_exits_2_and_line_is_readable(make_bank, tmp_path):
    bank = await make_bank("simcom", Scenario(Callee(outcome="busy", end_after=0.2)))
    cfg = write_config(tmp_path, bank)
    rc, out, _ = await run_cli("--config", cfg, "call", "+33612345678", "--message", "audio/hello.wav")
    assert rc == 2
    assert out.startswith("+33612345678: busy via gsm0") and "cause 17" in out


async def test_bad_inputs_are_one_line_and_nothing_is_dialed(make_bank, tmp_path):
    bank = await make_bank("quectel")
    cfg = write_config(tmp_path, bank)
    cases = [
        (["call", "0612;ATH", "--say", "x"], "not a phone number"),
        (["call", "+33612345678", "--message", "missing.wav"], "missing.wav: file not found"),
        (["call", "+33612345678", "--message", "pyproject.toml"], "pyproject.toml: not a WAV"),
        (["call", "+33612345678", "--say", "x", "--ring-timeout", "10"], "under the 15 s minimum"),
        (["call", "+33612345678"], "exactly one of --message"),
        (["call", "+33612345678", "--say", "x", "--modem", "gsm9"], "no modem named 'gsm9'"),
    ]
    for args, expected in cases:
        rc, _out, err = await run_cli("--config", cfg, *args)
        assert rc == 1, (args, err)
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not any(c.startswith("ATD") for c in bank.modems[0].commands)
    if (tmp_path / "calls.db").exists():
        assert sqlite3.connect(tmp_path / "calls.db").execute("SELECT count(*) FROM calls").fetchone()[0] == 0


async def test_unplugged_modem_mid_call_exits_cleanly(make_bank, tmp_path):
    bank = await make_bank("huawei", Scenario(Callee(answer_after=0.1, unplug_after=0.6)))
    cfg = write_config(tmp_path, bank)
    rc, out, err = await run_cli("--config", cfg, "call", "+33612345678", "--message", "audio/hello.wav", "--json")
    assert rc == 1 and "Traceback" not in err       # the message was not delivered
    d = json.loads(out)
    assert d["outcome"] == "failed" and d["answered_at"] is not None
    assert d["hangup_by"] == "network" and d["cause_text"].startswith("modem lost")


@pytest.mark.skipif(not pulse_available(), reason="pulseaudio / ALSA pulse plugin not installed "
                                                  "(scripts/setup.sh installs them)")
async def test_uac_path_through_real_portaudio(make_bank, tmp_path):
    """Quectel in sound-card mode: the prompt reaches the ALSA 'card' byte for byte, and a key
    in the captured direction is found by the in-band detector."""
    from modem_dialer.audio.dtmf import generate_dtmf

    out, inp = tmp_path / "out.raw", tmp_path / "in.raw"
    # The ALSA file PCM tees what is played into out.raw and captures from in.raw. Its slaves
    # are a private PulseAudio's null sinks, which consume and produce audio in real time: on a
    # "null" slave both PortAudio streams spin as fast as the CPU goes (seconds of CPU a call,
    # and a starved event loop on a loaded machine). Capture starts when the line opens, before
    # the dial, and in.raw is read at 8 kHz: so the key is a tone that lasts (20 s: longer than
    # any dial and answer under load) from before the answer on, which the detector reports as
    # one press.
    incoming = np.concatenate([np.zeros(1600, np.int16), generate_dtmf("5", 20000)])
    incoming.astype("<i2").tofile(inp)
    rc_file = tmp_path / "modem.asoundrc"
    rc_file.write_text(f"""
pcm.modem_out {{ type file slave.pcm {{ type pulse device "modem_spk" }} file "{out}" format "raw" }}
pcm.modem_in {{ type file slave.pcm {{ type pulse device "modem_mic_feed.monitor" }} file "/dev/null"
                infile "{inp}" format "raw" }}
""")
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1)))
    data = yaml.safe_load(bank.config_yaml(database="calls.db"))
    data["modems"][0]["audio"] = {"kind": "uac", "device": "modem_out", "capture_device": "modem_in"}
    data["modems"][0]["dtmf"] = "inband"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    wav = tmp_path / "msg.wav"
    # 2 s: the call hangs up when the message has played, and the key must have come through
    # the capture by then; under CI's six workers PulseAudio's capture was once late by more
    # than a 0.5 s message (the key then came after the hang-up: keys == [])
    t = np.arange(16000) / 8000
    msg = (np.sin(2 * np.pi * 500 * t) * 5000 + 100).astype(np.int16)
    from modem_dialer.audio.prompts import save_wav
    save_wav(wav, msg)
    # a real process: ALSA reads ALSA_CONFIG_PATH once per process, when PortAudio starts (a
    # fresh interpreter, as a user's: the sound card's path is timed, not a zygote's child)
    (tmp_path / "pulse").mkdir()
    with pulse_server(tmp_path / "pulse") as pa:
        rc, outp, err = await run_cli_process("--config", str(cfg), "call", "+33612345678", "--message", str(wav),
                                              "--json", env={**pa.env,
                                                             "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{rc_file}"},
                                              fresh=True)
    assert rc == 0, err
    d = json.loads(outp)
    assert [k["key"] for k in d["keys"]] == ["5"] and d["keys"][0]["source"] == "inband"
    assert bank.modems[0].dialect.qpcmv == (1, 2) or "AT+QPCMV=1,2" in bank.modems[0].commands
    played = np.fromfile(out, "<i2")
    # the prompt was normalised to telephone level: find its shape, not its exact samples
    from modem_dialer.audio.prompts import normalise
    expected = normalise(msg)
    nz = np.nonzero(played)[0]
    assert len(nz) and np.array_equal(played[nz[0]:nz[0] + len(expected)], expected)


async def test_a_call_left_open_by_a_killed_process_is_closed_as_interrupted(make_bank, tmp_path):
    from modem_dialer.store import Journal, open_db

    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1)))
    cfg = write_config(tmp_path, bank)
    conn = open_db(tmp_path / "calls.db")
    stale = Journal(conn).start_call("+33612345699", "gsm0")      # as if killed after this row
    conn.close()
    rc, _out, err = await run_cli("--config", cfg, "call", "+33612345678", "--say", "Hi", "--json")
    assert rc == 0, err
    db = sqlite3.connect(tmp_path / "calls.db")
    assert db.execute("SELECT outcome FROM calls WHERE id = ?", (stale,)).fetchone()[0] == "interrupted"


# --- issue 11 item 6: SIGTERM / SIGHUP, and a call left up by a dead process ----------------

async def _start_call(cfg: str, *args: str, sigint_ignored: bool = False):
    cmd = [sys.executable, "-m", "modem_dialer.cli", "--config", cfg, "call", "+33612345678", *args]
    if sigint_ignored:
        # as a shell script's `modem-dialer call … &` starts it (and as a test run started in
        # the background starts every process of the suite): SIGINT ignored from exec on
        cmd = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    return await asyncio.create_subprocess_exec(
        *cmd, env=dict(os.environ), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)



@pytest.mark.parametrize(("signame", "code", "sigint_ignored"), [
    pytest.param("SIGTERM", 143, False, id="SIGTERM-143"), pytest.param("SIGHUP", 129, False, id="SIGHUP-129"),
    pytest.param("SIGINT", 130, False, id="SIGINT-130"),
    # started with SIGINT ignored, a `kill -INT` was dropped: the call rang on for its 60 s
    # (seen as this test timing out in full runs started in the background)
    pytest.param("SIGINT", 130, True, id="SIGINT-130-started-ignoring-it")])
async def test_signal_while_ringing_hangs_up_and_closes_the_row_as_interrupted(make_bank, tmp_path, signame, code,
                                                                               sigint_ignored):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=60, ring_after=0.05)))
    sim = bank.modems[0]
    cfg = write_config(tmp_path, bank)
    proc = await _start_call(cfg, "--message", "audio/hello.wav", "--ring-timeout", "60",
                             sigint_ignored=sigint_ignored)
    await wait_until(lambda: bool(sim.calls) and sim.calls[-1].state == "alerting")
    proc.send_signal(getattr(signal, signame))
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == code, err
    assert "Traceback" not in err.decode() and err.decode().count("\n") == 1
    assert (signame if signame != "SIGINT" else "interrupted") in err.decode()
    assert sim.call is None and sim.calls[-1].ended_by == "dialer"       # the modem is free again
    db = sqlite3.connect(tmp_path / "calls.db")
    row = db.execute("SELECT outcome, ended_at, hangup_by FROM calls").fetchone()
    assert row[0] == "interrupted" and row[1] is not None and row[2] == "dialer"


async def test_sigterm_during_the_message_hangs_up_and_closes_the_row(make_bank, tmp_path):
    bank = await make_bank("huawei", Scenario(Callee(answer_after=0.1, ring_after=0.05)))
    sim = bank.modems[0]
    cfg = write_config(tmp_path, bank)
    proc = await _start_call(cfg, "--message", "audio/hello.wav")       # a 6 s message
    await wait_until(lambda: bool(sim.calls) and sim.calls[-1].state == "active")
    # during the message: the callee has heard its first 0.2 s (3,200 bytes at 8 kHz)
    await wait_until(lambda: len(sim.audio.received) >= 3200)
    proc.send_signal(signal.SIGTERM)
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 143, err
    assert sim.call is None and sim.calls[-1].ended_by == "dialer"
    db = sqlite3.connect(tmp_path / "calls.db")
    ended_at, by = db.execute("SELECT ended_at, hangup_by FROM calls").fetchone()
    assert ended_at is not None and by == "dialer"


async def test_a_call_left_up_by_a_killed_process_is_hung_up_by_the_next_call(make_bank, tmp_path):
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.1, ring_after=0.05)))
    sim = bank.modems[0]
    cfg = write_config(tmp_path, bank)
    proc = await _start_call(cfg, "--message", "audio/hello.wav")
    await wait_until(lambda: bool(sim.calls) and sim.calls[-1].state == "active")
    proc.send_signal(signal.SIGKILL)                  # no chance to hang up: the call stays up
    await proc.wait()
    await asyncio.sleep(0.2)
    assert sim.call is not None and sim.call.state == "active"
    rc, out, err = await run_cli("--config", cfg, "call", "+33612345678", "--say", "Hi", "--json")
    assert rc == 0, err
    assert len(sim.calls) == 2 and sim.calls[0].ended_by == "dialer"
    assert json.loads(out)["outcome"] == "answered"
    db = sqlite3.connect(tmp_path / "calls.db")
    assert [r[0] for r in db.execute("SELECT outcome FROM calls ORDER BY id")] == ["interrupted", "answered"]


async def test_sms_local_also_ends_a_call_left_up(make_bank, tmp_path):
    """`sms` and `alert` in local mode open the modems through the service's bank, whose start
    runs the same clean-up (ModemDriver.clear_left_call)."""
    from conftest import modem_config

    from modem_dialer.modems.detect import open_driver
    bank = await make_bank("quectel", Scenario(Callee(answer_after=0.05)))
    sim = bank.modems[0]
    first = await open_driver(modem_config(bank))
    await first.dial("+33612345678")
    await wait_until(lambda: sim.call is not None and sim.call.state == "active")
    await first.close()                               # its owner is gone; the call is not
    cfg = write_config(tmp_path, bank)
    rc, out, err = await run_cli("--config", cfg, "sms", "+33612345679", "hello", "--local")
    assert rc == 0, out + err
    assert sim.call is None and sim.calls[-1].ended_by == "dialer"
    assert "AT+CLCC" in sim.commands
