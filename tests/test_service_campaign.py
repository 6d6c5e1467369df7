"""Campaigns inside the service: a real HTTP server on localhost, the simulated bank over real
ptys, a real SQLite journal. Alerts keep priority over campaign calls on the shared modems."""

from __future__ import annotations

import asyncio
import signal

import pytest
from helpers import ALICE, BOB, TOKEN, Api, acked, contacts, setup, wav, write_config
from helpers import wait_until as wait_for
from ports import free_port
from test_campaign_run import run_cli

from modem_dialer.config import LoadedConfig, load_config
from modem_dialer.errors import UserError
from modem_dialer.service.bank import Priority
from modem_dialer.service.client import Client
from modem_dialer.service.service import Service
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import open_db
from modem_dialer.store.lock import DialerLock

ANSWER, BUSY, INVALID, KEYS = (f"+3361234567{i}" for i in range(4))
MANY = [f"+336123456{i:02d}" for i in range(10, 16)]
# A callee that hangs up 0.2 s after answering: a call the test only needs made once, answered
LAST = Callee("answer", answer_after=0.1, hangup_after=0.2)


@pytest.fixture
async def services():
    running: list[Service] = []

    async def start(loaded: LoadedConfig, port: int | None = 0) -> Service:
        svc = Service(loaded, port=port, min_ring_timeout=1.0)
        svc.campaigns.poll = 0.2
        svc.campaign_grace = 10.0
        await svc.start()
        running.append(svc)
        return svc

    yield start
    for s in running:
        if not s.stopped.is_set():
            await s.stop()


def service_setup(tmp_path, bank, numbers: list[str], *, message_s: float = 0.3, extra: str = "",
                  port: int = 0, token: str | None = None):
    """The campaign files of test_campaign_run, and a config with the service's API section."""
    _, camp = setup(tmp_path, bank, numbers, message_s=message_s, extra=extra)
    api = {"port": port, **({"token": token} if token else {})}
    loaded = write_config(bank, tmp_path, api=api)
    return loaded, camp


async def wait_campaign(api: Api, name: str, pred, timeout: float = 20.0) -> dict:
    return await api.wait(f"/v1/campaigns/{name}", pred, timeout)


def finished(c: dict) -> bool:
    return c["status"] == "done" and not c["running"]


