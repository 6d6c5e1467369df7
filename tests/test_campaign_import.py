"""Campaign file validation and contacts CSV import (bad rows, merge on re-run, retries)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from store_steps import contacts, settle_contact

from modem_dialer.campaign.contacts import import_contacts
from modem_dialer.campaign.retry import after_attempt
from modem_dialer.campaign.spec import load_campaign
from modem_dialer.errors import UserError
from modem_dialer.store import Campaigns, open_db

CSV = """number,name,timezone
06 12 34 56 78,Ann,
+33612345679,Bob,Europe/Paris
123,Bad,
0612345678,Dup of Ann,
0612345680,Tz,Mars/Olympus
0612345681
0612345682,Extra,,x

,Empty,
0033612345683;semi,,
"""


def contact_by_number(store: Campaigns, cid: int, number: str):
    """The campaign's contact with this number, or None (read as the report reads them)."""
    return next((c for c in contacts(store.conn, cid) if c.number == number), None)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def campaign_file(tmp_path, body: str):
    write(tmp_path, "contacts.csv", "number\n0612345678\n")
    write(tmp_path, "hello.wav", "")
    return write(tmp_path, "camp.yaml", body)


def test_bad_rows_reported_with_line_and_reason_good_rows_imported(tmp_path):
    path = write(tmp_path, "c.csv", CSV)
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    seen = []
    rep = import_contacts(store, cid, path, "FR", on_bad=seen.append)
    assert rep.inserted == 2 and rep.bad_count == 7
    reasons = {b.line: b.reason for b in seen}
    assert "invalid number" in reasons[4]
    assert reasons[5].startswith("duplicate number +33612345678 (first on line 2)")
    assert "unknown time zone 'Mars/Olympus'" in reasons[6]
    assert reasons[7] == "missing column(s): name, timezone"
    assert "4 fields but the header has 3" in reasons[8]
    assert reasons[10] == "missing number"
    assert "invalid number" in reasons[11]          # "0033612345683;semi" is not a number
    ann = contact_by_number(store, cid, "+33612345678")
    assert ann.fields == {"name": "Ann", "timezone": ""} and ann.line_no == 2


def test_reimport_merges_and_keeps_progress(tmp_path):
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    path = write(tmp_path, "c.csv", "number;name\n0612345678;Ann\n0612345679;Bob\n")   # ';' is sniffed
    assert import_contacts(store, cid, path, "FR").inserted == 2
    ann = contact_by_number(store, cid, "+33612345678")
    settle_contact(conn, ann.id, "answered", last_outcome="answered", count_attempt=True)
    path.write_text("number;name\n0612345678;Ann B\n0612345679;Bob\n0612345680;Cy\n")
    rep = import_contacts(store, cid, path, "FR")
    assert (rep.inserted, rep.updated, rep.unchanged) == (1, 1, 1)
    ann = contact_by_number(store, cid, "+33612345678")
    assert ann.status == "answered" and ann.attempts == 1 and ann.fields == {"name": "Ann B"}
    assert store.counts(cid) == {"answered": 1, "pending": 2}


def test_region_reads_national_numbers(tmp_path):
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    path = write(tmp_path, "c.csv", "number\n(212) 555-1234\n")
    assert import_contacts(store, cid, path, "US").inserted == 1
    assert contact_by_number(store, cid, "+12125551234") is not None


def test_header_problems_are_errors(tmp_path):
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    cid = store.create_campaign("c")
    with pytest.raises(UserError, match=r"c.csv:1: no 'number' column in the header \(have: phone, name\)"):
        import_contacts(store, cid, write(tmp_path, "c.csv", "phone,name\n1,2\n"), "FR")
    with pytest.raises(UserError, match="contacts file is empty"):
        import_contacts(store, cid, write(tmp_path, "e.csv", ""), "FR")


