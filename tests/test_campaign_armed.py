"""The armed next call (issue 10): while a line's call plays, its next contact is claimed and
its call row committed, so the ATD goes the moment the line is free. These tests run
`campaign run` as a user does (a subprocess on a simulated bank over ptys) and act while a
row is armed: a kill -9, a suppression arriving before the dial, a pause.
"""

from __future__ import annotations

import signal
import sqlite3

import pytest
from helpers import contacts, db, patiently, run_cli, setup, start_cli, wait_until, wav

from modem_dialer.sim.callee import Callee, Scenario

A, B, C = "+33612347001", "+33612347002", "+33612347003"
MESSAGE_S = 1.5     # long enough to act while the first call plays and the next one is armed
SHORT_MESSAGE_S = 0.2   # for the run after the act: its calls only need to be answered


def armed_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Open call rows written ahead of their ATD (an 'armed' event, no dial mark yet)."""
    try:
        return conn.execute(
            "SELECT * FROM calls WHERE outcome IS NULL AND started_at IS NULL AND EXISTS"
            " (SELECT 1 FROM call_events e WHERE e.call_id = calls.id AND e.kind = 'armed')").fetchall()
    except sqlite3.OperationalError:      # the runner has not created the database yet
        return []


def dialed(bank) -> list[str]:
    """Every number the simulated modems received an ATD for."""
    return [c.number for m in bank.modems for c in m.calls]


# A callee that hangs up 0.2 s after answering: for the calls a test only needs made once
# (answered), after the moment it acts; each would otherwise hold the line for MESSAGE_S
SHORT = Callee("answer", answer_after=0.1, hangup_after=0.2)


async def campaign(make_bank, tmp_path, extra: str = "", short: tuple[str, ...] = ()) -> tuple:
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.1),
                                               numbers=dict.fromkeys(short, SHORT)), n=1)
    cfg, camp = setup(tmp_path, bank, [A, B, C], message_s=MESSAGE_S, extra=extra)
    return bank, cfg, camp, db(tmp_path)


async def armed_during_first_call(conn: sqlite3.Connection) -> sqlite3.Row:
    """The first call is answered (playing its message) and the line's next call is armed."""
    await wait_until(lambda: len(armed_rows(conn)) == 1 and conn.execute(
        "SELECT COUNT(*) FROM calls WHERE answered_at IS NOT NULL AND outcome IS NULL").fetchone()[0] == 1)
    row = armed_rows(conn)[0]
    assert row["number"] == B
    return row


async def suppressed_during_first_call(cfg, camp, conn: sqlite3.Connection, number: str) -> str:
    """Run the campaign; while A's message plays and B's call is armed, another process
    suppresses ``number``. -> the run's output, once it ended well."""
    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    await armed_during_first_call(conn)
    rc, _out, err = await run_cli("--config", str(cfg), "suppress", "add", number, "--reason", "dnc")
    assert rc == 0, err
    out, err_run = await patiently(proc.communicate(), 30)   # load-scaled: a process to run
    assert proc.returncode == 0, out.decode() + err_run.decode()
    return out.decode()


@pytest.mark.slow
async def test_kill_9_with_an_armed_call_is_recovered_without_losing_or_counting_it(make_bank, tmp_path):
    # A is in its call at the kill (its message plays): only B and C, called after, hang up early
    bank, cfg, camp, conn = await campaign(make_bank, tmp_path, "retry:\n  failed: {after: 0s, max: 2}\n",
                                           short=(B, C))
    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    armed = await armed_during_first_call(conn)
    # the armed row is committed (durable) and its contact claimed before its ATD was sent
    assert contacts(conn)[B]["status"] == "in_progress" and B not in dialed(bank)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    # A's call is still up in the simulated modem: the next run ends it first (Pool.check).
    # Its calls need not be long (the long message was for the kill to land during A's call)
    wav(tmp_path / "hello.wav", SHORT_MESSAGE_S)
    rc, out, err = await run_cli("--config", str(cfg), "campaign", "run", str(camp), timeout=60)
    assert rc == 0, out + err
    c = contacts(conn)
    calls = {n: conn.execute("SELECT * FROM calls WHERE number = ? ORDER BY id", (n,)).fetchall() for n in (A, B, C)}
    # A was in a call at the kill: an interrupted attempt, retried by the rules (max 2), then answered
    assert [r["outcome"] for r in calls[A]] == ["interrupted", "answered"] and c[A]["attempts"] == 2
    # B's armed row stays on record (closed as interrupted: the calling rules' caps count it, it
    # might have been dialed in the instant before the kill) but is not one of B's attempts: B
    # was dialed once, after the restart, and that call is its one attempt
    assert next(r["id"] for r in calls[B]) == armed["id"]
    assert [(r["outcome"], r["started_at"] is None) for r in calls[B]] == [("interrupted", True), ("answered", False)]
    assert c[B]["status"] == "answered" and c[B]["attempts"] == 1 and c[B]["last_call_id"] == calls[B][1]["id"]
    assert calls[B][0]["cause_text"] == "process stopped before or as it dialed"
    assert calls[A][0]["cause_text"] == "process stopped during the call"
    assert dialed(bank).count(B) == 1
    assert c[C]["status"] == "answered" and c[C]["attempts"] == 1 and dialed(bank).count(C) == 1
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0


