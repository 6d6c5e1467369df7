"""SMS PDUs (3GPP TS 23.040 / 23.038): decode SMS-DELIVER, SMS-STATUS-REPORT, SMS-SUBMIT;
encode SMS-SUBMIT; split long texts into concatenated parts.

Written here rather than taken from python-gsmmodem-new because its ``decodeSmsPdu`` is
wrong in three cases that real traffic hits (issue 13): a 7-bit part with a 16-bit
concatenation reference (it assumes the 1 fill bit of an 8-bit reference header and drops
a character), a concatenated 7-bit part whose text ends in ``@`` (septet 0, stripped as if
padding) and UCS-2 outside the Basic Multilingual Plane (the surrogate halves of an emoji
come back unjoined). Here the 7-bit septet count always comes from TP-UDL, the fill bits
from the header length, and UCS-2 is UTF-16-BE.

The splitter counts what the network counts: septets for GSM 7-bit (an extension-table
character is two: ESC + code, never split across parts) and UTF-16 code units for UCS-2
(an emoji is two, never split across parts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# 3GPP TS 23.038 6.2.1: the GSM 7-bit default alphabet (index = septet value); 0x1B is ESC.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC) == 128
ESC = 0x1B
# 6.2.1.1: the default extension table (after ESC)
GSM7_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
            0x40: "|", 0x65: "€"}
_BASIC_CODE = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESC}
_EXT_CODE = {ch: code for code, ch in GSM7_EXT.items()}

# Part sizes (23.040 9.2.3.24): one part carries 140 octets of user data.
GSM7_SINGLE, UCS2_SINGLE, OCTETS_SINGLE = 160, 70, 140
IEI_CONCAT8, IEI_CONCAT16 = 0x00, 0x08


class PduError(ValueError):
    """The PDU cannot be read (truncated, not hex, inconsistent lengths)."""


# ---- GSM 7-bit ------------------------------------------------------------------------

def gsm7_encodable(text: str) -> bool:
    return all(ch in _BASIC_CODE or ch in _EXT_CODE for ch in text)


def gsm7_units(ch: str) -> list[int]:
    """The septets of one character (ESC + code for the extension table)."""
    code = _BASIC_CODE.get(ch)
    if code is not None:
        return [code]
    return [ESC, _EXT_CODE[ch]]


def gsm7_encode(text: str) -> list[int]:
    out: list[int] = []
    for ch in text:
        out.extend(gsm7_units(ch))
    return out


def gsm7_decode(septets: list[int]) -> str:
    out: list[str] = []
    escaped = False
    for s in septets:
        if escaped:
            escaped = False
            # 23.038 6.2.1.1: a code the extension table lacks shows as the basic character
            out.append(GSM7_EXT.get(s, " " if s == ESC else GSM7_BASIC[s]))
        elif s == ESC:
            escaped = True
        else:
            out.append(GSM7_BASIC[s])
    if escaped:          # a lone ESC at the end: shown as a space (23.038 note on 0x1B)
        out.append(" ")
    return "".join(out)


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Septets packed LSB first after ``fill_bits`` zero bits (the fill after a UDH)."""
    acc, nbits = 0, fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    if len(data) * 8 - fill_bits < count * 7:
        raise PduError(f"user data holds {(len(data) * 8 - fill_bits) // 7} septets, TP-UDL says {count}")
    bits = int.from_bytes(data, "little") >> fill_bits
    return [(bits >> (7 * i)) & 0x7F for i in range(count)]


# ---- UCS-2 (UTF-16-BE: an emoji is a surrogate pair, two units) ------------------------

def ucs2_encode(text: str) -> bytes:
    return text.encode("utf-16-be")


def ucs2_decode(data: bytes) -> str:
    if len(data) % 2:
        data = data[:-1]     # an odd octet cannot be a UCS-2 unit: dropped, not fatal
    # surrogatepass keeps a lone half (a part split mid-pair by some other sender) so that
    # joining the parts' texts later still makes the emoji
    return data.decode("utf-16-be", errors="surrogatepass")


def join_surrogates(text: str) -> str:
    """Pair surrogate halves left apart by per-part decoding; a lone half becomes U+FFFD."""
    return text.encode("utf-16-be", errors="surrogatepass").decode("utf-16-be", errors="replace")


def utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


# ---- addresses and timestamps ------------------------------------------------------------

_BCD = "0123456789*#abc"


def _semi_octets(data: bytes, digits: int) -> str:
    out: list[str] = []
    for b in data:
        for nib in (b & 0x0F, b >> 4):
            if len(out) < digits and nib != 0x0F:
                out.append(_BCD[nib] if nib < len(_BCD) else "?")
    return "".join(out)


