"""SMS PDUs: property tests (random text → parts → PDUs → decoded → same text) for our SUBMIT
encoder and for the simulator's independent DELIVER encoder, reassembled through the real
store; fixed fixtures from real and published PDUs; garbage never raises anything but PduError."""

from __future__ import annotations

import random

import pytest
from gsmmodem.pdu import decodeSmsPdu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_dialer.modems.sms_pdu import (
    GSM7_BASIC,
    GSM7_EXT,
    Deliver,
    PduError,
    StatusReport,
    Submit,
    dcs_encoding,
    decode_pdu,
    encode_submit,
    gsm7_encode,
    split_text,
)
from modem_dialer.sim.sms_pdu import deliver_pdus, status_report_pdu
from modem_dialer.store import IncomingPart, SmsInbox, open_db

ALICE = "+33612345601"
GSM_CHARS = [c for c in GSM7_BASIC if c != "\x1b"] + list(GSM7_EXT.values())
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), min_size=1, max_size=700)
# biased towards escapes, '@' (septet 0) and emoji so the part boundaries land on them often
gsm_tricky = st.text(alphabet=st.sampled_from(["@", "€", "[", "a", "{", "\\", "é", " "]), min_size=150, max_size=500)
ucs2_chars = st.one_of(st.characters(blacklist_categories=("Cs",)),
                       st.sampled_from(["😀", "👍", "🇫", "€", "—", "é", "𝄞", "a"]))
ucs2_text = st.text(alphabet=ucs2_chars, min_size=1, max_size=400)
ref_bits = st.sampled_from([8, 16])
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def septets_of(part: str) -> int:
    return len(gsm7_encode(part))


@PROPS
@given(text=st.one_of(gsm_text, gsm_tricky), bits=ref_bits, ref=st.integers(0, 65535))
def test_gsm7_submit_roundtrip_and_escapes_never_split(text, bits, ref):
    enc = encode_submit(ALICE, text, reference=ref % (256 if bits == 8 else 65536), ref_bits=bits)
    assert enc.encoding == "gsm7"
    decoded = [decode_pdu(p.pdu_hex) for p in enc.parts]
    assert all(isinstance(d, Submit) and d.recipient.number == ALICE for d in decoded)
    # per part: the text of the part exactly (a split ESC pair would show as " " + a basic char)
    assert [d.text for d in decoded] == enc.texts
    assert "".join(enc.texts) == text
    limit = 160 if len(enc.parts) == 1 else (153 if bits == 8 else 152)
    assert all(septets_of(t) <= limit for t in enc.texts)
    if len(enc.parts) > 1:
        assert [(d.ud.concat.seq, d.ud.concat.total, d.ud.concat.ref_bits) for d in decoded] == \
            [(i, len(enc.parts), bits) for i in range(1, len(enc.parts) + 1)]
    assert all(p.tpdu_len == len(bytes.fromhex(p.pdu_hex)) - 1 for p in enc.parts)


@PROPS
@given(text=ucs2_text, bits=ref_bits)
def test_ucs2_submit_roundtrip_and_surrogate_pairs_never_split(text, bits):
    enc = encode_submit(ALICE, text, reference=7, ref_bits=bits, encoding="ucs2")
    decoded = [decode_pdu(p.pdu_hex) for p in enc.parts]
    for d in decoded:
        assert isinstance(d.text, str)
        d.text.encode("utf-16-be")            # strict: raises on a lone surrogate half
    assert "".join(d.text for d in decoded) == text
    limit = 70 if len(enc.parts) == 1 else (67 if bits == 8 else 66)
    assert all(len(t.encode("utf-16-be")) // 2 <= limit for t in enc.texts)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> SmsInbox:
    conn = open_db(tmp_path_factory.mktemp("pdu") / "j.db")
    conn.execute("PRAGMA synchronous = OFF")     # hundreds of examples; durability is tested elsewhere
    return SmsInbox(conn)


def _reassemble(inbox: SmsInbox, pdus: list[str], modem: str = "gsm0") -> str:
    """Decode each PDU and reassemble them, in a shuffled order, through the real store."""
    random.Random(len(pdus)).shuffle(pdus)
    done = None
    for pdu in pdus:
        d = decode_pdu(pdu)
        assert isinstance(d, Deliver)
        c = d.ud.concat
        if c is None:
            assert len(pdus) == 1
            return d.text or ""
        got = inbox.add_part(IncomingPart(modem, d.sender.number or "", c.reference, c.ref_bits, c.total, c.seq,
                                          d.text or "", d.ud.encoding, pdu))
        done = got if got is not None else done
    assert done is not None
    msg = inbox.get(done)
    assert msg is not None and msg.complete and inbox.conn.execute("SELECT COUNT(*) FROM sms_in_parts").fetchone()[0] == 0
    return msg.text or ""


@PROPS
@given(text=st.one_of(gsm_text, gsm_tricky), bits=ref_bits, ref=st.integers(0, 65535))
def test_sim_deliver_gsm7_decoded_and_reassembled(inbox, text, bits, ref):
    pdus = deliver_pdus(ALICE, text, encoding="gsm7", ref_bits=bits, reference=ref)
    assert _reassemble(inbox, pdus) == text


@PROPS
@given(text=ucs2_text, bits=ref_bits)
def test_sim_deliver_ucs2_with_emoji_decoded_and_reassembled(inbox, text, bits):
    pdus = deliver_pdus(ALICE, text, encoding="ucs2", ref_bits=bits, reference=300)
    assert _reassemble(inbox, pdus) == text


@PROPS
@given(data=st.binary(min_size=1, max_size=400), bits=ref_bits)
def test_sim_deliver_8bit(inbox, data, bits):
    pdus = deliver_pdus(ALICE, data, ref_bits=bits, reference=9)
    assert _reassemble(inbox, pdus).encode("latin-1") == data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=200))
