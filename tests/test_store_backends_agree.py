"""The store answers the same on SQLite and PostgreSQL: the same writes through the store's
methods, then every read method of the console, report, journal, compliance, alerts, SMS,
inbound, webhook and boxes stores compared between the two backends."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from store_steps import claim_contact, settle_contact

from modem_dialer.store import (
    Alerts,
    Campaigns,
    Compliance,
    Journal,
    SmsInbox,
    modem_states,
    open_db,
    other_boxes_modems,
    set_modem_state,
    to_ts,
)
from modem_dialer.store.boxes import Boxes, Leases, unowned_alerts
from modem_dialer.store.campaign_log import CampaignLog
from modem_dialer.store.console import ConsoleQueries
from modem_dialer.store.twoway import CallbackLink, Inbound, Outbox

T0 = datetime(2025, 3, 3, 10, 0, 0, 250000, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=7)
        return self.t


def fill(conn) -> None:
    clock = Clock()
    cs, j, comp = Campaigns(conn, clock), Journal(conn, clock), Compliance(conn, clock)
    cid = cs.create_campaign("spring", config={"purpose": "informational", "n": 3})
    cs.create_campaign("autumn")
    cs.import_contacts(cid, [(i + 2, f"+3361234{i:04d}", {"name": f"N{i}", "é": i}) for i in range(40)])
    log = CampaignLog(conn, cid, clock)
    outcomes = ["answered", "busy", "no_answer", "answered", "failed", "machine"]
    for i, c in enumerate(cs.next_due(cid, T0 + timedelta(days=1), limit=18)):
        claim_contact(conn, c.id, clock)                 # as a worker does before its call row
        call = j.start_call(c.number, f"gsm{i % 3}", "35693803564380" + str(i % 3), f"8933{i % 3}",
                            campaign_id=cid, contact_id=c.id)
        j.mark_dialed(call)
        outcome = outcomes[i % len(outcomes)]
        if outcome == "answered":
            j.mark_answered(call)
            j.key(call, str(i % 10), "urc")
            j.answer(call, "q1", i % 4, contact_id=c.id)
            j.answer(call, "rec", f"rec{i}.wav", contact_id=c.id)
            j.event(call, "node", node="menu", n=i)
        if i < 16:
            j.finish_call(call, outcome, cause=16 + i, cause_text="normal", hangup_by="callee",
                          duration_s=i * 1.5 if outcome == "answered" else None)
        status = "answered" if outcome == "answered" else "pending"
        settle_contact(conn, c.id, status, last_outcome=outcome, last_call_id=call, count_attempt=True,
                       next_attempt_at=T0 + timedelta(hours=i) if status == "pending" else None, clock=clock)
        log.write("rule", contact_id=c.id, number=c.number, verdict="allow", rule="none")
        if i == 5:
            j.refusal(call, "key")
    comp.suppress("+33699999999", "opt_out", "sms")
    comp.import_suppression([f"+3369000{i:04d}" for i in range(30)], reason="dnc", source="file")
    comp.add_consent("+33612340001", "calls", "web", T0, "proof-1", name="Ann")
    comp.add_consent("+33612340002", "sms", "paper", T0 - timedelta(days=3))
    comp.revoke_consent("+33612340002", "sms", at=T0)
    with conn:     # a refusal outside a journaled call (inbound line): the table itself
        conn.execute("INSERT INTO refusals (number, at, source) VALUES (?, ?, ?)",
                     ("+33612340003", to_ts(T0), "inbound"))
    al = Alerts(conn, clock)
    a1, _ = al.raise_alert("disk:web1", "oncall", "Disk full", state={"step": 1})
    a2, _ = al.raise_alert("cpu:web2", "oncall", "CPU")
    al.acknowledge(a1, "+33612345678", at=T0)
    al.resolve(a2, at=T0)
    s1 = al.add_sms("+33612345678", "Disk full", alert_id=a1)
    al.sms_sent(s1, "gsm0", 12)
    al.sms_delivered("gsm0", 12, at=T0)
    al.sms_failed(al.add_sms("+33612345679", "x"), "no network", "gsm1")
    inbox = SmsInbox(conn, clock)
    inbox.add_message("gsm0", "+33612345678", "STOP", "gsm7", kind="stop")
    inbox.add_message("gsm1", None, None, "garbled", pdu="00FF", error="bad", kind="bad")
    inb = Inbound(conn, clock)
    link = inb.callback_link("+33612340000", "89330", "gsm0")
    inb.record(number="+33612340000", withheld=False, modem="gsm0", iccid="89330", action="answered",
               link=link, call_id=inb.start_call("+33612340000", "gsm0", None, "89330"))
    inb.record(number=None, withheld=True, modem="gsm1", iccid=None, action="rejected", link=CallbackLink(None, None, None))
    ob = Outbox(conn, clock)
    ids = ob.add("call.ended", '{"id": 1}', ["https://a.example/h", "https://b.example/h"])
    ob.delivered(ids[0])
    ob.failed(ids[1], "HTTP 500", T0 + timedelta(minutes=5))
    fill_boxes(conn, clock, cid)


def fill_boxes(conn, clock: Clock, cid: int) -> None:
    """Two boxes claim contacts and write their modems; one is lost and taken over."""
    boxes = Boxes(conn, clock)
    for name in ("b1", "b2"):
        boxes.register(name, timedelta(hours=1), host="h", pid=1)
    due = Campaigns(conn, clock).next_due(cid, T0 + timedelta(days=1), limit=4)
    with conn:
        for i, c in enumerate(due):
            assert Leases(conn, clock).claim(c.id, c.number, f"b{i % 2 + 1}")
    set_modem_state(conn, "gsm0", "ready", imei="356938035643809", iccid="89330", at=T0, box="b1")
    set_modem_state(conn, "gsm0", "failed", reason="no SIM", at=T0, box="b2")
    set_modem_state(conn, "gsm0", "failed", reason="no network", seen=False, box="b1")
    clock.t += timedelta(hours=2)
    assert boxes.heartbeat("b1", timedelta(hours=3), pid=1)
    assert boxes.take_over("b2") is not None


def norm(x):
    """Rows and dataclasses as plain data, so the two backends' results compare."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return norm(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [norm(v) for v in x]
    if hasattr(x, "keys") and not isinstance(x, str):
        return {k: norm(x[k]) for k in x.keys()}
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


