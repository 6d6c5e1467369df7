"""Real modem output replayed against the real AT channel and drivers (tests/replay.py):
boot bursts, CLCC with an alpha field, ^DSCI, +CDSI, Huawei ^CONN/^CEND (issue 11 item 25)."""

from __future__ import annotations

import asyncio

import pytest
from replay import ReplayModem, after, modem_lines, parse, until_host

from modem_dialer.at.channel import ATChannel
from modem_dialer.modems import identity as identity_mod
from modem_dialer.modems.detect import open_driver
from modem_dialer.modems.events import Answered, Ended, HangupBy, Ringing
from modem_dialer.modems.info import CallInfo, CallState, parse_clcc, parse_clcc_line
from modem_dialer.modems.options import ModemConfig

IMEI = "867698041234561"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(identity_mod, "IDENTITY_RETRY_DELAY", 0.05)


@pytest.fixture
async def replay():
    made: list[ReplayModem] = []

    def make(steps) -> ReplayModem:
        r = ReplayModem(steps)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def cfg(path: str, family: str) -> ModemConfig:
    return ModemConfig(name="gsm0", port=path, family=family)


async def collect(driver, until=Ended, timeout: float = 3.0) -> list:
    """The call's state events (Ringing, Answered, Ended) up to ``until``; noise such as
    SignalChanged from ^RSSI is left out."""
    q, remove = driver.event_queue()
    out: list = []
    try:
        while not (out and isinstance(out[-1], until)):
            ev = await asyncio.wait_for(q.get(), timeout)
            if isinstance(ev, (Ringing, Answered, Ended)):
                out.append(ev)
    finally:
        remove()
    return out


def test_parser_reads_both_transcript_spellings() -> None:
    e1550 = parse("huawei__e1550-call-trace-ukrtelecom.txt")
    assert e1550[0].host is False and "^RSSI:15" in e1550[0].text          # a URC before any command
    cgmm = after(e1550, "AT+CGMM")
    assert modem_lines(cgmm[:2]) == ["^RSSI:15", "E1550", "OK"]            # "E1550    OK" split
    sim7600 = parse("sim7600__esp-protocols-789-boot-urcs.txt")
    burst = "".join(s.text for s in sim7600 if not s.host)
    assert burst == "\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DON"             # cut off mid-line, kept so


# --- boot bursts arriving while a bare-value command runs -------------------------------------

@pytest.mark.parametrize(("transcript", "section", "family"), [
    ("quectel-eg25g__eg25-manager-boot-urcs.txt", "log 1", "quectel"),
    ("quectel-eg25g__eg25-manager-boot-urcs.txt", "log 2", "quectel"),
    ("sim7600__esp-protocols-789-boot-urcs.txt", None, "simcom"),
    ("sim800__seeed-gprs-sim900-issue39-ready-urcs.txt", None, "sim800"),
])
@pytest.mark.parametrize("command", ["AT+CGSN", "AT+CIMI", "AT+CGMI", "AT+CGMM"])
async def test_boot_burst_mid_command_is_not_the_value(replay, transcript, section, family, command):
    burst = [s for s in parse(transcript, section) if not s.host]
    if transcript.startswith("sim800"):
        burst = [s for s in burst if "ERROR" not in s.text]               # the burst, not AT+CMGF's answer
    m = replay([])
    m.defaults.update({"AT+CGSN": [IMEI, "OK"], "AT+CIMI": ["208011234567890", "OK"],
                       "AT+CGMI": ["Quectel", "OK"], "AT+CGMM": ["EG25", "OK"]})
    d = await open_driver(cfg(m.path, family))
    m.inject_before(command, burst)
    ident = await d.identity()
    assert not m.injections
    assert (ident.imei, ident.imsi, ident.manufacturer, ident.model) == (IMEI, "208011234567890", "Quectel", "EG25")
    await d.close()


async def test_e1550_identity_from_its_own_answers(replay):
    """The E1550 trace: ^RSSI noise before AT+CGMM's answer, a bare IMSI; the ModemManager
    E1550 table for ATI-era answers. Its IMEI there fails the Luhn check (the test data was
    altered), so it is refused: a real IMEI's last digit is its check digit."""
    m = replay(parse("huawei__e1550-call-trace-ukrtelecom.txt") +
               parse("huawei__modemmanager-tests-e1550-e160g-umg1831.txt", "devid test table"))
    d = await open_driver(cfg(m.path, "huawei"))
    ident = await d.identity()
    assert (ident.manufacturer, ident.model, ident.imsi) == ("huawei", "E1550", "255071013516311")
    assert ident.firmware == "11.608.09.01.21"
    assert ident.imei is None and m.seen.count("AT+CGSN") == identity_mod.IDENTITY_TRIES
    await d.close()


# --- call states as real modems print them ----------------------------------------------------

async def test_huawei_e1550_call_orig_conf_conn_cend(replay):
    steps = parse("huawei__e1550-call-trace-ukrtelecom.txt")
    m = replay([])
    d = await open_driver(cfg(m.path, "huawei"))
    d.dial_timeout = 3
    task = asyncio.ensure_future(collect(d))
    await d.dial("+380972763224")
    m.stream(after(steps, "ATD+380972763224;"))       # ^ORIG, ^RSSI, ^CONF, the poll answers, ^CONN, ^CEND
    events = await task
    assert [type(e).__name__ for e in events] == ["Ringing", "Answered", "Ended"]
    end = events[-1]
    assert end.cause == 31 and end.by == HangupBy.CALLEE and end.call_id == 1
    await d.close()