def test_garbage_raises_pdu_error_only(raw):
    try:
        decode_pdu(raw.hex())
    except PduError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=gsm_text, cut=st.integers(1, 60))
def test_truncated_pdus_raise_pdu_error_only(text, cut):
    pdu = deliver_pdus(ALICE, text, encoding="gsm7")[0]
    try:
        decode_pdu(pdu[:-2 * cut])
    except PduError:
        pass


# ---- fixed fixtures --------------------------------------------------------------------

def test_published_deliver_how_are_you():
    # the SMS-DELIVER example of the classic PDU tutorials (dreamfabric "SMS PDU format")
    d = decode_pdu("07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07")
    assert isinstance(d, Deliver)
    assert (d.sender.number, d.smsc, d.text) == ("+31641600986", "+31624000000", "How are you?")
    assert d.timestamp is not None and d.timestamp.isoformat() == "2002-08-26T19:37:41+00:00"


def test_real_submit_from_the_simcom_transcript():
    # sim7xxx__modemmanager-ea93aad8-cmgs-prompt-timeout.txt, the masked digits set to 0
    d = decode_pdu("0021000B916400000000F000000AEDF6989D06D1CB733A")
    assert isinstance(d, Submit) and d.text == "mmcli test" and d.status_report_request


def test_where_python_gsmmodem_decodes_wrong_we_decode_right():
    # 7-bit part with a 16-bit reference: no fill bit; gsmmodem assumes one and loses a character
    p16 = deliver_pdus(ALICE, "x" * 152 + "tail" * 5, ref_bits=16, reference=0x1234)[0]
    assert decode_pdu(p16).text == "x" * 152
    assert decodeSmsPdu(p16)["text"] != "x" * 152
    # a concatenated 7-bit part ending in '@' (septet 0, looks like padding)
    p_at = deliver_pdus(ALICE, "a" * 152 + "@" + "b" * 20, reference=5)[0]
    assert decode_pdu(p_at).text == "a" * 152 + "@"
    # an emoji: one surrogate pair, one character
    (p_emoji,) = deliver_pdus(ALICE, "ok 👍", encoding="ucs2")
    assert decode_pdu(p_emoji).text == "ok 👍"
    assert decodeSmsPdu(p_emoji)["text"] != "ok 👍"


def test_status_report_and_garbled_and_unknown_dcs():
    r = decode_pdu(status_report_pdu(78, ALICE, 0))
    assert isinstance(r, StatusReport) and (r.reference, r.recipient.number, r.delivered) == (78, ALICE, True)
    r = decode_pdu(status_report_pdu(3, ALICE, 0x41))
    assert isinstance(r, StatusReport) and not r.delivered and r.final
    for bad in ("", "zz", "07911326040000F004", "0791132604"):
        with pytest.raises(PduError):
            decode_pdu(bad)
    (unknown,) = deliver_pdus(ALICE, "hello", dcs=0x8C)
    d = decode_pdu(unknown)
    assert isinstance(d, Deliver) and d.ud.encoding == "unknown" and d.text is None


def test_hidden_and_alphanumeric_senders():
    assert decode_pdu(deliver_pdus("", "hi")[0]).sender.hidden
    assert decode_pdu(deliver_pdus("MyBank", "hi")[0]).sender.number == "MyBank"


@pytest.mark.parametrize(("dcs", "enc"), [(0x00, "gsm7"), (0x04, "8bit"), (0x08, "ucs2"), (0x10, "gsm7"),
                                          (0x18, "ucs2"), (0x20, "unknown"), (0x0C, "unknown"), (0x48, "ucs2"),
                                          (0x80, "unknown"), (0xC0, "gsm7"), (0xE0, "ucs2"), (0xF0, "gsm7"),
                                          (0xF4, "8bit")])
def test_data_coding_schemes(dcs, enc):
    assert dcs_encoding(dcs) == enc


def test_split_counts_what_the_network_counts():
    assert len(split_text("€" * 80)) == 1                      # 160 septets: one part
    parts = split_text("€" * 81)
    assert all(len(gsm7_encode(p)) <= 153 for p in parts) and "".join(parts) == "€" * 81
    assert split_text("😀" * 35) == ["😀" * 35]                   # 70 UTF-16 units
    assert all(len(p) <= 33 for p in split_text("😀" * 36))       # 67 units: 33 emoji, never 33.5