@pytest.mark.slow
async def test_a_suppression_between_arming_and_dial_lets_the_contact_go_undialed(make_bank, tmp_path):
    bank, cfg, camp, conn = await campaign(make_bank, tmp_path, short=(C,))     # C: called after the act
    # another process suppresses B while A's message plays and B's call is armed
    out_b = await suppressed_during_first_call(cfg, camp, conn, B)
    # B was never dialed: its armed row is gone, the contact is suppressed with the rule's
    # decision on record; A and C were called
    assert B not in dialed(bank) and sorted(dialed(bank)) == [A, C]
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE number = ?", (B,)).fetchone()[0] == 0
    c = contacts(conn)
    assert (c[B]["status"], c[B]["attempts"], c[B]["last_outcome"]) == ("suppressed", 0, "rule:suppressed")
    log = conn.execute("SELECT verdict, rule, data FROM campaign_log WHERE kind = 'rule' AND number = ?"
                       " ORDER BY id", (B,)).fetchall()
    assert [(r["verdict"], r["rule"]) for r in log] == [("allow", None), ("deny", "suppressed")]
    assert "checked again at the dial" in log[1]["data"]
    assert c[A]["status"] == c[C]["status"] == "answered"
    assert "+33612347002: deny suppressed at the dial" in out_b


@pytest.mark.slow
async def test_a_number_suppressed_during_its_answered_call_settles_as_opted_out(make_bank, tmp_path):
    """The suppression list is read again when an answered call ends (an SMS STOP, the API,
    another process during the call): on SQLite at once on the loop, no task (issue 10)."""
    bank, cfg, camp, conn = await campaign(make_bank, tmp_path, short=(B, C))
    # another process suppresses A while A's message plays
    await suppressed_during_first_call(cfg, camp, conn, A)
    assert sorted(dialed(bank)) == [A, B, C]
    c = contacts(conn)
    assert (c[A]["status"], c[A]["attempts"], c[A]["last_outcome"]) == ("opted_out", 1, "answered")
    assert c[B]["status"] == c[C]["status"] == "answered"


@pytest.mark.slow
async def test_pause_with_an_armed_call_releases_it_and_resume_dials_it_once(make_bank, tmp_path):
    bank, cfg, camp, conn = await campaign(make_bank, tmp_path, short=(B, C))  # B, C: called after the resume
    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    await armed_during_first_call(conn)
    rc, _out, err = await run_cli("--config", str(cfg), "campaign", "pause", "test")
    assert rc == 0, err

    def paused_and_idle() -> bool:
        # (an answered call's contact is settled just after its row closes, once the opt-out
        # read is back: wait for that too, not only for the call)
        return (conn.execute("SELECT 1 FROM campaign_log WHERE kind = 'control' AND verdict = 'paused'").fetchone()
                is not None and conn.execute("SELECT COUNT(*) FROM calls WHERE outcome IS NULL").fetchone()[0] == 0
                and contacts(conn)[A]["status"] != "in_progress")
    await wait_until(paused_and_idle)
    # A's call played to its end; B's armed call was let go: no row, pending, no attempt, not dialed
    c = contacts(conn)
    assert c[A]["status"] == "answered" and (c[B]["status"], c[B]["attempts"]) == ("pending", 0)
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE number = ?", (B,)).fetchone()[0] == 0
    assert dialed(bank) == [A]
    rc, _out, err = await run_cli("--config", str(cfg), "campaign", "resume", "test")
    assert rc == 0, err
    out_b, err_b = await patiently(proc.communicate(), 30)   # load-scaled: a process to run
    assert proc.returncode == 0, out_b.decode() + err_b.decode()
    c = contacts(conn)
    assert {n: (c[n]["status"], c[n]["attempts"]) for n in (A, B, C)} == {
        A: ("answered", 1), B: ("answered", 1), C: ("answered", 1)}
    assert sorted(dialed(bank)) == [A, B, C]