async def test_sim800_clcc_urcs_with_trailing_alpha(replay):
    steps = parse("sim800__altsoftserial-issue45-clcc-call.txt")
    m = replay([])
    d = await open_driver(cfg(m.path, "sim800"))
    task = asyncio.ensure_future(collect(d))
    await d.dial("+33612345678")
    m.stream([s for s in after(steps, "atdXXXXXXXXXX;") if "atd" not in s.text and s.text.strip() != "OK"])
    events = await task
    assert [type(e).__name__ for e in events] == ["Answered", "Ended"]      # 2 (dialing) -> 0 -> 6
    await d.close()


async def test_clcc_with_alpha_is_a_call_left_up(replay):
    """python-gsmmodem #112: +CLCC with an empty alpha field ,"" broke its regex; ours counts it."""
    m = replay(parse("sim800__python-gsmmodem-issue112-clcc-alpha.txt"))
    d = await open_driver(cfg(m.path, "sim800"))
    assert await d.clear_left_call() == 1
    assert m.seen[-2:] == ["AT+CLCC", "ATH"]
    await d.close()


async def test_quectel_dsci_call_states(replay):
    steps = parse("quectel__dsci-manual-example.txt")
    m = replay([])
    m.defaults['AT+QINDCFG="CCINFO",1,0'] = ["ERROR"]          # an EP06: no ccinfo
    d = await open_driver(cfg(m.path, "quectel"))
    assert d.call_state_source == "dsci"
    task = asyncio.ensure_future(collect(d, until=Answered))
    await d.dial("10086")
    m.stream(until_host(after(steps, "ATD10086;")))
    events = await task
    assert [type(e).__name__ for e in events] == ["Ringing", "Answered"]
    assert events[0].call_id == 1
    # the manual's ATH exchange (OK, then ^DSCI …,6,…) answers our hang-up command
    m.defaults["AT+CHUP"] = modem_lines(after(steps, "ATH"))
    ended = asyncio.ensure_future(collect(d))
    await d.hangup()
    [end] = await ended
    assert end.by == HangupBy.DIALER
    await d.close()


async def test_cdsi_during_a_command_is_not_its_answer(replay):
    """+CDSI (a delivery report announced in the wrong store) arriving while AT+CSQ runs."""
    cdsi = [s for s in parse("quectel-ec25__chan-quectel-pr75-cdsi-delivery-report.txt")
            if not s.host and "CDSI" in s.text]
    m = replay([])
    m.defaults["AT+CSQ"] = ["+CSQ: 20,99", "OK"]
    m.defaults["AT+CGMR"] = ["EC25EFAR06A10M4G", "OK"]
    ch = await ATChannel.open(m.path, name="gsm0")
    m.inject_before("AT+CGMR", cdsi)
    r = await ch.command("AT+CGMR")
    assert r.lines == ["EC25EFAR06A10M4G"]
    assert ch.unsolicited == ['+CDSI: "SM",0']
    await ch.close()


# --- +CLCC: one parser (modems/info.py) for URCs, polls, left calls and two-call transfers ----

def _clcc_lines(name: str) -> list[str]:
    text = "".join(s.text for s in parse(name) if not s.host)
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip().startswith("+CLCC")]


@pytest.mark.parametrize(("transcript", "expected"), [
    # SIM7600 URC lists: a number, none at all, an alpha after the type (INDEX.md quirk 8)
    ("sim7600__modemmanager-simtech-urcs.txt", [
        (1, True, CallState.ACTIVE, "123456789"), (1, True, CallState.ACTIVE, None),
        (2, True, CallState.ACTIVE, "123456789"), (3, True, CallState.ACTIVE, "987654321"),
        (1, False, CallState.ENDED, "639335936"), (1, False, CallState.ENDED, "639335936")]),
    # SIM800: the trailing empty alpha, and the excerpt cut off after the number
    ("sim800__altsoftserial-issue45-clcc-call.txt", [
        (1, False, CallState.DIALING, "XXXXXXXXXX"), (1, False, CallState.DIALING, "XXXXXXXXXX"),
        (1, False, CallState.ACTIVE, "XXXXXXXXXX"), (1, False, CallState.ENDED, "XXXXXXXXXX")]),
])
def test_every_real_clcc_line_reads_as_a_call(transcript, expected):
    calls = [parse_clcc_line(line) for line in _clcc_lines(transcript)]
    assert [(c.index, c.incoming, c.state, c.number) for c in calls if c is not None] == expected
    assert all(c is not None and c.voice for c in calls)


async def test_list_calls_reads_the_real_answer_with_an_alpha(replay):
    m = replay(parse("sim800__python-gsmmodem-issue112-clcc-alpha.txt"))
    d = await open_driver(cfg(m.path, "sim800"))
    assert await d.list_calls() == [CallInfo(index=1, incoming=False, state=CallState.DIALING, voice=True,
                                             number="phone_number")]
    assert m.seen[-1] == "AT+CLCC"
    await d.close()


def test_the_lte_data_pseudo_call_is_not_a_voice_call():
    # Quectel lists its LTE bearer as mode 1 (modems.md §2): never a call to follow or hang up
    assert parse_clcc(['+CLCC: 1,0,0,1,0,"",128', '+CLCC: 2,0,3,0,0,"+15551234567",145']) == [
        CallInfo(index=2, incoming=False, state=CallState.ALERTING, voice=True, number="+15551234567")]