@dataclass(frozen=True)
class Address:
    number: str | None          # "+33612345678", "0612345678", an alphanumeric name, or None (none given)
    ton: int = 0                # type of number: 1 international, 5 alphanumeric
    npi: int = 0

    @property
    def hidden(self) -> bool:
        return not self.number


def _read_address(buf: bytes, pos: int, *, length_in_octets: bool = False) -> tuple[Address, int]:
    """TP-OA/DA/RA at ``pos`` (length in semi-octets) or an SMSC address (length in octets)."""
    n = _byte(buf, pos)
    if length_in_octets:
        if n == 0:
            return Address(None), pos + 1
        toa = _byte(buf, pos + 1)
        body = _take(buf, pos + 2, n - 1)
        digits = (n - 1) * 2
        end = pos + 1 + n
    else:
        toa = _byte(buf, pos + 1)
        octets = (n + 1) // 2
        body = _take(buf, pos + 2, octets)
        digits = n
        end = pos + 2 + octets
    ton, npi = (toa >> 4) & 0x07, toa & 0x0F
    if n == 0:
        return Address(None, ton, npi), end
    if ton == 5:           # alphanumeric sender ("MyBank"): GSM 7-bit packed
        text = gsm7_decode(unpack_septets(body, len(body) * 8 // 7)).rstrip("@\r ")
        return Address(text or None, ton, npi), end
    number = _semi_octets(body, digits)
    if ton == 1 and number:
        number = "+" + number
    return Address(number or None, ton, npi), end


def encode_address(number: str) -> bytes:
    """TP-DA for a dialable number (digits, optional leading +)."""
    international = number.startswith("+")
    digits = number.lstrip("+")
    if not digits or not all(c in "0123456789*#" for c in digits):
        raise ValueError(f"not a phone number: {number!r}")
    nibbles = [_BCD.index(c) for c in digits] + ([0x0F] if len(digits) % 2 else [])
    body = bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))
    return bytes([len(digits), 0x91 if international else 0x81]) + body


def _scts(data: bytes) -> datetime | None:
    """A service-centre timestamp (7 swapped-BCD octets, zone in quarter hours); None if invalid."""
    try:
        vals = [(b & 0x0F) * 10 + (b >> 4) for b in data[:6]]
        tzb = data[6]
        quarters = (tzb & 0x07) * 10 + (tzb >> 4)
        if tzb & 0x08:
            quarters = -quarters
        year = 2000 + vals[0] if vals[0] < 70 else 1900 + vals[0]
        return datetime(year, vals[1], vals[2], vals[3], vals[4], vals[5],
                        tzinfo=timezone(timedelta(minutes=15 * quarters)))
    except (ValueError, IndexError):
        return None


def _byte(buf: bytes, pos: int) -> int:
    if pos >= len(buf):
        raise PduError(f"PDU ends early (octet {pos} of {len(buf)})")
    return buf[pos]


def _take(buf: bytes, pos: int, n: int) -> bytes:
    if n < 0 or pos + n > len(buf):
        raise PduError(f"PDU ends early (needs {n} octet(s) at {pos}, has {max(0, len(buf) - pos)})")
    return buf[pos:pos + n]


# ---- data coding scheme ----------------------------------------------------------------------

def dcs_encoding(dcs: int) -> str:
    """TP-DCS → "gsm7" | "8bit" | "ucs2" | "unknown" (23.038 section 4)."""
    group = dcs >> 4
    if group <= 0x7:                     # general data coding (0x4-0x7: marked for auto-deletion)
        if dcs & 0x20:
            return "unknown"             # compressed: nobody implements it
        return ("gsm7", "8bit", "ucs2", "unknown")[(dcs >> 2) & 0x03]
    if group in (0xC, 0xD):              # message waiting indication, GSM 7-bit
        return "gsm7"
    if group == 0xE:                     # message waiting indication, UCS-2
        return "ucs2"
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "unknown"                     # 0x8-0xB reserved


# ---- user data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    seq: int
    ref_bits: int = 8


@dataclass(frozen=True)
class UserData:
    encoding: str
    text: str | None                 # None when the encoding is unknown (raw kept in ``data``)
    data: bytes                      # the payload octets (after the UDH)
    concat: Concat | None = None
    headers: tuple[tuple[int, bytes], ...] = ()


def _read_udh(ud: bytes) -> tuple[tuple[tuple[int, bytes], ...], Concat | None, int]:
    udhl = _byte(ud, 0)
    raw = _take(ud, 1, udhl)
    items: list[tuple[int, bytes]] = []
    concat = None
    i = 0
    while i + 1 < len(raw):
        iei, ln = raw[i], raw[i + 1]
        value = raw[i + 2:i + 2 + ln]
        if len(value) != ln:
            raise PduError(f"user data header element {iei:#04x} is cut short")
        items.append((iei, value))
        if iei == IEI_CONCAT8 and ln == 3 and value[1]:
            concat = Concat(value[0], value[1], value[2], 8)
        elif iei == IEI_CONCAT16 and ln == 4 and value[2]:
            concat = Concat((value[0] << 8) | value[1], value[2], value[3], 16)
        i += 2 + ln
    return tuple(items), concat, udhl + 1