READS = {
    "campaigns": lambda c: [Campaigns(c).list_campaigns(), Campaigns(c).get_campaign("spring"),
                            Campaigns(c).counts(1), Campaigns(c).answer_counts(1),
                            list(Campaigns(c).report_chunks(1, chunk=2)),
                            Campaigns(c).next_due(1, T0 + timedelta(hours=30), limit=50, exclude_numbers=["+33612340004"]),
                            Campaigns(c).keys_and_answers([1, 2, 3, 4, 5, 99]), Campaigns(c).call_stats(1),
                            Campaigns(c).status_of(1), Campaigns(c).has_open_contacts(1),
                            Campaigns(c).next_pending_at(1), Campaigns(c).outcome_counts(1),
                            Campaigns(c).calls_of_contact(1, "line_busy")],
    "journal": lambda c: [Journal(c).calls(limit=50), Journal(c).calls(campaign_id=1, outcome="busy"),
                          Journal(c).calls(open_only=True, newest_first=False),
                          Journal(c).calls(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=20)),
                          Journal(c).get_call(1), Journal(c).events_of(1), Journal(c).answers_of(1),
                          Journal(c).has_event(1, "node"),
                          Journal(c).outbound_usage(T0, T0, iccid="89330"),
                          Journal(c).outbound_usage_many([(T0, T0, "89330", "gsm0"), (T0, T0 + timedelta(minutes=9),
                                                          None, "gsm1"), (T0, T0, None, "nothing")]),
                          [Journal(c).outbound_usage(T0, T0 + timedelta(minutes=9), modem="gsm1")],
                          Journal(c).alert_calls_since("+33612345678", T0),
                          Journal(c).campaign_calls_after(1, 3), Journal(c).last_campaign_call_id(1),
                          Journal(c).campaign_calls_per_modem(1, "2000")],
    "compliance": lambda c: [list(Compliance(c).export_suppression(chunk=7)), list(Compliance(c).export_consent(chunk=1)),
                             Compliance(c).find_consent("+33612340001", "calls", T0 + timedelta(days=1)),
                             Compliance(c).find_consent("+33612340002", "sms", T0 + timedelta(days=1)),
                             Compliance(c).last_refusal("+33612340003"),
                             Compliance(c).attempt_times("+33612340000", T0),
                             Compliance(c).is_suppressed("+33690000003"),
                             Compliance(c).dial_facts("+33612340016", since=None),     # a call left open
                             Compliance(c).dial_facts("+33612340016", since=None, except_call=17)],
    "alerts": lambda c: [Alerts(c).live_alerts(), Alerts(c).alert_rows(live_only=False, limit=10),
                         Alerts(c).alert_ids(live_only=True, limit=10), Alerts(c).live_counts(),
                         Alerts(c).sms_of_alert(1), Alerts(c).sms_count_since("+33612345678", T0),
                         Alerts(c).queued_sms_ids(), Alerts(c).get_sms(2)],
    "sms_inbox": lambda c: [SmsInbox(c).messages(limit=10), SmsInbox(c).messages(kind="stop", sender="+33612345678"),
                            SmsInbox(c).alerts_texted_to("+33612345678"), SmsInbox(c).sms_by_reference("gsm0", 12)],
    "twoway": lambda c: [Inbound(c).recent(), Inbound(c).callbacks(1), Outbox(c).list(), Outbox(c).counts(),
                         Outbox(c).due(T0 + timedelta(hours=1)), Outbox(c).next_due_at()],
    "boxes": lambda c: [Boxes(c).list(), Boxes(c, lambda: T0 + timedelta(hours=3)).up(),
                        Boxes(c, lambda: T0 + timedelta(hours=9)).expired("b3"), Leases(c).held(1),
                        [x.id for x in Leases(c).orphans(1)], Leases(c).lease_of(3), modem_states(c),
                        modem_states(c, "b2"), other_boxes_modems(c, "b2", now=T0 + timedelta(hours=1)),
                        unowned_alerts(c)],
    "campaign_log": lambda c: [CampaignLog(c, 1).entries(kind="rule", limit=5), CampaignLog(c, 1).last_id(),
                               CampaignLog(c, 1).after(3)],
    "console": lambda c: [ConsoleQueries(c).open_calls(), ConsoleQueries(c).last_call_id(),
                          ConsoleQueries(c).first_call_since("2025-03-03T10:01"),
                          ConsoleQueries(c).calls_by_modem_after(2), ConsoleQueries(c).failures_after(0),
                          ConsoleQueries(c).campaign_outcomes(1),
                          ConsoleQueries(c).contacts_page(1, limit=7), ConsoleQueries(c).contacts_page(1, after="7", limit=7),
                          ConsoleQueries(c).contacts_page(1, number="+336123400", limit=5),
                          ConsoleQueries(c).contacts_page(1, status="pending", outcome="busy"),
                          ConsoleQueries(c).report_charts(1), ConsoleQueries(c).calls_page(limit=5),
                          ConsoleQueries(c).calls_page(number="+33612340001"), ConsoleQueries(c).call_detail(1),
                          ConsoleQueries(c).filter_choices(), ConsoleQueries(c).alert_ids(False),
                          ConsoleQueries(c).suppression_page(prefix="+3369000", limit=5),
                          ConsoleQueries(c).suppression_count(), ConsoleQueries(c).consent_for(None),
                          list(ConsoleQueries(c).export_consent()), ConsoleQueries(c).campaign_flow_files()],
}


@pytest.fixture(scope="module")
def both(pg, tmp_path_factory):
    lite = open_db(tmp_path_factory.mktemp("agree") / "a.db")
    dsn = pg.new_schema()
    post = open_db(dsn)
    fill(lite)
    fill(post)
    yield lite, post
    lite.close()
    post.close()
    pg.drop_schema(dsn)


@pytest.mark.parametrize("area", sorted(READS))
def test_reads_agree(both, area):
    lite, post = both
    a, b = norm(READS[area](lite)), norm(READS[area](post))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"{area} read #{i} differs:\nsqlite:     {x!r}\npostgresql: {y!r}"
