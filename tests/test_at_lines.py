"""The line splitter and final-result rules, including property tests on garbage."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_dialer.at.line_splitter import _SPLIT, LineSplitter, is_final, response_prefix


def feed_in_chunks(data: bytes, cuts: list[int], s: LineSplitter | None = None) -> list[str]:
    """The lines ``data`` gives fed in pieces cut at ``cuts`` (to ``s``, or a new splitter)."""
    s = s or LineSplitter()
    out: list[str] = []
    pos = 0
    for c in sorted(set(cuts)):
        out += s.feed(data[pos:c])
        pos = c
    out += s.feed(data[pos:])
    return out


def test_framings_echo_and_blank_lines():
    data = b"AT+CGSN\r\r\n867698041234560\r\n\r\nOK\r\n\r\r\n+RXDTMF: 1\r\r\n\r\n\r\n"
    assert LineSplitter().feed(data) == ["AT+CGSN", "867698041234560", "OK", "+RXDTMF: 1"]


def test_partial_line_waits_for_its_end():
    s = LineSplitter()
    assert s.feed(b"\r\n+QIND: \"cc") == []
    assert s.feed(b"info\",2,0,3,0,0,\"+1\",145\r\n") == ['+QIND: "ccinfo",2,0,3,0,0,"+1",145']


def test_finals():
    assert is_final("OK") and is_final("ERROR") and is_final("+CME ERROR: SIM not inserted")
    assert is_final("+CMS ERROR: 500") and is_final("COMMAND NOT SUPPORT") and is_final("NO DIALTONE")
    assert not is_final("NO CARRIER") and is_final("NO CARRIER", call_results=True)
    assert not is_final("BUSY") and is_final("NO ANSWER", call_results=True)
    assert not is_final("OKAY")


def test_response_prefix():
    assert response_prefix("AT+CLCC") == "+CLCC:"
    assert response_prefix("AT^CVOICE?") == "^CVOICE:"
    assert response_prefix("AT+CICCID") == "+ICCID:"
    assert response_prefix("ATD+33612345678;") is None


LINES = st.lists(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
                 max_size=20)


# no deadline nor too-slow check: hypothesis times each example on the wall clock, which a
# loaded CI machine stretches (HealthCheck.too_slow failed at load 40); the property is the test
@given(LINES, st.lists(st.integers(min_value=0, max_value=800), max_size=20),
       st.sampled_from([b"\r\n", b"\r\r\n"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_gives_the_same_lines(lines, cuts, eol):
    data = b"".join(eol + line.encode() + eol for line in lines)
    assert feed_in_chunks(data, cuts) == lines


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_never_raises_and_never_yields_blank_or_framed_lines(data, cuts):
    for line in feed_in_chunks(data, cuts):
        assert line and line == line.strip() and "\n" not in line and "\r" not in line


def _regex_lines(data: bytes) -> tuple[list[str], bytes]:
    """The splitter's rule written out once: lines and the partial rest."""
    pos, out = 0, []
    for m in _SPLIT.finditer(data):
        line = data[pos:m.start()].strip(b"\r").decode("utf-8", errors="replace").strip()
        pos = m.end()
        if line:
            out.append(line)
    return out, data[pos:]


# bytes made of what matters to the framing (CR, LF, text, a space, a byte that is not UTF-8)
FRAMING = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\r\n", b"a", b"OK", b" ", b"\xff"]),
                   max_size=60).map(b"".join)


@given(FRAMING, st.lists(st.integers(min_value=0, max_value=200), max_size=10))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chunks_of_cr_lf_lines_split_as_the_rule_says(data, cuts):
    """The splitter's fast path (every CR part of a CR LF) and its regex give the same lines,
    whatever the chunking; the partial line left is the same too."""
    s = LineSplitter()
    assert (feed_in_chunks(data, cuts, s), s.partial) == _regex_lines(data)


def test_endless_bytes_without_newline_are_bounded():
    s = LineSplitter()
    for _ in range(100):
        s.feed(b"x" * 10_000)
    assert len(s.partial) <= LineSplitter.MAX_PARTIAL