def read_user_data(buf: bytes, pos: int, dcs: int, udhi: bool) -> UserData:
    encoding = dcs_encoding(dcs)
    udl = _byte(buf, pos)
    pos += 1
    if encoding == "gsm7":
        ud = _take(buf, pos, (udl * 7 + 7) // 8)
        headers: tuple[tuple[int, bytes], ...] = ()
        concat = None
        fill, skip_septets, start = 0, 0, 0
        if udhi:
            headers, concat, hlen = _read_udh(ud)
            fill = (7 - (hlen * 8) % 7) % 7
            skip_septets = (hlen * 8 + fill) // 7
            start = hlen
        count = udl - skip_septets
        if count < 0:
            raise PduError(f"TP-UDL {udl} is shorter than the user data header")
        septets = unpack_septets(ud[start:], count, fill)
        return UserData("gsm7", gsm7_decode(septets), bytes(septets), concat, headers)
    if encoding == "unknown":
        # TP-UDL counts septets or octets depending on the coding we cannot read: keep what is there
        return UserData("unknown", None, buf[pos:pos + udl])
    ud = _take(buf, pos, udl)
    headers, concat, start = _read_udh(ud) if udhi else ((), None, 0)
    payload = ud[start:]
    if encoding == "ucs2":
        return UserData("ucs2", ucs2_decode(payload), payload, concat, headers)
    # 8-bit data has no character set; latin-1 shows it losslessly (hex is kept too)
    return UserData("8bit", payload.decode("latin-1"), payload, concat, headers)


# ---- messages --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deliver:
    sender: Address
    timestamp: datetime | None
    dcs: int
    pid: int
    ud: UserData
    smsc: str | None = None
    status_report_indication: bool = False

    @property
    def text(self) -> str | None:
        return self.ud.text


@dataclass(frozen=True)
class StatusReport:
    reference: int                   # TP-MR of the SMS-SUBMIT it reports on
    recipient: Address
    timestamp: datetime | None       # when the SMSC received the message
    discharged: datetime | None      # when it was delivered (or the status changed)
    status: int                      # TP-ST: 0x00-0x1F done, 0x20-0x3F still trying, 0x40+ failed
    smsc: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status < 0x20

    @property
    def final(self) -> bool:
        return self.status < 0x20 or self.status >= 0x40


@dataclass(frozen=True)
class Submit:
    reference: int
    recipient: Address
    dcs: int
    ud: UserData
    status_report_request: bool = False

    @property
    def text(self) -> str | None:
        return self.ud.text


def decode_pdu(pdu_hex: str, *, with_smsc: bool = True) -> Deliver | StatusReport | Submit:
    """Decode one PDU as a modem prints it (hex, SMSC address first). Raises PduError on garbage."""
    text = pdu_hex.strip()
    try:
        buf = bytes.fromhex(text)
    except ValueError:
        raise PduError(f"not hexadecimal: {text[:40]!r}") from None
    if not buf:
        raise PduError("empty PDU")
    pos = 0
    smsc = None
    if with_smsc:
        addr, pos = _read_address(buf, 0, length_in_octets=True)
        smsc = addr.number
    first = _byte(buf, pos)
    mti = first & 0x03
    udhi = bool(first & 0x40)
    if mti == 0:                                         # SMS-DELIVER
        sender, pos = _read_address(buf, pos + 1)
        pid, dcs = _byte(buf, pos), _byte(buf, pos + 1)
        stamp = _scts(_take(buf, pos + 2, 7))
        ud = read_user_data(buf, pos + 9, dcs, udhi)
        return Deliver(sender, stamp, dcs, pid, ud, smsc, bool(first & 0x20))
    if mti == 2:                                         # SMS-STATUS-REPORT
        mr = _byte(buf, pos + 1)
        recipient, pos = _read_address(buf, pos + 2)
        stamp = _scts(_take(buf, pos, 7))
        discharged = _scts(_take(buf, pos + 7, 7))
        status = _byte(buf, pos + 14)
        return StatusReport(mr, recipient, stamp, discharged, status, smsc)
    if mti == 1:                                         # SMS-SUBMIT (our own, read back)
        mr = _byte(buf, pos + 1)
        recipient, pos = _read_address(buf, pos + 2)
        dcs = _byte(buf, pos + 1)
        vpf = (first >> 3) & 0x03
        pos += 2 + {0: 0, 2: 1, 1: 7, 3: 7}[vpf]
        ud = read_user_data(buf, pos, dcs, udhi)
        return Submit(mr, recipient, dcs, ud, bool(first & 0x20))
    raise PduError(f"message type {mti} is not one this program reads")


# ---- splitting and encoding SMS-SUBMIT ---------------------------------------------------------

def choose_encoding(text: str) -> str:
    return "gsm7" if gsm7_encodable(text) else "ucs2"


def _capacity(encoding: str, ref_bits: int | None) -> int:
    """Units (septets or UTF-16 units) one part carries."""
    if encoding == "gsm7":
        if ref_bits is None:
            return GSM7_SINGLE
        hlen = 6 if ref_bits == 8 else 7                      # UDHL octet + IE
        return (140 * 8 - hlen * 8) // 7                       # 153 or 152
    if ref_bits is None:
        return UCS2_SINGLE
    return (140 - (6 if ref_bits == 8 else 7)) // 2            # 67 or 66


def split_text(text: str, encoding: str | None = None, *, ref_bits: int = 8) -> list[str]:
    """``text`` cut into the parts the network will carry; a character is never cut in two."""
    encoding = encoding or choose_encoding(text)
    cost = (lambda ch: len(gsm7_units(ch))) if encoding == "gsm7" else utf16_units
    if sum(cost(ch) for ch in text) <= _capacity(encoding, None):
        return [text]
    room = _capacity(encoding, ref_bits)
    parts: list[str] = []
    cur: list[str] = []
    used = 0
    for ch in text:
        c = cost(ch)
        if used + c > room:
            parts.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += c
    if cur:
        parts.append("".join(cur))
    return parts


@dataclass(frozen=True)
class EncodedPart:
    tpdu_len: int          # octets after the SMSC field (AT+CMGS=<length>)
    pdu_hex: str


@dataclass
class Encoded:
    encoding: str
    parts: list[EncodedPart] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def user_data(encoding: str, payload: str | bytes, concat: Concat | None) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for one part."""
    header = b""
    if concat is not None:
        if concat.ref_bits == 16:
            ie = bytes([IEI_CONCAT16, 4, concat.reference >> 8, concat.reference & 0xFF, concat.total, concat.seq])
        else:
            ie = bytes([IEI_CONCAT8, 3, concat.reference & 0xFF, concat.total, concat.seq])
        header = bytes([len(ie)]) + ie
    if encoding == "gsm7":
        assert isinstance(payload, str)
        septets = gsm7_encode(payload)
        fill = (7 - (len(header) * 8) % 7) % 7 if header else 0
        udl = (len(header) * 8 + fill) // 7 + len(septets)
        return udl, header + pack_septets(septets, fill)
    data = ucs2_encode(payload) if isinstance(payload, str) else payload
    return len(header) + len(data), header + data


def encode_submit(number: str, text: str, *, reference: int = 0, ref_bits: int = 8,
                  status_report: bool = True, encoding: str | None = None,
                  validity_minutes: int | None = None) -> Encoded:
    """SMS-SUBMIT PDUs (SMSC field empty: the SIM's is used) for ``text`` to ``number``.
    ``validity_minutes`` None: no validity period (the network's default, as before)."""
    encoding = encoding or choose_encoding(text)
    if encoding not in ("gsm7", "ucs2"):
        raise ValueError(f"cannot send text as {encoding}")
    texts = split_text(text, encoding, ref_bits=ref_bits)
    da = encode_address(number)
    dcs = 0x00 if encoding == "gsm7" else 0x08
    vp = b""
    first = 0x01 | (0x20 if status_report else 0)
    if validity_minutes is not None:
        first |= 0x10                                   # relative validity period, 1 octet
        vp = bytes([_relative_vp(validity_minutes)])
    out = Encoded(encoding, texts=texts)
    for i, part in enumerate(texts, start=1):
        concat = Concat(reference, len(texts), i, ref_bits) if len(texts) > 1 else None
        udl, ud = user_data(encoding, part, concat)
        fo = first | (0x40 if concat else 0)
        tpdu = bytes([fo, 0x00]) + da + bytes([0x00, dcs]) + vp + bytes([udl]) + ud
        out.parts.append(EncodedPart(len(tpdu), ("00" + tpdu.hex()).upper()))
    return out


def _relative_vp(minutes: int) -> int:
    """23.040 9.2.3.12.1."""
    if minutes <= 720:
        return max(0, minutes // 5 - 1)
    if minutes <= 1440:
        return 143 + (minutes - 720) // 30
    days = minutes // 1440
    if days <= 30:
        return 166 + days
    return min(255, 192 + days // 7)