def rows(loaded: LoadedConfig, sql: str, *args) -> list[dict]:
    conn = open_db(loaded.database_path)
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def test_campaign_submitted_to_the_service_completes(make_bank, tmp_path, services):
    sc = Scenario(default=Callee("answer", answer_after=0.1), numbers={
        BUSY: Callee("busy", end_after=0.1),
        INVALID: Callee("invalid", end_after=0.1),
        KEYS: Callee("answer", answer_after=0.1, keys=[(0.05, "1"), (0.1, "9")])})
    bank = await make_bank("quectel,simcom", sc, n=2)
    loaded, camp = service_setup(tmp_path, bank, [ANSWER, BUSY, INVALID, KEYS], message_s=0.4,
                                 extra="opt_out_key: 9\nretry:\n  busy: {after: 1s, max: 2}\n", token=TOKEN)
    svc = await services(loaded)
    api = Api(svc, TOKEN)
    # bad input: a 4xx naming the culprit, nothing started
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(tmp_path / "nope.yaml")})
    assert status == 400 and "nope.yaml" in r["error"]
    status, r = await api.req("POST", "/v1/campaigns", {"file": str(camp), "speed": 2})
    assert status == 400 and r["error"] == "speed: unknown field"
    assert (await api.req("GET", "/v1/campaigns/nope"))[0] == 404
    assert (await Api(svc).req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 401

    status, r = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert status == 202 and r["started"] is True and r["contacts"] == 4, r
    again = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert again[0] == 200 and again[1]["started"] is False          # one controller per campaign
    c = await wait_campaign(api, "test", finished)
    assert c["statuses"] == {"answered": 1, "exhausted": 1, "invalid": 1, "opted_out": 1}
    got = {n: (v["status"], v["attempts"]) for n, v in contacts(open_db(loaded.database_path)).items()}
    assert got == {ANSWER: ("answered", 1), BUSY: ("exhausted", 2), INVALID: ("invalid", 1),
                   KEYS: ("opted_out", 1)}
    calls = rows(loaded, "SELECT number, modem, outcome, campaign_id FROM calls ORDER BY id")
    assert len(calls) == 5 and all(x["campaign_id"] == c["id"] for x in calls)
    assert {x["modem"] for x in calls} <= {"gsm0", "gsm1"}
    assert rows(loaded, "SELECT reason FROM suppression WHERE number = ?", KEYS)[0]["reason"] == "opt_out_key"
    # the bank counted the campaign's calls for /v1/modems and /metrics
    _, modems = await api.req("GET", "/v1/modems")
    assert sum(sum(m["calls"].values()) for m in modems) == 5
    # a stopped campaign's contacts are counted off the event loop (a full count at 10M contacts
    # takes seconds): watched, not replaced
    import threading

    from modem_dialer.store import Campaigns
    seen: list[threading.Thread] = []
    counts = Campaigns.counts

    def watched(self, cid):
        seen.append(threading.current_thread())
        return counts(self, cid)
    Campaigns.counts = watched
    try:
        status, again = await api.req("GET", "/v1/campaigns/test")
    finally:
        Campaigns.counts = counts
    assert status == 200 and again["statuses"] == c["statuses"]
    assert seen and threading.main_thread() not in seen


async def test_alert_gets_the_next_free_line_before_the_next_campaign_call(make_bank, tmp_path, services):
    sc = Scenario(default=Callee("answer", answer_after=0.1),
                  numbers={ALICE: Callee(answer_after=0.1, keys=[(1.2, "1")]),
                           BOB: Callee(answer_after=0.1, keys=[(0.3, "1")])})
    bank = await make_bank("quectel", sc, n=2)
    loaded, camp = service_setup(tmp_path, bank, MANY, message_s=1.5)
    (tmp_path / "prompts").mkdir()
    wav(tmp_path / "prompts" / "alert.wav", 0.5)       # alerting.prompt_dirs defaults to prompts/
    svc = await services(loaded)
    api = Api(svc)
    # the bank's own order of events, observed (not changed): who started waiting, who was
    # lent which line. Stamps in the calls table cannot tell it: two calls started together
    # end within a millisecond, and their end stamps need not be in the order their lines
    # went back to the bank.
    events: list[tuple[str, int, int, str | None]] = []   # (wait|lent, priority, seq, modem)
    serve = svc.bank._serve

    def observed_serve() -> None:
        waiting = [w for w in svc.bank._waiters if not w[4].done()]
        events.extend(("wait", w[0], w[1], None) for w in waiting
                      if ("wait", w[0], w[1], None) not in events)
        serve()
        events.extend(("lent", w[0], w[1], w[4].result().name) for w in waiting
                      if w[4].done() and not w[4].cancelled())
    svc.bank._serve = observed_serve  # type: ignore[method-assign]
    status, _ = await api.req("POST", "/v1/campaigns", {"file": str(camp)})
    assert status == 202

    def open_calls(where: str) -> list[dict]:
        # dialed and not over: a campaign's armed next call has its row before its dial
        return rows(loaded, f"SELECT id FROM calls WHERE {where} AND outcome IS NULL"  # noqa: S608
                            " AND started_at IS NOT NULL")

    def alert_waiting() -> bool:
        return any(w[0] == Priority.ALERT and not w[4].done() for w in svc.bank._waiters)
    await wait_for(lambda: len(open_calls("campaign_id IS NOT NULL")) == 2)   # every line busy
    busy_a = [x["id"] for x in open_calls("campaign_id IS NOT NULL")]
    status, a = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": "alert.wav", "ack_key": "1"})
    assert status == 202
    await wait_for(alert_waiting, timeout=5)
    assert len(open_calls("campaign_id IS NOT NULL")) == 2, "the alert must not cut a campaign call"
    # alice's call takes a line; the campaign worker that had it now waits too, and gets the
    # other line when its first call ends. Only then a second alert comes: the next line to
    # free up is its, not the waiting campaign's. (Waiting for "alice's call and one campaign
    # call open" alone was met between the two first calls' ends, which a loaded machine sets
    # apart: bob then rightly took the second line, and no campaign call was open to check.)
    def alice_and_a_next_campaign_call() -> bool:
        campaign = [x["id"] for x in open_calls("campaign_id IS NOT NULL")]
        return bool(open_calls("alert_id IS NOT NULL")) and len(campaign) == 1 and campaign[0] not in busy_a
    await wait_for(alice_and_a_next_campaign_call)
    status, b = await api.req("POST", "/v1/alerts", {"to": "bob", "audio": "alert.wav", "ack_key": "1"})
    assert status == 202
    await wait_for(alert_waiting, timeout=5)
    busy_b = [x["id"] for x in open_calls("1 = 1")]
    # both lines still busy (alice + one campaign call), contacts left: a campaign worker waits too
    assert len(open_calls("campaign_id IS NOT NULL")) == 1 and open_calls("alert_id IS NOT NULL")
    assert rows(loaded, "SELECT COUNT(*) AS n FROM contacts WHERE status = 'pending'")[0]["n"] > 0
    await api.wait_alert(a["id"], acked, timeout=20)
    await api.wait_alert(b["id"], acked, timeout=20)
    c = await wait_campaign(api, "test", finished, timeout=30)
    assert c["statuses"] == {"answered": len(MANY)}
    # each alert got the first line to free up after it was raised: between an alert's
    # wait and its line, the bank lent no line to a campaign worker; and its call is on the
    # line it was lent
    every = {x["id"]: x for x in rows(loaded, "SELECT id, alert_id, campaign_id, number, modem FROM calls")}
    alerts = [e for e in events if e[0] == "wait" and e[1] == Priority.ALERT]
    assert len(alerts) == 2, events
    for alert, number, busy, (_, prio, seq, _m) in zip((a, b), (ALICE, BOB), (busy_a, busy_b), alerts, strict=True):
        start = events.index(("wait", prio, seq, None))
        lent = next(i for i, e in enumerate(events) if e[0] == "lent" and e[2] == seq)
        assert not [e for e in events[start:lent] if e[0] == "lent" and e[1] != Priority.ALERT], events
        got = next(x for x in every.values() if x["alert_id"] == alert["id"])
        assert (got["number"], got["modem"]) == (number, events[lent][3]), (got, events)
        assert got["modem"] in {every[i]["modem"] for i in busy}   # a line that was busy then
    # no call in progress was cut: every campaign call ran its message to the end
    campaign_calls = rows(loaded, "SELECT outcome, hangup_by, duration_s FROM calls WHERE campaign_id IS NOT NULL")
    assert len(campaign_calls) == len(MANY)
    assert all(x["outcome"] == "answered" and x["hangup_by"] == "dialer" and x["duration_s"] >= 1.4
               for x in campaign_calls), campaign_calls


@pytest.mark.slow
async def test_campaign_run_submits_to_a_running_service(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=2)
    loaded, camp = service_setup(tmp_path, bank, [ANSWER, KEYS, BUSY], port=free_port(), token=TOKEN)
    cfg = str(loaded.path)
    # another dialing process without an API (a standalone `campaign run`): the lock says so
    lock = DialerLock(loaded.database_path).acquire()
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp))
    lock.release()
    assert rc == 1 and "another dialing process" in err and err.count("\n") == 1, out + err
    # a bad campaign file is still reported locally, one line, before anything reaches the service
    svc = await services(loaded, port=None)
    (tmp_path / "bad.yaml").write_text(camp.read_text() + "speed: 2\n")
    rc, out, err = await run_cli(cfg, "campaign", "run", str(tmp_path / "bad.yaml"))
    assert rc == 1 and "bad.yaml" in err and "speed" in err and err.count("\n") == 1, err
    # the serial ports belong to the service: `campaign run` hands the campaign over and follows it
    rc, out, err = await run_cli(cfg, "campaign", "run", str(camp), timeout=30)
    assert rc == 0, out + err
    assert "submitted to the service" in out
    assert "gsm0: " in out or "gsm1: " in out          # the plain log of the calls, from the journal
    assert "campaign test: done; contacts answered 3" in out
    assert sorted(c.number for m in bank.modems for c in m.calls) == sorted([ANSWER, KEYS, BUSY])
    # the follower ends once every contact is final; the service's controller ends its run just after
    await wait_for(lambda: "test" not in svc.campaigns.running, timeout=5)


