"""SMS: PDU encoding (GSM 7-bit, UCS-2, concatenation) and `modem-dialer sms` on the simulated bank."""

from __future__ import annotations

import pytest
from gsmmodem.pdu import decodeSmsPdu
from helpers import ALICE, free_port, run_cli, write_config

from modem_dialer.errors import UserError
from modem_dialer.modems.sms import encode_sms, parse_status_report, sms_encoding


def test_short_gsm7_and_ucs2():
    (p,) = encode_sms(ALICE, "Disk full on db1 é")             # é is in the GSM alphabet
    d = decodeSmsPdu(p.pdu_hex)
    assert d["text"] == "Disk full on db1 é" and d["number"] == ALICE and d["tpdu_length"] == p.tpdu_len
    assert sms_encoding("é") == "gsm7" and sms_encoding("—") == "ucs2"
    (p,) = encode_sms(ALICE, "Disque plein — écriture échouée")
    assert p.pdu_hex[:2] == "00" and decodeSmsPdu(p.pdu_hex)["text"] == "Disque plein — écriture échouée"


@pytest.mark.parametrize(("text", "parts"), [("a" * 160, 1), ("a" * 161, 2), ("a" * 459, 3), ("é—" * 35, 1),
                                             ("é—" * 36, 2)])
def test_long_texts_split_at_the_standard_limits(text, parts):
    pdus = encode_sms(ALICE, text, concat_ref=42)
    assert len(pdus) == parts
    decoded = [decodeSmsPdu(p.pdu_hex) for p in pdus]
    assert "".join(d["text"] for d in decoded) == text
    if parts > 1:
        heads = [d["udh"][0] for d in decoded]
        assert [(h.reference, h.parts, h.number) for h in heads] == [(42, parts, i + 1) for i in range(parts)]


def test_bad_texts():
    with pytest.raises(UserError, match="empty"):
        encode_sms(ALICE, "")
    with pytest.raises(UserError, match="parts"):
        encode_sms(ALICE, "x" * 2000)
    assert parse_status_report("0011000B913316325476F80000AA05E8329BFD06") is None     # a SUBMIT, not a report


async def test_sms_command_sends_a_long_text_in_parts(make_bank, tmp_path):
    bank = await make_bank("simcom")
    loaded = write_config(bank, tmp_path, api={"port": free_port()})
    text = "Disque plein sur db1 — écriture échouée. " * 4       # UCS-2, 164 characters: 3 parts
    rc, out, err = await run_cli("--config", str(loaded.path), "sms", "06 12 34 56 01", text)
    assert rc == 0, (out, err)
    assert f"to {ALICE}: sent via gsm0" in out
    sim = bank.modems[0]
    assert "AT+CMGF=0" in sim.commands
    decoded = [decodeSmsPdu(pdu) for _, pdu in sim.sms]
    assert len(decoded) == 3 and all(d["number"] == ALICE for d in decoded)
    assert "".join(d["text"] for d in decoded) == text
    assert [int(c.split("=")[1]) for c in sim.commands if c.startswith("AT+CMGS=")] == [n for n, _ in sim.sms]