@pytest.mark.slow
async def test_an_armed_row_cut_by_an_earlier_kill_is_never_counted_as_an_attempt(make_bank, tmp_path):
    """kill -9 while B's call is armed, then again during B's call: B's attempts are its two
    dialed calls, not the armed row of the first kill too (it was counted when a later call
    of B was settled: tests/test_campaign_crash.py found 3 attempts for 2 calls)."""
    # B keeps the long call (the second kill comes during it); C is called last
    bank, cfg, camp, conn = await campaign(make_bank, tmp_path, "retry:\n  failed: {after: 0s, max: 3}\n",
                                           short=(C,))
    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))
    first = await armed_during_first_call(conn)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    # A's retry in the second run need not play the long message (only B's call must be up
    # at the second kill): A hangs up once answered, as B and C do in the other tests
    bank.scenario.numbers[A] = SHORT
    proc = await start_cli("--config", str(cfg), "campaign", "run", str(camp))

    def b_in_call() -> bool:
        # B's call is up and its dial is on record (the mark is committed a moment after ATD)
        return conn.execute("SELECT COUNT(*) FROM calls WHERE number = ? AND outcome IS NULL"
                            " AND started_at IS NOT NULL AND answered_at IS NOT NULL", (B,)).fetchone()[0] == 1
    try:
        await wait_until(b_in_call)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    wav(tmp_path / "hello.wav", SHORT_MESSAGE_S)     # B's last call: answered is all that counts
    rc, out, err = await run_cli("--config", str(cfg), "campaign", "run", str(camp), timeout=60)
    assert rc == 0, out + err
    calls = conn.execute("SELECT * FROM calls WHERE number = ? ORDER BY id", (B,)).fetchall()
    assert [(r["outcome"], r["started_at"] is None) for r in calls] == [
        ("interrupted", True), ("interrupted", False), ("answered", False)]
    assert calls[0]["id"] == first["id"]
    c = contacts(conn)[B]
    assert (c["status"], c["attempts"], c["last_call_id"]) == ("answered", 2, calls[2]["id"])
    assert dialed(bank).count(B) == 2


async def test_first_calls_armed_during_the_check_and_a_line_out_lets_its_contact_go(make_bank, tmp_path):
    # Each line's first call is armed (claimed, row committed) while the modems answer the
    # start's health check (Controller.lines_checking); gsm0 fails it (registration denied):
    # its armed contact goes back, never dialed, and gsm1 calls everyone once
    bank = await make_bank("quectel", Scenario(default=Callee("answer", answer_after=0.05)), n=2)
    bank.modems[0].reg_stat = 3
    cfg, camp = setup(tmp_path, bank, [A, B, C], message_s=SHORT_MESSAGE_S)
    rc, out, err = await run_cli("--config", str(cfg), "campaign", "run", str(camp), timeout=60)
    assert rc == 0, out + err
    conn = db(tmp_path)
    assert {n: c["status"] for n, c in contacts(conn).items()} == dict.fromkeys((A, B, C), "answered")
    assert all(c["attempts"] == 1 for c in contacts(conn).values())
    assert sorted(dialed(bank)) == [A, B, C] and not bank.modems[0].calls
    rows = conn.execute("SELECT id, modem, outcome FROM calls ORDER BY id").fetchall()
    assert [(r["modem"], r["outcome"]) for r in rows] == [("gsm1", "answered")] * 3, [dict(r) for r in rows]
    # the first call was armed ahead of its dial, as the calls after it were
    first = rows[0]["id"]
    assert conn.execute("SELECT COUNT(*) FROM call_events WHERE call_id = ? AND kind = 'armed'",
                        (first,)).fetchone()[0] == 1


@pytest.mark.parametrize("family", ["huawei", "quectel"])
async def test_a_lines_check_before_its_first_dial_asks_only_what_decides(make_bank, tmp_path, family):
    # The start's check decides on a left call, the signal and the registration; the SIM's
    # state (read by the line's init moments before), the operator and VoLTE were 2-3 round
    # trips more before every line's first dial: not asked there any more
    bank = await make_bank(family, Scenario(default=Callee("answer", answer_after=0.05)), n=1)
    cfg, camp = setup(tmp_path, bank, [A], message_s=SHORT_MESSAGE_S)
    rc, out, err = await run_cli("--config", str(cfg), "campaign", "run", str(camp), timeout=60)
    assert rc == 0, out + err
    commands = bank.modems[0].commands
    dial = next(i for i, c in enumerate(commands) if A.lstrip("+") in c)
    check = max(i for i, c in enumerate(commands[:dial]) if c.upper() == "AT+CLCC")
    assert [c.upper() for c in commands[check:dial]] == ["AT+CLCC", "AT+CSQ", "AT+CREG?", "AT+CEREG?"]