async def test_service_restart_resumes_the_campaign(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=1)
    loaded, camp = service_setup(tmp_path, bank, MANY, message_s=0.4, port=free_port())
    svc = await services(loaded, port=None)
    # --detach: submitted, returns at once
    rc, out, err = await run_cli(str(loaded.path), "campaign", "run", "--detach", str(camp))
    assert rc == 0 and "submitted to the service" in out, out + err
    await wait_for(lambda: len(rows(loaded, "SELECT id FROM calls WHERE outcome IS NOT NULL")) >= 2)
    await svc.stop()                               # the call in progress finishes, no new one
    assert rows(loaded, "SELECT status FROM campaigns")[0]["status"] == "running"
    assert rows(loaded, "SELECT COUNT(*) AS n FROM calls WHERE outcome IS NULL")[0]["n"] == 0
    before = len(rows(loaded, "SELECT id FROM calls"))
    assert before < len(MANY)
    # the calls after the restart need only be answered: their callees hang up 0.2 s in
    bank.scenario.default = LAST
    # while it is down, a second service on the same database would be refused
    svc2 = await services(load_config(str(loaded.path)), port=None)
    third = Service(load_config(str(loaded.path)), port=0)
    with pytest.raises(UserError, match="another dialing process"):
        await third.start()
    third.conn.close()
    c = await wait_campaign(Api(svc2), "test", finished, timeout=30)
    assert c["statuses"] == {"answered": len(MANY)}
    calls = rows(loaded, "SELECT number FROM calls ORDER BY id")
    assert sorted(x["number"] for x in calls) == sorted(MANY)    # nobody called twice