@pytest.mark.parametrize("body, expected", [
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nretry:\n  busy: {after: 10, max: 3}\n",
     r"camp.yaml:6: retry.busy.after: .*needs a unit"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nretry:\n  busy: {after: 10 min, max: 3}\n",
     r"camp.yaml:6: retry.busy.after: not a duration"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nrules: fr\nretyr: {}\n",
     r"camp.yaml:6: retyr: unknown key"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: spam\n", r"camp.yaml:4: purpose: "),
    ("name: x\ncontacts: contacts.csv\nsay: hi\nmessage: hello.wav\npurpose: survey\n",
     r"exactly one of message, say or flow"),
    ("name: x\ncontacts: nope.csv\nsay: hi\npurpose: survey\n", r"camp.yaml:2: contacts: file not found"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nrules: {preset: fr, windows: [9-10]}\n",
     r"camp.yaml:5: rules.*not a time window"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nretry: {answered: {after: 1m, max: 2}}\n",
     r"unknown outcome 'answered' in retry"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nring_timeout: 5s\n", r"ring_timeout under 15s"),
    ("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\nopt_out_key: 12\n", r"opt_out_key must be one key"),
])
def test_campaign_file_errors_name_file_line_and_key(tmp_path, body, expected):
    path = campaign_file(tmp_path, body)
    with pytest.raises(UserError, match=expected):
        load_campaign(path)


def test_campaign_file_paths_relative_to_the_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    campaign_file(sub, "")
    path = write(sub, "camp.yaml", "name: spring\ncontacts: contacts.csv\nmessage: hello.wav\npurpose: survey\n"
                 "rules: fr\nretry:\n  busy: {after: 10m, max: 3}\n  no_answer: {after: 2h, max: 3}\n"
                 "modems: [gsm0]\nopt_out_key: 9\n")
    cf = load_campaign(path)
    assert cf.contacts_path == sub / "contacts.csv" and cf.message_path == sub / "hello.wav"
    assert cf.spec.retry["busy"].after == timedelta(minutes=10) and cf.spec.opt_out_key == "9"
    assert cf.spec.rule_set().preset == "fr"


def test_retries_by_outcome(tmp_path):
    cf = load_campaign(campaign_file(tmp_path, "name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\n"
                                     "retry:\n  busy: {after: 10m, max: 3}\n  failed: {after: 5m, max: 2}\n"))
    end = datetime(2026, 3, 3, 10, 0, tzinfo=timezone.utc)
    spec = cf.spec
    assert after_attempt(spec, "busy", 1, end).next_attempt_at == end + timedelta(minutes=10)
    assert after_attempt(spec, "busy", 2, end).status == "pending"
    assert after_attempt(spec, "busy", 3, end).status == "exhausted"
    assert after_attempt(spec, "no_answer", 1, end).status == "exhausted"      # no rule: no retry
    assert after_attempt(spec, "interrupted", 1, end).next_attempt_at == end + timedelta(minutes=5)  # as failed
    assert after_attempt(spec, "interrupted", 2, end).status == "exhausted"
    assert after_attempt(spec, "answered", 1, end).status == "answered"
    assert after_attempt(spec, "invalid_number", 1, end).status == "invalid"
    assert after_attempt(spec, "answered", 1, end, opted_out=True).status == "opted_out"


# ---- issue 11 item 11: errors do not echo what may be a secret ----------------------------

def test_unknown_key_error_does_not_echo_its_value(tmp_path):
    path = campaign_file(tmp_path, 'name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\n'
                                   'db_password: "hunter2"\n')
    with pytest.raises(UserError) as err:
        load_campaign(path)
    assert "camp.yaml:5: db_password: unknown key" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_config_pin_error_does_not_echo_the_pin(tmp_path):
    from modem_dialer.config import load_config

    cfg = write(tmp_path, "config.yaml", "modems:\n  - {name: gsm0, port: /dev/null, pin: '12x45'}\n")
    with pytest.raises(UserError) as err:
        load_config(str(cfg))
    assert "modems[0].pin" in str(err.value) and "12x45" not in str(err.value)


# ---- issue 11 item 16: contact files from Excel -----------------------------------------

EXCEL_ROWS = [("0612345678", "Hélène", "Orléans"), ("0612345679", "Jérôme", "Besançon"),
              ("0612345680", "Zoë", "Saint-Étienne")]


def _excel_csv(tmp_path, encoding: str, sep: str = ";", name: str = "excel.csv"):
    text = "\r\n".join(sep.join(r) for r in [("number", "name", "city"), *EXCEL_ROWS]) + "\r\n"
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _imported(tmp_path, path, **kw) -> dict[str, dict[str, str]]:
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    cid = store.create_campaign(f"c{len(store.list_campaigns())}")
    seen: list = []
    rep = import_contacts(store, cid, path, "FR", on_bad=seen.append, **kw)
    assert rep.bad_count == 0, seen
    return {c.number: c.fields for c in contacts(store.conn, cid)}


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-8-sig", "utf-16"])
def test_excel_csv_in_its_own_encoding_with_semicolons(tmp_path, encoding):
    got = _imported(tmp_path, _excel_csv(tmp_path, encoding))
    assert got["+33612345678"] == {"name": "Hélène", "city": "Orléans"}
    assert got["+33612345680"] == {"name": "Zoë", "city": "Saint-Étienne"}


def test_encoding_setting_wins_over_detection(tmp_path):
    # cp1250 bytes that detection, on so little text, would read as cp1252
    p = tmp_path / "pl.csv"
    p.write_bytes("number;name\n0612345678;Łukasz Bąk\n".encode("cp1250"))
    assert _imported(tmp_path, p, encoding="cp1250")["+33612345678"] == {"name": "Łukasz Bąk"}


def test_delimiter_setting(tmp_path):
    p = tmp_path / "one-col.csv"      # nothing to sniff from the header alone: "number|name" reads as one column
    p.write_text("number|name\n0612345678|Ann\n")
    assert _imported(tmp_path, p, delimiter="|")["+33612345678"] == {"name": "Ann"}


def test_wrong_encoding_setting_is_one_line(tmp_path):
    p = _excel_csv(tmp_path, "latin-1")
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    with pytest.raises(UserError, match=r"excel.csv: contacts file is not utf-8 text"):
        import_contacts(store, store.create_campaign("c"), p, "FR", encoding="utf-8")


def test_campaign_file_encoding_and_delimiter(tmp_path):
    campaign_file(tmp_path, "")
    ok = write(tmp_path, "camp.yaml", "name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\n"
                                      "encoding: latin-1\ndelimiter: ';'\n")
    cf = load_campaign(ok)
    assert (cf.spec.encoding, cf.spec.delimiter) == ("iso8859-1", ";")
    bad = write(tmp_path, "camp.yaml", "name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\n"
                                       "encoding: latin-9000\n")
    with pytest.raises(UserError, match=r"camp.yaml:5: encoding: unknown text encoding 'latin-9000'"):
        load_campaign(bad)
    bad.write_text("name: x\ncontacts: contacts.csv\nsay: hi\npurpose: survey\ndelimiter: ':'\n")
    with pytest.raises(UserError, match=r"camp.yaml:5: delimiter: delimiter ':'"):
        load_campaign(bad)


def test_binary_contacts_file_is_one_line(tmp_path):
    p = tmp_path / "photo.csv"
    p.write_bytes(bytes(range(256)) * 16)
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    with pytest.raises(UserError, match=r"photo.csv: contacts file is not text"):
        import_contacts(store, store.create_campaign("c"), p, "FR")


def test_one_short_latin1_row_is_not_read_as_chinese(tmp_path):
    # two accented letters are too little for detection alone: Big5 reads them without error
    p = tmp_path / "short.csv"
    p.write_bytes("number;nom\n0612345678;Hélène\n".encode("latin-1"))
    assert _imported(tmp_path, p)["+33612345678"] == {"nom": "Hélène"}


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "contacts.csv"
    os.mkfifo(fifo)
    conn = open_db(tmp_path / "db")
    store = Campaigns(conn)
    with pytest.raises(UserError, match=r"contacts.csv: contacts file is not a regular file"):
        import_contacts(store, store.create_campaign("c"), fifo, "FR")