@pytest.mark.slow
async def test_pause_and_resume_through_the_database(make_bank, tmp_path, services):
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1)), n=1)
    # long enough that the pause (in-process: no interpreter to start) lands mid-campaign
    loaded, camp = service_setup(tmp_path, bank, MANY, message_s=0.5)
    svc = await services(loaded)
    svc.campaigns.poll = 0.2                        # how often a paused campaign looks at its row again
    api = Api(svc)
    assert (await api.req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 202
    await wait_for(lambda: rows(loaded, "SELECT id FROM calls WHERE outcome IS NOT NULL"))
    rc, _, err = await run_cli(str(loaded.path), "campaign", "pause", "test")
    assert rc == 0, err
    # the runner saw the pause (its own 'paused' row) and the call in progress ended
    await wait_for(lambda: rows(loaded, "SELECT 1 FROM campaign_log WHERE kind = 'control' AND verdict = 'paused'")
                   and not rows(loaded, "SELECT id FROM calls WHERE outcome IS NULL"))
    n = len(rows(loaded, "SELECT id FROM calls"))
    await asyncio.sleep(2.5 * svc.campaigns.poll)   # no new dial (a dial adds its row at once) over 2 looks
    assert len(rows(loaded, "SELECT id FROM calls")) == n < len(MANY)
    assert (await api.req("GET", "/v1/campaigns/test"))[1]["status"] == "paused"
    # the calls after the resume need only be answered: their callees hang up 0.2 s in
    bank.scenario.default = LAST
    rc, _, err = await run_cli(str(loaded.path), "campaign", "resume", "test")
    assert rc == 0, err
    c = await wait_campaign(api, "test", finished)
    assert c["statuses"] == {"answered": len(MANY)} and c["calls"] == len(MANY)


async def serve(loaded: LoadedConfig) -> asyncio.subprocess.Process:
    from zygote import create_process  # forked by the worker's zygote (its imports done once)

    proc = await create_process(["--config", str(loaded.path), "serve"],
                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await wait_for(lambda: Client.from_config(loaded.config).running() or proc.returncode is not None)
    assert proc.returncode is None, "serve exited at start"
    return proc


# The message of the campaign call that `kill -9` cuts (s): never heard to its end
KILLED_CALL_S = 20.0


@pytest.mark.slow
async def test_serve_killed_mid_campaign_resumes_on_restart(make_bank, tmp_path):
    """kill -9 of `serve` while a campaign call plays and the worker's next call is armed (its
    contact claimed, its row written, not dialed): the restart hangs up the call left up,
    closes both rows as interrupted, and dials the armed contact once (not counted twice)."""
    # four contacts: one answered before the kill, one cut by it, one armed, one after (six
    # asserted nothing more and cost two 0.9 s calls). The first callee hangs up 0.2 s after
    # answering; the second one hears the whole message, long enough that its call is still up
    # when the kill lands however late a loaded machine runs the test (the kill comes as soon
    # as the call is up and the next one armed: the test never waits for the message). It was
    # 0.8 s for every call, the kill within 0.3 s of the answer, and the "armed" row found by
    # the journal alone, which a call just dialed matches until its dial mark commits: at load
    # ~28 the test took the call that was up for the armed one.
    numbers = MANY[:4]
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1),
                                               numbers={numbers[0]: LAST}), n=1)
    loaded, camp = service_setup(tmp_path, bank, numbers, message_s=KILLED_CALL_S, port=free_port())
    proc = await serve(loaded)

    def armed_now() -> list[dict]:
        return rows(loaded, "SELECT c.id, c.number FROM calls c JOIN call_events e ON e.call_id = c.id"
                            " WHERE e.kind = 'armed' AND c.started_at IS NULL AND c.outcome IS NULL")
    try:
        rc, out, err = await run_cli(str(loaded.path), "campaign", "run", "--detach", str(camp))
        assert rc == 0, out + err
        sim = bank.modems[0]

        scene: list[dict] = []      # the armed row the kill is to find

        def call_up_and_next_armed() -> bool:
            # the first call over; the second up on the SIM and its dial mark committed (the
            # mark is a lazy write queued after ATD's OK: before it commits, the call's own
            # armed row still reads as armed, and a kill then is the "before or as it dialed"
            # case of docs/architecture.md, not this one); the next contact armed, its row
            # written and its number not dialed on the SIM
            c = sim.calls[-1] if sim.calls else None
            if (c is None or len(sim.calls) < 2 or c.state != "active"
                    or not rows(loaded, "SELECT id FROM calls WHERE outcome IS NOT NULL")
                    or not rows(loaded, "SELECT id FROM calls WHERE number = ? AND started_at IS NOT NULL"
                                        " AND outcome IS NULL", c.number)):
                return False
            on_sim = {x.number for x in sim.calls}
            scene[:] = [a for a in armed_now() if a["number"] not in on_sim][:1]
            return bool(scene)
        await wait_for(call_up_and_next_armed)
        armed = scene[0]
        proc.kill()                                 # kill -9 in the middle of a call, its next one armed
        await proc.wait()
        left_up = bank.modems[0].calls[-1]
        assert left_up.state == "active"            # the callee still hears the message
        assert armed["number"] not in [c.number for c in sim.calls]
        # the calls after the restart need not be long (the long message was for the kill to
        # land during a call): the resumed campaign reads its message again
        wav(tmp_path / "hello.wav", 0.2)
        proc = await serve(loaded)
        await wait_for(lambda: rows(loaded, "SELECT status FROM campaigns")[0]["status"] == "done", timeout=25)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    calls = rows(loaded, "SELECT id, number, outcome, started_at, cause_text FROM calls ORDER BY id")
    # every contact dialed once; the one cut by the kill is recorded as interrupted (no retry rule: final)
    assert sorted(c.number for c in bank.modems[0].calls) == sorted(numbers)
    dialed = [x for x in calls if x["started_at"] is not None]
    assert sorted(x["number"] for x in dialed) == sorted(numbers)
    assert [x["outcome"] for x in dialed].count("interrupted") == 1
    # the armed row stays on record, closed as interrupted (the caps count it), not an attempt:
    # its contact was dialed after the restart and answered
    undialed = [x for x in calls if x["started_at"] is None]
    assert [(x["id"], x["outcome"], x["cause_text"]) for x in undialed] == [
        (armed["id"], "interrupted", "process stopped before or as it dialed")]
    by_number = {x["number"]: x for x in rows(loaded, "SELECT number, status, attempts FROM contacts")}
    assert (by_number[armed["number"]]["status"], by_number[armed["number"]]["attempts"]) == ("answered", 1)
    statuses = {x["status"] for x in by_number.values()}
    assert statuses <= {"answered", "exhausted"}
    assert left_up.state == "ended" and left_up.ended_by == "dialer"    # hung up at the restart


def armed_rows(loaded: LoadedConfig) -> list[dict]:
    """Campaign calls written ahead of their dial (an 'armed' event, no dial mark, no outcome)."""
    return rows(loaded, "SELECT c.id, c.number, c.contact_id FROM calls c WHERE c.outcome IS NULL"
                        " AND c.started_at IS NULL AND EXISTS (SELECT 1 FROM call_events e"
                        " WHERE e.call_id = c.id AND e.kind = 'armed')")


async def test_an_alert_takes_the_line_an_armed_campaign_call_was_waiting_for(make_bank, tmp_path, services):
    """One line: the campaign's next call is armed (contact claimed, row written) while its call
    plays; an alert raised then gets the line when that call ends, before the armed call. The
    armed contact is let go (row gone, pending, no attempt) and dialed once, after the alert."""
    # the last contact never plays while the test acts (an armed next call must exist then):
    # its callee hangs up 0.2 s after answering instead of holding the line for the 1.5 s message
    sc = Scenario(default=Callee("answer", answer_after=0.1),
                  numbers={ALICE: Callee(answer_after=0.1, keys=[(0.8, "1")]), MANY[2]: LAST})
    bank = await make_bank("quectel", sc, n=1)
    loaded, camp = service_setup(tmp_path, bank, MANY[:3], message_s=1.5)
    (tmp_path / "prompts").mkdir()
    wav(tmp_path / "prompts" / "alert.wav", 0.5)
    svc = await services(loaded)
    api = Api(svc)
    assert (await api.req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 202
    await wait_for(lambda: armed_rows(loaded) and bank.modems[0].calls
                   and bank.modems[0].calls[-1].state == "active", timeout=15)
    armed = armed_rows(loaded)[0]
    playing = bank.modems[0].calls[-1].number
    status, a = await api.req("POST", "/v1/alerts", {"to": "alice", "audio": "alert.wav", "ack_key": "1"})
    assert status == 202
    await wait_for(lambda: any(w[0] == Priority.ALERT and not w[4].done() for w in svc.bank._waiters), timeout=5)
    # the alert waits for the line (the call in progress is not cut); the armed call stays armed
    assert bank.modems[0].calls[-1].number == playing and armed_rows(loaded) == [armed]
    # the armed contact is dialed after the alert: answered is all that is asked of it (not
    # the 1.5 s message, which was for the test to act while the first call plays)
    sc.numbers[armed["number"]] = LAST
    await api.wait_alert(a["id"], acked, timeout=20)
    c = await wait_campaign(api, "test", finished, timeout=30)
    assert c["statuses"] == {"answered": 3}
    dialed = [x.number for x in bank.modems[0].calls]
    # the line went to the alert first, then to the contact that was armed
    assert dialed[dialed.index(playing) + 1] == ALICE and dialed.count(armed["number"]) == 1
    assert dialed.index(armed["number"]) > dialed.index(ALICE)
    # the armed row was taken back (never dialed: no attempt, nothing on record)
    assert not rows(loaded, "SELECT id FROM calls WHERE id = ?", armed["id"])
    got = rows(loaded, "SELECT attempts FROM contacts WHERE id = ?", armed["contact_id"])
    assert got == [{"attempts": 1}]
    assert sorted(x["number"] for x in rows(loaded, "SELECT number FROM calls WHERE campaign_id IS NOT NULL")) \
        == sorted(MANY[:3])


async def test_pause_lets_the_services_armed_call_go_and_resume_dials_it_once(make_bank, tmp_path, services):
    # the last contact never plays when the pause comes (an armed next call must exist then)
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1), numbers={MANY[2]: LAST}),
                           n=1)
    loaded, camp = service_setup(tmp_path, bank, MANY[:3], message_s=1.5)
    svc = await services(loaded)
    api = Api(svc)
    assert (await api.req("POST", "/v1/campaigns", {"file": str(camp)}))[0] == 202
    await wait_for(lambda: armed_rows(loaded), timeout=15)
    armed = armed_rows(loaded)[0]
    rc, _, err = await run_cli(str(loaded.path), "campaign", "pause", "test")
    assert rc == 0, err
    # paused: the call in progress ends, the armed one is let go (row deleted, contact pending)
    await wait_for(lambda: not rows(loaded, "SELECT id FROM calls WHERE outcome IS NULL"), timeout=15)
    assert not rows(loaded, "SELECT id FROM calls WHERE id = ?", armed["id"])
    assert rows(loaded, "SELECT status, attempts FROM contacts WHERE id = ?", armed["contact_id"]) \
        == [{"status": "pending", "attempts": 0}]
    assert armed["number"] not in [x.number for x in bank.modems[0].calls]
    # dialed after the resume: answered is all that is asked of it (the 1.5 s message was for
    # the pause to come while the first call plays)
    bank.scenario.numbers[armed["number"]] = LAST
    rc, _, err = await run_cli(str(loaded.path), "campaign", "resume", "test")
    assert rc == 0, err
    c = await wait_campaign(api, "test", finished, timeout=30)
    assert c["statuses"] == {"answered": 3} and c["calls"] == 3
    assert [x.number for x in bank.modems[0].calls].count(armed["number"]) == 1
